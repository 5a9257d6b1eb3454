"""Frozen telemetry snapshots of a worker loop and its connections.

They are built from plain counters the loop updates as it runs; building one
from another thread reads those counters without stopping the worker (a value
may lag by one loop iteration).  The supervisor and the debug socket consume
these, never the live objects.
"""
from __future__ import annotations

import dataclasses

from ..uring import RingStats


@dataclasses.dataclass(frozen=True)
class ConnStats:
    """One connection's load, enough to rank hot connections."""

    conn_id: int
    worker: int
    slot: int
    peer: str
    bytes_in: int
    bytes_out: int
    ops: int
    last_active: float
    migrations: int
    migratable: bool = True  # False for TLS connections (see RingTransport.migratable)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LoopStats:
    """A worker loop's counters at one moment (monotonic since start)."""

    worker: int
    time: float              # loop clock when taken
    uptime: float            # seconds since the loop started running
    iterations: int
    handles_run: int         # callbacks/tasks steps run
    busy_s: float            # wall time not blocked in the kernel
    idle_s: float            # time blocked in the kernel waiting (io_uring_enter or epoll_wait)
    lag_max_s: float         # worst lateness of a timer callback since start
    lag_ewma_s: float        # smoothed lateness of timer callbacks
    connections: int
    migrations_in: int
    migrations_out: int
    # Ring-only telemetry is None on the epoll fallback (absent, not zero):
    enobufs: int | None      # multishot receives ended because the buffer ring ran dry
    ring: RingStats | None
    backend: str = "uring"   # "uring" or "epoll" (runtime/backend.py)

    @property
    def busy_ratio(self) -> float:
        total = self.busy_s + self.idle_s
        return self.busy_s / total if total > 0 else 0.0

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["busy_ratio"] = self.busy_ratio
        return d


def hottest(transports, n: int) -> list[ConnStats]:
    """The ``n`` connections of ``transports`` with the most bytes moved, busiest first."""
    snaps = [t.conn_stats() for t in list(transports)]
    snaps.sort(key=lambda s: s.bytes_in + s.bytes_out, reverse=True)
    return snaps[:n]
