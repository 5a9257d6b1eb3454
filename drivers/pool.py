"""A generic asyncio connection pool shared by ringleader's drivers.

What it does: keeps between ``min_size`` and ``max_size`` connections made by an
async ``connect()`` factory; hands them out (``acquire``) with a timeout, FIFO
among waiters; takes them back (``release``), discarding broken ones; closes
connections past ``max_lifetime`` or idle past ``max_idle`` (down to
``min_size``) and refills to ``min_size``; health-checks a connection with its
``ping()`` when it is borrowed after having been idle for ``check_after`` seconds
(:mod:`.poolcheck`: a check its caller's deadline cuts short goes on, and a
connection that passes it is kept);
prefers connections made on the caller's worker (``loop.worker_id``); can be
``resize``-d while running; and reports ``stats()`` as a frozen snapshot with
psycopg_pool's counter names plus percentiles over a recent window.

Worker affinity: each connection belongs to the worker whose loop made it
(``conn.worker_id`` if it has one, updated when the runtime migrates it).  With
``affinity="prefer"`` a caller gets one of its own worker's idle connections if
any, else another worker's.  With ``affinity="strict"`` (for connections bound
to a loop, like the drivers' asyncio transports on a worker's ring) it only
ever gets its own worker's; when the pool is full of other workers' idle
connections, the stalest one is closed to make room.  Several threads whose
loops all report worker 0 (plain asyncio loops) must not share a strict pool.

``reset(conn)`` (optional) runs on every healthy release, e.g. to undo
session state; if it raises, the connection is discarded.  If it returns an
awaitable (a connection still finishing work its caller gave up on), the
connection keeps its slot while the pool awaits it in the background (within
``check_timeout``) and is reused afterwards: cheaper than a new connection,
and under overload, when callers give up mid-query, the difference between
serving and churning.

Opening connections (for the queue, within an open budget, and above the cap
for a burst: ``burst``, ``set_burst``) is :mod:`.poolopen`'s part; settling
returned connections, the timer step and closing are :mod:`.poolupkeep`'s;
who gets a returned connection (or whether it closes) is :mod:`.poolhandover`'s.

What it does not do: it knows no protocol and never retries a command (drivers
decide that), and it moves connections between workers in one case only: a
strict pool in a runtime moves another worker's idle connection to a caller
that found none of its own (:mod:`.poolopen`, ``_movable_to``).  It does
follow moves the runtime makes: a connection implementing
:class:`ringleader.drivers.contract.PooledConnection` is pinned while lent to
one caller (it must not move under them), and its move listener re-files it
under its new worker the instant it leaves the old one.

Threads: a pool opened on a ringleader worker belongs to that runtime; a call
from any other loop (a plain thread running asyncio) is refused with
:class:`~.errors.WrongLoop` before anything is taken.

The connection interface (duck-typed, so the Postgres and Redis drivers both fit):
``close()`` (sync, or returning an awaitable which is scheduled), a truthy
``broken``, ``is_closed`` or ``closed`` attribute (or method) once unusable, and
optionally ``async ping()``.

Time comes from the running loop's clock (``loop.time()``), so timers can be
driven in virtual time; ``_maintain(now)`` is the single timer step (reaping and
refilling) and tests call it directly.  The state is guarded by a
``threading.Lock`` because worker threads each run their own loop and may share
a pool; waiters on another loop are woken with ``call_soon_threadsafe``.
"""
from __future__ import annotations

import asyncio
import collections
import collections.abc
import inspect
import logging
import threading
import time
import types
from typing import Any, Awaitable, Callable, Generic, TypeVar

from ..runningloop import running_loop
from .errors import InterfaceError, PoolClosed, PoolTimeout, WrongLoop
from .poolcheck import HealthCheck
from .poolentries import LENT, _Acquire, _Entry, _is_bad, _pin, _wake, _Waiter
from .poolhandover import HandOver
from .poolopen import BurstMemory, OpenBudget, Opening
from .poolupkeep import Upkeep
from .poolstats import PoolStats, Window, percentile

__all__ = ["Pool", "PoolStats"]

log = logging.getLogger(__name__)
C = TypeVar("C")


class Pool(HandOver, HealthCheck, Opening, Upkeep, Generic[C]):
    """A pool of connections made by ``connect()``; see the module docstring.

    ``min_size``/``max_size``: bounds (``resize`` changes them);
    ``acquire_timeout``: default wait for ``acquire``; ``max_lifetime``: age after
    which a connection is closed (when idle or on release); ``max_idle``: idle
    time after which connections above ``min_size`` are closed; ``check_after``:
    idle time after which a borrowed connection is ``ping()``-ed first, within
    ``check_timeout``; ``maintain_every``: period of the timer step;
    ``window_s``/``window_samples``: the span of the stats' percentiles;
    ``affinity``, ``reset``: see the module docstring; ``name``: for messages.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[C]],
        *,
        min_size: int = 1,
        max_size: int = 10,
        acquire_timeout: float = 30.0,
        max_lifetime: float = 3600.0,
        max_idle: float = 600.0,
        check_after: float = 1.0,
        check_timeout: float = 5.0,
        maintain_every: float = 1.0,
        window_s: float = 10.0,
        window_samples: int = 4096,
        affinity: str = "prefer",
        reset: Callable[[C], None] | None = None,
        name: str = "pool",
        autoscale: Any = None,
        burst: int = 0,
        burst_after: float = 0.0,
        burst_linger: float = 1.0,
        burst_recur: float = 60.0,
        connect_rate: float = 50.0,
        connect_burst: int | None = None,
        max_connecting: int = 4,
        connect_timeout: float = 10.0,
    ) -> None:
        if not callable(connect):
            raise InterfaceError(f"connect must be an async callable, got {connect!r}")
        self._check_sizes(min_size, max_size)
        for label, value in (("acquire_timeout", acquire_timeout), ("max_lifetime", max_lifetime),
                             ("max_idle", max_idle), ("maintain_every", maintain_every),
                             ("connect_rate", connect_rate), ("connect_timeout", connect_timeout)):
            if not isinstance(value, (int, float)) or value <= 0:
                raise InterfaceError(f"{label} must be a positive number, got {value!r}")
        for label, value in (("burst", burst), ("max_connecting", max_connecting - 1),
                             ("connect_burst", (connect_burst or 1) - 1)):
            if not isinstance(value, int) or value < 0:
                raise InterfaceError(f"{label} must be an int >= {0 if label == 'burst' else 1}, "
                                     f"got {value!r}")
        for label, value in (("burst_linger", burst_linger), ("burst_after", burst_after),
                             ("burst_recur", burst_recur)):
            if not isinstance(value, (int, float)) or value < 0:
                raise InterfaceError(f"{label} must be a number >= 0, got {value!r}")
        if affinity not in ("prefer", "strict"):
            raise InterfaceError(f"affinity must be 'prefer' or 'strict', got {affinity!r}")
        self._connect = connect
        self._reset = reset
        self.strict = affinity == "strict"
        self.name = name
        # A ringleader.supervisor.PoolAutoscale: the runtime's supervisor adopts
        # the pool (registered with the runtime on open) and moves its cap inside
        # those rails.  None: the pool stays exactly as sized.
        if autoscale is not None and not all(hasattr(autoscale, a) for a in ("min", "max", "enabled")):
            raise InterfaceError(f"autoscale must be a PoolAutoscale, got {autoscale!r}")
        self.autoscale = autoscale
        self._registered_as: str | None = None
        self._runtime: Any = None  # the ringleader runtime it was opened in, if any
        self._min, self._max = min_size, max_size
        self.acquire_timeout = acquire_timeout
        self.max_lifetime = max_lifetime
        self.max_idle = max_idle
        self.check_after = check_after
        self.check_timeout = check_timeout
        self.maintain_every = maintain_every
        self.connect_timeout = connect_timeout
        self.burst_linger = burst_linger
        self.burst_after = burst_after
        self._burst = burst
        self._edges = BurstMemory(max(1.0, burst_linger), burst_recur)
        # The bucket holds enough for a cold start: a pool created under load
        # reaches its working size at once, then opens at connect_rate.
        self._budget = OpenBudget(connect_rate, connect_burst or max(16, max_size + burst), max_connecting)
        self._opening: collections.Counter[int] = collections.Counter()  # per worker, for waiters
        self._loops: dict[int, asyncio.AbstractEventLoop] = {}  # the workers its callers came from
        self._open_timer: asyncio.TimerHandle | None = None
        self._lock = threading.Lock()
        self._idle: dict[int, list[_Entry]] = {}  # per worker, most recently used last
        self._in_use: dict[int, _Entry] = {}  # id(conn) -> entry
        self._waiters: collections.deque[_Waiter] = collections.deque()
        self._size = 0  # open + opening + being checked
        self._closed = False
        self._opened = False
        self._maint_task: asyncio.Task[None] | None = None
        self._bg: set[asyncio.Task[Any]] = set()  # keeps background tasks referenced
        self._settles: set[asyncio.Task[None]] = set()  # those settling returned connections
        self._c = dict.fromkeys(
            ("requests_num", "requests_queued", "requests_errors", "requests_timeouts",
             "connections_num", "connections_errors", "connections_lost", "returns_bad",
             "connections_burst", "returns_drained", "connections_moved", "checks", "checks_orphaned"), 0)
        self._ms = dict.fromkeys(("requests_wait_ms", "connections_ms", "usage_ms", "checks_ms"), 0.0)
        self._opens_by: collections.Counter[str] = collections.Counter()  # see PoolStats
        self._hold_recent: float | None = None  # ms, a moving average of the holds
        self._closes_by: collections.Counter[str] = collections.Counter()
        self._window_s = window_s
        self._w_wait = Window(window_s, window_samples)
        self._w_usage = Window(window_s, window_samples)
        self._w_errors = Window(window_s, window_samples)

    # -- lifecycle ---------------------------------------------------------------

    @staticmethod
    def _check_sizes(min_size: int, max_size: int) -> None:
        if not (isinstance(min_size, int) and isinstance(max_size, int)):
            raise InterfaceError(f"pool sizes must be ints, got {min_size!r}, {max_size!r}")
        if min_size < 0 or max_size < 1 or min_size > max_size:
            raise InterfaceError(f"need 0 <= min_size <= max_size and max_size >= 1, "
                                 f"got min_size={min_size}, max_size={max_size}")

    async def open(self, wait: bool = True) -> None:
        """Start maintenance and open ``min_size`` connections (awaited if ``wait``;
        a failure to connect then raises, and the pool keeps retrying).  A strict
        pool in a runtime spreads them over its workers, and waits only for
        those of the calling worker."""
        if self._closed:
            raise PoolClosed(f"{self.name} is closed")
        loop = asyncio.get_running_loop()
        if not self._opened:
            self._opened = True
            self._maint_task = loop.create_task(self._maintenance_loop())
            self._register(loop)
        tasks = self._spawn_refill(loop)
        if wait and tasks:
            errors = [e for e in await asyncio.gather(*tasks) if e is not None]
            if errors:
                raise errors[0]

    def _register(self, loop: asyncio.AbstractEventLoop) -> None:
        """Show the pool on its runtime's debug socket and to its supervisor."""
        rt = getattr(loop, "runtime", None)
        if rt is None or not hasattr(rt, "register_pool"):
            return
        names = {e.name for e in rt.registry.pools()}
        name, k = self.name, 2
        while name in names:  # two pools with one name: keep both visible
            name, k = f"{self.name}#{k}", k + 1
        rt.register_pool(name, self)
        self._registered_as = name
        self._runtime = rt

    async def close(self) -> None:
        """Close idle connections now and in-use ones when released; waiters get
        :class:`PoolClosed`."""
        if self._registered_as is not None:
            try:
                self._runtime.unregister_pool(self._registered_as)
            except Exception:  # already gone with its runtime
                pass
            self._registered_as = None
        with self._lock:
            self._closed = True
            idle = [e for entries in self._idle.values() for e in entries]
            self._idle.clear()
            self._size -= len(idle)
            waiters = list(self._waiters)
            self._waiters.clear()
            for w in waiters:
                w.woken = True
        for w in waiters:
            _wake(w)
        if self._maint_task is not None:
            self._maint_task.cancel()
            self._maint_task = None
        if self._open_timer is not None:
            self._open_timer.cancel()
            self._open_timer = None
        for t in list(self._bg - self._settles):  # opens; a connection they make is closed on arrival
            t.cancel()
        pending = [self._close_entry(e, schedule=False) for e in idle]
        pending = [p for p in pending if p is not None]
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        await self._drain_background(self.CLOSE_GRACE)

    async def __aenter__(self) -> Pool[C]:
        try:
            await self.open()
        except BaseException:
            await self.close()  # no __aexit__ will run: stop the timer and refills
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def min_size(self) -> int:
        return self._min

    @property
    def max_size(self) -> int:
        return self._max

    def resize(self, min_size: int, max_size: int) -> None:
        """Change the bounds while running.  Shrinking closes idle connections above
        ``max_size`` plus the burst allowance now and retires in-use ones as they
        are released; those between the new cap and the allowance become burst
        connections (closed once idle ``burst_linger``, kept while bursts recur),
        so a cut the next step undoes costs no open.  Growing opens connections
        for queued callers at once and refills to ``min_size``."""
        self._check_sizes(min_size, max_size)
        with self._lock:
            self._min, self._max = min_size, max_size
            self._edges.level(self._now(), len(self._in_use) > max_size)
            doomed = self._shed_idle_above(max_size + self._burst, "shrink")
            loop = self._running_loop()
            refill = self._reserve_refill() if loop is not None and self._opened else 0
        for e in doomed:
            self._close_entry(e)
        if refill:
            self._start_refill(loop, refill)
        self._schedule_opens()

    # -- acquire / release -------------------------------------------------------

    def acquire(self, timeout: float | None = None) -> _Acquire[C]:
        """``conn = await pool.acquire()`` (then ``pool.release(conn)``) or
        ``async with pool.acquire() as conn``.  Raises :class:`PoolTimeout` after
        ``timeout`` (default ``acquire_timeout``) seconds, :class:`PoolClosed`, or
        the factory's error if the connection opened for this caller failed."""
        return _Acquire(self, timeout)

    def check_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Refuses (WrongLoop) a call from a loop that is not one of the
        runtime's workers, when the pool was opened inside a runtime: its
        connections are bound to the workers' rings."""
        rt = self._runtime
        if rt is not None and getattr(loop, "runtime", None) is not rt:
            raise WrongLoop(f"{self.name}: this pool belongs to a ringleader runtime and was "
                            f"called from a loop that is not one of its workers (a plain "
                            f"thread?); run the call on a worker (runtime.spawn(coro, worker) "
                            f"or runtime.run_on(worker, coro)), or give that thread its own pool")

    async def _acquire(self, timeout: float | None) -> C:
        loop = running_loop()
        self.check_loop(loop)
        worker = getattr(loop, "worker_id", 0)
        if self._loops.get(worker) is not loop:
            self._loops[worker] = loop  # where a strict pool's refills go (_refill_places)
        if not self._opened and not self._closed:
            await self.open(wait=False)
        start = loop.time()
        deadline = start + (self.acquire_timeout if timeout is None else timeout)
        with self._lock:
            self._c["requests_num"] += 1
        queued = False
        try:
            while True:
                entry, waiter = self._take(loop, worker)
                if entry is not None:
                    if await self._usable(entry, loop, deadline):
                        break
                    continue
                assert waiter is not None
                # A caller for whom a connection is being opened at once is not
                # counted as queued (as when it connected itself), only as waiting.
                if waiter not in self._schedule_opens() and not queued:
                    queued = True
                    with self._lock:
                        self._c["requests_queued"] += 1
                entry = await self._wait(waiter, deadline)
                if entry is not None:
                    break
        except BaseException as exc:
            if not isinstance(exc, asyncio.CancelledError):
                self._count_error("pool_timeout" if isinstance(exc, PoolTimeout)
                                  else "pool_closed" if isinstance(exc, PoolClosed) else "connect",
                                  loop.time(), request=True)
            raise
        _pin(entry.conn, LENT)
        now = loop.time()
        waited = now - start
        with self._lock:
            if queued:
                self._ms["requests_wait_ms"] += waited * 1000
            self._w_wait.add(now, waited * 1000)
            entry.borrowed = now
            self._in_use[id(entry.conn)] = entry
            # lent above the cap: a burst use if the pool stays there (poolopen.BurstMemory)
            self._edges.level(now, len(self._in_use) > self._max)
        return entry.conn

    def _take(self, loop: asyncio.AbstractEventLoop, worker: int) -> tuple[_Entry | None, _Waiter | None]:
        """An idle entry, or a queued waiter (for whom the caller schedules an open)."""
        evicted = moving = None
        with self._lock:
            if self._closed:
                raise PoolClosed(f"{self.name} is closed")
            # Pinned as it leaves the idle list: from here on it is this
            # caller's, and must not migrate under them.
            own = self._idle.get(worker)
            if own:
                entry = own.pop()
                _pin(entry.conn, LENT)
                return entry, None
            foreign = self._all_idle()
            if foreign and not self.strict:
                entry = max(foreign, key=lambda e: e.last_used)
                self._idle[entry.worker].remove(entry)
                _pin(entry.conn, LENT)
                return entry, None
            moving = self._movable_to(worker) if foreign else None  # strict: move one here
            if moving is None and foreign and self._size >= self._limit(waiting=1) \
                    and self._below_share(worker, 1):
                # strict: the pool is full but another worker has idle connections
                # this one may not use; close the stalest so its slot opens one here
                # (only while this worker holds less than its fair share: beyond
                # that its own returns serve it, and moving slots is churn).
                evicted = min(foreign, key=lambda e: e.last_used)
                self._idle[evicted.worker].remove(evicted)
                self._size -= 1
                self._closes_by["trade"] += 1
            waiter = _Waiter(loop, worker)
            self._waiters.append(waiter)
        if evicted is not None:
            self._close_entry(evicted)
        if moving is not None:
            self._start_move(moving, worker)
        return None, waiter

    async def _wait(self, waiter: _Waiter, deadline: float) -> _Entry | None:
        """Waits for a connection handed over (returned), an open's failure
        (raised), or close() (PoolClosed)."""
        try:
            async with asyncio.timeout_at(deadline):
                await waiter.fut
        except TimeoutError:
            with self._lock:
                if not waiter.woken:
                    self._waiters.remove(waiter)
                    raise PoolTimeout(f"{self.name}: no connection available within the "
                                      f"acquire timeout ({self._size} open, max {self._max})"
                                      ) from None
            # Handed over just as the deadline passed: take it.
        except asyncio.CancelledError:
            with self._lock:
                entry = waiter.entry
                if not waiter.woken:
                    self._waiters.remove(waiter)
            if entry is not None:
                self._give_back(entry)
            raise
        if waiter.error is not None:
            raise waiter.error
        if waiter.entry is None and self._closed:
            raise PoolClosed(f"{self.name} is closed")
        return waiter.entry

    def release(self, conn: C) -> None:
        """Returns a connection.  Broken, expired, excess (after a shrink) or
        retired ones are closed; otherwise it goes to the oldest waiter (one on
        the connection's worker first) or back to the idle set."""
        now = self._now()
        with self._lock:
            entry = self._in_use.pop(id(conn), None)
            if entry is None:
                raise InterfaceError("release() of a connection this pool did not hand out "
                                     "(or released twice)")
            self._edges.level(now, len(self._in_use) > self._max)
            shared, entry.shared = entry.shared, False
            bad = _is_bad(conn)
        if not bad and self._reset is not None:
            try:
                settling = self._reset(conn)
            except Exception as exc:  # a connection that cannot be reset is not reused
                log.info("%s: reset failed, discarding connection: %r", self.name, exc)
                bad = True
            else:
                loop = self._running_loop()
                if inspect.isawaitable(settling) and loop is not None:
                    # Its hold time runs on until it settles: the database is
                    # busy for the caller that gave up as much as for one that did not.
                    self._start_settle(loop, entry, settling, shared)
                    return
                if inspect.iscoroutine(settling):  # no loop to settle it on
                    settling.close()
                    bad = True
        if not shared:
            self._add_usage(entry, now)
        if bad:
            with self._lock:
                self._c["returns_bad"] += 1
                self._w_errors.add(now, "returned_bad")
        self._give_back(entry, bad=bad, now=now)

    def _add_usage(self, entry: _Entry, now: float) -> None:
        with self._lock:
            self._count_usage(now, (now - entry.borrowed) * 1000)

    def _count_usage(self, now: float, held_ms: float) -> None:
        """Under the lock: one hold (or multiplexed command) of ``held_ms``."""
        self._ms["usage_ms"] += held_ms
        self._w_usage.add(now, held_ms)
        # the recent hold (poolopen's _returns_slowed): ~10 returns' memory
        self._hold_recent = held_ms if self._hold_recent is None else \
            self._hold_recent + 0.1 * (held_ms - self._hold_recent)

    # -- helpers (call without the lock unless noted) -------------------------------

    def _discard(self, entry: _Entry, lost: bool, reason: str = "bad") -> None:
        with self._lock:
            if lost:
                self._c["connections_lost"] += 1
                self._w_errors.add(self._now(), "lost")
            if reason != "closing":
                self._closes_by[reason] += 1
        self._close_entry(entry)
        self._free_slot()

    def _free_slot(self) -> None:
        """One connection fewer: open one for the queue if it waits."""
        with self._lock:
            self._size -= 1
        self._schedule_opens()

    def _all_idle(self) -> list[_Entry]:
        return [e for entries in self._idle.values() for e in entries]

    def _count_error(self, kind: str, now: float, request: bool = False) -> None:
        with self._lock:
            if request:
                self._c["requests_errors"] += 1
                if kind == "pool_timeout":
                    self._c["requests_timeouts"] += 1
                elif kind == "connect":
                    return  # the failed open is in the window already
            self._w_errors.add(now, kind)

    def share(self, conn: C) -> None:
        """Marks a borrowed connection as shared by a multiplexer
        (:mod:`ringleader.drivers.mux`): its release then adds no hold time to the
        usage stats, since each command on it is counted by :meth:`count_request`."""
        with self._lock:
            entry = self._in_use.get(id(conn))
            if entry is not None:
                entry.shared = True
        _pin(conn, None)  # the multiplexer follows a move (see drivers.mux)

    def wanted_back(self) -> int:
        """How many shared connections the pool wants back from its multiplexers
        now (:class:`~.contract.SharedPool`): the excess over the cap after a
        shrink, else one while callers queue for an exclusive connection.  Read
        without the lock on the hot path: a stale answer only delays a shed."""
        excess = self._size - self._max
        return excess if excess > 0 else (1 if self._waiters else 0)

    def count_request(self, usage_s: float) -> None:
        """Counts one request served on a shared connection the driver already
        holds (a multiplexed command): in ``requests_num``, and its time on the
        connection (``usage_s``, send to reply) in the usage stats."""
        now = self._now()
        with self._lock:
            self._c["requests_num"] += 1
            self._count_usage(now, usage_s * 1000)

    def record_error(self, kind: str) -> None:
        """Lets a driver count a command error (``"reply"``, ``"timeout"``, ...) in
        the recent ``errors_by_kind`` window."""
        self._count_error(kind, self._now())

    @staticmethod
    def _running_loop() -> asyncio.AbstractEventLoop | None:
        try:
            return running_loop()  # per request (count_request, release): no getpid(2)
        except RuntimeError:
            return None

    def _now(self) -> float:
        loop = self._running_loop()
        # Outside a loop (a supervisor thread reading stats) fall back to the clock
        # asyncio's loops use.
        return loop.time() if loop is not None else time.monotonic()

    # -- stats -----------------------------------------------------------------------

    def stats(self, now: float | None = None) -> PoolStats:
        now = self._now() if now is None else now
        with self._lock:
            waits = self._w_wait.recent(now)
            usage = self._w_usage.recent(now)
            errors = collections.Counter(self._w_errors.recent(now))
            available = sum(len(v) for v in self._idle.values())
            return PoolStats(
                pool_min=self._min, pool_max=self._max, pool_size=self._size,
                pool_available=available, pool_in_use=len(self._in_use),
                # callers a connection is being opened for are not queued for a
                # return (as when they connected themselves): not counted here
                requests_waiting=max(0, len(self._waiters) - sum(self._opening.values())),
                **self._c, **self._ms,
                window_s=self._window_s,
                acquire_wait_p50_ms=percentile(waits, 0.50),
                acquire_wait_p99_ms=percentile(waits, 0.99),
                usage_p50_ms=percentile(usage, 0.50),
                usage_p99_ms=percentile(usage, 0.99),
                errors_by_kind=types.MappingProxyType(dict(errors)),
                pool_burst=max(0, self._size - self._max), burst_allowance=self._limit(1) - self._max,
                connections_delayed=self._budget.delayed,
                opens_by=types.MappingProxyType(+self._opens_by),  # (+: the causes seen)
                closes_by=types.MappingProxyType(+self._closes_by),
                workers=max(1, len(self._loops)) if self.strict else 1,
            )
