"""Simulation mode: the rig's patterns and contenders on the virtual clock of
:mod:`ringleader.supervisor.sim`, turned into the rig's run records.

One run = one (pattern, contender, seed) through ``sim.simulate`` (or, for the
hot spot, ``simhot.simulate_hot_spot``), deterministic per seed.  Runs are spread
over worker processes; the records are plain dicts (JSON-ready) holding the
per-window series the plots need and the metrics the summary needs.

What the model covers and what it does not is said in ``sim``'s docstring:
one Postgres-like pool in front of a database of finite capacity (20 queries
at full speed, processor sharing and contention beyond), lazy connects, acquire
timeouts and retries.  The worker-count mechanism is not modelled here (it is
exercised only in real mode), and Redis is not modelled (its hold times are
sub-millisecond: the pool that needs sizing is the database's).
"""
from __future__ import annotations

import concurrent.futures
import math
import multiprocessing
import statistics

from ringleader.supervisor import Rebalance
from ringleader.supervisor import sim, simhot

from . import floor, stats

# small / medium / large static sizes, as in pool-anchors.md (16 and 32 there)
STATIC_SIZES = (4, 16, 32)
CONTROLLERS = ("littles", "threshold", "ewma", "pid")
SIM_PATTERNS = ("steady", "diurnal", "burst", "drift", "retry_storm", "overload", "hot_spot")


def contender_names() -> list[str]:
    names = [f"static-{n}" for n in STATIC_SIZES] + ["grow-on-wait"]
    names += [f"supervisor-{c}" for c in CONTROLLERS]
    names += ["supervisor-littles-noguard"]
    return names


HOT_SPOT_CONTENDERS = ("rebalance-off", "rebalance-on")


def make_contender(name: str, down_window: float | None = None) -> sim.Contender:
    """``down_window``: the supervisor's, when the run sets it (the twin of a real run)."""
    if name.startswith("static-"):
        return sim.Static(int(name.split("-", 1)[1]))
    if name == "grow-on-wait":
        return sim.GrowOnWait(2, 32, max_idle=10.0)
    if name.startswith("supervisor-"):
        rest = name[len("supervisor-"):]
        guard = not rest.endswith("-noguard")
        ctl = rest.removesuffix("-noguard")
        if ctl not in CONTROLLERS:
            raise ValueError(f"unknown controller {ctl!r} in contender {name!r}")
        return sim.Supervised(ctl, guard=guard, down_window=down_window)
    raise ValueError(f"unknown contender {name!r}; known: {', '.join(contender_names())}")


def pattern_period(name: str, scale: float) -> float:
    """The pattern's own period (for 'reversals per period'); the whole run when aperiodic."""
    return {"diurnal": 30.0 * scale, "burst": 20.0 * scale}.get(name, 60.0 * scale)


def run_one(pattern: str, contender: str, seed: int, scale: float) -> dict:
    if pattern == "hot_spot":
        return _hot_spot(contender, seed, scale)
    pats = sim.patterns(scale)
    if pattern not in pats:
        raise ValueError(f"unknown pattern {pattern!r}; known: {', '.join(SIM_PATTERNS)}")
    return record(pats[pattern], contender, seed, pattern_period(pattern, scale),
                  40.0 * scale if pattern == "overload" else None)


def record(pat: sim.Pattern, contender: str, seed: int, period: float, overload_end: float | None,
           mode: str = "sim", down_window: float | None = None, **simulate_kw) -> dict:
    """One simulated run of ``pat`` as a rig run record (``simulate_kw`` go to
    :func:`sim.simulate`: the database and client models)."""
    pattern = pat.name
    c = make_contender(contender, down_window)
    r = sim.simulate(pat, c, seed=seed, **simulate_kw)
    s = r.summary()
    w = r.windows
    ts = [round(x.t, 3) for x in w]
    caps = [x.cap for x in w]
    adjustments, reversals, changes = stats.cap_changes(ts, caps)
    # a change seen in window i was decided at the end of window i-1
    changes = [(ts[max(0, ts.index(t) - 1)], o, n) for t, o, n in changes]
    n_periods = max(1.0, pat.duration / period)
    m = {
        "slo_windows": s["slo_windows"],
        "acquire_wait_p99_ms": s["acquire_wait_p99_ms"],
        "request_p99_ms": s["request_p99_ms"],
        "throughput": s["throughput"],
        "failed": s["failed"],
        "good_share": s["good_share"],
        "opened": float(s["opened"]),
        "moved": float(s["moved"]),
        "max_cap": float(s["max_cap"]),
        "conn_seconds": s["conn_seconds"],
        "conn_vs_oracle": s["conn_vs_oracle"],
        "adjustments": adjustments,
        "reversals": reversals,
        "reversals_per_period": reversals / n_periods,
    }
    if pat.edges:
        needed = sim.erlang_c_servers(pat.rate(pat.edges[0] + 0.5), sim.DbModel().service_ms / 1e3, 0.01)

        def cap_at(e):
            return next((x.cap for x in w if x.t > e), caps[-1])
        m["first_grow_periods"] = stats.first_grow_periods(list(pat.edges), changes, cap_at, needed, 1.0)
    if overload_end is not None:
        m["recovery_periods"] = stats.recovery_periods(
            [x.t - 1.0 for x in w], [x.good for x in w], [x.arrivals for x in w], overload_end)
    if pattern in ("retry_storm", "overload") and contender.startswith("supervisor-"):
        m["grows_while_guard_tripped"] = s["grows_while_guard_tripped"]
        m["guard_periods"] = sum(1 for x in w if x.guard)
    # the least the contender may hold: a strict pool (workers > 1) one per worker
    serving = [simulate_kw.get("workers", 1)] * len(w)
    rec = {
        "mode": mode, "pattern": pattern, "contender": contender, "seed": seed,
        "period": period, "edges": list(pat.edges), "rails": _rails(c),
        "series": {
            # offered = the window's arrivals, on the same 1-s windows as completed
            "t": ts, "offered": [x.arrivals for x in w], "achieved": [x.completed for x in w],
            "pools": {"postgres": {"cap": caps, "size": [x.size for x in w],
                                   "wait_p99_ms": [x.wait_p99_ms for x in w],
                                   "oracle": [x.oracle for x in w], "workers": serving,
                                   "opens_by": [x.opens_by for x in w],
                                   "closes_by": [x.closes_by for x in w]}},
            "request_p99_ms": [x.latency_p99_ms for x in w],
            "guard": [x.guard for x in w],
            "failed": [x.failed for x in w],
            "lag_ms": [x.lag_ms for x in w],
        },
        "decisions": [{"t": d.t, "kind": d.kind, "target": d.target, "old": d.old, "new": d.new,
                       "reason": d.reason[:240]} for d in r.decisions],
        "metrics": m,
        "acceptance": stats.acceptance(m),
    }
    m["conn_s_floor"] = floor.conn_s_floor(rec)
    return rec


def _rails(c: sim.Contender) -> dict:
    """The sizes a simulated contender may give its pool (as the real ones':
    :func:`riglib.service.rails`)."""
    if isinstance(c, sim.Static):
        return {"min": c.n, "max": c.n}
    if isinstance(c, sim.GrowOnWait):
        return {"min": c.lo, "max": c.hi}
    return {"min": c.cfg.min, "max": c.cfg.max}


def _hot_spot(contender: str, seed: int, scale: float) -> dict:
    if contender not in HOT_SPOT_CONTENDERS:
        raise ValueError(f"hot_spot contenders are {HOT_SPOT_CONTENDERS}, got {contender!r}")
    cfg = Rebalance(enabled=contender == "rebalance-on")
    duration = 120.0 * scale
    r = simhot.simulate_hot_spot(workers=4, conns=64, hot=8, seed=seed, duration=duration, cfg=cfg)
    hist = r["max_over_mean"]
    tail = hist[-max(1, len(hist) // 4):]
    # Per-tick loads carry +-10% noise by construction: judge the settled level
    # (median of the last quarter), not one noisy tick.
    m = {"hot_max_over_mean": statistics.median(tail), "hot_start": hist[0],
         "migrations": len(r["moves"]), "ping_pong": r["ping_pong"],
         "time_to_balance_s": next((float(i) for i, v in enumerate(hist)
                                    if all(x <= stats.HOT_SPOT_RATIO * 1.1 for x in hist[i:])), math.inf)}
    return {
        "mode": "sim", "pattern": "hot_spot", "contender": contender, "seed": seed,
        "period": duration, "edges": [],
        "series": {"t": list(range(len(hist))), "max_over_mean": hist, "worker_load": r["loads"]},
        "decisions": [{"t": t, "kind": "migrate", "target": str(c), "src": s, "dst": d}
                      for t, c, s, d in r["moves"]],
        "metrics": m,
        "acceptance": stats.acceptance(m),
    }


def plan(patterns: list[str], contenders: list[str] | None, seeds: list[int]) -> list[tuple[str, str, int]]:
    jobs = []
    for p in patterns:
        if p not in SIM_PATTERNS:
            raise ValueError(f"unknown pattern {p!r}; known: {', '.join(SIM_PATTERNS)}")
        names = list(HOT_SPOT_CONTENDERS) if p == "hot_spot" else (contenders or contender_names())
        if contenders is None and p != "retry_storm":
            # without errors or slow holds the guard never trips, so the no-guard
            # variant is the guarded run again: run it only where it differs
            names = [c for c in names if not c.endswith("-noguard")]
        for c in names:
            if p != "hot_spot":
                make_contender(c)   # fail on a bad name before any work starts
            for s in seeds:
                jobs.append((p, c, s))
    return jobs


def run_all(jobs, scale: float, procs: int, on_done=None) -> list[dict]:
    """Run the jobs on ``procs`` processes; results come back in job order."""
    out: list[dict | None] = [None] * len(jobs)
    if procs <= 1:
        for i, j in enumerate(jobs):
            out[i] = run_one(*j, scale)
            if on_done:
                on_done(out[i])
        return out
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(procs, mp_context=ctx) as ex:
        futs = {ex.submit(run_one, *j, scale): i for i, j in enumerate(jobs)}
        for f in concurrent.futures.as_completed(futs):
            out[futs[f]] = f.result()
            if on_done:
                on_done(out[futs[f]])
    return out
