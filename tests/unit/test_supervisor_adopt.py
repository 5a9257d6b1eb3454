"""Supervisor.adopt refuses a pool it cannot control with ConfigError only."""
import types

import pytest

from ringleader.supervisor import ConfigError, PoolAutoscale, Supervisor, SupervisorConfig


def _sup(**pools):
    return Supervisor(types.SimpleNamespace(workers=[]), SupervisorConfig(pools=pools))


def test_initial_cap_outside_the_rails():
    sup = _sup(p=PoolAutoscale(min=2, max=8))
    with pytest.raises(ConfigError, match="outside the rails"):
        sup.adopt("p", types.SimpleNamespace(max_size=20))
    assert "p" not in sup.pools


def test_autoscale_that_is_not_a_pool_autoscale():
    sup = _sup()
    with pytest.raises(ConfigError, match="must be a PoolAutoscale"):
        sup.adopt("p", types.SimpleNamespace(max_size=4, autoscale="fast"))


def test_inside_the_rails_is_adopted():
    sup = _sup(p=PoolAutoscale(min=2, max=8))
    pool = types.SimpleNamespace(max_size=4)
    sup.adopt("p", pool)
    assert sup.pools["p"] is pool


class _SizedPool:
    """A pool's sizing surface: bounds and resize (what adopt and the actuator use)."""

    def __init__(self, min_size, max_size):
        self.min_size, self.max_size = min_size, max_size

    def resize(self, lo, hi):
        self.min_size, self.max_size = lo, hi


def test_a_warm_pool_opens_to_its_cap_and_follows_it():
    """PoolAutoscale.warm (issue 16): adopting raises the floor to the cap, and a
    resize decision sets both, so connections open when the cap grows, not when
    a caller waits for one; warm=False keeps the pool's own floor."""
    import asyncio
    from ringleader.supervisor.policy import Action
    for warm, floor in ((True, 6), (False, 1)):
        sup = _sup(p=PoolAutoscale(min=2, max=8, warm=warm))
        pool = _SizedPool(1, 4)
        sup.adopt("p", pool)
        assert pool.min_size == (4 if warm else 1)
        grow = Action("resize_pool", "p", "test", {}, old=4, new=6, floor=6 if warm else None)
        asyncio.run(sup.actuator.apply([grow]))
        assert (pool.min_size, pool.max_size) == (floor, 6)


def test_the_burst_allowance_is_proportional_to_the_cap():
    """Issue 16: a fixed 8 above a cap of 5 was most of the opens in the real
    burst and diurnal runs; the allowance is burst_ratio x the cap (at least
    one, at most ``burst``), inside the rails, and none while the guard holds."""
    cfg = PoolAutoscale(min=1, max=40, burst=8, burst_ratio=0.5)
    assert [cfg.burst_for(c) for c in (1, 2, 5, 12, 16, 38, 40)] == [1, 1, 3, 6, 8, 2, 0]
    assert cfg.burst_for(12, guard_tripped=True) == 0
    assert PoolAutoscale(enabled=False).burst_for(12) == 0
