"""The Redis pool: :class:`ringleader.drivers.pool.Pool` of Redis connections
that also runs commands itself.

``await pool.execute(*args)`` and every typed helper (``await pool.get(k)``)
borrow a connection, run the command and give the connection back — like
redis-py's client.  ``async with pool.acquire() as conn`` holds one connection
for several commands (needed for WATCH, or for auto-pipelining many commands
from one task on one connection).  A WATCH still active when a connection is
released is ended (UNWATCH) before anyone else gets it; other session state
(SELECT, CLIENT SETNAME, ...) is not undone, so leave it alone on pooled
connections.  Connections are only handed to callers on the worker (loop) that
made them (the pool's ``affinity="strict"``).

Retries: none by default.  With ``retry_idempotent=True``, a *read-only*
command (the ``READ_ONLY`` set) that failed with ConnectionError — the
connection died under it — is sent once more on another connection; writes are
never retried, since whether they ran is unknown.  Command errors are counted
by kind in the pool's ``stats().errors_by_kind`` (``reply``, ``connection``,
``timeout``, ``protocol``).  After a server restart the pool discards the dead
connections (a failed command marks its connection broken; idle ones fail their
health check) and makes new ones as callers need them.
"""
from __future__ import annotations

from typing import Any, Callable

from .. import pool as _pool
from . import errors as E
from .commands import DEFAULT, Commands, Iterators
from .connection import Connection
from .pipeline import Pipeline
from .pubsub import PubSub
from .url import parse_url

__all__ = ["Pool", "READ_ONLY"]

#: Commands safe to send twice (they change nothing).
READ_ONLY = frozenset(
    b"""GET MGET STRLEN GETRANGE EXISTS TYPE TTL PTTL SCAN HGET HMGET HGETALL HEXISTS
    HKEYS HVALS HLEN HSCAN LRANGE LLEN LINDEX SMEMBERS SISMEMBER SMISMEMBER SCARD
    SINTER SUNION SDIFF SSCAN ZSCORE ZCARD ZCOUNT ZRANK ZRANGE ZSCAN PING ECHO
    DBSIZE""".split())

_KINDS: tuple[tuple[type, str], ...] = (
    (E.ReplyError, "reply"), (E.TimeoutError, "timeout"),
    (E.ProtocolError, "protocol"), (E.ConnectionError, "connection"),
)


class Pool(Commands, Iterators):
    """``Pool(url, min_size=, max_size=, ...)``; connection options as for
    :func:`~.connection.connect`.  Use ``async with Pool(...) as pool`` or
    ``await pool.open()`` / ``await pool.close()``."""

    def __init__(self, url: str | None = None, *, min_size: int = 1, max_size: int = 10,
                 acquire_timeout: float = 10.0, max_lifetime: float = 3600.0,
                 max_idle: float = 300.0, check_after: float = 1.0,
                 retry_idempotent: bool = False, name: str = "redis", autoscale: Any = None,
                 **options: Any) -> None:
        self.params = parse_url(url, **options)
        self.retry_idempotent = retry_idempotent
        self._pool: _pool.Pool[Connection] = _pool.Pool(
            self._connect, min_size=min_size, max_size=max_size,
            acquire_timeout=acquire_timeout, max_lifetime=max_lifetime, max_idle=max_idle,
            check_after=check_after, check_timeout=self.params.connect_timeout,
            # A connection's transport belongs to the loop (worker ring) that made it.
            affinity="strict", reset=Connection.reset, name=name, autoscale=autoscale)

    async def _connect(self) -> Connection:
        return await Connection.connect(self.params)

    # -- the generic pool's interface ------------------------------------------------

    async def open(self, wait: bool = True) -> None:
        await self._pool.open(wait)

    async def close(self) -> None:
        await self._pool.close()

    async def __aenter__(self) -> Pool:
        await self._pool.__aenter__()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._pool.closed

    def acquire(self, timeout: float | None = None) -> Any:
        return self._pool.acquire(timeout)

    def release(self, conn: Connection) -> None:
        self._pool.release(conn)

    def resize(self, min_size: int, max_size: int) -> None:
        self._pool.resize(min_size, max_size)

    def stats(self, now: float | None = None) -> _pool.PoolStats:
        return self._pool.stats(now)

    # -- running commands ----------------------------------------------------------------

    async def execute(self, *args: Any, timeout: Any = DEFAULT) -> Any:
        """Runs one command on a borrowed connection."""
        return await self._run(args, None, timeout)

    def _command(self, args: tuple, transform: Callable[[Any], Any] | None = None,
                 timeout: Any = DEFAULT) -> Any:
        return self._run(args, transform, timeout)

    async def _run(self, args: tuple, transform: Callable[[Any], Any] | None, timeout: Any) -> Any:
        retry = self.retry_idempotent and self._read_only(args)
        while True:
            try:
                async with self._pool.acquire() as conn:
                    reply = await conn.execute(*args, timeout=timeout)
                return reply if transform is None else transform(reply)
            except E.RedisError as exc:
                for cls, kind in _KINDS:
                    if isinstance(exc, cls):
                        self._pool.record_error(kind)
                        break
                if retry and type(exc) is E.ConnectionError:
                    retry = False
                    continue
                raise

    @staticmethod
    def _read_only(args: tuple) -> bool:
        name = args[0] if args else b""
        if isinstance(name, str):
            name = name.encode()
        return isinstance(name, bytes) and name.upper() in READ_ONLY

    def pipeline(self) -> Pipeline:
        """A pipeline that borrows one connection for its ``execute()``."""
        return Pipeline(self)

    def transaction(self) -> Pipeline:
        """MULTI/EXEC on one borrowed connection (no WATCH: hold a connection for that)."""
        return Pipeline(self, transaction=True)

    def pubsub(self, **options: Any) -> PubSub:
        """A PubSub on its own connection to the same server (not from the pool)."""
        return PubSub(self.params, **options)
