"""How the pool opens connections: for the queue, within a budget, and above
its cap for a burst; and how a strict pool moves one between workers.  The opening half of :class:`ringleader.drivers.pool.Pool`
(a mixin: it shares the pool's state, declared below, under the pool's lock).

Opening connections: a caller that finds nothing idle queues as a waiter, and
the pool opens connections *for the queue* in background tasks bounded by
``connect_timeout``, not by any one caller's deadline; a new connection goes to
the oldest waiter (on its worker) or to the idle set, so a connect outlives the
caller that started it instead of being thrown away half-made.  Opens are
rate-limited (:class:`OpenBudget`: ``connect_rate`` per second,
``connect_burst`` at once, ``max_connecting`` in flight) and counted.

Burst allowance: with ``burst=N`` the pool may open up to N connections above
``max_size`` for waiting callers, at once (``burst_after``, default 0: on the
rising edge), but only for the waiters its own returns will not serve
sooner: a worker's queue beyond the returns due within one connect (its
connections in use x mean connect time / mean hold time) gets opens, a
shorter one waits for returns.  Issue 16: ordinary queueing at a well-sized
cap is over within a hold time, and a connect opened for it (~8 ms on the
rig's PostgreSQL) arrived after the return it raced, cost the caller a
10-ms SLO window whenever it won, and was closed again a second later (26
opens for a cap of 6 in the real burst run).  A burst connection serves
waiters while there are any and is closed once it idled ``burst_linger``
seconds (or at once when ``burst_linger`` is 0), unless bursts recur
(:class:`BurstMemory`): then it is kept across the gap between them, so
each edge after the second finds its connections open instead of opening
them again.  No burst connection is opened while the returns slow down
(the database slowing, not the arrivals surging: ``_returns_slowed``) or
before anything came back (a cold start).  ``set_burst(0)`` withdraws the
allowance (the supervisor does while its downstream-health guard holds):
then nothing above the cap is opened, idle connections above it close at
once and in-use ones when they come back.

Moving connections (a strict pool in a runtime): a caller that finds no idle
connection of its own worker gets another worker's idle one moved over by the
runtime's migration, and a return toward a worker below its share of the cap
is moved there, instead of a close there and a connect here.

What it does not do: decide who gets a connection (the pool's hand-over,
``_give_back``) or close one (:mod:`.poolupkeep`).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import math
import threading
import time
from typing import Any, Awaitable, Callable

from .errors import InterfaceError
from .poolentries import LENT, _Entry, _is_bad, _pin, _wake, _Waiter

log = logging.getLogger("ringleader.drivers.pool")


class OpenBudget:
    """The pool's limit on opening connections: a token bucket (``rate`` opens
    per second, ``depth`` at once) plus at most ``concurrent`` opens in flight.

    Why: every open costs the server a backend (a fork and an authentication on
    PostgreSQL).  Unbounded, a pool whose connections keep failing or being
    discarded under overload turns the overload into connection churn that
    keeps the database busy after the load is gone (issue 16's metastable
    failure).  Pure arithmetic on the time it is given: no clock, no lock
    (the pool calls it under its own)."""

    __slots__ = ("rate", "depth", "concurrent", "tokens", "at", "in_flight", "delayed")

    def __init__(self, rate: float, depth: int, concurrent: int) -> None:
        self.rate, self.depth, self.concurrent = rate, depth, concurrent
        self.tokens = float(depth)
        self.at: float | None = None
        self.in_flight = 0
        self.delayed = 0  # times an open had to wait for a token (a counter)

    def _refill(self, now: float) -> None:
        if self.at is not None and now > self.at:
            self.tokens = min(float(self.depth), self.tokens + (now - self.at) * self.rate)
        self.at = now if self.at is None else max(self.at, now)

    def grant(self, now: float) -> bool:
        """One open may start now (then it is counted in flight)."""
        self._refill(now)
        if self.in_flight >= self.concurrent:
            return False
        if self.tokens < 1.0:
            self.delayed += 1
            return False
        self.tokens -= 1.0
        self.in_flight += 1
        return True

    def charge(self, now: float) -> None:
        """An open that does not ask (the refill to ``min_size``) still spends a
        token, possibly into debt, so it delays the asking ones."""
        self._refill(now)
        self.tokens -= 1.0

    def done(self) -> None:
        self.in_flight -= 1

    def next_token(self, now: float) -> float | None:
        """When a token will be there (None: a token is there, or only the
        concurrency limit blocks, which a finishing open lifts)."""
        self._refill(now)
        if self.tokens >= 1.0:
            return None
        # a hair late rather than early: a timer that fires before the token
        # is whole would only be set again
        return now + (1.0 - self.tokens) / self.rate + 1e-6


# The share of the last second a pool must have spent above its cap for a
# lend or return there to count as a burst use (BurstMemory.level): reached ~0.3 s into a
# burst that keeps it above; a cap the supervisor sized for the load is
# exceeded a few percent of the time.
BURST_SHARE = 0.25


class BurstMemory:
    """Whether bursts recur, so the pool keeps its burst connections across
    the gaps between them (issue 16: the real burst run opened up to 8 at each
    of its edges and closed them a second later, 4.3x the largest cap).

    A *burst use* is a connection opened or lent above the cap.  The first
    one after ``quiet`` seconds without any is an *edge*; two edges within
    ``recur`` seconds make the bursts recurring, and then the burst
    connections are held until ``1.5`` edge intervals (at most ``recur``)
    after the last burst use: long enough to reach the next edge, short
    enough that they go once the edges stop.  Pure arithmetic on the times
    it is given, like :class:`OpenBudget` (the pool calls it under its lock).

    A lend above the cap is a burst use only while the pool *stays* above its
    cap: while the share of the last ``quiet`` seconds it spent with more
    connections in use than its cap (an exponentially decayed time share,
    fed by :meth:`level` on every lend and return) is at least
    :data:`BURST_SHARE`; a return then counts too, so a burst of long holds
    is seen though its lends all came at its start.  Issue 16: every lend above the cap counted, so after
    a cut, two callers at once on a worker (every second or so at the rig's
    steady 200/s) were "edges" that recurred, the cut's surplus was held as
    burst connections for the whole run, and the cut never took effect
    (14-56 connection-seconds above the cap per 30-s run).  A real burst
    keeps the pool above its cap for most of a second; a steady load sized
    by the supervisor is there a few percent of the time."""

    __slots__ = ("quiet", "recur", "last_use", "last_edge", "hold", "edges",
                 "share", "above", "at")

    def __init__(self, quiet: float, recur: float) -> None:
        self.quiet, self.recur = quiet, recur
        self.last_use: float | None = None
        self.last_edge: float | None = None
        self.hold = 0.0      # seconds after the last use the connections are kept
        self.edges = 0       # edges seen (a counter)
        self.share = 0.0     # decayed share of recent time spent above the cap
        self.above = False   # above the cap since ``at``
        self.at: float | None = None

    def _advance(self, now: float) -> None:
        if self.at is not None and now > self.at:
            w = math.exp(-(now - self.at) / self.quiet)
            self.share = self.share * w + (1.0 - w) * (1.0 if self.above else 0.0)
        self.at = now if self.at is None else max(self.at, now)

    def level(self, now: float, above: bool) -> None:
        """A lend or a return at ``now`` leaves more connections in use than
        the cap (``above``) or not.  While the pool stays above its cap (see
        the class) it is a burst use."""
        if not above and not self.above and self.share == 0.0:
            # Never above its cap (or long enough ago that the share decayed
            # to nothing): the decay would leave it 0.  The pool calls this on
            # every lend and return, and most pools never exceed their cap:
            # the exp() was a tenth of an acquire/release pair (0.6 of 6.4 us).
            self.at = now if self.at is None else max(self.at, now)
            return
        self._advance(now)
        if (above or self.above) and self.share >= BURST_SHARE:
            self.note(now)
        self.above = above

    def share_above(self, now: float) -> float:
        """The decayed share of the last ``quiet`` seconds spent above the cap."""
        self._advance(now)
        return self.share

    def recent(self, now: float, within: float) -> bool:
        """A burst use happened less than ``within`` seconds ago."""
        return self.last_use is not None and now - self.last_use < within

    def note(self, now: float) -> None:
        """A burst use at ``now``: a connection opened above the cap, or a lend
        or return while the pool stays above it (:meth:`level`)."""
        if self.last_use is None or now - self.last_use > self.quiet:
            if self.last_edge is not None:
                gap = now - self.last_edge
                hold = min(self.recur, 1.5 * gap) if gap <= self.recur else 0.0
                # A lull inside a burst (its uses a second or two apart) looks
                # like an edge too; it must not shorten a hold that is still
                # running, or the connections go before the next real edge
                # and are opened again there (issue 16).
                self.hold = max(hold, self.hold) if self.holding(now) else hold
            self.last_edge = now
            self.edges += 1
        self.last_use = now

    def holding(self, now: float) -> bool:
        """Burst connections are to be kept (idle or not) at ``now``."""
        return self.last_use is not None and now < self.last_use + self.hold


# Returns count as slowed past this many times the mean hold, plus the floor
# (as the supervisor's guard needs an absolute rise too: noise is not a slowdown).
SLOWED_RATIO = 2.0
SLOWED_FLOOR_MS = 2.0


def returns_slowed(mean_hold_ms: float, recent_hold_ms: float, in_use_ages_ms: list[float]) -> bool:
    """The rule of :meth:`Opening._returns_slowed`, on plain numbers (the
    simulator applies it too): the recent holds, or the mean age of two or
    more connections in use, past SLOWED_RATIO x the mean hold + SLOWED_FLOOR_MS."""
    limit = SLOWED_RATIO * mean_hold_ms + SLOWED_FLOOR_MS
    if recent_hold_ms > limit:
        return True
    ages = in_use_ages_ms
    return len(ages) >= 2 and sum(ages) / len(ages) > limit


class Opening:
    """The pool's opening methods (see the module docstring)."""

    # The pool's state these methods share (set in Pool.__init__).
    _lock: threading.Lock
    _connect: Callable[[], Awaitable[Any]]
    _budget: OpenBudget
    _edges: BurstMemory
    _opening: collections.Counter[int]
    _shed_order: Callable[[], list[_Entry]]
    _shed_idle_above: Callable[[int, str], list[_Entry]]
    _close_entry: Callable[..., Any]
    _give_back: Callable[..., None]
    _discard: Callable[[_Entry, bool], None]
    _loops: dict[int, asyncio.AbstractEventLoop]
    _runtime: Any
    _idle: dict[int, list[_Entry]]
    _in_use: dict[int, _Entry]
    _open_timer: asyncio.TimerHandle | None
    _waiters: collections.deque[_Waiter]
    _bg: set[asyncio.Task[Any]]
    _c: dict[str, int]
    _ms: dict[str, float]
    _opens_by: collections.Counter[str]
    _hold_recent: float | None
    _size: int
    _min: int
    _max: int
    _burst: int
    _closed: bool
    strict: bool
    name: str
    burst_after: float
    connect_timeout: float

    def set_burst(self, n: int) -> None:
        """Sets the burst allowance (0 withdraws it: the supervisor does while its
        downstream-health guard holds, so nothing above the cap is opened, idle
        connections above the cap plus the new allowance close now and in-use
        ones when they come back)."""
        if not isinstance(n, int) or n < 0:
            raise InterfaceError(f"burst must be an int >= 0, got {n!r}")
        with self._lock:
            grew, self._burst = n > self._burst, n
            doomed = self._shed_idle_above(self._max + n, "over_limit")
        for e in doomed:
            self._close_entry(e)
        if grew:
            self._schedule_opens()

    @property
    def burst(self) -> int:
        return self._burst

    def _limit(self, waiting: int) -> int:
        """Under the lock: how many connections may be open with ``waiting`` callers queued."""
        return self._max + (self._burst if waiting else 0)

    def _beyond_returns(self) -> tuple[collections.Counter[int], float]:
        """Under the lock: (per key, the worker or 0 unless strict: how many of
        its queued callers no open covers exceed the returns due within one
        connect; the mean connect in seconds).  Those callers a burst open
        serves sooner than a return.  With no hold or connect measured yet,
        every uncovered caller counts."""
        hold_ms = self._mean_hold_ms()
        n_conn = self._c["connections_num"]
        connect_ms = self._ms["connections_ms"] / n_conn if n_conn else 0.0
        # returns per connection within one connect (a microsecond's hold at least)
        per_conn = connect_ms / max(1e-3, hold_ms) if hold_ms is not None else 0.0
        out: collections.Counter[int] = collections.Counter()
        for w in self._waiters:
            out[w.worker if self.strict else 0] += 1
        for worker, n in self._opening.items():
            out[worker if self.strict else 0] -= n
        busy: collections.Counter[int] = collections.Counter()
        for e in self._in_use.values():
            busy[e.worker if self.strict else 0] += 1
        for key in busy:
            out[key] -= int(busy[key] * per_conn)
        return out, connect_ms / 1e3

    def _mean_hold_ms(self) -> float | None:
        """Under the lock: the mean hold over the pool's life (None before any
        came back)."""
        holds = self._c["requests_num"] - len(self._waiters) - len(self._in_use)
        return self._ms["usage_ms"] / holds if holds > 0 else None

    def _returns_slowed(self, now: float) -> bool:
        """Under the lock: the connections come back much slower than they
        used to (the recent holds, or the mean age of two or more in use now,
        past SLOWED_RATIO x the mean hold + SLOWED_FLOOR_MS): the database is slowing,
        not the arrivals surging.  Then no burst connection is opened: it would
        add load, not service.  Issue 16: at the real overload's onset the pool
        opened its whole allowance (7-8 connections) in the second before the
        guard tripped, and the guard's set_burst(0) closed them again: half of
        the run's opens.  Also true before anything came back (see below)."""
        hold_ms = self._mean_hold_ms()
        if hold_ms is None or self._hold_recent is None:
            # Nothing came back yet: a cold start.  Its queue is served by the
            # connections opening below the cap and their first returns; burst
            # opens before any hold is known overshot (the real overload's
            # start-up opened 8 above a cap of 4 and closed 4 a second later).
            return True
        # (a multiplexer's shared connection is held for many commands: not a hold)
        ages_ms = [(now - e.borrowed) * 1e3 for e in self._in_use.values() if not e.shared]
        return returns_slowed(hold_ms, self._hold_recent, ages_ms)

    def _schedule_opens(self) -> list[_Waiter]:
        """Starts opens for queued callers no open is under way for, within the
        size limit (cap plus burst allowance) and the open budget; when only the
        budget's rate stops it, a timer tries again when the next token is due.
        Each open runs on the loop of the waiter it is for (strict affinity:
        that waiter's worker must own it)."""
        loop = self._running_loop()
        spawn: list[_Waiter] = []
        retry_at = None
        with self._lock:
            if self._closed or not self._waiters:
                return spawn
            now = loop.time() if loop is not None else time.monotonic()
            covered = collections.Counter(self._opening)
            total_covered = sum(covered.values())
            beyond: collections.Counter[int] | None = None  # per key: waiters returns won't serve
            slowed: bool | None = None
            connect_s = 0.0
            for w in self._waiters:
                key = w.worker if self.strict else 0
                if (covered[key] if self.strict else total_covered) > 0:
                    if self.strict:
                        covered[key] -= 1
                    else:
                        total_covered -= 1
                    continue
                if self._size >= self._limit(len(self._waiters)):
                    break
                if self._size >= self._max:
                    if now < w.since + self.burst_after:
                        retry_at = w.since + self.burst_after
                        break
                    if slowed is None:
                        slowed = self._returns_slowed(now)
                    if slowed:
                        break
                    if beyond is None:
                        beyond, connect_s = self._beyond_returns()
                    if beyond[key] <= 0 and now < w.since + connect_s:
                        # its worker's returns come sooner than a connect would;
                        # if none came within one, they are slower than measured
                        stale = w.since + connect_s
                        retry_at = stale if retry_at is None else min(retry_at, stale)
                        continue
                    beyond[key] -= 1
                if not self._budget.grant(now):
                    retry_at = self._budget.next_token(now)
                    break
                self._size += 1
                if self._size > self._max:
                    self._c["connections_burst"] += 1
                    self._edges.note(now)
                self._opens_by["burst" if self._size > self._max else "queue"] += 1
                self._opening[w.worker] += 1
                spawn.append(w)
            if retry_at is not None and loop is not None:
                if self._open_timer is not None and self._open_timer.when() > retry_at:
                    self._open_timer.cancel()
                    self._open_timer = None
                if self._open_timer is None:
                    self._open_timer = loop.call_at(retry_at, self._timer_opens)
        for w in spawn:
            self._spawn_on(w.loop, self._open_for(w))
        return spawn

    def _timer_opens(self) -> None:
        self._open_timer = None
        self._schedule_opens()

    def _spawn_on(self, loop: asyncio.AbstractEventLoop, coro: Awaitable[Any], refill: bool = False) -> None:
        """Runs ``coro`` as a background task of ``loop`` (from any thread);
        ``refill``: it holds no open-budget slot (see _reserve_refill)."""
        def start() -> None:
            t = loop.create_task(coro)
            self._bg.add(t)
            t.add_done_callback(self._bg.discard)
        if loop is self._running_loop():
            start()
            return
        try:
            loop.call_soon_threadsafe(start)
        except RuntimeError:  # that loop is closed: give the slot back
            coro.close()  # type: ignore[attr-defined]
            with self._lock:
                self._size -= 1
                self._opening[0 if loop is None else getattr(loop, "worker_id", 0)] -= 1
                if not refill:
                    self._budget.done()

    async def _open_for(self, waiter: _Waiter) -> None:
        """Opens one connection for the queue (reserved slot and budget) and hands
        it over like a released one.  A failure goes to the waiter that asked,
        if it still waits, so its acquire raises the factory's error."""
        loop, worker = waiter.loop, waiter.worker
        entry = None
        try:
            entry = await self._open_entry(loop, worker)
        except Exception as exc:
            with self._lock:
                told = waiter in self._waiters and waiter.entry is None
                if told:
                    self._waiters.remove(waiter)
                    waiter.woken = True
                    waiter.error = exc
            if told:
                _wake(waiter)
            else:
                log.warning("%s: could not open a connection: %r", self.name, exc)
        finally:
            with self._lock:
                self._opening[worker] -= 1
                self._budget.done()
        if entry is not None:
            self._give_back(entry)
        self._schedule_opens()

    async def _open_entry(self, loop: asyncio.AbstractEventLoop, worker: int) -> _Entry:
        """Connects (within ``connect_timeout``) into an already reserved slot;
        frees the slot on failure.  Counts every attempt."""
        start = loop.time()
        ok = False
        try:
            async with asyncio.timeout(self.connect_timeout):
                conn = await self._connect()
            _pin(conn, LENT)  # _give_back unpins it when it goes idle
            listen = getattr(conn, "add_move_listener", None)
            if listen is not None:
                listen(self._on_moved)
            ok = True
        finally:
            now = loop.time()
            with self._lock:
                self._c["connections_num"] += 1
                self._ms["connections_ms"] += (now - start) * 1000
                if not ok:
                    self._c["connections_errors"] += 1
            if not ok:
                self._count_error("connect", now)
                self._free_slot()
        return _Entry(conn, worker, loop, loop.time())

    def _movable_to(self, worker: int, entry: _Entry | None = None) -> _Entry | None:
        """Under the lock (a strict pool in a runtime): ``entry``, or else another
        worker's idle connection (from the worker holding most), to move to
        ``worker`` for a caller queued there; reserved for the move (out of the
        idle set, counted as an open for that worker's queue).  None when
        nothing can move (no runtime, not strict, the connection cannot).

        Why: a strict pool's workers each serve only their own callers, and a
        burst rarely splits evenly; the real burst runs' missed windows held
        callers waiting ~10-25 ms on one worker while the other held idle
        connections (issue 16).  A move (the runtime's migration) takes well
        under a millisecond; the alternative, closing there and connecting
        here, costs the caller a connect (~8 ms) and the server a backend."""
        rt = self._runtime
        if not self.strict or self._closed or rt is None or not hasattr(rt, "migrate"):
            return None
        if entry is None:
            entry = next((e for e in self._shed_order() if e.worker != worker
                          and getattr(e.conn, "migration_blocker", None) is not None
                          and e.conn.migration_blocker() is None), None)
            if entry is None:
                return None
            self._idle[entry.worker].remove(entry)
        elif getattr(entry.conn, "migration_blocker", None) is None or entry.conn.migration_blocker():
            return None
        self._opening[worker] += 1
        self._c["connections_moved"] += 1
        return entry

    def _start_move(self, entry: _Entry, worker: int) -> None:
        """Moves a reserved entry (see _movable_to) to ``worker`` on the worker
        that drives it; it then goes to a caller there, or idles there."""
        src = getattr(entry.conn, "loop", None) or entry.loop

        def start() -> None:
            t = src.create_task(self._move(entry, worker))
            self._bg.add(t)
            t.add_done_callback(self._bg.discard)
        try:
            if src is self._running_loop():
                start()
            else:
                src.call_soon_threadsafe(start)
        except RuntimeError:  # its loop is closed: so is the connection
            with self._lock:
                self._opening[worker] -= 1
            self._discard(entry, lost=True)

    async def _move(self, entry: _Entry, worker: int) -> None:
        try:
            await self._runtime.migrate(entry.conn, worker)
        except Exception as exc:  # refused or failed: it stays (or died) where it was
            log.info("%s: could not move a connection to worker %s: %r", self.name, worker, exc)
        finally:
            with self._lock:
                self._opening[worker] -= 1
        self._give_back(entry, bad=_is_bad(entry.conn))
        self._schedule_opens()

    def _reserve_refill(self) -> int:
        """Under the lock: reserves the slots needed to reach min_size (they spend
        open budget too, without waiting for it)."""
        need = 0 if self._closed else max(0, self._min - self._size)
        self._size += need
        self._opens_by["refill"] += need
        for _ in range(need):
            self._budget.charge(self._now_locked())
        return need

    def _now_locked(self) -> float:
        loop = self._running_loop()
        return loop.time() if loop is not None else time.monotonic()

    def _spawn_refill(self, loop: asyncio.AbstractEventLoop) -> list[asyncio.Task[Exception | None]]:
        with self._lock:
            need = self._reserve_refill()
        return self._start_refill(loop, need)

    def _start_refill(self, loop: asyncio.AbstractEventLoop, need: int) -> list[asyncio.Task[Exception | None]]:
        """Starts ``need`` reserved refills; returns the tasks started on ``loop``
        (those a strict pool places on another worker run there in the
        background: ``open()`` waits only for its own worker's)."""
        with self._lock:
            places = self._refill_places(loop, need)
            for _, worker in places:
                self._opening[worker] += 1  # a refill serves a queued caller too
        tasks = []
        for where, worker in places:
            if where is loop:
                t = loop.create_task(self._refill_one(loop, worker))
                self._bg.add(t)
                t.add_done_callback(self._bg.discard)
                tasks.append(t)
            else:
                self._spawn_on(where, self._refill_one(where, worker), refill=True)
        return tasks

    def _refill_places(self, loop: asyncio.AbstractEventLoop,
                       need: int) -> list[tuple[asyncio.AbstractEventLoop, int]]:
        """Under the lock: the (loop, worker) each of ``need`` refills opens on.
        A strict pool spreads them over the workers whose callers have used it,
        the one holding fewest first: its refill used to open them all on the
        worker running the maintenance timer, so every other worker's first
        callers closed one of those to connect their own (a connect wait they
        paid, and an open the pool did not need: issue 16, static-16 opened
        20-23 connections for 16).  A pool opened in a runtime counts all its
        workers from the start (their callers are coming).  Otherwise all on
        ``loop``."""
        here = getattr(loop, "worker_id", 0)
        live = dict(self._loops)
        for w in list(getattr(self._runtime, "workers", ())):
            if getattr(w, "loop", None) is not None and not getattr(w, "draining", False):
                live[w.id] = w.loop
        live = {w: lp for w, lp in live.items() if not lp.is_closed()}
        if not self.strict or len(live) <= 1:
            return [(loop, here)] * need
        held = collections.Counter(self._opening)
        for w, entries in self._idle.items():
            held[w] += len(entries)
        for e in self._in_use.values():
            held[e.worker] += 1
        out = []
        for _ in range(need):
            w = min(live, key=lambda k: (held[k], k != here, k))
            held[w] += 1
            out.append((live[w], w))
        return out

    async def _refill_one(self, loop: asyncio.AbstractEventLoop, worker: int) -> Exception | None:
        """Opens one connection into a reserved slot; returns (not raises) the
        error, so that a background refill leaves no unretrieved exception."""
        try:
            entry = await self._open_entry(loop, worker)
        except Exception as exc:
            # The next maintenance step retries: its period is the back-off.
            log.warning("%s: could not open a connection: %r", self.name, exc)
            return exc
        finally:
            with self._lock:
                self._opening[worker] -= 1
        self._give_back(entry)
        return None
