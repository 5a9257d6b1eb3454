"""``ringleader.drivers.postgres.Pool``: the shared generic pool
(``ringleader.drivers.pool.Pool``) making Postgres connections, plus asyncpg's
pool shortcuts (``execute``/``fetch``/``fetchrow``/``fetchval``/
``executemany`` acquire a connection, run, and release it).

A connection given back in a state the next borrower must not inherit (an
open or failed transaction block, queries still in flight, a cursor or COPY
still holding it, LISTEN registrations) is closed rather than cleaned up:
reconnecting is cheap and cannot leak state.
"""
from __future__ import annotations

from typing import Any, Iterable

from ..pool import Pool as _GenericPool
from .connection import Connection, connect
from .dsn import parse_dsn

_POOL_KEYS = ("min_size", "max_size", "acquire_timeout", "max_lifetime", "max_idle",
              "check_after", "check_timeout", "maintain_every", "window_s",
              "window_samples", "name")


class Pool(_GenericPool[Connection]):
    def __init__(self, dsn: str | None = None, *, setup=None, **kwargs: Any):
        pool_kw = {k: kwargs.pop(k) for k in _POOL_KEYS if k in kwargs}
        pool_kw.setdefault("name", "postgres")
        parse_dsn(dsn, **{k: v for k, v in kwargs.items()
                          if k not in ("statement_cache_size", "command_timeout", "adapters")})
        self._dsn, self._connect_kw, self._setup = dsn, kwargs, setup
        super().__init__(self._new_connection, **pool_kw)

    async def _new_connection(self) -> Connection:
        conn = await connect(self._dsn, **self._connect_kw)
        if self._setup is not None:
            try:
                await self._setup(conn)
            except BaseException:
                conn.terminate()
                raise
        return conn

    def release(self, conn: Connection) -> None:
        if not conn.is_closed() and (conn.transaction_status != "I" or conn._ops
                                     or conn._gate.locked() or conn._listeners):
            conn.terminate()
        super().release(conn)

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
