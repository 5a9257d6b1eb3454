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
