"""The Redis pool: :class:`ringleader.drivers.pool.Pool` of Redis connections
that also runs commands itself.

It wraps the generic pool rather than subclassing it (as the Postgres pool
does) because its typed command helpers (``get``, ``set``, ``info``, ...)
would share one namespace with the pool's own methods; it takes every
generic pool keyword all the same, with the rules both drivers share
(:func:`ringleader.drivers.poolfront.pool_options`).

``await pool.execute(*args)`` and every typed helper (``await pool.get(k)``)
are *multiplexed*: on each worker the pool keeps a few of its connections
shared by all callers (:mod:`ringleader.drivers.mux`), sends each command on
the least-loaded one, and auto-pipelining writes all commands of one loop
iteration in one write per connection — so 64 concurrent callers over 16
connections do not take turns.  Replies are matched per connection in FIFO
order, so each caller gets its own reply, an error reply fails only its
command, and a lost connection fails the commands in flight on it with
ConnectionError.  Commands that change or depend on connection state (WATCH,
MULTI/EXEC, SELECT, CLIENT, AUTH, pub/sub, MONITOR, ...) and blocking commands
(BLPOP, XREAD, WAIT, ...) are not multiplexed: they borrow a connection for
themselves, as ``multiplex=False`` makes every command do.  A per-command
timeout that expires closes the connection it was on (see
:mod:`.connection`), failing the others multiplexed on it with
ConnectionError.  ``async with pool.acquire() as conn`` holds one connection
for several commands (needed for WATCH).  Pool stats for the multiplexed path:
see :mod:`ringleader.drivers.mux`.  A WATCH still active when a connection is
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
from ...runningloop import running_loop
from ..mux import MuxSet
from ..poolfront import finish_shared, pool_options
from . import errors as E
from .commands import DEFAULT, Commands, Iterators
from .connection import BLOCKING, Connection
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

#: Commands that change or depend on per-connection state, or hold the
#: connection (with BLOCKING): never multiplexed.
STATEFUL = frozenset(
    b"""WATCH UNWATCH MULTI EXEC DISCARD SELECT AUTH HELLO CLIENT RESET QUIT MONITOR
    SUBSCRIBE UNSUBSCRIBE PSUBSCRIBE PUNSUBSCRIBE SSUBSCRIBE SUNSUBSCRIBE SYNC PSYNC
    READONLY READWRITE ASKING""".split()) | BLOCKING

_KINDS: tuple[tuple[type, str], ...] = (
    (E.ReplyError, "reply"), (E.TimeoutError, "timeout"),
    (E.ProtocolError, "protocol"), (E.ConnectionError, "connection"),
)


class Pool(Commands, Iterators):
    """``Pool(url, min_size=, max_size=, ..., **options)``: pool keywords are
    the generic pool's (as for the Postgres pool; Redis defaults:
    ``acquire_timeout`` 10 s, ``max_idle`` 300 s, ``check_timeout`` the
    connection's ``connect_timeout``), every other keyword is a connection
    option as for :func:`~.connection.connect`.  Use ``async with Pool(...) as
    pool`` or ``await pool.open()`` / ``await pool.close()``."""

    def __init__(self, url: str | None = None, *, retry_idempotent: bool = False,
                 multiplex: bool = True, mux_depth: int = 8, **options: Any) -> None:
        pool_kw = pool_options(options, driver="Redis", error=E.InterfaceError, name="redis",
                               acquire_timeout=10.0, max_idle=300.0)
        self.params = parse_url(url, **options)
        pool_kw.setdefault("check_timeout", self.params.connect_timeout)
        self.retry_idempotent = retry_idempotent
        self.multiplex = multiplex
        # command name -> may it be multiplexed (filled lazily: names are few)
        self._route: dict[Any, bool] = {}
        self._pool: _pool.Pool[Connection] = _pool.Pool(
            self._connect, reset=Connection.reset, **pool_kw)
        # mux_depth: commands in flight on the least-loaded shared connection
        # before another one is borrowed (a deeper pipeline is cheaper per
        # command; more connections bound the head-of-line wait).
        self._mux = MuxSet(self._pool, depth=mux_depth)

    async def _connect(self) -> Connection:
        return await Connection.connect(self.params)

    # -- the generic pool's interface ------------------------------------------------

    async def open(self, wait: bool = True) -> None:
        await self._pool.open(wait)

    async def close(self) -> None:
        self._mux.close()
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

    def _run(self, args: tuple, transform: Callable[[Any], Any] | None, timeout: Any) -> Any:
        name = args[0] if args else None
        shared = self._route.get(name)
        if shared is None:
            shared = self._routable(name)
        if shared:
            return self._run_shared(args, transform, timeout)
        return self._run_exclusive(args, transform, timeout)

    def _routable(self, name: Any) -> bool:
        key = name.encode() if isinstance(name, str) else name
        shared = (self.multiplex and isinstance(key, bytes) and key.upper() not in STATEFUL)
        if isinstance(name, (str, bytes)) and len(self._route) < 1024:
            self._route[name] = shared
        return shared

    async def _run_shared(self, args: tuple, transform: Callable[[Any], Any] | None,
                          timeout: Any) -> Any:
        loop = running_loop()  # per command: asyncio's costs a getpid(2)
        mux = self._mux.get(loop)
        retry = self.retry_idempotent and self._read_only(args)
        while True:
            conn = mux.pick()
            if conn is None or conn.defunct:
                try:
                    conn = await mux.get()
                except E.RedisError as exc:
                    self._record(exc)
                    raise
            t0 = loop.time()
            try:
                # Blocking commands never come here, so awaiting the reply's
                # future directly (no execute() frames) is all execute() does.
                fut = conn.send(args) if timeout is DEFAULT else None
                if fut is None:
                    reply = await conn.execute(*args, timeout=timeout)
                else:
                    reply = await fut
                    if isinstance(reply, E.ReplyError):
                        raise reply
            except E.RedisError as exc:
                finish_shared(self._pool, mux, conn, loop.time() - t0, False)
                self._record(exc)
                if retry and type(exc) is E.ConnectionError:
                    retry = False
                    continue
                raise
            except BaseException:
                finish_shared(self._pool, mux, conn, loop.time() - t0, False)
                raise
            finish_shared(self._pool, mux, conn, loop.time() - t0, True)
            return reply if transform is None else transform(reply)

    async def _run_exclusive(self, args: tuple, transform: Callable[[Any], Any] | None,
                             timeout: Any) -> Any:
        retry = self.retry_idempotent and self._read_only(args)
        while True:
            try:
                async with self._pool.acquire() as conn:
                    reply = await conn.execute(*args, timeout=timeout)
                return reply if transform is None else transform(reply)
            except E.RedisError as exc:
                self._record(exc)
                if retry and type(exc) is E.ConnectionError:
                    retry = False
                    continue
                raise

    def _record(self, exc: E.RedisError) -> None:
        for cls, kind in _KINDS:
            if isinstance(exc, cls):
                self._pool.record_error(kind)
                break

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
