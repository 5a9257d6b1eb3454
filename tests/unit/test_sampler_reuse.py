"""Unit tier: the supervisor's Sampler keeps per-period busy ratios in [0, 1]."""
from ringleader.runtime.stats import LoopStats
from ringleader.supervisor import Sampler
from ringleader.uring.ring import RingStats


def _ring(cqes, enters):
    return RingStats(enters=enters, waits=0, sqes_submitted=cqes, cqes_reaped=cqes, flushes=enters,
                     bytes_flushed=0, cq_overflow=0, sq_full=0, wait_ns=0, batch_hist=(0, enters),
                     flush_hist=(0, enters), flush_bytes_hist=(0,), fixed_in_use=0, fixed_capacity=0,
                     sq_entries=256, setup_flags=0)


def _loop(uptime, idle, cqes=100, enters=50):
    # as RingEventLoop.stats() builds it: busy = wall - time waited (credited when a wait ends)
    return LoopStats(worker=1, time=uptime, uptime=uptime, iterations=0, handles_run=0,
                     busy_s=uptime - idle, idle_s=idle, lag_max_s=0.0, lag_ewma_s=0.0, connections=0,
                     migrations_in=0, migrations_out=0, enobufs=0, ring=_ring(cqes, enters))


def test_a_wait_in_progress_at_sampling_gives_no_negative_busy():
    s = Sampler()
    s.observe(0.0, [_loop(10.0, 5.0)])
    # sampled while blocked in a 1-s wait: the wait is not credited yet
    assert s.observe(0.5, [_loop(10.5, 5.0)]).workers[0].busy == 1.0
    # the wait ended: idle jumps by the whole second, busy_s went *down*
    w = s.observe(1.0, [_loop(11.0, 6.0)]).workers[0]
    assert 0.0 <= w.busy <= 1.0


def test_reused_worker_id_is_a_new_loop():
    s = Sampler()
    s.observe(0.0, [_loop(5.5, 0.5, 1000, 500)])
    s.observe(1.0, [_loop(6.5, 0.6, 1100, 550)])
    # worker 1 was drained and a new worker 1 started 0.4 s ago: its counters
    # restart, and must not be differenced against the old loop's
    w = s.observe(2.0, [_loop(0.4, 0.3, 10, 5)]).workers[0]
    assert abs(w.busy - 0.25) < 1e-9 and w.batch == 2.0


def _pool(num, errors, timeouts):
    from ringleader.drivers.poolstats import PoolStats
    return PoolStats(pool_min=1, pool_max=4, pool_size=4, pool_available=0, pool_in_use=4,
                     requests_waiting=3, requests_num=num, requests_queued=num, requests_wait_ms=0.0,
                     requests_errors=errors, requests_timeouts=timeouts, connections_num=4,
                     connections_ms=0.0, connections_errors=0, connections_lost=0, usage_ms=0.0,
                     returns_bad=0, window_s=1.0, acquire_wait_p50_ms=None, acquire_wait_p99_ms=None,
                     usage_p50_ms=None, usage_p99_ms=None, errors_by_kind={})


def test_acquire_timeouts_are_not_query_errors():
    # the pool counts each acquire timeout in requests_errors as well
    s = Sampler()
    s.observe(0.0, pools={"db": _pool(100, 0, 0)})
    p = s.observe(1.0, pools={"db": _pool(200, 12, 10)}).pools[0]
    assert (p.timeouts, p.errors) == (10, 2)
