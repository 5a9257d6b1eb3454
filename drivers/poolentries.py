"""The pool's records: a connection's entry (where it lives, since when, what
it is doing), a queued caller (a waiter), and the ``acquire()`` awaitable.

Kept apart from :mod:`ringleader.drivers.pool` so that module reads in one
sitting; nothing here knows the pool's policy (when to open, lend, retire).  ``_wake`` is the one
cross-thread step: a waiter parked on another worker's loop is woken with
``call_soon_threadsafe``.
"""
from __future__ import annotations

import asyncio
import collections.abc
from typing import TYPE_CHECKING, Any, Generic, TypeVar

if TYPE_CHECKING:
    from .pool import Pool

C = TypeVar("C")


def _is_bad(conn: Any) -> bool:
    defunct = getattr(conn, "defunct", None)  # drivers.contract.PooledConnection
    if defunct is not None:
        return defunct
    for name in ("broken", "is_closed", "closed"):
        value = getattr(conn, name, False)
        if callable(value):
            value = value()
        if value:
            return True
    return False


class _Entry:
    __slots__ = ("conn", "worker", "loop", "created", "last_used", "borrowed", "retire", "shared",
                 "settling")

    def __init__(self, conn: Any, worker: int, loop: asyncio.AbstractEventLoop, now: float) -> None:
        self.conn = conn
        self.worker = worker
        self.loop = loop  # the loop that drives it: close it there
        self.created = now
        self.last_used = now
        self.borrowed = now
        self.retire = False
        self.shared = False  # held by a multiplexer: usage is counted per command
        self.settling: Any = None  # what reset() returned, until the settle task takes it


class _Waiter:
    __slots__ = ("loop", "fut", "worker", "entry", "error", "woken", "since")

    def __init__(self, loop: asyncio.AbstractEventLoop, worker: int) -> None:
        self.loop = loop
        self.since = loop.time()
        self.fut: asyncio.Future[None] = loop.create_future()
        self.worker = worker
        self.entry: _Entry | None = None  # a connection handed over (release or a new one)
        self.error: BaseException | None = None  # the connect failure opened for it
        self.woken = False  # taken off the queue: by a hand-over, an error or close()


def _pin(conn: Any, reason: str | None) -> None:
    """Tells a movable connection (drivers.contract) whether it is lent to one caller."""
    pin = getattr(conn, "pin", None)
    if pin is not None:
        pin(reason)


LENT = "the pool lent it to one caller"


def _wake(waiter: _Waiter) -> None:
    def fire() -> None:
        if not waiter.fut.done():
            waiter.fut.set_result(None)

    try:
        running = asyncio.get_running_loop()
    except RuntimeError:
        running = None
    if running is waiter.loop:
        fire()
    else:
        try:
            waiter.loop.call_soon_threadsafe(fire)
        except RuntimeError:  # that loop is closed; its task is gone too
            pass


class _Acquire(collections.abc.Coroutine, Generic[C]):
    """``await pool.acquire()`` returns a connection; ``async with`` releases it.
    It is a Coroutine, so ``asyncio.create_task(pool.acquire())`` works too."""

    __slots__ = ("pool", "timeout", "conn", "_coro")

    def __init__(self, pool: Pool[C], timeout: float | None) -> None:
        self.pool = pool
        self.timeout = timeout
        self.conn: C | None = None
        self._coro: Any = None  # made on first use, so `async with` alone leaves none unawaited

    def _inner(self) -> Any:
        if self._coro is None:
            self._coro = self.pool._acquire(self.timeout)
        return self._coro

    def __await__(self):
        return self._inner().__await__()

    def send(self, value: Any) -> Any:
        return self._inner().send(value)

    def throw(self, *args: Any) -> Any:
        return self._inner().throw(*args)

    def close(self) -> None:
        if self._coro is not None:
            self._coro.close()

    async def __aenter__(self) -> C:
        self.conn = await self.pool._acquire(self.timeout)
        return self.conn

    async def __aexit__(self, *exc: object) -> None:
        conn, self.conn = self.conn, None
        if conn is not None:
            self.pool.release(conn)
