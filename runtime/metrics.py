"""Prometheus metrics for a runtime, built from its frozen snapshots.

:class:`RuntimeCollector` is a prometheus-client collector: each scrape takes
``loop.stats()`` of every worker, ``stats()`` of every registered pool and the
supervisor's ``snapshot()``, and turns them into metric families labelled by
``worker`` or ``pool``.  The rings' log2 histograms (CQEs per harvest, SQEs per
flush, bytes per flush) become Prometheus histograms whose ``le`` bounds are
the buckets' inclusive upper ends.  Nothing here touches a live ring or keeps
state between scrapes; counters are the runtime's own totals since start.

:func:`render` gives the text exposition format for one runtime, which is
what the debug socket's ``metrics`` command and ``ringleader metrics`` serve.
It does not run an HTTP endpoint: a service that wants one registers the
collector with its own registry (``prometheus_client.REGISTRY.register(
RuntimeCollector(rt))``) and serves it however it serves HTTP.  Needs the
``metrics`` extra (prometheus-client).
"""
from __future__ import annotations

import math

from ..extras import require

require("prometheus_client", "metrics", "ringleader.runtime.metrics")
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.core import (CounterMetricFamily, GaugeMetricFamily,  # noqa: E402
                                    HistogramMetricFamily)
from prometheus_client.registry import Collector  # noqa: E402

from ..uring import RingStats  # noqa: E402

__all__ = ["RuntimeCollector", "render", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

# (LoopStats attribute, metric name, help, is a counter)
_LOOP = [
    ("iterations", "ringleader_loop_iterations", "Loop iterations since start.", True),
    ("handles_run", "ringleader_loop_handles", "Callbacks and task steps run.", True),
    ("busy_s", "ringleader_loop_busy_seconds", "Wall time not waiting in io_uring_enter.", True),
    ("idle_s", "ringleader_loop_idle_seconds", "Wall time waiting for completions.", True),
    ("busy_ratio", "ringleader_loop_busy_ratio", "Busy share of wall time since start.", False),
    ("lag_max_s", "ringleader_loop_lag_max_seconds", "Worst timer lateness since start.", False),
    ("lag_ewma_s", "ringleader_loop_lag_ewma_seconds", "Smoothed timer lateness.", False),
    ("connections", "ringleader_loop_connections", "Open ring transports.", False),
    ("migrations_in", "ringleader_loop_migrations_in", "Connections moved onto this worker.", True),
    ("migrations_out", "ringleader_loop_migrations_out", "Connections moved off this worker.", True),
    ("enobufs", "ringleader_loop_enobufs", "Multishot receives ended by a dry buffer ring.", True),
]
_RING = [
    ("enters", "ringleader_ring_enters", "io_uring_enter calls.", True),
    ("waits", "ringleader_ring_waits", "Enters that waited for completions.", True),
    ("sqes_submitted", "ringleader_ring_sqes_submitted", "SQEs handed to the kernel.", True),
    ("cqes_reaped", "ringleader_ring_cqes_reaped", "Completions harvested.", True),
    ("flushes", "ringleader_ring_flushes", "Flushes with at least one SQE.", True),
    ("bytes_flushed", "ringleader_ring_bytes_flushed", "Send bytes flushed.", True),
    ("cq_overflow", "ringleader_ring_cq_overflow", "Completions lost to CQ overflow.", True),
    ("cq_backlog", "ringleader_ring_cq_backlog", "Harvests that found an overflow backlog.", True),
    ("sq_full", "ringleader_ring_sq_full", "Times the SQ was full.", True),
    ("fixed_in_use", "ringleader_ring_fixed_files_in_use", "Fixed-file slots in use.", False),
    ("fixed_capacity", "ringleader_ring_fixed_files_capacity", "Fixed-file table size.", False),
]
# (histogram field, metric name, help, RingStats field holding the sum)
_HISTS = [
    ("batch_hist", "ringleader_ring_batch_size", "CQEs harvested per io_uring_enter.", "cqes_reaped"),
    ("flush_hist", "ringleader_ring_flush_depth", "SQEs pending at each flush.", "sqes_submitted"),
    ("flush_bytes_hist", "ringleader_ring_flush_bytes", "Send bytes pending at each flush.",
     "bytes_flushed"),
]
_POOL = [
    ("pool_min", "ringleader_pool_min", "Configured minimum size.", False),
    ("pool_max", "ringleader_pool_max", "Configured maximum size.", False),
    ("pool_size", "ringleader_pool_size", "Open connections plus those being opened.", False),
    ("pool_available", "ringleader_pool_available", "Idle connections.", False),
    ("pool_in_use", "ringleader_pool_in_use", "Connections held by callers.", False),
    ("requests_waiting", "ringleader_pool_requests_waiting", "Callers queued now.", False),
    ("requests_num", "ringleader_pool_requests", "Acquire calls.", True),
    ("requests_queued", "ringleader_pool_requests_queued", "Acquire calls that waited.", True),
    ("requests_errors", "ringleader_pool_requests_errors", "Acquire calls that failed.", True),
    ("requests_timeouts", "ringleader_pool_requests_timeouts", "Acquire timeouts.", True),
    ("connections_num", "ringleader_pool_connections", "Connection attempts.", True),
    ("connections_errors", "ringleader_pool_connections_errors", "Failed connection attempts.", True),
    ("connections_lost", "ringleader_pool_connections_lost", "Connections found broken.", True),
    ("returns_bad", "ringleader_pool_returns_bad", "Connections returned broken.", True),
]
_POOL_MS = [
    ("requests_wait_ms", "ringleader_pool_requests_wait_seconds", "Time acquire calls waited."),
    ("connections_ms", "ringleader_pool_connections_seconds", "Time spent connecting."),
    ("usage_ms", "ringleader_pool_usage_seconds", "Time connections were held."),
]


def _family(name: str, doc: str, counter: bool, labels: list[str]):
    cls = CounterMetricFamily if counter else GaugeMetricFamily
    return cls(name, doc, labels=labels)


def _buckets(hist: tuple[int, ...]) -> list[tuple[str, float]]:
    # Bucket k holds values in [2**(k-1), 2**k) (k=0: zero); the values are
    # integers, so its inclusive upper end 2**k - 1 is a correct ``le``.
    out, total = [], 0
    last = len(hist) - 1
    for k, count in enumerate(hist):
        total += count
        if k == last:
            out.append(("+Inf", float(total)))
        else:
            out.append((repr(float(RingStats.bucket_bounds(k)[1])), float(total)))
    return out


def _num(value) -> float:
    if value is None:
        return math.nan
    return float(value)


class RuntimeCollector(Collector):
    """Metric families for one runtime (see the module docstring)."""

    def __init__(self, runtime, server=None):
        self.runtime = runtime
        self.server = server

    def collect(self):
        rt = self.runtime
        loops = rt.stats()
        yield GaugeMetricFamily("ringleader_workers", "Running workers.", value=len(loops))
        fam = GaugeMetricFamily("ringleader_worker_backend", "1 for the backend each worker runs on.",
                                labels=["worker", "backend"])
        for st in loops:
            fam.add_metric([str(st.worker), st.backend], 1.0)
        yield fam
        for attr, name, doc, counter in _LOOP:
            fam = _family(name, doc, counter, ["worker"])
            for st in loops:
                value = getattr(st, attr)
                if value is not None:   # (ring-only ones are absent on epoll, not zero)
                    fam.add_metric([str(st.worker)], float(value))
            yield fam
        # Ring-only series: a worker on the epoll fallback has no sample in them.
        rings = [st for st in loops if st.ring is not None]
        for attr, name, doc, counter in _RING:
            fam = _family(name, doc, counter, ["worker"])
            for st in rings:
                fam.add_metric([str(st.worker)], float(getattr(st.ring, attr)))
            yield fam
        fam = CounterMetricFamily("ringleader_ring_wait_seconds", "Time blocked in io_uring_enter.",
                                  labels=["worker"])
        for st in rings:
            fam.add_metric([str(st.worker)], st.ring.wait_ns / 1e9)
        yield fam
        for attr, name, doc, sum_attr in _HISTS:
            fam = HistogramMetricFamily(name, doc, labels=["worker"])
            for st in rings:
                fam.add_metric([str(st.worker)], _buckets(getattr(st.ring, attr)),
                               float(getattr(st.ring, sum_attr)))
            yield fam
        yield from self._pools()
        yield from self._supervisor()
        if self.server is not None:
            yield from self.server.metric_families()

    def _pools(self):
        snaps = []
        for entry in self.runtime.registry.pools():
            try:
                snaps.append((entry.name, entry.pool.stats()))
            except Exception:  # a pool that cannot report is left out of this scrape
                continue
        for attr, name, doc, counter in _POOL:
            fam = _family(name, doc, counter, ["pool"])
            for pname, st in snaps:
                fam.add_metric([pname], _num(getattr(st, attr, None)))
            yield fam
        for attr, name, doc in _POOL_MS:
            fam = CounterMetricFamily(name, doc, labels=["pool"])
            for pname, st in snaps:
                fam.add_metric([pname], _num(getattr(st, attr, None)) / 1e3)
            yield fam
        fam = GaugeMetricFamily("ringleader_pool_acquire_wait_seconds",
                                "Acquire wait percentiles over the pool's recent window.",
                                labels=["pool", "quantile"])
        for pname, st in snaps:
            for q, attr in (("0.5", "acquire_wait_p50_ms"), ("0.99", "acquire_wait_p99_ms")):
                fam.add_metric([pname, q], _num(getattr(st, attr, None)) / 1e3)
        yield fam

    def _supervisor(self):
        sup = self.runtime.registry.supervisor
        snap = None
        if sup is not None:
            try:
                snap = sup.snapshot()
            except Exception:
                snap = None
        yield GaugeMetricFamily("ringleader_supervisor_registered", "1 if a supervisor is registered.",
                                value=1.0 if sup is not None else 0.0)
        if snap is not None:
            yield GaugeMetricFamily("ringleader_supervisor_paused", "1 if the supervisor is paused.",
                                    value=1.0 if snap.get("paused") else 0.0)
            yield GaugeMetricFamily("ringleader_supervisor_recent_decisions",
                                    "Decisions in the supervisor's recent-decisions buffer.",
                                    value=float(len(snap.get("decisions") or ())))


def render(runtime, server=None) -> str:
    """The Prometheus text exposition of ``runtime``'s metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RuntimeCollector(runtime, server))
    return generate_latest(registry).decode("utf-8")
