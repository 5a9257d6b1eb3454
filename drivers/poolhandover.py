"""The pool's hand-over: who gets a connection that comes back (a caller
queued on its worker, a worker below its fair share of the cap, the idle
set) and when a returned one is closed instead (broken, expired, above the
cap plus the burst allowance, a connection above the cap no burst needs), and how
an idle connection follows a move the runtime made.  A mixin of
:class:`ringleader.drivers.pool.Pool` (it shares the pool's state, declared
below, under the pool's lock).

What it does not do: open connections (:mod:`.poolopen`), lend idle ones to
new callers (the pool's ``_take``) or run the timer step (:mod:`.poolupkeep`).
"""
from __future__ import annotations

import collections
import threading
from typing import Any, Callable

from .poolentries import LENT, _Entry, _pin, _wake, _Waiter
from .poolopen import BurstMemory


class HandOver:
    """The pool's hand-over methods (see the module docstring)."""

    # The pool's state these methods share (set in Pool.__init__).
    _lock: threading.Lock
    _idle: dict[int, list[_Entry]]
    _in_use: dict[int, _Entry]
    _opening: collections.Counter[int]
    _waiters: collections.deque[_Waiter]
    _size: int
    _max: int
    _burst: int
    _edges: BurstMemory
    _loops: dict[int, Any]
    _closed: bool
    strict: bool
    max_lifetime: float
    burst_linger: float
    _now: Callable[[], float]
    _discard: Callable[..., None]
    _all_idle: Callable[[], list[_Entry]]
    _movable_to: Callable[..., _Entry | None]
    _start_move: Callable[[_Entry, int], None]

    def _below_share(self, worker: int, extra_demand: int = 0, busy: int | None = None) -> bool:
        """Under the lock (strict pools): ``worker`` holds fewer connections
        (in use, idle, opening) than an even split of the pool among the workers
        that want them now (in use, waiting, or ``busy``: the one returning a
        connection this moment).  Issue 16: without this, two
        workers contending for a small full pool handed slots back and forth,
        a close and a connect per hand-off (341 opens in a 24-s burst run).
        The split is of the cap, not of the cap plus the burst allowance: with
        the allowance counted, every worker was "below its share" and every
        return while only another worker's callers waited became a close
        here and a connect there (the real burst run's 26 opens for a cap of 6)."""
        wanting = {e.worker for e in self._in_use.values()} | {w.worker for w in self._waiters}
        if extra_demand:
            wanting.add(worker)
        if busy is not None:
            wanting.add(busy)
        return self._held(worker) < -(-self._max // max(1, len(wanting)))

    def _held(self, worker: int) -> int:
        """Under the lock: the connections ``worker`` holds (in use, idle, opening)."""
        return (sum(1 for e in self._in_use.values() if e.worker == worker)
                + len(self._idle.get(worker, ())) + self._opening[worker])

    def _surplus_unneeded(self, worker: int, now: float) -> bool:
        """Under the lock: a connection coming back to ``worker`` above the cap,
        with nobody waiting for it, is one no burst needs: bursts do not recur
        (``BurstMemory.holding``), none was seen within ``burst_linger``, and
        (strict) the worker holds more than its share of the cap among the
        workers using the pool.  Issue 16: such connections (a cut's surplus,
        kept within the burst allowance) went back on the worker's idle
        stack, the next caller took them again at once, so none ever idled
        ``burst_linger`` and the maintenance step never closed them: the cut
        did not take effect."""
        if self._edges.holding(now) or self._edges.recent(now, self.burst_linger):
            return False
        if not self.strict:
            return True
        # the split among every worker using the pool, not only those busy this
        # instant: at a light load they seldom are at once, and each would keep
        # the whole cap
        share = -(-self._max // max(1, len(self._loops)))
        return self._held(worker) + 1 > share  # + 1: the connection coming back

    def _give_back(self, entry: _Entry, bad: bool = False, now: float | None = None) -> None:
        now = self._now() if now is None else now
        moving = None
        with self._lock:
            why = ("bad" if bad or entry.retire else "closing" if self._closed
                   else "over_limit" if self._size > self._max + self._burst
                   else "expired" if now - entry.created >= self.max_lifetime else None)
            retire = why is not None
            waiter = None
            if not retire:
                entry.last_used = now
                # The runtime may have migrated it to another worker meanwhile.
                entry.worker = getattr(entry.conn, "worker_id", entry.worker)
                entry.loop = getattr(entry.conn, "loop", entry.loop)
                waiter = self._pop_waiter_for(entry.worker)
                if waiter is not None:
                    _pin(entry.conn, LENT)
                    waiter.entry = entry
                    waiter.woken = True
                elif self.strict and (short := next((w.worker for w in self._waiters if self._below_share(
                        w.worker, busy=entry.worker)), None)) is not None:
                    # Only other workers wait: they cannot use it, but one that holds
                    # less than its fair share of the pool can: moved there, or its
                    # slot (closed here, opened there) where it cannot move.
                    # Back from its caller, so no longer pinned to it: free to
                    # move.  Issue 16: it was still pinned here, so this path
                    # never moved and always traded (a close and a connect).
                    _pin(entry.conn, None)
                    moving = self._movable_to(short, entry)
                    retire, why = moving is None, "trade"
                elif self._size > self._max and (self.burst_linger == 0
                                                  or self._surplus_unneeded(entry.worker, now)):
                    retire, why = True, "linger"  # a burst connection nobody waits for
                else:
                    _pin(entry.conn, None)
                    self._idle.setdefault(entry.worker, []).append(entry)
        if retire:
            self._discard(entry, lost=False, reason=why)
        elif waiter is not None:
            _wake(waiter)
        elif moving is not None:
            self._start_move(moving, short)

    def _on_moved(self, conn: Any) -> None:
        """A connection's move listener (drivers.contract): runs on its old
        worker's thread the instant it moves.  Its entry follows it; an idle
        one is re-filed under the new worker, handed to a caller waiting
        there, or, when only other workers' callers wait (strict), closed so
        that its slot serves them (as ``_give_back`` does): a worker whose
        idle connections were moved away must not starve its queued callers."""
        worker = conn.worker_id
        loop = conn.loop
        waiter = None
        retire = False
        with self._lock:
            entry = self._in_use.get(id(conn))
            if entry is None:
                entry = next((e for e in self._all_idle() if e.conn is conn), None)
                if entry is None or entry.worker == worker:
                    if entry is not None:
                        entry.loop = loop
                    return
                self._idle[entry.worker].remove(entry)
                waiter = self._pop_waiter_for(worker)
                if waiter is not None:
                    _pin(conn, LENT)
                    waiter.entry = entry
                elif self.strict and self._waiters:
                    retire = True
                else:
                    self._idle.setdefault(worker, []).append(entry)
            entry.worker, entry.loop = worker, loop
        if retire:
            self._discard(entry, lost=False, reason="trade")
        elif waiter is not None:
            _wake(waiter)

    def _pop_waiter_for(self, worker: int) -> _Waiter | None:
        """Under the lock: the oldest waiter on ``worker``, else (unless strict)
        the oldest one."""
        for w in self._waiters:
            if w.worker == worker:
                self._waiters.remove(w)
                return w
        if self.strict or not self._waiters:
            return None
        return self._waiters.popleft()
