"""``ringleader.drivers.postgres.Pool``: the shared generic pool
(``ringleader.drivers.pool.Pool``) making Postgres connections, plus asyncpg's
pool shortcuts (``execute``/``fetch``/``fetchrow``/``fetchval``/
``executemany``).

The shortcuts are *multiplexed* (:mod:`ringleader.drivers.mux`): on each
worker the pool keeps a few of its connections shared by all callers and
sends each statement, as its own Bind/Execute/Sync group, on the least-loaded
one — the connection pipelines them, so 64 concurrent callers over 16
connections do not take turns, and each statement still runs in its own
implicit transaction with its own result or error (a failing statement does
not affect the others; a lost connection fails those in flight on it with
ConnectionLost).  Not multiplexed, but run on a connection borrowed for the
call (as ``multiplex=False`` makes every shortcut do): ``execute`` without
arguments (the simple protocol takes several statements, so it may open a
transaction), and statements whose first word changes session or transaction
state (BEGIN, COMMIT, SET, LISTEN, PREPARE, DECLARE, COPY, CALL, DO, ...).
Session state changed some other way (``SELECT set_config(...)``) would leak
to other callers on a shared connection: use ``acquire()`` for that; a shared
connection that is found inside a transaction block after a statement is
taken out of the rotation and discarded.

A connection given back in a state the next borrower must not inherit (an
open or failed transaction block, a cursor or COPY still holding it, LISTEN
registrations) is discarded by the pool's reset hook rather than cleaned up.
One given back with statements still in flight (its caller timed out or was
cancelled mid-query) is kept: the pool waits in the background for the server
to answer them (a trailing Sync) and then reuses it, if it is outside a
transaction block — reconnecting costs the server a backend, and under
overload, when many callers give up, that cost is what keeps it overloaded.
"""
from __future__ import annotations

import asyncio
import re
from typing import Any, Iterable

from ..errors import InterfaceError
from ..mux import MuxSet
from ..pool import Pool as _GenericPool
from ..poolfront import finish_shared, pool_options
from .connect import connect
from .connection import Connection
from .dsn import parse_dsn
from .errors import InterfaceError as PgInterfaceError

# How long close() lets CancelRequests in flight finish before cancelling them.
CLOSE_CANCEL_GRACE = 1.0


# First words of statements that must not share a connection with other callers.
_EXCLUSIVE = frozenset("""begin start commit rollback end abort savepoint release prepare
    set reset listen unlisten discard deallocate declare close fetch move lock copy call do
    execute""".split())
_FIRST_WORD = re.compile(r"(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/|\()*([A-Za-z_]+)", re.S)


def _shareable(query: Any) -> bool:
    if not isinstance(query, str):
        return False  # let the connection raise its own error
    m = _FIRST_WORD.match(query)
    return m is not None and m.group(1).lower() not in _EXCLUSIVE


class Pool(_GenericPool[Connection]):
    """``Pool(dsn, min_size=, max_size=, ..., **connect_kwargs)``; pool keywords
    are the generic pool's (acquire_timeout, max_lifetime, max_idle, window_s,
    ...; see :func:`~ringleader.drivers.poolfront.pool_options` for the rules
    both drivers share: affinity is "strict", the reset hook is
    ``Connection.reset``), ``setup`` is an async callable run on each new
    connection, and every other keyword goes to :func:`connect`."""

    def __init__(self, dsn: str | None = None, *, setup=None, multiplex: bool = True,
                 mux_depth: int = 8, **kwargs: Any):
        pool_kw = pool_options(kwargs, driver="Postgres", error=PgInterfaceError,
                               name="postgres")
        # Fail on a bad DSN here, not in every later connection attempt.
        parse_dsn(dsn, **{k: v for k, v in kwargs.items()
                          if k not in ("statement_cache_size", "command_timeout", "adapters")})
        self._dsn, self._connect_kw, self._setup = dsn, kwargs, setup
        super().__init__(self._new_connection, reset=Connection.reset, **pool_kw)
        self.multiplex = multiplex
        self._routes: dict[str, bool] = {}  # query -> may it be multiplexed
        # mux_depth: statements in flight on the least-loaded shared connection
        # before another one is borrowed.
        self._mux = MuxSet(self, depth=mux_depth)

    async def close(self) -> None:
        self._mux.close()
        await super().close()
        await self._settle_cancels()

    async def _settle_cancels(self) -> None:
        """A caller cancelled mid-statement leaves a CancelRequest being sent
        by its connection, which stays in use until the statement ends (after
        close() returned, for a shared one).  Let those requests finish, each
        on its own loop, within a short grace, and cancel the rest: nothing is
        left pending for the loop's shutdown."""
        loop = asyncio.get_running_loop()
        with self._lock:
            entries = list(self._in_use.values())
        waits = []
        for e in entries:
            if e.loop is loop:
                waits.append(asyncio.ensure_future(e.conn.settle(CLOSE_CANCEL_GRACE)))
            elif not e.loop.is_closed():
                try:
                    waits.append(asyncio.wrap_future(asyncio.run_coroutine_threadsafe(
                        e.conn.settle(CLOSE_CANCEL_GRACE), e.loop)))
                except RuntimeError:  # that loop closed meanwhile: nothing runs there
                    pass
        if waits:
            # Bounded even if another worker's loop stopped running meanwhile.
            await asyncio.wait(waits, timeout=2 * CLOSE_CANCEL_GRACE)
        # A shared connection whose cancelled statements have now ended is
        # held by a multiplexer that is closed and will not run another
        # command on it: give it back, which closes it (its backend would stay
        # open otherwise), and wait for those closes on this loop.
        for e in entries:
            if e.shared and e.conn.in_flight == 0:
                try:
                    self.release(e.conn)
                except InterfaceError:  # released by its multiplexer meanwhile
                    pass
        await self._drain_background(CLOSE_CANCEL_GRACE)

    def _shared(self, query: Any) -> bool:
        if not self.multiplex:
            return False
        ok = self._routes.get(query)
        if ok is None:
            ok = _shareable(query)
            if len(self._routes) < 1024:
                self._routes[query] = ok
        return ok

    async def _run_shared(self, method, query: str, args: tuple, kw: dict) -> Any:
        loop = asyncio.get_running_loop()
        mux = self._mux.get(loop)
        conn = mux.pick()
        if conn is None or conn.defunct:
            conn = await mux.get()
        t0 = loop.time()
        ok = False
        try:
            result = await method(conn, query, *args, **kw)
            ok = True
            return result
        finally:
            # Only a statement that slipped past the routing can leave a
            # shared connection in a transaction: out of the rotation (keep
            # False), and the reset hook discards it.
            finish_shared(self, mux, conn, loop.time() - t0, ok,
                          conn.transaction_status == "I")

    async def _new_connection(self) -> Connection:
        conn = await connect(self._dsn, **self._connect_kw)
        if self._setup is not None:
            try:
                await self._setup(conn)
            except BaseException:
                conn.terminate()
                raise
        return conn

    async def execute(self, query: str, *args, timeout: float | None = None) -> str:
        if args and self._shared(query):
            return await self._run_shared(Connection.execute, query, args, {"timeout": timeout})
        async with self.acquire() as conn:
            return await conn.execute(query, *args, timeout=timeout)

    async def fetch(self, query: str, *args, timeout: float | None = None) -> list:
        if self._shared(query):
            return await self._run_shared(Connection.fetch, query, args, {"timeout": timeout})
        async with self.acquire() as conn:
            return await conn.fetch(query, *args, timeout=timeout)

    async def fetchrow(self, query: str, *args, timeout: float | None = None):
        if self._shared(query):
            return await self._run_shared(Connection.fetchrow, query, args, {"timeout": timeout})
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args, timeout=timeout)

    async def fetchval(self, query: str, *args, column: int = 0, timeout: float | None = None):
        if self._shared(query):
            return await self._run_shared(Connection.fetchval, query, args,
                                          {"column": column, "timeout": timeout})
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args, column=column, timeout=timeout)

    async def executemany(self, query: str, args: Iterable, *, timeout: float | None = None) -> None:
        if self._shared(query):
            return await self._run_shared(Connection.executemany, query, (args,),
                                          {"timeout": timeout})
        async with self.acquire() as conn:
            await conn.executemany(query, args, timeout=timeout)
