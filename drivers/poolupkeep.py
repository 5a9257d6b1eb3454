"""The pool's upkeep: settling connections their callers gave up on, the timer
step that reaps and refills, closing connections on the loop that drives them,
and draining background work at close.  A mixin of
:class:`ringleader.drivers.pool.Pool` (it shares the pool's state, declared
below, under the pool's lock).

Settling: ``reset(conn)`` may return an awaitable (a connection still
finishing work its caller gave up on); the connection keeps its slot while a
background task awaits it (within ``check_timeout``) and is reused afterwards.
The awaitable is kept on the entry until the task takes it, so a task
cancelled before its first step (the pool closing, the loop shutting down)
still closes the awaitable and the connection: nothing is leaked, nothing
warns "never awaited".

What it does not do: open connections (:mod:`.poolopen`) or decide who gets
one (the pool's hand-over).
"""
from __future__ import annotations

import asyncio
import collections
import inspect
import logging
import threading
from typing import Any, Awaitable

from .poolentries import _Entry, _is_bad
from .poolopen import BurstMemory

log = logging.getLogger("ringleader.drivers.pool")


class Upkeep:
    """The pool's upkeep methods (see the module docstring)."""

    # The pool's state these methods share (set in Pool.__init__).
    _lock: threading.Lock
    _idle: dict[int, list[_Entry]]
    _in_use: dict[int, _Entry]
    _opening: collections.Counter[int]
    _edges: BurstMemory
    strict: bool
    _bg: set[asyncio.Task[Any]]
    _settles: set[asyncio.Task[None]]
    _c: dict[str, int]
    _closes_by: collections.Counter[str]
    _size: int
    _min: int
    _max: int
    _closed: bool
    name: str
    check_timeout: float
    max_lifetime: float
    max_idle: float
    maintain_every: float
    burst_linger: float

    # close(): how long connections still settling (see reset) may take before
    # they are closed regardless.
    CLOSE_GRACE = 1.0

    async def _drain_background(self, grace: float) -> None:
        """Lets this loop's connections still settling finish within ``grace``
        (so their server stops working for callers that gave up), cancels the
        rest (which closes them), and waits, within ``grace`` again, for the
        closes and cancelled opens: nothing of the pool's is left pending when
        the loop shuts down.  Other workers' tasks end on their own loops."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        cancelled = False
        while mine := [t for t in self._bg if t.get_loop() is loop and not t.done()]:
            left = deadline - loop.time()
            if left <= 0:
                if cancelled:
                    log.info("%s: %d background tasks still running after close", self.name, len(mine))
                    return
                cancelled, deadline = True, loop.time() + grace
                for t in mine:
                    t.cancel()
                continue
            await asyncio.wait(mine, timeout=left)

    def _start_settle(self, loop: asyncio.AbstractEventLoop, entry: _Entry,
                      settling: Awaitable[Any], shared: bool) -> None:
        """Settles a returned connection in a background task of ``loop``.  The
        awaitable is kept on the entry until the task takes it: a task cancelled
        before its first step (close() right after the release) never runs
        :meth:`_settle`, and its done callback then closes the awaitable (no
        "never awaited") and discards the connection (no slot or backend left
        behind)."""
        entry.settling = settling
        task = loop.create_task(self._settle(entry, shared))
        self._bg.add(task)
        self._settles.add(task)
        task.add_done_callback(self._bg.discard)
        task.add_done_callback(self._settles.discard)
        task.add_done_callback(lambda t: self._settle_abandoned(entry))

    def _settle_abandoned(self, entry: _Entry) -> None:
        settling, entry.settling = entry.settling, None
        if settling is None:
            return  # _settle ran and gave the connection back
        if inspect.iscoroutine(settling):
            settling.close()
        self._give_back(entry, bad=True)

    async def _settle(self, entry: _Entry, shared: bool) -> None:
        """Awaits what reset() returned, then gives the connection back (or
        discards it if that failed or took longer than ``check_timeout``)."""
        settling, entry.settling = entry.settling, None
        try:
            async with asyncio.timeout(self.check_timeout):
                await settling
            bad = _is_bad(entry.conn)
        except asyncio.CancelledError:  # the pool is closing
            self._give_back(entry, bad=True)
            raise
        except Exception as exc:
            log.info("%s: connection did not settle, discarding it: %r", self.name, exc)
            bad = True
        if not shared:
            self._add_usage(entry, self._now())
        with self._lock:
            self._c["returns_drained" if not bad else "returns_bad"] += 1
        self._give_back(entry, bad=bad)

    def _shed_order(self) -> list[_Entry]:
        """Under the lock: the idle entries in the order to close them: a strict
        pool's from the worker holding the most connections first (in use,
        idle, opening), so that a shrink leaves each worker its share: a shrink
        that took the stalest regardless of worker left one worker short, and
        its callers then traded slots, a close there and a connect they waited
        for (issue 16: the real burst run's missed windows); oldest-used first
        within a worker (idling the longest)."""
        idle = self._all_idle()
        if not self.strict:
            return sorted(idle, key=lambda e: e.last_used)
        held: collections.Counter[int] = collections.Counter(self._opening)
        for e in idle:
            held[e.worker] += 1
        for e in self._in_use.values():
            held[e.worker] += 1
        out = []
        per = {w: sorted(v, key=lambda e: e.last_used) for w, v in self._idle.items() if v}
        while per:
            w = max(per, key=lambda k: (held[k], -per[k][0].last_used))
            out.append(per[w].pop(0))
            held[w] -= 1
            if not per[w]:
                del per[w]
        return out

    def _shed_idle_above(self, limit: int, reason: str) -> list[_Entry]:
        """Under the lock: takes idle connections out, in shed order, until at
        most ``limit`` are open, and returns them for the caller to close
        (without the lock).  Issue 16: a cut closed every idle connection above
        the new cap at once, and the next up-step or burst edge opened them
        again; above the cap but within the burst allowance they now stay, as
        burst connections, until they idle past ``burst_linger``."""
        doomed = self._shed_order()[:max(0, self._size - limit)]
        for e in doomed:
            self._idle[e.worker].remove(e)
        self._size -= len(doomed)
        self._closes_by[reason] += len(doomed)
        return doomed

    def _maintain(self, now: float) -> int:
        """The timer step: closes idle connections past ``max_lifetime``, or idle
        longer than ``max_idle`` while above ``min_size`` (``burst_linger`` while
        above ``max_size``), or broken; then starts opening connections up to
        ``min_size`` and for queued callers.  Returns how many refills it started."""
        with self._lock:
            doomed: list[_Entry] = []
            for worker, entries in self._idle.items():
                keep = []
                for e in entries:
                    if _is_bad(e.conn) or now - e.created >= self.max_lifetime:
                        doomed.append(e)
                    else:
                        keep.append(e)
                self._idle[worker] = keep
            self._size -= len(doomed)
            lost = sum(1 for e in doomed if _is_bad(e.conn))
            self._c["connections_lost"] += lost
            self._closes_by["bad"] += lost
            self._closes_by["expired"] += len(doomed) - lost
            keep_burst = self._edges.holding(now)
            for e in self._shed_order():
                over_cap = (self._size > self._max and now - e.last_used >= self.burst_linger
                            and not keep_burst)
                if not over_cap and (self._size <= self._min or now - e.last_used < self.max_idle):
                    continue
                self._idle[e.worker].remove(e)
                doomed.append(e)
                self._size -= 1
                self._closes_by["linger" if over_cap else "idle"] += 1
        for e in doomed:
            self._close_entry(e)
        loop = self._running_loop()
        started = len(self._spawn_refill(loop)) if loop is not None else 0
        self._schedule_opens()
        return started

    async def _maintenance_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while not self._closed:
            await asyncio.sleep(self.maintain_every)
            try:
                self._maintain(loop.time())
            except Exception:  # keep the timer alive whatever a connection's close() did
                log.exception("%s: maintenance step failed", self.name)

    def _close_entry(self, entry: _Entry, schedule: bool = True) -> Awaitable[Any] | None:
        """Closes an entry's connection on the loop that drives it: a transport
        must not be touched from another worker's thread."""
        loop = getattr(entry.conn, "loop", None) or entry.loop  # it may have migrated
        if loop is not self._running_loop() and not loop.is_closed():
            try:
                loop.call_soon_threadsafe(self._close_conn, entry.conn)
                return None
            except RuntimeError:  # closed in the meantime: nobody drives it any more
                pass
        return self._close_conn(entry.conn, schedule)

    def _close_conn(self, conn: Any, schedule: bool = True) -> Awaitable[Any] | None:
        """Closes a connection; an awaitable close() is scheduled as a task, or
        returned to the caller to await when ``schedule`` is false."""
        try:
            result = conn.close()
        except Exception as exc:
            log.info("%s: close() failed: %r", self.name, exc)
            return None
        if inspect.isawaitable(result):
            if not schedule:
                return result
            loop = self._running_loop()
            if loop is None:
                if inspect.iscoroutine(result):
                    result.close()
                return None
            task = asyncio.ensure_future(result, loop=loop)
            self._bg.add(task)
            task.add_done_callback(self._bg.discard)
        return None
