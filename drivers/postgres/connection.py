"""A PostgreSQL connection as an ``asyncio.Protocol`` on the running loop.

The I/O layer is a plain ``asyncio.Protocol`` opened with the running loop's
``create_connection`` / ``create_unix_connection``: on asyncio's default loop
that is a selector socket, on ringleader's loop a fixed file of the calling
worker's ring.  Everything on the wire is built and parsed by the sans-I/O
modules (``messages``, ``startup``); values go through psycopg's adapters
(``types``).

Queries use the extended protocol with a per-connection LRU cache of named
prepared statements keyed by (SQL, parameter types); each call is one
Bind/Execute/Sync group written without waiting for earlier ones, so
concurrent calls pipeline, and each gets its own ReadyForQuery (see ``ops``).
A cached plan the server calls stale (0A000 "cached plan must not change
result type", 26000) is dropped and the call retried once when not inside a
transaction block.  Timeouts and task cancellation send a real CancelRequest
on a new short connection.

Streaming (cursors, COPY, LISTEN) lives in ``streams``; transactions in
``transaction``; TLS negotiation in ``tls``.  Not done here: Kerberos/GSS
auth, replication.
"""
from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict, deque
from typing import Any, Callable, Iterable

import psycopg

from . import messages as m
from . import tls
from .cancel import send_cancel
from .dsn import ConnectParams
from ..contract import Movable, MovableWire
from .errors import (ConnectionLost, InterfaceError, Notice, ProtocolViolation, QueryTimeout,
                     WrongLoop, server_error, stale_plan)
from .ops import Op, Result, _consume
from .startup import Startup
from .types import ADAPTER_SETTINGS, AdaptContext, Dumper, RowCodec, fetch_type_info

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


class _Statement:
    __slots__ = ("name", "fields", "codec", "gen", "ready")

    def __init__(self, name: bytes):
        self.name = name
        self.fields: tuple = ()
        self.codec: RowCodec | None = None
        self.gen = -1
        self.ready: asyncio.Future | None = None


class _Wire(MovableWire, asyncio.Protocol):
    """Forwards transport events (and the runtime's migration hooks) to the Connection."""

    def __init__(self, conn: "Connection"):
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


class Connection(Movable):
    """One server connection; make it with :func:`connect`.  It may migrate to
    another worker while idle between operations (see ``drivers.contract``)."""

    _wrong_loop = WrongLoop

    def __init__(self, params: ConnectParams, address: tuple[str, int], *,
                 statement_cache_size: int = 100, command_timeout: float | None = None,
                 adapters=None):
        self._loop = asyncio.get_running_loop()
        self._params = params
        self._address = address
        self._transport: asyncio.Transport | None = None
        self._reader = m.MessageReader()
        self._ops: deque[Op] = deque()
        self._closed_exc: BaseException | None = None
        self._fatal: psycopg.Error | None = None
        self._startup: Startup | None = None
        self._ready: asyncio.Future | None = None
        self.server_parameters: dict[str, str] = {}
        self._ctx = AdaptContext(self.server_parameters, adapters)
        self._dumper = Dumper(self._ctx)
        self._gen = 0
        self._stmts: OrderedDict[tuple, _Statement] = OrderedDict()
        self._stmt_seq = 0
        self._cache_size = statement_cache_size
        self._pending_closes: list[bytes] = []
        self._gate = asyncio.Lock()
        self._gate_owner: asyncio.Task | None = None
        self._status = "I"
        self._tx_stack: list = []
        self._listeners: dict[str, set[Callable]] = {}
        self._notice_handlers: list[Callable[[Notice], Any]] = []
        self._tasks: set[asyncio.Task] = set()
        self._write_paused = False
        self._drain: asyncio.Future | None = None
        self._read_paused = False
        self.backend_pid = 0
        self._backend_key: bytes = b""
        self.command_timeout = command_timeout
        self._users = 0  # API calls under way (an operation spans several awaits)

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

    async def _start(self, use_tls: bool = False) -> None:
        host, port = self._address
        self._startup = Startup(self._params.user, self._params.password,
                                self._params.startup_params())
        self._ready = ready = self._loop.create_future()
        # A failure before start-up (refused TLS, failed handshake) is raised
        # by what awaits it; the start-up future's copy is not news.
        ready.add_done_callback(_consume)
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
        try:
            await self._ready
        except BaseException:
            self._transport.abort()
            raise

    def _startup_done(self) -> None:
        s, self._startup = self._startup, None
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
                if self._startup is None and self._ops and reader.at_data_row():
                    op = self._ops[0]
                    if reader.read_rows(op.sink()):
                        if op.codec is not None:
                            op.decode_some()
                        continue
                msg = reader.read()
                if msg is None:
                    break
                kind, body = msg
                if self._startup is not None:
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
            await self._submit(m.SYNC, Op(self._loop)).fut
        if self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def _busy_reason(self) -> str | None:
        if self._startup is not None:
            return "it is starting up"
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
        """Start of an API call: on the right loop, and not movable until _leave()."""
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

    async def _wait_gate(self) -> None:
        """Waits while a cursor or COPY has the connection to itself."""
        while self._gate.locked():
            if self._gate_owner is asyncio.current_task():
                raise InterfaceError(
                    "this task holds the connection for a cursor or COPY; finish it first "
                    "(run cursors inside a transaction to interleave queries)")
            async with self._gate:
                pass

    def _submit(self, data: bytes, op: Op) -> Op:
        """Writes one Sync group and queues its op; never yields, so groups
        from concurrent tasks never interleave on the wire."""
        self._check_open()
        if self._pending_closes:
            closes, self._pending_closes = self._pending_closes, []
            self._transport.write(b"".join(m.close(b"S", n) for n in closes) + m.SYNC)
            self._ops.append(Op(self._loop))
        self._transport.write(data)
        self._ops.append(op)
        return op

    async def _drain_writes(self) -> None:
        if self._write_paused:
            if self._drain is None:
                self._drain = self._loop.create_future()
            await self._drain

    async def _wait(self, op: Op, timeout: float | None,
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
        t = self._loop.create_task(self._cancel_head(op))
        self._tasks.add(t)
        t.add_done_callback(self._tasks.discard)

    async def _cancel_head(self, op: Op) -> None:
        # A CancelRequest that reaches the backend between two commands is
        # ignored by it; so while the op is still the one running, try again.
        # (op.status, set at its ReadyForQuery, says it is over: its future may
        # have been cancelled by its caller long before.)
        for _ in range(3):
            if op.status or not self._ops or self._ops[0] is not op:
                return
            await self.cancel()
            for _ in range(20):
                if op.status:
                    return
                await asyncio.sleep(0.05)

    async def cancel(self) -> None:
        """Sends a CancelRequest for whatever the server runs for us now."""
        if not self._backend_key or self._closed_exc is not None:
            return
        await send_cancel(self._loop, self._address, self.backend_pid, self._backend_key,
                          CANCEL_GRACE)

    # ---------------------------------------------------------------- statements

    async def _statement(self, sql: str, types: tuple[int, ...],
                         timeout: float | None) -> _Statement:
        key = (sql, types)
        st = self._stmts.get(key)
        if st is not None:
            self._stmts.move_to_end(key)
            ready = st.ready
            if ready is not None:
                try:
                    await asyncio.shield(ready)
                except asyncio.CancelledError:
                    # The task preparing it was cancelled, not us: prepare anew.
                    if ready.cancelled() and not asyncio.current_task().cancelling():
                        return await self._statement(sql, types, timeout)
                    raise
            return st
        self._stmt_seq += 1
        st = _Statement(f"_rl{self._stmt_seq}".encode())
        st.ready = self._loop.create_future()
        self._stmts[key] = st
        self._evict()
        op = Op(self._loop)
        try:
            await self._wait_gate()
            self._submit(m.parse(st.name, sql.encode(), types)
                         + m.describe(b"S", st.name) + m.SYNC, op)
            await self._wait(op, timeout)
        except BaseException as e:
            if self._stmts.get(key) is st:
                del self._stmts[key]
            if not st.ready.done():
                if isinstance(e, asyncio.CancelledError):
                    st.ready.cancel()
                else:
                    st.ready.set_exception(e)
                    st.ready.add_done_callback(lambda f: f.exception())
            raise
        st.fields = op.described or ()
        st.ready.set_result(None)
        st.ready = None
        return st

    def _evict(self) -> None:
        while len(self._stmts) > self._cache_size:
            for key, old in self._stmts.items():
                if old.ready is None:
                    del self._stmts[key]
                    self._pending_closes.append(old.name)
                    break
            else:
                return

    def _forget(self, sql: str, types: tuple[int, ...], st: _Statement) -> None:
        if self._stmts.get((sql, types)) is st:
            del self._stmts[(sql, types)]
            self._pending_closes.append(st.name)

    def _codec(self, st: _Statement) -> RowCodec:
        if st.gen != self._gen or st.codec is None:
            st.codec = RowCodec(self._ctx, st.fields)
            st.gen = self._gen
        return st.codec

    async def _run(self, sql: str, args: tuple, timeout: float | None,
                   limit: int = 0, decode: bool = False) -> tuple[Result, RowCodec | None]:
        """Runs one statement with parameters; returns its result and decoder
        (``decode``: big results are decoded as they arrive, see ops.Result)."""
        self._enter()
        try:
            if not isinstance(sql, str):
                raise InterfaceError(f"query must be a str, got {type(sql).__name__}")
            values, types, formats = self._dumper.dump(args)
            if self._cache_size <= 0:
                return await self._run_unnamed(sql, values, types, formats, timeout)
            for attempt in (0, 1):
                st = await self._statement(sql, types, timeout)
                codec = self._codec(st)
                op = Op(self._loop)
                if decode:
                    op.codec = codec
                await self._wait_gate()
                self._submit(m.bind(b"", st.name, formats, values, codec.formats)
                             + m.execute(b"", limit) + m.SYNC, op)
                try:
                    await self._wait(op, timeout)
                except psycopg.Error as e:
                    if not stale_plan(e):
                        raise
                    self._forget(sql, types, st)
                    if attempt or op.status != "I":
                        raise
                    continue
                res = op.results[-1] if op.results else (op._cur or Result())
                return res, codec
            raise AssertionError("unreachable")
        finally:
            self._users -= 1

    async def _run_unnamed(self, sql, values, types, formats, timeout):
        # Without a cache, Parse/Bind/Describe/Execute go in one group on the
        # unnamed statement, so concurrent calls cannot clobber it; results
        # come back as text because the column types are not known at Bind.
        op = Op(self._loop)
        await self._wait_gate()
        self._submit(m.parse(b"", sql.encode(), types)
                     + m.bind(b"", b"", formats, values, ())
                     + m.describe(b"P", b"") + m.execute(b"", 0) + m.SYNC, op)
        await self._wait(op, timeout)
        res = op.results[-1] if op.results else Result()
        return res, RowCodec(self._ctx, res.fields or (), binary=False)

    # ------------------------------------------------------------------ the API

    @property
    def transaction_status(self) -> str:
        """'I' idle, 'T' in a transaction block, 'E' in a failed one (as of
        the last ReadyForQuery)."""
        return self._status

    def get_parameter(self, name: str) -> str | None:
        return self.server_parameters.get(name)

    async def execute(self, query: str, *args, timeout: float | None = None) -> str:
        """Runs a statement; returns the command tag of the last one (e.g.
        'INSERT 0 1').  Without arguments it uses the simple protocol, so a
        script of several statements works."""
        if args:
            res, _ = await self._run(query, args, timeout)
            return res.tag
        if not isinstance(query, str):
            raise InterfaceError(f"query must be a str, got {type(query).__name__}")
        self._enter()
        try:
            op = Op(self._loop)
            await self._wait_gate()
            self._submit(m.query(query.encode()), op)
            await self._wait(op, timeout)
        finally:
            self._users -= 1
        if any(r.tag in ("DEALLOCATE ALL", "DISCARD ALL") for r in op.results):
            # The server forgot every prepared statement: so must the cache
            # (in-flight preparations keep their entry and fail on their own).
            for key in [k for k, st in self._stmts.items() if st.ready is None]:
                del self._stmts[key]
        return op.results[-1].tag if op.results else ""

    async def fetch(self, query: str, *args, timeout: float | None = None) -> list:
        res, codec = await self._run(query, args, timeout, decode=True)
        if res.records is None:
            return codec.load_all(res.rows)
        res.records += codec.load_all(res.rows)
        return res.records

    async def fetchrow(self, query: str, *args, timeout: float | None = None):
        res, codec = await self._run(query, args, timeout)
        return codec.load(res.rows[0]) if res.rows else None

    async def fetchval(self, query: str, *args, column: int = 0,
                       timeout: float | None = None):
        row = await self.fetchrow(query, *args, timeout=timeout)
        return None if row is None else row[column]

    async def executemany(self, query: str, args: Iterable, *,
                          timeout: float | None = None) -> None:
        """Runs the statement once per parameter tuple, pipelined, in one
        Sync group: all rows are applied or none."""
        rows = [tuple(a) for a in args]
        if not rows:
            return
        self._enter()
        try:
            await self._executemany(query, rows, timeout)
        finally:
            self._users -= 1

    async def _executemany(self, query: str, rows: list, timeout: float | None) -> None:
        dumped = [self._dumper.dump(r) for r in rows]
        # psycopg picks int2/int4/int8/numeric per value, so rows may need
        # different statements: prepare each distinct signature first.
        stmts = {}
        for _, types, _ in dumped:
            if types not in stmts:
                stmts[types] = await self._statement(query, types, timeout)
        parts = []
        for values, types, formats in dumped:
            st = stmts[types]
            parts.append(m.bind(b"", st.name, formats, values, self._codec(st).formats))
            parts.append(m.execute(b"", 0))
        parts.append(m.SYNC)
        op = Op(self._loop)
        await self._wait_gate()
        self._submit(b"".join(parts), op)
        try:
            await self._wait(op, timeout)
        except psycopg.Error as e:
            if stale_plan(e):
                for types, st in stmts.items():
                    self._forget(query, types, st)
            raise

    async def ping(self) -> None:
        """One round trip (an empty query); raises if the connection is bad."""
        self._enter()
        try:
            op = Op(self._loop)
            await self._wait_gate()
            self._submit(m.query(b""), op)
            await self._wait(op, None)
        finally:
            self._users -= 1

    async def type_info(self, name: str, cls=None):
        """psycopg's ``TypeInfo`` (or ``cls``: ``EnumInfo``, ``CompositeInfo``,
        ``RangeInfo``, ...) for a type name, fetched with psycopg's own catalog
        query over this connection, ready for ``register_*(info, conn)``;
        None if there is no such type."""
        return await fetch_type_info(self, name, cls)

    def transaction(self, isolation: str | None = None, readonly: bool = False,
                    deferrable: bool = False):
        from .transaction import Transaction
        return Transaction(self, isolation, readonly, deferrable)

    def cursor(self, query: str, *args, prefetch: int = 100,
               timeout: float | None = None):
        """Streams a result in batches of ``prefetch`` rows (see streams.Cursor)."""
        from .streams import Cursor
        return Cursor(self, query, args, prefetch, timeout)

    def listen(self, *channels: str):
        """``async with conn.listen("ch") as notes: async for n in notes``."""
        from .streams import Listener
        return Listener(self, channels)

    async def copy_from(self, query: str, source, *, timeout: float | None = None) -> str:
        """COPY ... FROM STDIN fed from bytes/str, or an (async) iterable of them."""
        from .streams import copy_in
        return await copy_in(self, query, source, timeout)

    def copy_to(self, query: str):
        """``async with conn.copy_to("COPY ... TO STDOUT") as chunks: async for b in chunks``."""
        from .streams import CopyOut
        return CopyOut(self, query)

    async def __aenter__(self) -> "Connection":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
