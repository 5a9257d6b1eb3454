"""Typed helpers for the common Redis command families.

Each helper builds an argument tuple and names a reply transform, then hands
both to ``self._command(args, transform, timeout)``, which the class mixing this
in defines: a :class:`~.connection.Connection` or :class:`~.client.Pool` sends
the command and returns an awaitable of the transformed reply; a
:class:`~.pipeline.Pipeline` queues it and returns the pipeline (so calls
chain).  The transforms accept both RESP2 and RESP3 reply shapes (flat
key/value arrays or maps, score strings or doubles), so helpers return the same
Python types under either protocol.

What it does not do: cover every command (``execute(*args)`` sends anything), or
talk to a socket.  ``Iterators`` (SCAN-family async generators) and
:class:`Script` need a client that can await, so pipelines do not get them.
"""
from __future__ import annotations

import hashlib
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

from .errors import InterfaceError, ReplyError

__all__ = ["Commands", "Iterators", "Script", "DEFAULT"]

#: "use the connection's default per-command timeout"
DEFAULT: Any = type("Default", (), {"__repr__": lambda self: "DEFAULT"})()

# Extra seconds the client waits beyond a blocking command's own server-side
# timeout before it gives up on the connection.
BLOCKING_MARGIN = 1.0


def _ok(r: Any) -> bool:
    return r is not None


def _bool(r: Any) -> bool:
    return bool(r)


def _float(r: Any) -> float | None:
    return None if r is None else float(r)


def _int_or_none(r: Any) -> int | None:
    return None if r is None else int(r)


def _dict(r: Any) -> dict:
    if isinstance(r, dict):
        return r
    return dict(zip(r[::2], r[1::2]))


def _set(r: Any) -> set:
    return set(r)


def _bools(r: Any) -> list[bool]:
    return [bool(x) for x in r]


def _scored(r: Any) -> list[tuple[Any, float]]:
    # RESP3: [[member, score], ...]; RESP2: [member, score, member, score, ...]
    if r and isinstance(r[0], list):
        return [(m, float(s)) for m, s in r]
    return [(m, float(s)) for m, s in zip(r[::2], r[1::2])]


def _pop_scored(r: Any) -> tuple[Any, float] | None:
    # ZPOPMIN key (no count): RESP2 [m, s] or [], RESP3 [m, s]; BZPOPMIN: [key, m, s]
    if not r:
        return None
    return (r[-2], float(r[-1]))


def _key_value(r: Any) -> tuple[Any, Any] | None:
    return None if r is None else (r[0], r[1])


def _cursor(r: Any) -> tuple[int, list]:
    return int(r[0]), r[1]


def _blocking_timeout(timeout: float) -> float | None:
    """The client-side deadline for a blocking command with server ``timeout``."""
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or timeout < 0:
        raise InterfaceError(f"blocking timeout must be a number >= 0, got {timeout!r}")
    return None if timeout == 0 else timeout + BLOCKING_MARGIN


def _flags(**flags: bool) -> list[str]:
    """The names of the flags that are on, in the order given."""
    return [name for name, on in flags.items() if on]


def _expiry_args(ex: float | None, px: int | None, exat: int | None, pxat: int | None,
                 keepttl: bool) -> list[Any]:
    given = [(n, v) for n, v in (("EX", ex), ("PX", px), ("EXAT", exat), ("PXAT", pxat)) if v is not None]
    if len(given) + bool(keepttl) > 1:
        raise InterfaceError("give at most one of ex, px, exat, pxat, keepttl")
    out: list[Any] = [x for pair in given for x in pair]
    if keepttl:
        out.append("KEEPTTL")
    return out


class Commands:
    """Typed command helpers; see the module docstring."""

    def _command(self, args: tuple, transform: Callable[[Any], Any] | None = None,
                 timeout: Any = DEFAULT) -> Any:
        raise NotImplementedError  # supplied by Connection, Pool and Pipeline

    def execute_command(self, *args: Any) -> Any:
        """Any command, reply untransformed."""
        return self._command(args)

    # -- connection / server --------------------------------------------------------
    def ping(self, message: Any = None) -> Any:
        return self._command(("PING",) if message is None else ("PING", message))

    def echo(self, message: Any) -> Any:
        return self._command(("ECHO", message))

    def dbsize(self) -> Any:
        return self._command(("DBSIZE",))

    def flushdb(self, asynchronous: bool = False) -> Any:
        return self._command(("FLUSHDB", "ASYNC") if asynchronous else ("FLUSHDB",), _ok)

    def publish(self, channel: Any, message: Any) -> Any:
        return self._command(("PUBLISH", channel, message))

    # -- strings and counters ---------------------------------------------------------
    def get(self, key: Any) -> Any:
        return self._command(("GET", key))

    def set(self, key: Any, value: Any, *, ex: float | None = None, px: int | None = None,
            exat: int | None = None, pxat: int | None = None, keepttl: bool = False,
            nx: bool = False, xx: bool = False, get: bool = False) -> Any:
        """True if set (False if NX/XX prevented it); with ``get=True`` the old value."""
        if (ex is None and px is None and exat is None and pxat is None
                and not (keepttl or nx or xx or get)):
            # The common plain SET skips option parsing: it is a hot command.
            return self._command(("SET", key, value), _ok)
        if nx and xx:
            raise InterfaceError("set(): nx and xx exclude each other")
        flags = _flags(NX=nx, XX=xx, GET=get)
        args = ("SET", key, value, *_expiry_args(ex, px, exat, pxat, keepttl), *flags)
        return self._command(args, None if get else _ok)

    def mget(self, *keys: Any) -> Any:
        return self._command(("MGET", *keys))

    def mset(self, mapping: Mapping[Any, Any]) -> Any:
        return self._command(("MSET", *[x for kv in mapping.items() for x in kv]), _ok)

    def getdel(self, key: Any) -> Any:
        return self._command(("GETDEL", key))

    def append(self, key: Any, value: Any) -> Any:
        return self._command(("APPEND", key, value))

    def strlen(self, key: Any) -> Any:
        return self._command(("STRLEN", key))

    def getrange(self, key: Any, start: int, end: int) -> Any:
        return self._command(("GETRANGE", key, start, end))

    def incr(self, key: Any, amount: int = 1) -> Any:
        return self._command(("INCR", key) if amount == 1 else ("INCRBY", key, amount))

    def decr(self, key: Any, amount: int = 1) -> Any:
        return self._command(("DECR", key) if amount == 1 else ("DECRBY", key, amount))

    def incrbyfloat(self, key: Any, amount: float) -> Any:
        return self._command(("INCRBYFLOAT", key, amount), _float)

    # -- keys and expiry --------------------------------------------------------------
    def delete(self, *keys: Any) -> Any:
        return self._command(("DEL", *keys))

    def unlink(self, *keys: Any) -> Any:
        return self._command(("UNLINK", *keys))

    def exists(self, *keys: Any) -> Any:
        return self._command(("EXISTS", *keys))

    def type(self, key: Any) -> Any:
        return self._command(("TYPE", key))

    def rename(self, src: Any, dst: Any) -> Any:
        return self._command(("RENAME", src, dst), _ok)

    def expire(self, key: Any, seconds: int, *, nx: bool = False, xx: bool = False,
               gt: bool = False, lt: bool = False) -> Any:
        flags = _flags(NX=nx, XX=xx, GT=gt, LT=lt)
        return self._command(("EXPIRE", key, seconds, *flags), _bool)

    def pexpire(self, key: Any, milliseconds: int) -> Any:
        return self._command(("PEXPIRE", key, milliseconds), _bool)

    def expireat(self, key: Any, unix_time: int) -> Any:
        return self._command(("EXPIREAT", key, unix_time), _bool)

    def persist(self, key: Any) -> Any:
        return self._command(("PERSIST", key), _bool)

    def ttl(self, key: Any) -> Any:
        return self._command(("TTL", key))

    def pttl(self, key: Any) -> Any:
        return self._command(("PTTL", key))

    def scan(self, cursor: int = 0, *, match: Any = None, count: int | None = None,
             type: str | None = None) -> Any:
        args: list[Any] = ["SCAN", cursor]
        if match is not None:
            args += ["MATCH", match]
        if count is not None:
            args += ["COUNT", count]
        if type is not None:
            args += ["TYPE", type]
        return self._command(tuple(args), _cursor)

    # -- hashes -------------------------------------------------------------------------
    def hget(self, key: Any, field: Any) -> Any:
        return self._command(("HGET", key, field))

    def hset(self, key: Any, field: Any = None, value: Any = None, *,
             mapping: Mapping[Any, Any] | None = None) -> Any:
        pairs: list[Any] = [] if field is None else [field, value]
        if mapping:
            pairs += [x for kv in mapping.items() for x in kv]
        if not pairs:
            raise InterfaceError("hset() needs a field and value or a non-empty mapping")
        return self._command(("HSET", key, *pairs))

    def hsetnx(self, key: Any, field: Any, value: Any) -> Any:
        return self._command(("HSETNX", key, field, value), _bool)

    def hmget(self, key: Any, *fields: Any) -> Any:
        return self._command(("HMGET", key, *fields))

    def hgetall(self, key: Any) -> Any:
        return self._command(("HGETALL", key), _dict)

    def hdel(self, key: Any, *fields: Any) -> Any:
        return self._command(("HDEL", key, *fields))

    def hexists(self, key: Any, field: Any) -> Any:
        return self._command(("HEXISTS", key, field), _bool)

    def hincrby(self, key: Any, field: Any, amount: int = 1) -> Any:
        return self._command(("HINCRBY", key, field, amount))

    def hincrbyfloat(self, key: Any, field: Any, amount: float) -> Any:
        return self._command(("HINCRBYFLOAT", key, field, amount), _float)

    def hkeys(self, key: Any) -> Any:
        return self._command(("HKEYS", key))

    def hvals(self, key: Any) -> Any:
        return self._command(("HVALS", key))

    def hlen(self, key: Any) -> Any:
        return self._command(("HLEN", key))

    # -- lists ----------------------------------------------------------------------------
    def lpush(self, key: Any, *values: Any) -> Any:
        return self._command(("LPUSH", key, *values))

    def rpush(self, key: Any, *values: Any) -> Any:
        return self._command(("RPUSH", key, *values))

    def lpop(self, key: Any, count: int | None = None) -> Any:
        return self._command(("LPOP", key) if count is None else ("LPOP", key, count))

    def rpop(self, key: Any, count: int | None = None) -> Any:
        return self._command(("RPOP", key) if count is None else ("RPOP", key, count))

    def lrange(self, key: Any, start: int, stop: int) -> Any:
        return self._command(("LRANGE", key, start, stop))

    def llen(self, key: Any) -> Any:
        return self._command(("LLEN", key))

    def lindex(self, key: Any, index: int) -> Any:
        return self._command(("LINDEX", key, index))

    def lrem(self, key: Any, count: int, value: Any) -> Any:
        return self._command(("LREM", key, count, value))

    def ltrim(self, key: Any, start: int, stop: int) -> Any:
        return self._command(("LTRIM", key, start, stop), _ok)

    def lmove(self, src: Any, dst: Any, wherefrom: str = "LEFT", whereto: str = "RIGHT") -> Any:
        return self._command(("LMOVE", src, dst, wherefrom, whereto))

    def blpop(self, keys: Sequence[Any] | Any, timeout: float = 0) -> Any:
        """``(key, value)``, or None after ``timeout`` seconds (0: wait forever)."""
        keys = [keys] if isinstance(keys, (bytes, str)) else list(keys)
        return self._command(("BLPOP", *keys, timeout), _key_value, _blocking_timeout(timeout))

    def brpop(self, keys: Sequence[Any] | Any, timeout: float = 0) -> Any:
        keys = [keys] if isinstance(keys, (bytes, str)) else list(keys)
        return self._command(("BRPOP", *keys, timeout), _key_value, _blocking_timeout(timeout))

    def blmove(self, src: Any, dst: Any, timeout: float = 0, wherefrom: str = "LEFT",
               whereto: str = "RIGHT") -> Any:
        return self._command(("BLMOVE", src, dst, wherefrom, whereto, timeout), None,
                             _blocking_timeout(timeout))

    # -- sets -------------------------------------------------------------------------------
    def sadd(self, key: Any, *members: Any) -> Any:
        return self._command(("SADD", key, *members))

    def srem(self, key: Any, *members: Any) -> Any:
        return self._command(("SREM", key, *members))

    def smembers(self, key: Any) -> Any:
        return self._command(("SMEMBERS", key), _set)

    def sismember(self, key: Any, member: Any) -> Any:
        return self._command(("SISMEMBER", key, member), _bool)

    def smismember(self, key: Any, *members: Any) -> Any:
        return self._command(("SMISMEMBER", key, *members), _bools)

    def scard(self, key: Any) -> Any:
        return self._command(("SCARD", key))

    def spop(self, key: Any, count: int | None = None) -> Any:
        return self._command(("SPOP", key) if count is None else ("SPOP", key, count))

    def sinter(self, *keys: Any) -> Any:
        return self._command(("SINTER", *keys), _set)

    def sunion(self, *keys: Any) -> Any:
        return self._command(("SUNION", *keys), _set)

    def sdiff(self, *keys: Any) -> Any:
        return self._command(("SDIFF", *keys), _set)

    # -- sorted sets ----------------------------------------------------------------------
    def zadd(self, key: Any, mapping: Mapping[Any, float], *, nx: bool = False, xx: bool = False,
             gt: bool = False, lt: bool = False, ch: bool = False) -> Any:
        """``mapping`` is member -> score."""
        if not mapping:
            raise InterfaceError("zadd() needs a non-empty member -> score mapping")
        flags = _flags(NX=nx, XX=xx, GT=gt, LT=lt, CH=ch)
        pairs = [x for m, s in mapping.items() for x in (s, m)]
        return self._command(("ZADD", key, *flags, *pairs))

    def zrem(self, key: Any, *members: Any) -> Any:
        return self._command(("ZREM", key, *members))

    def zscore(self, key: Any, member: Any) -> Any:
        return self._command(("ZSCORE", key, member), _float)

    def zincrby(self, key: Any, amount: float, member: Any) -> Any:
        return self._command(("ZINCRBY", key, amount, member), _float)

    def zcard(self, key: Any) -> Any:
        return self._command(("ZCARD", key))

    def zcount(self, key: Any, min: Any, max: Any) -> Any:
        return self._command(("ZCOUNT", key, min, max))

    def zrank(self, key: Any, member: Any) -> Any:
        return self._command(("ZRANK", key, member), _int_or_none)

    def zrange(self, key: Any, start: Any, stop: Any, *, withscores: bool = False,
               rev: bool = False, byscore: bool = False) -> Any:
        """Members (or ``(member, score)`` pairs with ``withscores``)."""
        flags = _flags(BYSCORE=byscore, REV=rev, WITHSCORES=withscores)
        return self._command(("ZRANGE", key, start, stop, *flags), _scored if withscores else None)

    def zpopmin(self, key: Any, count: int | None = None) -> Any:
        if count is None:
            return self._command(("ZPOPMIN", key), _pop_scored)
        return self._command(("ZPOPMIN", key, count), _scored)

    def zpopmax(self, key: Any, count: int | None = None) -> Any:
        if count is None:
            return self._command(("ZPOPMAX", key), _pop_scored)
        return self._command(("ZPOPMAX", key, count), _scored)

    def bzpopmin(self, keys: Sequence[Any] | Any, timeout: float = 0) -> Any:
        """``(key, member, score)`` or None after ``timeout``."""
        keys = [keys] if isinstance(keys, (bytes, str)) else list(keys)
        return self._command(("BZPOPMIN", *keys, timeout),
                             lambda r: None if r is None else (r[0], r[1], float(r[2])),
                             _blocking_timeout(timeout))

    # -- scripts ------------------------------------------------------------------------------
    def eval(self, script: Any, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        return self._command(("EVAL", script, len(keys), *keys, *args))

    def evalsha(self, sha: Any, keys: Sequence[Any] = (), args: Sequence[Any] = ()) -> Any:
        return self._command(("EVALSHA", sha, len(keys), *keys, *args))

    def script_load(self, script: Any) -> Any:
        return self._command(("SCRIPT", "LOAD", script))

    def script_exists(self, *shas: Any) -> Any:
        return self._command(("SCRIPT", "EXISTS", *shas), _bools)

    def script_flush(self) -> Any:
        return self._command(("SCRIPT", "FLUSH"), _ok)

    # -- transactions (meaningful on a Connection you hold) ----------------------------------
    def watch(self, *keys: Any) -> Any:
        return self._command(("WATCH", *keys), _ok)

    def unwatch(self) -> Any:
        return self._command(("UNWATCH",), _ok)


class Iterators:
    """SCAN-family async iterators (need a client whose helpers can be awaited)."""

    async def scan_iter(self, match: Any = None, count: int | None = None,
                        type: str | None = None) -> AsyncIterator[Any]:
        cursor = 0
        while True:
            cursor, keys = await self.scan(cursor, match=match, count=count, type=type)
            for k in keys:
                yield k
            if cursor == 0:
                return

    async def _scan_family(self, cmd: str, key: Any, match: Any, count: int | None) -> AsyncIterator[list]:
        cursor = 0
        while True:
            args: list[Any] = [cmd, key, cursor]
            if match is not None:
                args += ["MATCH", match]
            if count is not None:
                args += ["COUNT", count]
            cursor, items = await self._command(tuple(args), _cursor)
            yield items
            if cursor == 0:
                return

    async def hscan_iter(self, key: Any, match: Any = None, count: int | None = None
                         ) -> AsyncIterator[tuple[Any, Any]]:
        async for items in self._scan_family("HSCAN", key, match, count):
            for kv in zip(items[::2], items[1::2]):
                yield kv

    async def sscan_iter(self, key: Any, match: Any = None, count: int | None = None
                         ) -> AsyncIterator[Any]:
        async for items in self._scan_family("SSCAN", key, match, count):
            for m in items:
                yield m

    async def zscan_iter(self, key: Any, match: Any = None, count: int | None = None
                         ) -> AsyncIterator[tuple[Any, float]]:
        async for items in self._scan_family("ZSCAN", key, match, count):
            for m, s in zip(items[::2], items[1::2]):
                yield m, float(s)


class Script:
    """A Lua script run by SHA1 (``EVALSHA``), falling back to ``EVAL`` when the
    server does not have it cached (``NOSCRIPT``: after a restart or SCRIPT FLUSH)."""

    def __init__(self, source: str | bytes) -> None:
        if not isinstance(source, (str, bytes)):
            raise InterfaceError(f"script source must be str or bytes, got {type(source).__name__}")
        self.source = source
        raw = source.encode() if isinstance(source, str) else source
        self.sha = hashlib.sha1(raw).hexdigest()

    async def __call__(self, client: Commands, keys: Sequence[Any] = (),
                       args: Sequence[Any] = ()) -> Any:
        try:
            return await client.evalsha(self.sha, keys, args)
        except ReplyError as exc:
            if exc.code != "NOSCRIPT":
                raise
        # EVAL also caches the script, so the next call's EVALSHA succeeds.
        return await client.eval(self.source, keys, args)
