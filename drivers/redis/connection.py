"""One Redis connection: an ``asyncio.Protocol`` on the caller's loop, with
auto-pipelining and a FIFO of reply waiters.

I/O goes through ``loop.create_connection`` / ``create_unix_connection`` of the
*running* loop, so on ringleader's runtime the socket lives on the calling
worker's ring, and on a plain asyncio loop it is a normal socket.

Ordering guarantee (auto-pipelining): commands are written in the order their
``execute`` (or helper) calls were made on this connection.  All commands
issued during one loop iteration go out in one send: on a transport that
coalesces the writes of an iteration itself (the ring's, see
``runtime.contract.CoalescingTransport``) each command is written as it is
issued; on any other (asyncio's, uvloop's, the epoll fallback's, TLS) they are
buffered here and go out in a single ``transport.write`` at the start of the
next iteration.  Redis answers in order,
so each reply is matched to the oldest waiting command (a FIFO of futures).  A
caller that stops waiting (cancelled) leaves its slot in the FIFO, and its reply
is read and dropped when it comes.  Commands from one task that awaits each
reply are therefore executed in program order; commands from different tasks
are executed in the order the tasks issued them.  An explicit pipeline's
commands are written contiguously in one write.

Faults: a lost connection fails every in-flight command with
:class:`~.errors.ConnectionError` (never retried here); a per-command deadline
that passes fails that command with :class:`~.errors.TimeoutError` and closes
the connection (its reply stream is then of unknown length, and callers queued
behind a stalled server must not hang), failing the others with
``ConnectionError``; malformed bytes close it with
:class:`~.errors.ProtocolError`.  A closed connection is never reused.

Times come from the loop's clock (``loop.call_at``), never the wall clock.
"""
from __future__ import annotations

import asyncio
import collections
import socket
from typing import Any, Callable, Sequence

from ...runningloop import running_loop
from ..contract import Movable, MovableWire, writes_coalesced
from . import errors as E
from .commands import DEFAULT, Commands, Iterators
from .errors import ReplyError
from .pipeline import Pipeline
from .protocol import Parser, Push, encode_command, encode_commands, pubsub_kind
from .url import ConnectParams, parse_url

__all__ = ["Connection", "connect"]

#: Commands that may wait server-side for a long time (or forever).
BLOCKING = frozenset(b"""BLPOP BRPOP BRPOPLPUSH BLMOVE BLMPOP BZPOPMIN BZPOPMAX BZMPOP
    XREAD XREADGROUP WAIT WAITAOF""".split())


def _is_blocking(args: tuple) -> bool:
    name = args[0]
    if isinstance(name, str):
        name = name.encode()
    return isinstance(name, bytes) and name.upper() in BLOCKING


class _Protocol(MovableWire, asyncio.Protocol):
    """Forwards transport events (and the runtime's migration hooks) to the
    Connection (kept apart so the public object does not expose the Protocol
    callbacks)."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.conn._rebind(transport, self.conn._loop)  # type: ignore[arg-type]

    def data_received(self, data: bytes) -> None:
        self.conn._on_data(data)

    def eof_received(self) -> bool:
        return False  # let the transport close; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.conn._on_lost(exc)

    def pause_writing(self) -> None:
        self.conn._paused = True

    def resume_writing(self) -> None:
        self.conn._resume()


class Connection(Movable, Commands, Iterators):
    """A connected, authenticated Redis connection.  Make one with
    :func:`connect` (or get one from a :class:`~.client.Pool`).  It may migrate
    to another worker while idle (see ``drivers.contract``)."""

    _wrong_loop = E.WrongLoop

    def __init__(self, params: ConnectParams, loop: asyncio.AbstractEventLoop) -> None:
        self.params = params
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._parser = Parser(decode=params.decode_responses)
        self._waiters: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._out: list[bytes] = []
        self._flush_scheduled = False
        # the transport sends one iteration's writes together: write each command as issued
        self._direct = False
        # where a command's bytes go: the transport's write (when _direct) or _buffer
        self._put: Callable[[bytes], None] = self._buffer
        self._paused = False
        self._drainers: list[asyncio.Future[None]] = []
        self._closed_exc: E.RedisError | None = None
        self._close_callbacks: list[Callable[[Connection], None]] = []
        self.broken = False  # closed by a fault rather than by close()
        self.on_push: Callable[[Any], None] | None = None
        self._pubsub_mode = False  # RESP2: pub/sub frames are pushes, not replies
        self.server_info: Any = None  # the HELLO reply (RESP3)
        self._writes = 0  # batches written by _flush (see the writes property)
        self.watching = False  # WATCH sent via watch() and not yet ended by EXEC/UNWATCH
        self._connecting = True  # until the handshake is done (it must not move before)

    # -- making one -------------------------------------------------------------------

    @classmethod
    async def connect(cls, params: ConnectParams) -> Connection:
        loop = asyncio.get_running_loop()
        conn = cls(params, loop)
        try:
            async with asyncio.timeout(params.connect_timeout):
                if params.path:
                    await loop.create_unix_connection(lambda: _Protocol(conn), params.path)
                else:
                    # With a context, asyncio checks the certificate against host.
                    await loop.create_connection(lambda: _Protocol(conn), params.host,
                                                 params.port, ssl=params.ssl_context)
                    conn._keepalive()
                await conn._handshake()
                conn._connecting = False
        except TimeoutError:
            conn.close()
            raise E.TimeoutError(f"connecting to Redis at {params.address} took longer than "
                                 f"{params.connect_timeout}s") from None
        except OSError as exc:
            conn.close()
            raise E.ConnectionError(f"cannot connect to Redis at {params.address}: {exc}") from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _keepalive(self) -> None:
        # Lets the kernel notice a peer that vanished without a FIN, so a command
        # without a deadline still ends eventually.  Transports of the ring runtime
        # may not expose a socket object; then there is nothing to set.
        sock = self._transport.get_extra_info("socket") if self._transport else None
        if sock is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:
                pass

    async def _handshake(self) -> None:
        p = self.params
        password = p.password if p.password is not None else ("" if p.username else None)
        cmds: list[tuple] = []
        if p.protocol == 3:
            hello: list[Any] = ["HELLO", 3]
            if password is not None:
                hello += ["AUTH", p.username or "default", password]
            if p.client_name:
                hello += ["SETNAME", p.client_name]
            cmds.append(tuple(hello))
        else:
            if password is not None:
                cmds.append(("AUTH", p.username, password) if p.username else ("AUTH", password))
            if p.client_name:
                cmds.append(("CLIENT", "SETNAME", p.client_name))
        if p.db:
            cmds.append(("SELECT", p.db))
        if not cmds:
            return
        replies = await self.execute_many(cmds, timeout=None)
        for reply in replies:
            if isinstance(reply, ReplyError):
                raise reply
        if p.protocol == 3:
            self.server_info = replies[0]

    # -- state ------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        return self._closed_exc is not None

    def _busy_reason(self) -> str | None:
        if self._connecting:
            return "it is still connecting"
        if self._waiters or self._out or self._flush_scheduled:
            return "commands are in flight"
        if self.pubsub_mode or self.on_push is not None:
            return "it is subscribed"
        if self.watching:
            return "a WATCH is active"
        if self._paused or self._drainers:
            return "its writes are paused"
        return None

    def _rebind(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        old = self._transport
        if old is not None and old is not transport and self._direct:
            self._writes += old.sends  # type: ignore[attr-defined]
        self._transport = transport
        self._loop = loop
        self._direct = writes_coalesced(transport)
        self._put = transport.write if self._direct else self._buffer
        self._match()

    def _match(self) -> None:
        # Replies are matched to their futures by the transport, in C, where it
        # can (runtime.contract.ReplyMatchingTransport), unless the per-reply
        # checks only the Python path makes are needed (RESP2 pub/sub frames)
        # or the connection is closed.  Either path goes on from the reader's state.
        match = getattr(self._transport, "match_replies", None)
        if match is None:
            return
        if self._pubsub_mode or self._closed_exc is not None:
            match(None, None, None, None)
        else:
            match(self._parser.reader, Parser.NEED_MORE, self._waiters, self._on_other, Push)

    @property
    def pubsub_mode(self) -> bool:
        """RESP2 pub/sub: frames that look like pub/sub messages go to ``on_push``."""
        return self._pubsub_mode

    @pubsub_mode.setter
    def pubsub_mode(self, on: bool) -> None:
        self._pubsub_mode = on
        self._match()

    @property
    def writes(self) -> int:
        """Sends of commands to the server: one per loop iteration in which this
        connection had commands to send (a coalescing transport counts them
        itself; otherwise one per batched ``transport.write``)."""
        t = self._transport
        return self._writes + (t.sends if self._direct and t is not None else 0)  # type: ignore[attr-defined]

    @property
    def in_flight(self) -> int:
        """Commands sent (or buffered) whose reply has not arrived."""
        return len(self._waiters)

    def add_close_callback(self, callback: Callable[[Connection], None]) -> None:
        """``callback(conn)`` runs once when the connection closes for any reason."""
        self._close_callbacks.append(callback)

    def close(self) -> None:
        """Closes now; commands in flight fail with ConnectionError."""
        self._shutdown(E.ConnectionError("connection closed by the client"), broken=False)

    async def ping(self) -> Any:
        """Health check used by the pool."""
        return await self.execute("PING")

    def __repr__(self) -> str:
        state = "closed" if self.is_closed else f"{len(self._waiters)} in flight"
        return f"<redis.Connection {self.params.address} resp{self.params.protocol} {state}>"

    # -- sending ----------------------------------------------------------------------

    async def execute(self, *args: Any, timeout: Any = DEFAULT) -> Any:
        """Sends one command and returns its reply; an error reply is raised as
        :class:`ReplyError`.  ``timeout`` (seconds, None for none) defaults to
        the URL's ``timeout``."""
        payload = encode_command(args)
        if self._paused:
            await self._writable()
        fut = self._queue1(payload)
        try:
            reply = await self._wait(fut, timeout)
        except asyncio.CancelledError:
            if _is_blocking(args):
                # Its reply may never come (BLPOP k 0), and everything queued
                # behind it would wait for it: this connection is done.
                self._shutdown(E.ConnectionError(
                    f"connection closed: a blocking {args[0]!r} on it was cancelled"), broken=True)
            raise
        if isinstance(reply, ReplyError):
            raise reply
        return reply

    def send(self, args: tuple) -> asyncio.Future[Any] | None:
        """The multiplexing pool's fast path: queues one command and returns the
        future of its reply (an error reply is its *value*), or None when the
        caller must use :meth:`execute` instead (writes paused, or a default
        timeout to arm).  Raises like ``execute`` if the connection is closed."""
        if self._paused or self.params.timeout is not None:
            return None
        return self._queue1(encode_command(args))

    def _queue1(self, payload: bytes) -> asyncio.Future[Any]:
        # _queue for one command, without the list: the hot path.
        if self._closed_exc is not None:
            raise self._reraise()
        if running_loop() is not self._loop:
            self._check_loop()
        fut = self._loop.create_future()
        self._waiters.append(fut)
        self._put(payload)
        return fut

    def _command(self, args: tuple, transform: Callable[[Any], Any] | None = None,
                 timeout: Any = DEFAULT) -> Any:
        if transform is None:
            return self.execute(*args, timeout=timeout)
        return self._transformed(args, transform, timeout)

    async def _transformed(self, args: tuple, transform: Callable[[Any], Any], timeout: Any) -> Any:
        return transform(await self.execute(*args, timeout=timeout))

    async def execute_many(self, commands: Sequence[Sequence[Any]], timeout: Any = DEFAULT) -> list[Any]:
        """Sends ``commands`` contiguously in one write; returns their replies in
        order, error replies as :class:`ReplyError` values (not raised)."""
        if not commands:
            return []
        payload = encode_commands(commands)
        if self._paused:
            await self._writable()
        futs = self._queue(payload, len(commands))
        # Replies arrive in order, so the last one done means all are done.
        await self._wait(futs[-1], timeout)
        return [f.result() for f in futs]

    def send_only(self, *args: Any) -> None:
        """Writes a command whose answers are not replies (SUBSCRIBE family: they
        come back as pub/sub frames routed to ``on_push``)."""
        self._queue(encode_command(args), 0)

    def _queue(self, payload: bytes, n: int) -> list[asyncio.Future[Any]]:
        if self._closed_exc is not None:
            raise self._reraise()
        self._check_loop()
        futs = [self._loop.create_future() for _ in range(n)]
        self._waiters.extend(futs)
        self._put(payload)
        return futs

    def _buffer(self, payload: bytes) -> None:
        # _put on a transport that sends each write at once: this iteration's
        # commands go out together in _flush, at the start of the next one.
        self._out.append(payload)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self._out or self._transport is None or self._closed_exc is not None:
            return
        data = self._out[0] if len(self._out) == 1 else b"".join(self._out)
        self._out.clear()
        self._writes += 1
        self._transport.write(data)

    async def _writable(self) -> None:
        while self._paused and self._closed_exc is None:
            fut = self._loop.create_future()
            self._drainers.append(fut)
            await fut

    def _resume(self) -> None:
        self._paused = False
        drainers, self._drainers = self._drainers, []
        for f in drainers:
            if not f.done():
                f.set_result(None)

    async def _wait(self, fut: asyncio.Future[Any], timeout: Any) -> Any:
        if timeout is DEFAULT:
            timeout = self.params.timeout
        if timeout is None:
            return await fut
        handle = self._loop.call_at(self._loop.time() + timeout, self._expire, fut, timeout)
        try:
            return await fut
        finally:
            handle.cancel()

    def _expire(self, fut: asyncio.Future[Any], timeout: float) -> None:
        if fut.done():
            return
        fut.set_exception(E.TimeoutError(
            f"no reply from Redis at {self.params.address} within {timeout}s; "
            f"the connection has been closed"))
        self._shutdown(E.ConnectionError(
            f"connection closed: a command on it got no reply within {timeout}s"), broken=True)

    # -- receiving --------------------------------------------------------------------

    def _on_data(self, data: bytes) -> None:
        try:
            replies = self._parser.feed(data)
        except E.ProtocolError as exc:  # fed after a failure; the connection is going
            self._shutdown(exc, broken=True)
            return
        self._on_replies(replies)

    def _on_other(self, item: Any) -> None:
        # From a transport matching replies itself: a push, a reply with no
        # waiter, or the exception its reader raised.
        if isinstance(item, BaseException):
            item = self._parser.failed(item)
        self._on_replies((item,))

    def _on_replies(self, replies: Sequence[Any]) -> None:
        waiters = self._waiters
        for reply in replies:
            if isinstance(reply, E.ProtocolError):
                self._shutdown(E.ProtocolError(
                    f"malformed reply from Redis at {self.params.address} ({reply}); "
                    f"connection discarded"), broken=True)
                return
            if type(reply) is Push or (self.pubsub_mode and pubsub_kind(reply)):
                if self.on_push is not None:
                    self.on_push(reply)
                continue
            if not waiters:
                self._shutdown(E.ProtocolError(
                    f"reply from Redis at {self.params.address} with no command waiting "
                    f"for it: {reply!r:.60}; connection discarded"), broken=True)
                return
            fut = waiters.popleft()
            if not fut.done():  # done: its caller was cancelled or timed out
                fut.set_result(reply)

    def _on_lost(self, exc: Exception | None) -> None:
        why = f": {exc}" if exc else " (closed by the server)"
        self._shutdown(E.ConnectionError(
            f"connection to Redis at {self.params.address} lost{why}"), broken=True)

    def _reraise(self) -> E.RedisError:
        # A fresh instance per caller: one exception object raised in several
        # tasks would get their tracebacks tangled.
        exc = self._closed_exc
        assert exc is not None
        new = type(exc)(str(exc))
        new.__cause__ = exc.__cause__
        return new

    def _shutdown(self, exc: E.RedisError, broken: bool) -> None:
        if self._closed_exc is not None:
            return
        self._closed_exc = exc
        self.broken = broken
        self._out.clear()
        self._match()  # (off: the waiters are failed below)
        if self._transport is not None:
            # abort(): nothing buffered should still reach the server once its
            # callers have been told the command failed.
            if broken:
                self._transport.abort()
            else:
                self._transport.close()
        waiters, self._waiters = self._waiters, collections.deque()
        for fut in waiters:
            if not fut.done():
                fut.set_exception(self._reraise())
        self._resume()
        callbacks, self._close_callbacks = self._close_callbacks, []
        for cb in callbacks:
            cb(self)

    def watch(self, *keys: Any) -> Any:
        self.watching = True
        return super().watch(*keys)

    def unwatch(self) -> Any:
        self.watching = False
        return super().unwatch()

    def reset(self) -> None:
        """Undoes per-borrower state before a pool hands the connection to someone
        else: a WATCH left behind is ended (its reply is read and dropped)."""
        if self.watching and not self.is_closed:
            self.watching = False
            self._queue(encode_command(("UNWATCH",)), 1)[0].cancel()

    def pipeline(self) -> Any:
        """Commands queued on the returned pipeline go out in one write on
        ``await pipe.execute()``."""
        return Pipeline(self)

    def transaction(self) -> Any:
        """A pipeline wrapped in MULTI/EXEC (after ``watch(...)`` if you need
        optimistic locking); ``execute()`` raises WatchError if it was aborted."""
        return Pipeline(self, transaction=True)


async def connect(url: str | None = None, **options: Any) -> Connection:
    """Connects to ``url`` (see :mod:`.url` for the forms and options) on the
    running loop and authenticates, selects the db and names the client."""
    return await Connection.connect(parse_url(url, **options))
