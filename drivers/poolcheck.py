"""The pool's health check: a connection borrowed after idling ``check_after``
seconds (or found broken, or past ``max_lifetime``) is checked before it is
lent.  A mixin of :class:`ringleader.drivers.pool.Pool` (it shares the pool's
state, declared below, under the pool's lock).

The ``ping()`` runs in a task of its own, bounded by ``check_timeout`` from its
start, and the caller waits for it only until its own acquire deadline.  When
the caller leaves first (its deadline: :class:`PoolTimeout`, or its
cancellation), the check goes on without it, and its outcome alone decides the
connection's fate: a sound connection goes back through the pool's hand-over
(to a waiter, the idle set, another worker, ...), a failed one is discarded as
lost.  Issue 16: the ping used to run under the caller's deadline, and a sound
connection whose ping merely took longer than its caller had left was thrown
away as lost, and a new one opened later (static-16 reopened 20 connections in
one stalled real burst run).  The ping is never cut by a caller, so a protocol
never sees a round trip abandoned midway.

The check runs on the loop of the caller that borrowed the connection, the loop
the ping always ran on and the one the caller would use it on (a strict pool's
connection belongs to that loop's worker).

What it does not do: choose which idle connection is borrowed (the pool's
``_take``), or decide where a connection that passed goes (:mod:`.poolhandover`).
"""
from __future__ import annotations

import asyncio
import enum
import logging
import threading
from typing import Any, Awaitable, Callable

from .errors import PoolTimeout
from .poolentries import _Entry, _is_bad

log = logging.getLogger("ringleader.drivers.pool")


class CheckState(enum.Enum):
    """Who applies a health check's outcome.  WAITED -> SETTLED: the caller
    did (lent the connection, or it failed and was discarded); WAITED ->
    ORPHANED -> SETTLED: the caller left first and the check's end did."""

    WAITED = "its caller waits for the outcome"
    ORPHANED = "its caller left; the outcome alone decides the connection's fate"
    SETTLED = "the outcome was applied"


class _Check:
    __slots__ = ("entry", "started", "task", "state")

    def __init__(self, entry: _Entry, started: float) -> None:
        self.entry = entry
        self.started = started
        self.task: asyncio.Task[None] | None = None
        self.state = CheckState.WAITED


class HealthCheck:
    """The pool's health-check methods (see the module docstring)."""

    # The pool's state these methods share (set in Pool.__init__).
    _lock: threading.Lock
    _bg: set[asyncio.Task[Any]]
    _c: dict[str, int]
    _ms: dict[str, float]
    _max: int
    _size: int
    _closed: bool
    name: str
    check_after: float
    check_timeout: float
    max_lifetime: float
    _discard: Callable[..., None]
    _give_back: Callable[..., None]

    async def _usable(self, entry: _Entry, loop: asyncio.AbstractEventLoop, deadline: float) -> bool:
        """Checks a borrowed idle entry: True to lend it; False when it was
        discarded (freeing its slot: the caller looks again).  Raises
        :class:`PoolTimeout` when the caller's ``deadline`` passes before its
        check ends (the check goes on: see the module docstring)."""
        now = loop.time()
        bad = _is_bad(entry.conn)
        if bad or now - entry.created >= self.max_lifetime:
            self._discard(entry, lost=bad, reason="bad" if bad else "expired")
            return False
        ping = getattr(entry.conn, "ping", None)
        if ping is None or now - entry.last_used < self.check_after:
            return True
        check = _Check(entry, now)
        task = check.task = loop.create_task(self._ping(ping, loop, now))
        self._bg.add(task)
        task.add_done_callback(self._bg.discard)
        task.add_done_callback(lambda t: self._check_ended(check))
        try:
            # asyncio.wait neither cancels the task at the deadline nor when
            # the caller is cancelled: the check outlives a caller that leaves.
            await asyncio.wait((task,), timeout=deadline - now)
        except asyncio.CancelledError:
            if task.done():
                self._settle_check(check, lend=False)
            else:
                check.state = CheckState.ORPHANED
            raise
        if not task.done():
            check.state = CheckState.ORPHANED
            raise PoolTimeout(f"{self.name}: the health check of an idle connection outlasted "
                              f"the acquire timeout ({self._size} open, max {self._max}); it "
                              f"goes on, and the connection is kept if it passes")
        return self._settle_check(check, lend=True)

    async def _ping(self, ping: Callable[[], Awaitable[Any]], loop: asyncio.AbstractEventLoop,
                    started: float) -> None:
        """One health check, within ``check_timeout`` of its start, counted with its time."""
        try:
            async with asyncio.timeout_at(started + self.check_timeout):
                await ping()
        finally:
            with self._lock:
                self._c["checks"] += 1
                self._ms["checks_ms"] += (loop.time() - started) * 1000

    def _check_ended(self, check: _Check) -> None:
        """The check task's done callback: applies the outcome of a check whose
        caller left (a waited one's caller applies it when it wakes)."""
        if check.state is not CheckState.ORPHANED:
            return
        assert check.task is not None
        if not check.task.cancelled():
            with self._lock:
                self._c["checks_orphaned"] += 1
        self._settle_check(check, lend=False)

    def _settle_check(self, check: _Check, lend: bool) -> bool:
        """Applies a finished check's outcome once: True if it passed and
        ``lend`` (the waiting caller takes the connection); else a connection
        that passed goes back to the pool, one that failed is discarded as
        lost, and one whose check was cancelled (the pool closing, or the loop
        shutting down) is closed."""
        task, entry = check.task, check.entry
        assert task is not None and task.done() and check.state is not CheckState.SETTLED
        check.state = CheckState.SETTLED
        if task.cancelled():
            self._discard(entry, lost=False, reason="closing" if self._closed else "cancelled")
            return False
        exc = task.exception()
        if exc is not None:  # any failure, check_timeout included, means: not this connection
            log.info("%s: health check failed, discarding connection: %r", self.name, exc)
            self._discard(entry, lost=True)
            return False
        if lend:
            return True
        self._give_back(entry)  # last_used = now: not pinged again at once
        return False
