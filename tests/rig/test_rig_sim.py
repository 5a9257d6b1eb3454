"""Rig tier: the traffic rig's simulation mode end to end on a small deterministic
plan (virtual clock, fixed seeds), plus its statistics, in well under 30 s."""
import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))

from riglib import plots, simmode, stats, summary  # noqa: E402


def test_mann_whitney_exact_values():
    # fully separated 4 vs 4: 2 of C(8,4)=70 arrangements are as extreme
    assert stats.mann_whitney_p([1, 2, 3, 4], [5, 6, 7, 8]) == pytest.approx(2 / 70)
    # 3 vs 3 can never go below 0.1
    assert stats.mann_whitney_p([1, 2, 3], [4, 5, 6]) == pytest.approx(0.1)
    assert stats.mann_whitney_p([1, 2, 3, 4], [1, 2, 3, 4]) == 1.0
    assert stats.mann_whitney_p([1], [2, 3]) is None


def test_cap_changes_counts_reversals():
    n, rev, ch = stats.cap_changes([0, 1, 2, 3, 4, 5], [4, 8, 8, 6, 9, 9])
    assert (n, rev) == (3, 2)
    assert ch[0] == (1, 4, 8)


def test_sim_runs_are_deterministic_and_judged(tmp_path):
    jobs = simmode.plan(["burst", "hot_spot"], ["static-4", "static-16", "supervisor-littles"], [1, 2])
    recs = simmode.run_all(jobs, 0.5, 1)
    again = simmode.run_one("burst", "supervisor-littles", 1, 0.5)
    first = next(r for r in recs if r["contender"] == "supervisor-littles" and r["seed"] == 1)
    assert again["metrics"] == first["metrics"] and again["series"] == first["series"]
    assert first["metrics"] != next(r for r in recs if r["contender"] == "supervisor-littles"
                                    and r["seed"] == 2)["metrics"]
    # the supervisor reacts to burst edges within two periods
    assert first["acceptance"]["first grow<=2 periods"] is True
    # a static pool of 4 cannot carry 3000/s x 4 ms: it must fail the SLO check
    small = next(r for r in recs if r["contender"] == "static-4")
    assert small["acceptance"]["slo>=99%"] is False
    hot = {r["contender"]: r for r in recs if r["pattern"] == "hot_spot" and r["seed"] == 1}
    assert hot["rebalance-off"]["acceptance"]["max/mean<=1.17"] is False
    assert hot["rebalance-on"]["acceptance"]["max/mean<=1.17"] is True
    assert hot["rebalance-on"]["acceptance"]["no ping-pong"] is True

    s = summary.summarise(recs)
    burst = next(g for g in s["groups"] if g["pattern"] == "burst")
    assert burst["best_static"] == "static-16"
    row = next(r for r in burst["rows"] if r["contender"] == "supervisor-littles")
    assert row["metrics"]["conn_seconds"]["significant"] is False   # 2 vs 2 repeats
    md, js = summary.write(s, str(tmp_path))
    text = open(md).read()
    assert "| supervisor-littles | 2 |" in text and "Where the adaptive contenders miss" in text
    assert json.load(open(js))["groups"][0]["pattern"] == "burst"
    png = plots.plot_pattern([r for r in recs if r["pattern"] == "burst"], str(tmp_path / "b.png"))
    assert os.path.getsize(png) > 10_000


def test_bad_names_are_rejected_before_running():
    with pytest.raises(ValueError, match="unknown pattern 'tsunami'"):
        simmode.plan(["tsunami"], None, [1])
    with pytest.raises(ValueError, match="unknown contender"):
        simmode.plan(["burst"], ["static-4", "magic"], [1])
    with pytest.raises(ValueError, match="unknown controller"):
        simmode.plan(["burst"], ["supervisor-bandit"], [1])


def test_overload_pattern_is_judged_on_good_requests_and_recovery():
    """Issue 16's overload (the database's own CPU is the limit in the middle
    third; 50-ms acquire timeout, 3 retries): every contender is judged on good
    requests, connections opened and recovery; the supervised pool recovers
    within two periods, never grows while its guard holds, opens no more than
    twice its largest cap, and is not worse on good requests than static-16
    or grow-on-wait (within a point, the model's noise) with fewer
    connection-seconds than grow-on-wait."""
    recs = {c: simmode.run_one("overload", c, 1, 0.5)
            for c in ("static-16", "grow-on-wait", "supervisor-littles")}
    sup = recs["supervisor-littles"]["metrics"]
    assert recs["supervisor-littles"]["acceptance"]["recovers<=2 periods"] is True
    assert sup["grows_while_guard_tripped"] == 0
    assert sup["opened"] <= 2 * max(recs["supervisor-littles"]["series"]["pools"]["postgres"]["cap"])
    for other in ("static-16", "grow-on-wait"):
        m = recs[other]["metrics"]
        assert 0 < m["good_share"] < 1 and m["failed"] > 0  # it is an overload for everyone
        assert sup["good_share"] >= m["good_share"] - 0.01
    assert sup["conn_seconds"] < recs["grow-on-wait"]["metrics"]["conn_seconds"]
    assert stats.recovery_periods([0, 1, 2, 3], [10, 0, 5, 10], [10, 10, 10, 10], 1.0) == 2.0
    assert stats.recovery_periods([0, 1], [10, 0], [10, 10], 1.0) == float("inf")


def _real_record(pattern, contender, *, hold, lag, rate, busy, seconds=12, slo=0.5):
    """A real-mode run record with the fields the twin reads (constant windows)."""
    return {"mode": "real", "pattern": pattern, "contender": contender, "seed": 1,
            "series": {"t": [float(i) for i in range(1, seconds + 1)],
                       "pools": {"postgres": {"hold_ms": [hold] * seconds, "acquire_rate": [rate] * seconds,
                                              "size": [16] * seconds}},
                       "workers": {"lag_ms": [lag] * seconds, "busy": [[busy, busy]] * seconds}},
            "metrics": {"slo_windows": slo, "good_share": 0.99, "opened": 16.0}}


def test_the_twin_is_calibrated_to_the_real_runs_client():
    """The simulator's twin of real runs (riglib.twin): its database service
    time is the real holds less the loop lag, and its client model reproduces
    the loop lag the real workers measured; with the lag the twin's SLO
    windows fall for a pool that queues its callers (the lag delays a queued
    caller's wake-up; one that finds an idle connection never leaves its loop
    turn), and not for one that rarely queues anyone, as in the real runs
    (issue 16: static-16 met the SLO in every window there)."""
    from riglib import twin
    real = [_real_record("steady", "static-16", hold=9.0, lag=5.0, rate=90.0, busy=0.3)]
    cal = twin.calibrate(real)["steady"]
    assert cal["service_ms"] == pytest.approx(4.0)
    assert cal["cpu_ms"] == pytest.approx(0.6 * 1e3 / 90.0)
    twins = twin.run(real, seeds=2)
    assert {r["mode"] for r in twins} == {"twin"} and len(twins) == 2
    lags = [x for r in twins for x in r["series"]["lag_ms"]]
    assert sum(lags) / len(lags) == pytest.approx(5.0, rel=0.25)
    assert all(r["metrics"]["slo_windows"] == 1.0 for r in twins)  # 16 connections: nobody queues

    def small(lag, hold):
        return twin.run([_real_record("steady", "static-2", hold=hold, lag=lag, rate=90.0, busy=0.3)],
                        seeds=2)
    calm, lagged = small(0.0, 4.0), small(5.0, 9.0)
    assert min(r["metrics"]["slo_windows"] for r in calm) > max(r["metrics"]["slo_windows"] for r in lagged)
    table = twin.side_by_side(real, twins)
    assert "| static-16 |" in table and "lag 5.00 ms" in table


def test_the_twin_connects_as_long_as_the_real_runs_connects():
    """Issue 16, fifth pass: the twin's connects are the real runs' connects
    under load (per-window connect totals), not the idle loop's 8 ms; the
    first window (the pool's first connections, before the load) and an
    overload's windows are left out; records without the series keep the
    model's default."""
    from riglib import twin
    from ringleader.supervisor.sim import DbModel
    rec = _real_record("burst", "supervisor-littles", hold=2.0, lag=0.1, rate=90.0, busy=0.2)
    pg = rec["series"]["pools"]["postgres"]
    pg["opens"] = [4, 0, 1, 0, 2, 0, 0, 3, 0, 1, 0, 1]
    pg["connects_ms"] = [80.0, 0, 10.0, 0, 24.0, 0, 0, 45.0, 0, 13.0, 0, 14.0]
    med, sigma = twin.connects([rec])
    # the windows' means, once each: 10, 12, 15, 13, 14 ms
    assert med == pytest.approx(13.0) and 0.0 < sigma < 0.3
    cal = twin.calibrate([rec])["burst"]
    assert cal["connect"] == (med, sigma)
    db = twin.db_model("burst", 2.0, cal["connect"])
    assert (db.connect_ms, db.connect_jitter) == (med, sigma)
    assert "connect 13.0 ms" in twin.side_by_side([rec], twin.run([rec], seeds=1))
    old = _real_record("burst", "static-16", hold=2.0, lag=0.1, rate=90.0, busy=0.2)
    assert twin.connects([old]) is None and twin.calibrate([old])["burst"]["connect"] is None
    assert twin.db_model("burst", 2.0, None).connect_ms == DbModel.connect_ms
    # an overload's connects are its effect: left out (middle third and two periods after)
    ovl = _real_record("overload", "supervisor-littles", hold=4.0, lag=0.0, rate=600.0, busy=0.2)
    ovl["series"]["pools"]["postgres"].update(opens=[4] + [0] * 4 + [5] * 3 + [0] * 4,
                                              connects_ms=[40.0] + [0] * 4 + [500.0] * 3 + [0] * 4)
    assert twin.connects([ovl]) is None


def test_the_twin_compares_connection_seconds_per_second_of_the_run():
    """A real record drops a window now and then (the service's samples drift
    against the run's seconds); its conn-s is compared per second of the run,
    so static-16's 29 windows of 16 are its 480 conn-s, not 464."""
    from riglib import twin
    rec = _real_record("burst", "static-16", hold=2.0, lag=0.1, rate=90.0, busy=0.2, seconds=30)
    del rec["series"]["t"][13]
    rec["series"]["pools"]["postgres"]["size"].pop()
    assert twin._value(rec, "conn_seconds") == pytest.approx(480.0)
    # and the twin runs the run's 30 seconds, not its 29 windows (it held 464)
    tw = twin.run([rec], seeds=1)[0]
    assert len(tw["series"]["t"]) == 30 and twin._value(tw, "conn_seconds") == pytest.approx(480.0)


def test_the_twins_loop_lag_stays_flat_where_the_real_ones_did():
    """Issue 16, sixth pass: the real loops lagged ~0.08 ms from 25 to 220
    Postgres requests/s (busy 0.03 -> 0.12); the twin's client is fitted to
    the windows' busy against their rate (0.47 ms per request over a 0.017
    background) with the rest of the lag a floor, so its lag at the burst's
    rate stays near the measured one.  Fitted to the quiet windows alone (the
    whole busy share per request, a 2.7-ms turn), it rose ten-fold."""
    from riglib import twin
    rec = _real_record("burst", "static-16", hold=1.6, lag=0.08, rate=25.0, busy=0.0, seconds=30)
    rates = [220.0 if i % 20 >= 14 else 25.0 for i in range(30)]
    rec["series"]["pools"]["postgres"]["acquire_rate"] = rates
    rec["series"]["workers"]["busy"] = [[(0.017 + a * 0.00047) / 2] * 2 for a in rates]
    cal = twin.calibrate([rec])["burst"]
    assert cal["cpu_ms"] == pytest.approx(0.47, rel=0.01) and cal["background"] == pytest.approx(0.017, rel=0.01)
    assert cal["turn_ms"] == pytest.approx(0.47, rel=0.01) and 0.05 < cal["floor_ms"] < 0.08
    tw = twin.run([rec], seeds=1)[0]
    lags = [lg for lg, n in zip(tw["series"]["lag_ms"], tw["series"]["offered"]) if n > 100]
    assert lags and 0.08 <= sum(lags) / len(lags) < 0.2


def _overload_record(contender, size, served=220.0, seconds=30):
    """A real overload record: 600 acquires/s of 4.45 ms; in the middle third
    2000 attempts/s of which all but ``served`` time out, the holds Little's."""
    t = [float(i) for i in range(1, seconds + 1)]
    mid = [seconds / 3 < x <= 2 * seconds / 3 for x in t]
    pg = {"hold_ms": [size / served * 1e3 if m else 4.45 for m in mid],
          "acquire_rate": [2000.0 if m else 600.0 for m in mid],
          "timeouts": [2000.0 - served if m else 0.0 for m in mid], "size": [size] * seconds}
    return {"mode": "real", "pattern": "overload", "contender": contender, "seed": 1,
            "series": {"t": t, "pools": {"postgres": pg}, "workers": {}},
            "metrics": {"slo_windows": 1.0, "good_share": 0.75, "opened": float(size)}}


def test_the_twins_database_serves_under_the_burn_what_the_real_one_served():
    """Issue 16: under the overload's burn the real database served ~220
    queries/s with 5-7, 16 and 32 connections alike, where the twin's (a
    guessed capacity, 30% lost per 100% oversubscription) served ~100/s
    for every contender and its good share was 69-70% against the real
    74-79%.  The twin's capacity under the burn is now the calibrator's
    measured throughput, with no contention loss: a 16- and a 32-connection
    pool both get it back."""
    import statistics
    from riglib import twin
    real = [_overload_record("static-16", 16), _overload_record("grow-on-wait", 32)]
    assert twin.calibrate(real)["overload"]["served"] == pytest.approx(220.0)
    for r in twin.run(real, seeds=1):
        inside = [a for x, a in zip(r["series"]["t"], r["series"]["achieved"]) if 12 <= x <= 19]
        assert statistics.median(inside) == pytest.approx(220.0, rel=0.1), r["contender"]
    assert "the burn served 220 queries/s" in twin.side_by_side(real, twin.run(real[:1], seeds=1))


def test_the_twin_compares_moves_where_the_real_records_count_them():
    """Moves between workers are a figure of the twin since the real records
    count them (the pool's connections_moved per window); older records show
    none and the figure is left out of the count, not counted as a miss."""
    from riglib import twin
    rec = _real_record("burst", "supervisor-littles", hold=2.0, lag=0.1, rate=90.0, busy=0.2)
    assert twin._value(rec, "moved") is None
    tw = twin.run([rec], seeds=1)
    assert tw[0]["metrics"]["moved"] >= 0
    row = next(ln for ln in twin.side_by_side([rec], tw).splitlines() if ln.startswith("| supervisor"))
    assert row.count("|") == 2 + 2 * len(twin.METRICS) + 1 and "- | -" in row and row.endswith("/4 |")
    rec["series"]["pools"]["postgres"]["counters"] = {"connections_moved": [0, 3, 4] + [0] * 9}
    assert twin._value(rec, "moved") == 7.0
    row = next(ln for ln in twin.side_by_side([rec], tw).splitlines() if ln.startswith("| supervisor"))
    assert "| 7 [7-7] |" in row and row.endswith("/5 |")


def _slow(ms, opened=0, **kw):
    return dict({"t": 0.0, "ms": ms, "worker": 0, "cap": 4, "size": 4, "idle": 2, "in_use": 2,
                 "waiting": 0, "opened": opened, "burst": 0}, **kw)


def test_why_classifies_the_slow_acquires_of_missed_windows():
    """riglib.why reads the real records' slow acquires (issue 16): a window
    over the SLO is explained by its slow acquires, each put down to a connect
    (one was opened while it waited), a loop stall (the workers' worst lateness
    rose by the wait's excess), or queueing for a return."""
    from riglib import why
    rec = {"mode": "real", "pattern": "steady", "contender": "supervisor-littles", "seed": 1,
           "series": {"t": [1.0, 2.0, 3.0, 4.0],
                      "pools": {"postgres": {"wait_p99_ms": [2.0, 14.0, 30.0, 12.0], "cap": [4] * 4,
                                             "acquire_rate": [90.0] * 4},
                                "redis": {"wait_p99_ms": [0.1] * 4}},
                      "lag_max_ms": [1.0, 1.0, 30.0, 30.0],
                      "slow": [[], [_slow(14.0, opened=1), _slow(6.0)], [_slow(30.0)], [_slow(12.0)]]}}
    ms = why.misses(rec)
    assert [m["t"] for m in ms] == [2.0, 3.0, 4.0]  # the first window met the SLO
    assert [[x["cause"] for x in m["slow"]] for m in ms] == [["connect"], ["stall"], ["queue"]]
    text = why.report([rec])
    assert "3 of 4 windows over 10 ms" in text and "connect 1" in text and "queue 1" in text


def test_the_rig_judges_earlier_runs_together(tmp_path):
    """A campaign split into short locked runs is summed up with --from-runs:
    no runs, the real records of every file judged together (twin, summary)."""
    import riglib
    from riglib import realmode
    t0, n = 1000.0, 8
    for k, c in enumerate(("static-16", "supervisor-littles")):
        d = tmp_path / f"part{k}"
        d.mkdir()
        size = 16 if c == "static-16" else 6
        pool = {"cap": size, "size": size, "in_use": 1, "waiting": 0, "acquire_rate": 90.0, "hold_ms": 2.0,
                "wait_p99_ms": 0.5, "timeouts": 0, "opened": size}
        svc = {"decisions": [], "windows": [
            {"t": t0 + i, "pools": {"postgres": pool}, "slow": [], "lag_max_ms": {"0": 1.0},
             "workers": [{"worker": 0, "busy": 0.05, "batch": 1.0, "load": 0.0, "lag_ms": 0.1}]}
            for i in range(1, n + 1)]}
        gen = {"windows": [{"t": i, "arrivals": 200, "done": 200, "p99_ms": 4.0} for i in range(1, n + 1)]}
        rec = realmode.build_record("steady", c, 1, float(n), t0, svc, gen)
        (d / "runs.json").write_text(json.dumps([rec]))
    out = tmp_path / "all"
    assert riglib.main(["--from-runs", f"{tmp_path / 'part0'},{tmp_path / 'part1' / 'runs.json'}",
                        "--out", str(out)]) == 0
    recs = json.load(open(out / "runs.json"))
    assert sorted((r["mode"], r["contender"]) for r in recs if r["mode"] == "real") == \
        [("real", "static-16"), ("real", "supervisor-littles")]
    assert {r["mode"] for r in recs} == {"real", "twin"}
    assert "supervisor-littles" in open(out / "sim-vs-real.md").read()


def test_records_read_back_summarise_a_grow_that_never_came():
    """runs.json writes an infinite first-grow delay as "inf" (JSON has none):
    judging the records read back (``--from-runs``) failed on the string."""
    rec = simmode.run_one("burst", "supervisor-littles", 1, 0.5)
    back = json.loads(json.dumps(summary.clean(rec)))
    back["metrics"]["first_grow_periods"] = "inf"
    row = summary.summarise([back])["groups"][0]["rows"][0]
    assert row["metrics"]["first_grow_periods"]["median"] == float("inf")


def test_real_records_carry_connects_checks_and_counters_per_window():
    """The service reports the pool's totals so far (connects and their time,
    borrow-time health checks and theirs, the open/return counters) and the
    window's hold p99; the record holds them per window, so the twin can be calibrated on the
    connects made under the load (issue 16, fifth pass)."""
    from riglib import realmode
    t0, n = 1000.0, 4
    opened, connect_ms, checks = [4, 4, 6, 7], [40.0, 40.0, 64.0, 75.0], [0, 2, 2, 5]
    svc = {"decisions": [], "windows": [
        {"t": t0 + i + 1, "slow": [], "lag_max_ms": {"0": 1.0},
         "pools": {"postgres": {"cap": 6, "size": 6, "in_use": 1, "waiting": 0, "acquire_rate": 90.0,
                                "hold_ms": 2.0, "wait_p99_ms": 0.5, "timeouts": 0, "opened": opened[i],
                                "connect_ms": connect_ms[i], "checks": checks[i], "checks_ms": 1.5 * checks[i],
                                "counters": {"connections_moved": i, "connections_lost": 0},
                                "hold_p99_ms": 9.0 + i}},
         "workers": [{"worker": 0, "busy": 0.05, "batch": 1.0, "load": 0.0, "lag_ms": 0.1}]}
        for i in range(n)]}
    gen = {"windows": [{"t": i, "arrivals": 200, "done": 200, "p99_ms": 4.0} for i in range(1, n + 1)]}
    pg = realmode.build_record("burst", "supervisor-littles", 1, float(n), t0, svc, gen)["series"]["pools"]["postgres"]
    assert pg["opens"] == [4, 0, 2, 1] and pg["connects_ms"] == [40.0, 0.0, 24.0, 11.0]
    assert pg["checks"] == [0, 2, 0, 3] and pg["checks_ms"] == [0.0, 3.0, 0.0, 4.5]
    assert pg["counters"] == {"connections_lost": [0, 0, 0, 0], "connections_moved": [0, 1, 1, 1]}
    assert pg["hold_p99_ms"] == [9.0, 10.0, 11.0, 12.0]
    del svc["windows"][2]["pools"]["postgres"]["checks"]  # an older service: no per-window series
    pg = realmode.build_record("burst", "supervisor-littles", 1, float(n), t0, svc, gen)["series"]["pools"]["postgres"]
    assert "opens" not in pg and "checks" not in pg
