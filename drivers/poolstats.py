"""The pool's statistics: the frozen :class:`PoolStats` snapshot and the
recent-window sampling behind its percentiles.  Pure bookkeeping, no I/O and
no clock of its own (callers pass the loop time)."""
from __future__ import annotations

import collections
import dataclasses
from typing import Any, Mapping

__all__ = ["PoolStats", "Window", "percentile"]


@dataclasses.dataclass(frozen=True, slots=True)
class PoolStats:
    """A snapshot of a pool.  Counters are totals since the pool was made (names
    and meanings follow psycopg_pool where they apply); ``*_p50_ms``/``*_p99_ms``
    and ``errors_by_kind`` cover only the last ``window_s`` seconds (at most
    ``window_samples`` samples) and are ``None``/empty when nothing happened."""

    pool_min: int
    pool_max: int
    pool_size: int  # open connections plus those being opened
    pool_available: int  # idle connections
    pool_in_use: int
    requests_waiting: int  # callers queued right now
    requests_num: int  # acquire calls, plus multiplexed commands (drivers/mux.py)
    requests_queued: int  # acquire calls that had to wait
    requests_wait_ms: float  # total time spent waiting by those
    requests_errors: int  # acquire calls that ended in an error
    requests_timeouts: int  # ... of which acquire timeouts
    connections_num: int  # connection attempts
    connections_ms: float  # total time spent connecting
    connections_errors: int  # failed connection attempts
    connections_lost: int  # found broken when borrowed or by the health check
    usage_ms: float  # total time connections were held by callers (multiplexed: per command)
    returns_bad: int  # connections returned broken
    window_s: float
    acquire_wait_p50_ms: float | None
    acquire_wait_p99_ms: float | None
    usage_p50_ms: float | None
    usage_p99_ms: float | None
    errors_by_kind: Mapping[str, int]
    connections_burst: int = 0  # opens above the cap, under the burst allowance
    returns_drained: int = 0  # connections reused after settling work a caller gave up on
    pool_burst: int = 0  # connections above the cap now
    burst_allowance: int = 0  # how many may be opened above the cap now (0 while paused)
    connections_delayed: int = 0  # opens that waited for the open budget (rate limit)
    workers: int = 1  # strict affinity: the workers whose callers used it (each has its own queue)
    connections_moved: int = 0  # moved to another worker for a caller there (strict, in a runtime)
    # Issue 16: why connections were opened and closed (counters; every open is
    # a backend fork and an authentication, so each one should have a reason):
    # opens_by: "refill" (up to min_size), "queue" (for a waiter, below the cap),
    # "burst" (for a waiter, above the cap); closes_by: "shrink" (resize),
    # "idle" (max_idle), "linger" (a burst connection idle past burst_linger),
    # "over_limit" (returned above cap + allowance), "trade" (a strict pool's
    # slot handed to another worker), "bad", "expired" (max_lifetime),
    # "cancelled" (its health check cancelled with the loop, the pool still open)
    opens_by: Mapping[str, int] = dataclasses.field(default_factory=dict)
    closes_by: Mapping[str, int] = dataclasses.field(default_factory=dict)
    # health checks: a borrowed connection idle ``check_after`` or longer is
    # ping()-ed before it is lent, inside the caller's acquire wait (a database
    # round trip); how many, and their total time (issue 16: the simulator's
    # twin asks whether they cost SLO windows)
    checks: int = 0
    checks_ms: float = 0.0
    # health checks that ended after their caller had left (its acquire
    # deadline or its cancellation came first): the check went on, and the
    # connection was kept if it passed (a failed one is in connections_lost)
    checks_orphaned: int = 0


class Window:
    """Recent (time, value) samples: the last ``span`` seconds, at most ``cap``."""

    __slots__ = ("span", "samples")

    def __init__(self, span: float, cap: int) -> None:
        self.span = span
        self.samples: collections.deque[tuple[float, Any]] = collections.deque(maxlen=cap)

    def add(self, now: float, value: Any) -> None:
        self.samples.append((now, value))

    def recent(self, now: float) -> list[Any]:
        cutoff = now - self.span
        while self.samples and self.samples[0][0] < cutoff:
            self.samples.popleft()
        return [v for _, v in self.samples]


def percentile(values: list[float], q: float) -> float | None:
    # Nearest-rank: always a value that was actually observed.
    if not values:
        return None
    values = sorted(values)
    rank = max(1, -(-len(values) * q // 1))  # ceil(n*q), at least 1
    return values[int(rank) - 1]
