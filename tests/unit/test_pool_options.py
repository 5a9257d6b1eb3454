"""Both driver pools take the generic pool's options under the same rules
(drivers.poolfront.pool_options): every generic keyword passes through,
affinity is strict only, reset= is refused, the rest are connection options."""
import pytest

from ringleader.drivers import postgres, redis
from ringleader.drivers.poolfront import POOL_KEYS

POOLS = {
    "postgres": lambda **kw: postgres.Pool("host=127.0.0.1 port=1 user=u dbname=d", **kw),
    "redis": lambda **kw: redis.Pool("redis://127.0.0.1:1/0", **kw),
}
ERRORS = {"postgres": postgres.InterfaceError, "redis": redis.InterfaceError}


def _generic(pool):
    return getattr(pool, "_pool", pool)  # redis.Pool wraps the generic pool


@pytest.mark.parametrize("driver", POOLS)
def test_generic_options_pass_through(driver):
    pool = POOLS[driver](window_s=1.5, window_samples=64, check_timeout=2.5, maintain_every=0.5,
                         affinity="strict", burst=3, connect_timeout=4.0, name="x")
    g = _generic(pool)
    assert (g.check_timeout, g.maintain_every, g.connect_timeout, g.name) == (2.5, 0.5, 4.0, "x")
    st = pool.stats(0.0)
    assert g.strict and st.window_s == 1.5 and st.burst_allowance == 3


@pytest.mark.parametrize("driver", POOLS)
def test_defaults(driver):
    g = _generic(POOLS[driver]())
    assert g.strict and g.name == driver
    assert g.acquire_timeout == (30.0 if driver == "postgres" else 10.0)


@pytest.mark.parametrize("driver", POOLS)
@pytest.mark.parametrize("bad", [{"affinity": "prefer"}, {"reset": lambda c: None}],
                         ids=["affinity", "reset"])
def test_shared_rules_raise_the_drivers_error(driver, bad):
    with pytest.raises(ERRORS[driver], match="affinity|reset"):
        POOLS[driver](**bad)


def test_every_generic_keyword_is_known_to_both():
    # The split is computed from the generic pool's signature: a new option
    # reaches both drivers (this fails if the computation breaks).
    assert {"window_s", "check_timeout", "affinity", "reset", "min_size", "burst"} <= POOL_KEYS
    assert "connect" not in POOL_KEYS and "self" not in POOL_KEYS
