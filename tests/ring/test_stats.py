"""Ring tier: CQ overflow (nothing lost), batch submission and the stats histograms."""
import pytest

from ringleader.uring import Ring, RingStats


def _bucket(v: int) -> int:
    """The histogram bucket of value v, per RingStats.bucket_bounds."""
    for k in range(RingStats.HIST_BUCKETS):
        lo, hi = RingStats.bucket_bounds(k)
        if lo <= v <= hi:
            return k
    raise AssertionError(v)


def test_bucket_bounds_cover_everything_once():
    assert _bucket(0) == 0 and _bucket(1) == 1 and _bucket(32) == 6 and _bucket(63) == 6
    assert RingStats.bucket_bounds(15) == (1 << 14, 2**64 - 1)


def test_cq_overflow_loses_nothing(collect):
    total = 400
    with Ring(8, cq_entries=16, files=0) as r:
        # 400 completions without harvesting into a CQ ring of 16: the kernel parks the
        # rest in its overflow list (FEAT_NODROP) and hands them over as we harvest.
        for base in range(0, total, 8):
            r.nops(8, base)
            r.flush()
        got = collect(r, total)
        st = r.stats()
    assert sorted(c.user_data for c in got) == list(range(total))
    assert all(c.res == 0 for c in got)
    assert st.cq_overflow == 0  # counts completions the kernel dropped
    assert st.cq_backlog >= 1   # ... and we did see it holding some back
    assert st.cqes_reaped == total and st.sqes_submitted == total


def test_batch_submit_and_harvest_stats(sockpair):
    a, b = sockpair
    with Ring(64, files=0) as r:
        r.nops(32, 0)
        assert r.sq_ready() == 32
        uds, res, _ = r.enter(32)
        assert sorted(uds) == list(range(32)) and set(res) == {0}
        st = r.stats()
        assert st.flushes == 1 and st.flush_hist[_bucket(32)] == 1
        assert st.batch_hist[_bucket(32)] == 1 and st.cqes_reaped == 32
        assert st.mean_flush_depth() == 32 and st.mean_batch() == 32
        assert st.flush_bytes_hist[0] == 1  # NOPs carry no bytes

        for i in range(4):
            r.send(a.fileno(), b"x" * 100, 100 + i)
        assert r.pending_bytes() == 400
        got = []
        while len(got) < 4:
            got += r.enter(4 - len(got), 2.0)[0]
        st2 = r.stats()
        assert sorted(got) == [100, 101, 102, 103]
        assert st2.bytes_flushed == 400 and r.pending_bytes() == 0
        assert st2.flush_bytes_hist[_bucket(400)] == 1
        assert st2.flush_hist[_bucket(4)] == 1
        assert sum(st2.flush_hist) == sum(st2.flush_bytes_hist) == st2.flushes == 2
        assert sum(st2.batch_hist) >= 2 and st2.cqes_reaped == 36
        assert b.recv(1000) == b"x" * 400


def test_sq_full_flushes_early_instead_of_failing(collect):
    with Ring(8, files=0) as r:
        assert r.stats().sq_entries == 8
        r.nops(20, 0)  # more than the SQ holds: the helper flushes when it runs out
        st = r.stats()
        assert st.sq_full == 2 and st.flush_hist[_bucket(8)] == 2
        assert sorted(c.user_data for c in collect(r, 20)) == list(range(20))


def test_stats_snapshot_is_frozen_and_serialisable():
    with Ring(8, files=16) as r:
        st = r.stats()
        with pytest.raises(Exception):
            st.enters = 5
        d = st.as_dict()
        assert d["fixed_capacity"] == 16 and len(d["batch_hist"]) == RingStats.HIST_BUCKETS
