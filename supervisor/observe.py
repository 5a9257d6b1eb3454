"""Observations: what the policy sees each period, built from frozen snapshots.

The :class:`Sampler` turns cumulative counters (``LoopStats``, ``ConnStats``,
``PoolStats``) into per-period rates by differencing consecutive snapshots, and
keeps nothing else.  Observations are frozen and plain, so the policy can be
fed synthetic or replayed ones in tests and in the simulator exactly as it is
fed live ones.  Smoothing over short and long windows lives in the policy's
state (:class:`Ewma`), because what to smooth is a policy decision.
"""
from __future__ import annotations

import dataclasses
import math


@dataclasses.dataclass(frozen=True)
class PoolObs:
    name: str
    cap: int                 # the pool's max_size now
    floor: int               # the pool's min_size now
    size: int                # open connections
    in_use: int
    available: int
    waiting: int
    acquire_rate: float      # acquires per second over the period
    hold_ms: float | None    # mean time a connection was held, over the period
    wait_p99_ms: float | None
    errors: int              # request + connection errors in the period
    timeouts: int            # acquire timeouts in the period
    connect_errors: int
    # the workers a strict (per-worker) pool is split over: each has its own
    # queue, served only by its own connections (1: one shared queue)
    workers: int = 1
    # acquires that had to wait in the period (None: not known); the pool's
    # wait percentile spans its own window, which can outlast the queue
    queued: int | None = None


@dataclasses.dataclass(frozen=True)
class ConnObs:
    conn_id: int
    worker: int
    rate: float              # bytes/s over the period
    moved_at: float | None   # supervisor time of its last migration, if any
    movable: bool = True     # it could move now (idle between operations, not TLS)


@dataclasses.dataclass(frozen=True)
class WorkerObs:
    worker: int
    busy: float              # busy ratio over the period
    lag_ms: float
    batch: float | None      # CQEs per enter over the period (None: no ring, the epoll fallback)
    flush_depth: float | None  # SQEs per flush over the period (None likewise)
    throughput: float        # callbacks run per second over the period
    load: float              # bytes/s over all its connections
    conns: tuple[ConnObs, ...] = ()


@dataclasses.dataclass(frozen=True)
class Observation:
    t: float
    period: float
    pools: tuple[PoolObs, ...] = ()
    workers: tuple[WorkerObs, ...] = ()

    def pool(self, name: str) -> PoolObs | None:
        for p in self.pools:
            if p.name == name:
                return p
        return None


class Ewma:
    """Exponentially weighted mean with a time constant, updated at any interval.

    ``ramp=True``: until ``tau`` seconds of samples have been seen it is the plain
    mean of them (the weight of a new sample is at least ``dt / age``), so a
    long-horizon baseline is not pinned to its very first sample."""

    __slots__ = ("tau", "value", "ramp", "age")

    def __init__(self, tau: float, value: float | None = None, ramp: bool = False):
        self.tau = tau
        self.value = value
        self.ramp = ramp
        self.age = 0.0

    def update(self, x: float, dt: float) -> float:
        self.age += dt
        if self.value is None:
            self.value = x
        else:
            a = 1.0 - math.exp(-dt / self.tau) if self.tau > 0 else 1.0
            if self.ramp and self.age > 0:
                a = max(a, min(1.0, dt / self.age))
            self.value += a * (x - self.value)
        return self.value


class Sampler:
    """Differences consecutive snapshots into an :class:`Observation`."""

    def __init__(self):
        self._prev_pool: dict[str, tuple] = {}
        self._prev_loop: dict[int, object] = {}
        self._prev_conn: dict[int, tuple[int, float]] = {}
        self._t: float | None = None

    def observe(self, t: float, loops=(), conns=(), pools=None, moved_at=None) -> Observation:
        """``loops``: LoopStats list; ``conns``: ConnStats list; ``pools``: {name: PoolStats};
        ``moved_at``: {conn_id: time of the supervisor's last move}."""
        dt = (t - self._t) if self._t is not None else 0.0
        self._t = t
        moved_at = moved_at or {}
        pool_obs = []
        for name, ps in (pools or {}).items():
            prev = self._prev_pool.get(name)
            # released = acquires that got a connection and gave it back: a timed-out
            # acquire held nothing, and counting it would shrink the mean hold time
            # exactly when a storm of timeouts makes it matter (issue 16)
            cur = (ps.requests_num, ps.usage_ms, ps.requests_errors + ps.connections_errors,
                   ps.requests_timeouts, ps.connections_errors,
                   ps.requests_num - ps.requests_errors - ps.pool_in_use, ps.requests_queued)
            self._prev_pool[name] = cur
            if prev is None or dt <= 0:
                d = (0, 0.0, 0, 0, 0, 0, None)
            else:
                d = tuple(c - p for c, p in zip(cur, prev))
            released = d[5]
            pool_obs.append(PoolObs(
                name=name, cap=ps.pool_max, floor=ps.pool_min, size=ps.pool_size,
                in_use=ps.pool_in_use, available=ps.pool_available, waiting=ps.requests_waiting,
                acquire_rate=d[0] / dt if dt > 0 else 0.0,
                hold_ms=(d[1] / released) if released > 0 else ps.usage_p50_ms,
                wait_p99_ms=ps.acquire_wait_p99_ms,
                # the pool counts an acquire timeout as a request error too; the
                # guard must not read "pool too small" as "downstream failing"
                errors=max(0, d[2] - d[4] - d[3]), timeouts=max(0, d[3]), connect_errors=max(0, d[4]),
                workers=max(1, getattr(ps, "workers", 1)),
                queued=None if d[6] is None else max(0, d[6])))
        conn_rate: dict[int, list[ConnObs]] = {}
        seen = {}
        for c in conns:
            # Every connection counts in its worker's load; only those that could
            # move now (not TLS, not busy, not lent out) are candidates.
            total = c.bytes_in + c.bytes_out
            prev = self._prev_conn.get(c.conn_id)
            rate = (total - prev[0]) / dt if prev is not None and dt > 0 else 0.0
            seen[c.conn_id] = (total, t)
            conn_rate.setdefault(c.worker, []).append(
                ConnObs(c.conn_id, c.worker, max(0.0, rate), moved_at.get(c.conn_id),
                        c.migratable))
        self._prev_conn = seen
        workers = []
        for ls in loops:
            prev = self._prev_loop.get(ls.worker)
            self._prev_loop[ls.worker] = ls
            if prev is not None and ls.uptime < prev.uptime:
                # a removed worker's id was reused by a new loop whose counters
                # start from zero: differencing them would give negative rates
                prev = None
            if prev is None or dt <= 0:
                busy = ls.busy_ratio
                batch = ls.ring.mean_batch() if ls.ring is not None else None
                depth = ls.ring.mean_flush_depth() if ls.ring is not None else None
                thr = 0.0
            else:
                dbusy = ls.busy_s - prev.busy_s
                didle = ls.idle_s - prev.idle_s
                # idle time is credited when a wait *ends* (busy_s = wall - waited),
                # so a period that ends inside a long wait counts it as busy and
                # the next one gets it back: clamp instead of reporting busy < 0 or > 1
                busy = min(1.0, max(0.0, dbusy / (dbusy + didle))) if dbusy + didle > 0 else 0.0
                batch, depth = _ring_rates(ls.ring, prev.ring)
                thr = (ls.handles_run - prev.handles_run) / dt
            cs = tuple(conn_rate.get(ls.worker, ()))
            workers.append(WorkerObs(worker=ls.worker, busy=busy, lag_ms=ls.lag_ewma_s * 1e3,
                                     batch=batch, flush_depth=depth, throughput=thr,
                                     load=sum(c.rate for c in cs), conns=cs))
        return Observation(t=t, period=dt, pools=tuple(pool_obs), workers=tuple(workers))


def _ring_rates(ring, prev) -> tuple[float | None, float | None]:
    """CQEs per enter and SQEs per flush between two ring snapshots (None, None
    without a ring: the epoll fallback has no such figures)."""
    if ring is None or prev is None:
        return None, None
    denters = sum(ring.batch_hist) - sum(prev.batch_hist)
    batch = (ring.cqes_reaped - prev.cqes_reaped) / denters if denters else 0.0
    dfl = ring.flushes - prev.flushes
    depth = (ring.sqes_submitted - prev.sqes_submitted) / dfl if dfl else 0.0
    return batch, depth
