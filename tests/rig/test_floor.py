"""The connection-seconds floor (issue 16): what the rails force a run to
hold, in each record, in the verdict line beside a conn-s MISS, and drawn in
the plots; on synthetic records (no servers)."""
from __future__ import annotations

import json
import math
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))

from riglib import floor, plots, realmode, simmode, summary  # noqa: E402

T0 = 1000.0


def _svc(n: int, size: int, workers: int | None, nworkers: int = 2) -> dict:
    """The demo service's output: two pools per window, ``workers`` serving
    each (None: a service from before the floor, which did not say)."""
    def pool():
        p = {"cap": size, "size": size, "in_use": 1, "waiting": 0, "acquire_rate": 90.0, "hold_ms": 2.0,
             "wait_p99_ms": 0.5, "timeouts": 0, "opened": size}
        if workers is not None:
            p["workers"] = workers
        return p
    return {"decisions": [], "windows": [
        {"t": T0 + i, "pools": {"postgres": pool(), "redis": pool()}, "slow": [],
         "lag_max_ms": {"0": 1.0},
         "workers": [{"worker": w, "busy": 0.05, "batch": 1.0, "load": 0.0, "lag_ms": 0.1}
                     for w in range(nworkers)]}
        for i in range(1, n + 1)]}


def _gen(n: int) -> dict:
    return {"windows": [{"t": i, "arrivals": 200, "done": 200, "p99_ms": 4.0} for i in range(1, n + 1)]}


def _record(contender, n=10, size=3, workers=2, nworkers=2, pattern="steady"):
    svc = _svc(n, size, workers, nworkers)
    return realmode.build_record(pattern, contender, 1, float(n), T0, svc, _gen(n))


def test_the_floor_is_the_rails_minimum_or_one_per_serving_worker_per_pool_and_window():
    # supervisor: rails min 2, 2 workers serve each strict pool: 2 + 2 per window
    rec = _record("supervisor-littles")
    assert rec["rails"]["min"] == 2
    assert rec["series"]["pools"]["postgres"]["workers"] == [2] * 10
    assert rec["metrics"]["conn_s_floor"] == 40.0
    assert rec["metrics"]["conn_seconds"] == 60.0
    # three workers serving: one each, above the rails' 2
    assert _record("supervisor-littles", workers=3, nworkers=3)["metrics"]["conn_s_floor"] == 60.0
    # grow-on-wait's rails (2..32) and a static size, whose floor is its size
    assert _record("grow-on-wait")["metrics"]["conn_s_floor"] == 40.0
    assert _record("static-16", size=16)["metrics"]["conn_s_floor"] == 320.0
    assert floor.per_window(_record("static-16", size=16)) == {"postgres": [16] * 10, "redis": [16] * 10}


def test_records_from_before_the_floor_get_it_from_the_contender_and_the_workers():
    old = _record("supervisor-littles", workers=None, nworkers=3)
    del old["rails"], old["metrics"]["conn_s_floor"]
    assert "workers" not in old["series"]["pools"]["postgres"]
    back = json.loads(json.dumps(summary.clean(old)))  # as read from runs.json
    assert floor.conn_s_floor(back) == 60.0  # 3 workers ran, strict pools: 3 per pool
    # a worker absent from a window (NaN, "nan" once written) does not count
    back["series"]["workers"]["busy"][0] = [0.1, "nan", "nan"]
    assert floor.per_window(back)["postgres"][:2] == [2, 3]
    # the overload runner recorded no workers: one, so the rails' minimum
    for row in back["series"]["workers"]["busy"]:
        row.clear()
    assert floor.conn_s_floor(back) == 40.0
    back["contender"] = "rebalance-on"  # no rails known: no floor, not a wrong one
    assert floor.conn_s_floor(back) is None


def test_simulated_records_carry_their_floor():
    rec = simmode.run_one("steady", "supervisor-littles", 1, 0.1)
    assert rec["metrics"]["conn_s_floor"] == 2.0 * len(rec["series"]["t"])
    static = simmode.run_one("steady", "static-4", 1, 0.1)
    assert static["metrics"]["conn_s_floor"] == 4.0 * len(static["series"]["t"])


def _summary_record(contender, conn_s, floor_s, pattern="steady"):
    m = {"slo_windows": 1.0, "good_share": 1.0, "conn_seconds": conn_s, "opened": 4.0, "max_cap": 4.0,
         "conn_s_floor": floor_s}
    return {"mode": "real", "pattern": pattern, "contender": contender, "seed": 1, "metrics": m,
            "acceptance": {"slo>=99%": True}}


def _verdict(sup, grow, pattern="steady"):
    recs = [_summary_record("supervisor-littles", sup, 116.0, pattern),
            _summary_record("static-16", 928.0, 928.0, pattern),
            _summary_record("grow-on-wait", grow, 116.0, pattern)]
    s = summary.summarise(recs)
    return summary.verdict(s["groups"][0]), summary.markdown(s)


def test_a_miss_under_the_floor_is_called_unreachable():
    v, md = _verdict(217.0, 191.0)
    assert ("conn-s 1.14x grow-on-wait (<= 0.5) MISS (0.5x = 96 is under the rails' floor 116, 0.61x: "
            "unreachable at this load)") in v
    assert "above the floor +101 / +0 / +75" in v
    assert v in md  # one notation in the terminal and summary.md


def test_a_miss_above_the_floor_is_reachable_and_a_pass_needs_no_note():
    v, _ = _verdict(300.0, 400.0)
    assert ("conn-s 0.75x grow-on-wait (<= 0.5) MISS (0.5x = 200 is above the rails' floor 116: "
            "reachable)") in v
    assert "unreachable" not in v
    v, _ = _verdict(150.0, 400.0)
    assert v.endswith("conn-s 0.38x grow-on-wait (<= 0.5) PASS")
    # the burst's goal is 0.7x: 144 conn-s, reachable above a floor of 116
    v, _ = _verdict(230.0, 206.0, "burst")
    assert "(<= 0.7) MISS (0.7x = 144 is above the rails' floor 116: reachable)" in v


def test_the_held_panel_is_drawn_where_the_records_carry_sizes(tmp_path):
    recs = [_record("supervisor-littles", size=3), _record("grow-on-wait", size=4),
            _record("static-16", size=16)]
    assert plots.panels_for(recs) == ["offered", "cap:postgres", "cap:redis", "held", "wait:postgres",
                                      "wait:redis", "req", "busy", "batch"]
    for r in recs:
        for p in r["series"]["pools"].values():
            del p["size"]
    assert "held" not in plots.panels_for(recs)


def test_the_held_panel_shows_the_floor_and_the_goal():
    recs = [_record("supervisor-littles", size=3), _record("grow-on-wait", size=4),
            _record("static-16", size=16)]
    fig, ax = plt.subplots()
    try:
        plots.draw_held(ax, recs, recs)
        dashed = [ln for ln in ax.get_lines() if ln.get_linestyle() == "--"]
        dotted = [ln for ln in ax.get_lines() if ln.get_linestyle() == ":"]
        assert [set(ln.get_ydata()) for ln in dashed] == [{4}]  # the supervisor's floor: 2 + 2
        assert [set(ln.get_ydata()) for ln in dotted] == [{4.0}]  # 0.5 x grow-on-wait's 8 held
        # static-16's 32 would flatten the others: named, off the scale
        assert ax.get_ylim()[1] < 32
        assert any("static-16" in t.get_text() and "above the scale" in t.get_text() for t in ax.texts)
        assert math.isclose(ax.get_ylim()[1], 1.5 * 8 + 1)
    finally:
        plt.close(fig)


def test_the_service_records_the_workers_each_pool_serves():
    """pool_totals (the service's and the overload runner's window of a pool)
    carries PoolStats.workers: the floor of a new record is what the pool saw."""
    from ringleader.drivers.pool import Pool
    from riglib.service import pool_totals

    async def connect():
        raise AssertionError("no connection is opened here")
    assert pool_totals(Pool(connect, min_size=0, max_size=2, affinity="strict").stats())["workers"] == 1
