"""The wire side of a PostgreSQL connection: start-up, the pipeline of
operations, cancellation and closing, as an ``asyncio.Protocol`` on the
running loop.

What it does: :class:`Session` owns the transport (opened with the running
loop's ``create_connection`` / ``create_unix_connection``: on asyncio's
default loop a selector socket, on ringleader's loop a fixed file of the
calling worker's ring) and its lifecycle, a named :class:`State` (NEW ->
STARTING -> READY -> CLOSED).  Every backend message is parsed by the
sans-I/O modules (``messages``, ``startup``) and fed to the head of a FIFO
of in-flight operations (``ops``), so concurrent Sync groups pipeline and
each gets its own ReadyForQuery.  Timeouts and task cancellation send a real
CancelRequest on a new short connection.  It implements the narrow interface
the flows use (:class:`~.channel.Channel`: submit/send/wait, the exclusive
hold, read pausing, notification listeners).

What it does not do: prepare statements or run queries (``connection``),
streams (``streams``), transactions (``transaction``), TLS negotiation
details (``tls``).
"""
from __future__ import annotations

import asyncio
import enum
import logging
from collections import deque
from typing import Any, Callable

import psycopg

from . import messages as m
from . import tls
from .cancel import send_cancel
from .dsn import ConnectParams
from ..contract import Movable, MovableWire
from .errors import (ConnectionLost, InterfaceError, Notice, ProtocolViolation, QueryTimeout,
                     WrongLoop, server_error)
from .ops import Op, _consume
from .startup import Startup
from .types import ADAPTER_SETTINGS, AdaptContext, Dumper

log = logging.getLogger("ringleader.drivers.postgres")


# How long to wait for the server to answer a query we asked it to cancel
# before giving up on the connection.
CANCEL_GRACE = 5.0
# A caller cancelled mid-query: the server is asked to cancel only if the
# query still runs this much later.  A CancelRequest is a new connection (a
# fork on the server); when many callers give up on short queries at once,
# cancelling each at once is a storm of forks that keeps an overloaded server
# overloaded (issue 16), while the queries would have been done anyway.
# 0 = at once: the deferral (0.1 s) measured in issue 16's runs conflicts with
# issue 15's tests that a cancel is under way as soon as the caller is gone;
# settling waits for the cancel either way.
CANCEL_AFTER = 0.0


class State(enum.Enum):
    """A connection's lifecycle.  The server's transaction status ('I'/'T'/
    'E') and the exclusive hold are separate: they matter only while READY."""

    NEW = "new"              # made, no transport yet
    STARTING = "starting"    # start-up exchange (auth, parameters) under way
    READY = "ready"          # queries may be sent
    CLOSED = "closed"        # closed or failed for good (``_closed_exc`` says why)


_TRANSITIONS = {
    State.NEW: frozenset({State.STARTING, State.CLOSED}),
    State.STARTING: frozenset({State.READY, State.CLOSED}),
    State.READY: frozenset({State.CLOSED}),
    State.CLOSED: frozenset(),
}
_READY = State.READY  # the read path's test, as a module global

class _Wire(MovableWire, asyncio.Protocol):
    """Forwards transport events (and the runtime's migration hooks) to the Session."""

    def __init__(self, conn: "Session"):
        self.conn = conn

    def connection_made(self, transport):
        self.conn._transport = transport

    def data_received(self, data):
        self.conn._data(data)

    def eof_received(self):
        return False  # close our side too

    def connection_lost(self, exc):
        self.conn._lost(exc)

    def pause_writing(self):
        self.conn._write_paused = True

    def resume_writing(self):
        self.conn._write_paused = False
        w, self.conn._drain = self.conn._drain, None
        if w is not None and not w.done():
            w.set_result(None)



class Session(Movable):
    """The wire, the pipeline and the lifecycle of one server connection
    (the base of :class:`~.connection.Connection`).  It may migrate to another
    worker while idle between operations (see ``drivers.contract``)."""

    _wrong_loop = WrongLoop

    def __init__(self, params: ConnectParams, address: tuple[str, int], *,
                 command_timeout: float | None = None, adapters=None):
        self._loop = asyncio.get_running_loop()
        self._params = params
        self._address = address
        self._state = State.NEW
        self._transport: asyncio.Transport | None = None
        self._reader = m.MessageReader()
        self._ops: deque[Op] = deque()
        self._closed_exc: BaseException | None = None
        self._fatal: psycopg.Error | None = None
        self._startup: Startup | None = None  # only while STARTING
        self._ready: asyncio.Future | None = None
        self.server_parameters: dict[str, str] = {}
        self._ctx = AdaptContext(self.server_parameters, adapters)
        self._dumper = Dumper(self._ctx)
        self._gen = 0
        # Server-side statements (the cache is ``connection``'s): close()
        # messages not yet sent, and the entries failed when the wire dies.
        self._stmts: dict = {}
        self._pending_closes: list[bytes] = []
        self._gate = asyncio.Lock()
        self._gate_owner: asyncio.Task | None = None
        self._status = "I"
        self._tx_stack: list = []
        self._listeners: dict[str, set[Callable]] = {}
        self._notice_handlers: list[Callable[[Notice], Any]] = []
        self._tasks: set[asyncio.Task] = set()
        # Writes held back while a CancelRequest is being sent (see _cancel_head).
        self._cancels_sending = 0
        self._held: list[bytes] = []
        self._write_paused = False
        self._drain: asyncio.Future | None = None
        self._read_paused = False
        self.backend_pid = 0
        self._backend_key: bytes = b""
        self.command_timeout = command_timeout
        self._users = 0  # API calls under way (an operation spans several awaits)

    @property
    def state(self) -> State:
        return self._state

    def _to(self, state: State) -> None:
        if state not in _TRANSITIONS[self._state]:
            raise AssertionError(f"postgres connection: {self._state.name} -> {state.name}")
        self._state = state

    # ------------------------------------------------------------ psycopg context

    @property
    def adapters(self):
        """This connection's psycopg ``AdaptersMap``: register custom types here
        (``register_enum(info, conn)``, ``conn.adapters.register_loader(...)``)."""
        return self._ctx.adapters

    @property
    def connection(self) -> AdaptContext:
        return self._ctx

    @property
    def pgconn(self):
        return self._ctx.pgconn

    def reset_type_cache(self) -> None:
        """Forget cached row decoders, e.g. after registering new adapters."""
        self._gen += 1
        self._dumper = Dumper(self._ctx)

    # ---------------------------------------------------------------- start-up

    async def start(self, use_tls: bool = False) -> None:
        """Opens the transport and runs the start-up exchange (``connect()``
        calls it once, on a new connection).  On any failure the transport is
        aborted and the connection is CLOSED before the error propagates."""
        host, port = self._address
        self._to(State.STARTING)
        self._startup = Startup(self._params.user, self._params.password,
                                self._params.startup_params())
        self._ready = ready = self._loop.create_future()
        # A failure before start-up (refused TLS, failed handshake) is raised
        # by what awaits it; the start-up future's copy is not news.
        ready.add_done_callback(_consume)
        try:
            if host.startswith("/"):
                await self._loop.create_unix_connection(
                    lambda: _Wire(self), f"{host}/.s.PGSQL.{port}")
            else:
                await self._loop.create_connection(lambda: _Wire(self), host, port)
                if use_tls:
                    self._transport = await tls.negotiate(
                        self._loop, self._transport, self._params.sslmode,
                        self._params.ssl_context, host)
            self._transport.write(self._startup.start())
            await self._ready
        except BaseException as e:
            if self._state is not State.CLOSED:
                err = ConnectionLost(f"start-up failed: {e!r}")
                err.__cause__ = e
                self._fail_all(err)
            if self._transport is not None:
                self._transport.abort()
            raise

    def _startup_done(self) -> None:
        s, self._startup = self._startup, None
        self._to(State.READY)
        self.server_parameters.update(s.parameters)
        if s.backend_key is not None:
            self.backend_pid, self._backend_key = s.backend_key
        self._status = s.status
        for n in s.notices:
            self._notice(n)
        self._ready.set_result(None)

    # ------------------------------------------------------------- inbound path

    def _data(self, data: bytes) -> None:
        reader = self._reader
        reader.feed(data)
        try:
            while True:
                if self._state is _READY and self._ops and reader.at_data_row():
                    op = self._ops[0]
                    if reader.read_rows(op.sink()):
                        if op.codec is not None:
                            op.decode_some()
                        continue
                msg = reader.read()
                if msg is None:
                    break
                kind, body = msg
                if self._state is State.STARTING:
                    out = self._startup.feed(kind, body)
                    if out:
                        self._transport.write(out)
                    if self._startup.done:
                        self._startup_done()
                    continue
                if kind == b"A":
                    self._notify(m.parse_notification(body))
                elif kind == b"N":
                    self._notice(m.parse_error_fields(b"N", body))
                elif kind == b"S":
                    self._set_param(m.parse_parameter_status(body))
                elif self._ops:
                    op = self._ops[0]
                    if op.feed(kind, body):
                        self._ops.popleft()
                        self._status = op.status
                        if self._ops and self._ops[0].cancel_at_head:
                            self._cancel_soon(self._ops[0])
                elif kind == b"E":
                    # An error with nothing in flight: the server's goodbye
                    # (admin shutdown, idle timeout); the close follows.
                    self._fatal = server_error(m.parse_error_fields(b"E", body))
                else:
                    raise ProtocolViolation(f"unexpected message {kind!r} with no query in flight")
        except Exception as e:
            if self._ready is not None and not self._ready.done():
                self._ready.set_exception(e)
            self._abort(e)
            if not isinstance(e, (ProtocolViolation, psycopg.Error)):
                log.exception("postgres connection: internal error, connection dropped")

    def _set_param(self, p: m.ParameterStatus) -> None:
        old = self.server_parameters.get(p.name)
        self.server_parameters[p.name] = p.value
        if p.name in ADAPTER_SETTINGS and old != p.value:
            self.reset_type_cache()

    def _notify(self, n: m.Notification) -> None:
        for cb in list(self._listeners.get(n.channel, ())):
            try:
                cb(psycopg.Notify(n.channel, n.payload, n.pid))
            except Exception:
                log.exception("postgres notification listener failed")

    def _notice(self, fields: dict[int, bytes]) -> None:
        notice = Notice(fields)
        if not self._notice_handlers:
            log.info("server notice: %s: %s", notice.severity, notice.message)
        for h in list(self._notice_handlers):
            try:
                h(notice)
            except Exception:
                log.exception("postgres notice handler failed")

    def add_notice_handler(self, handler: Callable[[Notice], Any]) -> None:
        self._notice_handlers.append(handler)

    def remove_notice_handler(self, handler: Callable[[Notice], Any]) -> None:
        self._notice_handlers.remove(handler)

    # ------------------------------------------------------------------- closing

    def _lost(self, exc: BaseException | None) -> None:
        if self._closed_exc is None:
            reason = self._fatal or exc
            err = ConnectionLost(f"connection to the server lost: {reason or 'closed by server'}")
            err.__cause__ = reason
            self._fail_all(err)
        if self._ready is not None and not self._ready.done():
            self._ready.set_exception(self._closed_exc)

    def _abort(self, exc: BaseException) -> None:
        if self._closed_exc is None:
            self._fail_all(exc)
        if self._transport is not None:
            self._transport.abort()

    def _fail_all(self, exc: BaseException) -> None:
        self._closed_exc = exc
        self._to(State.CLOSED)
        for t in list(self._tasks):
            t.cancel()  # CancelRequests for a dead connection are moot
        ops, self._ops = self._ops, deque()
        for op in ops:
            op.fail(exc)
        for st in self._stmts.values():
            if st.ready is not None and not st.ready.done():
                st.ready.set_exception(exc)
                st.ready.add_done_callback(lambda f: f.exception())
        self._stmts.clear()
        if self._drain is not None and not self._drain.done():
            self._drain.set_exception(exc)
            self._drain.add_done_callback(lambda f: f.exception())
        for cbs in list(self._listeners.values()):
            for cb in list(cbs):
                try:
                    cb(exc)
                except Exception:
                    log.exception("postgres listener failed on close")

    def is_closed(self) -> bool:
        return self._closed_exc is not None

    @property
    def in_flight(self) -> int:
        """Sync groups sent whose ReadyForQuery has not arrived (the pool's
        multiplexer sends on the connection with the fewest)."""
        return len(self._ops)

    async def wait_idle(self) -> None:
        """Waits until every Sync group sent so far is answered: a caller gave up
        on its query (cancelled or timed out), and the pool reuses the connection
        once the server is done with it.  Sends one extra Sync, whose
        ReadyForQuery the server sends after all earlier ones; then waits for
        the CancelRequests still being sent for them, so that a late one cannot
        cancel the next borrower's query (a CancelRequest cancels whatever the
        backend runs when it arrives)."""
        if self._ops:
            await self.submit(m.SYNC, Op(self._loop)).fut
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _busy_reason(self) -> str | None:
        if self._state is not _READY:
            return "it is starting up" if self._state is State.STARTING else "it is not connected"
        if self._ops or self._users:
            return "queries are in flight"
        if self._gate.locked():
            return "a cursor or COPY holds it"
        if self._status != "I":
            return "a transaction block is open"
        if self._listeners:
            return "it is listening for notifications"
        if self._tasks:
            return "a cancel request is under way"
        if self._write_paused:
            return "its writes are paused"
        return None

    def _rebind(self, transport, loop) -> None:
        # Idle (the blocker saw to it): what was bound to the old loop is made
        # anew on this one.
        self._transport = transport
        self._loop = loop
        self._gate = asyncio.Lock()
        self._drain = None

    def _enter(self) -> None:
        """Start of an API call: on the right loop, and not movable until it
        ends (``self._users -= 1`` in its ``finally``)."""
        self._check_loop()
        self._users += 1

    def terminate(self) -> None:
        """Closes at once, failing whatever is in flight."""
        self._abort(ConnectionLost("connection closed by the client"))

    async def close(self) -> None:
        """Sends Terminate and closes; queries still in flight fail, and
        CancelRequests still being sent are cancelled before this returns."""
        if self._closed_exc is None and self._transport is not None:
            self._transport.write(m.TERMINATE)
            self._fail_all(ConnectionLost("connection closed by the client"))
            self._transport.close()
        await self.settle(0.0)

    async def settle(self, timeout: float = CANCEL_GRACE) -> None:
        """Lets the CancelRequests this connection sends for callers that gave
        up finish within ``timeout`` seconds, then cancels the rest and waits
        for them: afterwards none of its tasks is pending, so the loop may
        close without "Task was destroyed but it is pending".  Called from a
        loop other than the connection's, it does nothing (those tasks can only
        be awaited on their own loop)."""
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            return
        me = asyncio.current_task()
        deadline = loop.time() + timeout
        while True:
            # The end of one cancelled statement may start the CancelRequest
            # of the next one in the pipeline: look again after each wait.
            tasks = [t for t in self._tasks if t is not me and not t.done()]
            if not tasks:
                return
            left = deadline - loop.time()
            if left <= 0:
                for t in tasks:
                    t.cancel()
                await asyncio.wait(tasks)
                return
            await asyncio.wait(tasks, timeout=left)

    # ------------------------------------------------------------- outbound path

    def _check_open(self) -> None:
        if self._closed_exc is not None:
            raise ConnectionLost(f"connection is closed: {self._closed_exc}") from self._closed_exc
        self._check_loop()

    async def hold_exclusive(self) -> None:
        """Takes the send gate for the calling task (a cursor outside a
        transaction, COPY): other tasks' :meth:`wait_turn` waits until
        :meth:`release_exclusive`."""
        me = asyncio.current_task()
        if self._gate_owner is me:
            raise InterfaceError("this task already runs a cursor or COPY on this connection")
        await self._gate.acquire()
        self._gate_owner = me

    def release_exclusive(self) -> None:
        self._gate_owner = None
        self._gate.release()

    @property
    def held_exclusive(self) -> bool:
        """A cursor or COPY has the connection to itself."""
        return self._gate.locked()

    async def wait_turn(self) -> None:
        """Waits while a cursor or COPY has the connection to itself."""
        while self._gate.locked():
            if self._gate_owner is asyncio.current_task():
                raise InterfaceError(
                    "this task holds the connection for a cursor or COPY; finish it first "
                    "(run cursors inside a transaction to interleave queries)")
            async with self._gate:
                pass

    def submit(self, data: bytes, op: Op) -> Op:
        """Writes one Sync group and queues its op; never yields, so groups
        from concurrent tasks never interleave on the wire."""
        self._check_open()
        if self._pending_closes:
            closes, self._pending_closes = self._pending_closes, []
            self._write(b"".join(m.close(b"S", n) for n in closes) + m.SYNC)
            self._ops.append(Op(self._loop))
        self._write(data)
        self._ops.append(op)
        return op

    def _write(self, data: bytes) -> None:
        if self._cancels_sending:
            self._held.append(data)
        else:
            self._transport.write(data)

    def send(self, data: bytes) -> None:
        """Writes bytes for the op already at the head (COPY data, a cursor's
        next batch request); no op is queued."""
        self._check_open()
        self._write(data)

    async def drain(self) -> None:
        """Waits while the transport's write buffer is over its high mark."""
        if self._write_paused:
            if self._drain is None:
                self._drain = self._loop.create_future()
            await self._drain

    async def wait(self, op: Op, timeout: float | None,
                   fut: asyncio.Future | None = None) -> None:
        """Waits for ``fut`` (default: the op's end) with a timeout; on timeout
        or task cancellation, cancels the op on the server.  The op itself is
        never dropped from the pipeline: its answers still arrive in order."""
        if fut is None:
            fut = op.fut
        if timeout is None:
            timeout = self.command_timeout
        try:
            if timeout is None:
                # Awaited directly (no shield: one loop step less per query).
                # A cancelled caller cancels ``fut`` only; the op stays queued
                # and still consumes its answers (finish() skips a done fut).
                return await fut
            async with asyncio.timeout(timeout) as scope:
                return await asyncio.shield(fut)
        except TimeoutError as e:
            if timeout is None or not scope.expired():
                raise
            self._cancel_op(op)
            try:
                async with asyncio.timeout(CANCEL_GRACE):
                    await asyncio.shield(fut)
            except TimeoutError:
                if not fut.done():
                    self._abort(ConnectionLost("server did not answer a CancelRequest"))
            except Exception:
                pass  # the expected QueryCanceled, or any error the query had
            raise QueryTimeout(f"query timed out after {timeout:g}s (cancelled on the server)") from e
        except asyncio.CancelledError:
            if not op.status:  # no ReadyForQuery yet: still running or queued
                self._cancel_later(op)
            raise

    def _cancel_later(self, op: Op) -> None:
        if CANCEL_AFTER <= 0:
            self._cancel_op(op)
            return

        def check() -> None:
            if not op.status and self._closed_exc is None:
                self._cancel_op(op)
        self._loop.call_later(CANCEL_AFTER, check)

    def _cancel_op(self, op: Op) -> None:
        # A CancelRequest cancels whatever the backend runs at that moment, so
        # it is only sent while this op is the head of the pipeline; one further
        # back is flagged and cancelled when it gets there.
        if self._ops and self._ops[0] is op:
            self._cancel_soon(op)
        elif op in self._ops:
            op.cancel_at_head = True

    def _cancel_soon(self, op: Op) -> None:
        # Writes are held from now, not from the task's first step: a query
        # submitted in between would otherwise go out ahead of the request.
        hold = self._hold_writes()
        t = self._loop.create_task(self._cancel_head(op, hold))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)
        t.add_done_callback(lambda _: self._release_writes(hold))

    async def _cancel_head(self, op: Op, hold: list[bool]) -> None:
        # A CancelRequest that reaches the backend between two commands is
        # ignored by it; so while the op is still the one running, try again.
        # (op.status, set at its ReadyForQuery, says it is over: its future may
        # have been cancelled by its caller long before.)
        # The backend may finish the op before the request reaches it and be
        # running the next Sync group when it does: that one would fail with
        # QueryCanceled.  Groups already on the wire cannot be helped; those
        # submitted meanwhile are held back until the server has taken the
        # request (it closes the request's connection after signalling the
        # backend), so a late request finds the backend idle, and is ignored.
        for _ in range(3):
            if op.status or not self._ops or self._ops[0] is not op:
                return
            if not hold[0]:
                hold = self._hold_writes()
            try:
                await self.cancel()
            finally:
                self._release_writes(hold)
            for _ in range(20):
                if op.status:
                    return
                await asyncio.sleep(0.05)

    def _hold_writes(self) -> list[bool]:
        """Holds writes back (see _cancel_head); the token is released once."""
        self._cancels_sending += 1
        return [True]

    def _release_writes(self, hold: list[bool]) -> None:
        if not hold[0]:
            return
        hold[0] = False
        self._cancels_sending -= 1
        if not self._cancels_sending and self._held:
            held, self._held = self._held, []
            if self._closed_exc is None:
                self._transport.write(b"".join(held))

    def pause_reading(self) -> None:
        if not self._read_paused and self._closed_exc is None:
            self._read_paused = True
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._read_paused and self._closed_exc is None:
            self._read_paused = False
            self._transport.resume_reading()

    # ------------------------------------------------------- LISTEN callbacks

    def add_listener(self, channel: str, callback: Callable[[Any], None]) -> None:
        """``callback(psycopg.Notify)`` per notification on ``channel``;
        ``callback(exc)`` once when the connection closes."""
        self._listeners.setdefault(channel, set()).add(callback)

    def remove_listener(self, channel: str, callback: Callable[[Any], None]) -> None:
        s = self._listeners.get(channel)
        if s is not None:
            s.discard(callback)
            if not s:
                del self._listeners[channel]

    def listening_to(self, channel: str) -> bool:
        return channel in self._listeners

    @property
    def listening(self) -> bool:
        """Some LISTEN registration is active on this connection."""
        return bool(self._listeners)

    async def cancel(self) -> None:
        """Sends a CancelRequest for whatever the server runs for us now."""
        if not self._backend_key or self._closed_exc is not None:
            return
        await send_cancel(self._loop, self._address, self.backend_pid, self._backend_key,
                          CANCEL_GRACE)

    @property
    def cancels_pending(self) -> int:
        """CancelRequests still being sent for callers that gave up."""
        return len(self._tasks)

    # ------------------------------------------------------------ session state

    @property
    def tx_stack(self) -> list:
        """The open ``Transaction`` objects, outermost first (see ``transaction``)."""
        return self._tx_stack

    @property
    def transaction_status(self) -> str:
        """'I' idle, 'T' in a transaction block, 'E' in a failed one (as of
        the last ReadyForQuery)."""
        return self._status

    def get_parameter(self, name: str) -> str | None:
        return self.server_parameters.get(name)

