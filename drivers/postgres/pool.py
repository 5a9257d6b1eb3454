"""``ringleader.drivers.postgres.Pool``: the shared generic pool
(``ringleader.drivers.pool.Pool``) making Postgres connections, plus asyncpg's
pool shortcuts (``execute``/``fetch``/``fetchrow``/``fetchval``/
``executemany`` acquire a connection, run, and release it).

A connection given back in a state the next borrower must not inherit (an
open or failed transaction block, queries still in flight, a cursor or COPY
still holding it, LISTEN registrations) is discarded by the pool's reset hook
rather than cleaned up: reconnecting is cheap and cannot leak state.
"""
from __future__ import annotations

import inspect
from typing import Any, Iterable

from ..errors import InterfaceError
from ..pool import Pool as _GenericPool
from .connection import Connection, connect
from .dsn import parse_dsn

# Keywords the generic pool takes; the rest go to connect().
_POOL_KEYS = frozenset(inspect.signature(_GenericPool.__init__).parameters) - {"self", "connect"}


def _reset(conn: Connection) -> None:
    # Raising here makes the generic pool discard the connection.
    if conn.transaction_status != "I":
        raise InterfaceError("connection returned inside a transaction block")
    if conn._ops or conn._gate.locked():
        raise InterfaceError("connection returned with queries, a cursor or a COPY in flight")
    if conn._listeners:
        raise InterfaceError("connection returned while listening")


class Pool(_GenericPool[Connection]):
    """``Pool(dsn, min_size=, max_size=, ..., **connect_kwargs)``; pool keywords
    are the generic pool's (acquire_timeout, max_lifetime, max_idle, ...),
    ``setup`` is an async callable run on each new connection, and every other
    keyword goes to :func:`connect`.  Connections are bound to the loop that
    made them, so affinity defaults to "strict"."""

    def __init__(self, dsn: str | None = None, *, setup=None, **kwargs: Any):
        pool_kw = {k: kwargs.pop(k) for k in list(kwargs) if k in _POOL_KEYS}
        pool_kw.setdefault("name", "postgres")
        pool_kw.setdefault("affinity", "strict")
        if "reset" in pool_kw:
            raise InterfaceError("the Postgres pool sets its own reset hook")
        # Fail on a bad DSN here, not in every later connection attempt.
        parse_dsn(dsn, **{k: v for k, v in kwargs.items()
                          if k not in ("statement_cache_size", "command_timeout", "adapters")})
        self._dsn, self._connect_kw, self._setup = dsn, kwargs, setup
        super().__init__(self._new_connection, reset=_reset, **pool_kw)

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
        async with self.acquire() as conn:
            return await conn.execute(query, *args, timeout=timeout)

    async def fetch(self, query: str, *args, timeout: float | None = None) -> list:
        async with self.acquire() as conn:
            return await conn.fetch(query, *args, timeout=timeout)

    async def fetchrow(self, query: str, *args, timeout: float | None = None):
        async with self.acquire() as conn:
            return await conn.fetchrow(query, *args, timeout=timeout)

    async def fetchval(self, query: str, *args, column: int = 0, timeout: float | None = None):
        async with self.acquire() as conn:
            return await conn.fetchval(query, *args, column=column, timeout=timeout)

    async def executemany(self, query: str, args: Iterable, *, timeout: float | None = None) -> None:
        async with self.acquire() as conn:
            await conn.executemany(query, args, timeout=timeout)
