"""The simulator's twin of a real run: the same pattern, contenders and
seconds on the virtual clock, with the database and client models calibrated
from the real runs, side by side with what the real runs measured.

Why: the simulator is how the supervisor is tuned, so it has to predict the
real figures within their measured spread (issue 16).  The rig's own sim
patterns are a different workload (1500 acquires/s of 4 ms); the twin is the
real rig's workload:

* Postgres acquires per second = the load generator's request rate
  (:func:`riglib.loadgen.rate`, ``BASE_RATE``) x the share of Postgres
  endpoints in its mix (:func:`riglib.loadgen.mix`); the overload pattern's
  own load (600/s of ``pg_sleep(4 ms)``, +5 ms of database CPU on one core in
  its middle third, 50-ms acquire timeout, 3 retries); the retry storm's
  database hogs as a 3x slowdown in the middle third (100-ms acquire timeout,
  one retry): approximations, said so;
* the database's service time = the median hold time of the real static-16
  windows less the loop lag (one contender calibrates, the others are
  predicted), split into reads/writes and the report query's share of the
  Postgres acquires, ``REPORT_EXTRA_MS`` longer (measured), connects as
  long as the real runs' connects under load (:func:`connects`; records
  older than those series: the model's idle-loop 8 ms);
* the client (:class:`ringleader.supervisor.sim.ClientModel`): CPU per
  Postgres request from the workers' busy ratio, the loop turn that
  makes the model's mean loop lag at that utilisation the measured one, and
  the loop stalls the service's worst timer lateness showed (:func:`_stalls`).

* the demo service's two workers, each with its own share of the strict
  Postgres pool (``sim.simulate(workers=2)``).

What it leaves out: Redis, the network, the neighbours' load changing
during a run, and the pool's borrow-time health checks (``check_after``):
measured in the fifth pass at 0-5 a second of 0.2-5 ms each, never the
cause of a missed window.
"""
from __future__ import annotations

import collections
import math
import statistics

from ringleader.supervisor import sim

from . import loadgen, realmode, simmode
from .service import ACQUIRE_TIMEOUT, down_window

CALIBRATOR = "static-16"
METRICS = (("slo_windows", "SLO windows", "{:.0%}"), ("good_share", "good", "{:.1%}"),
           ("conn_seconds", "Postgres conn-s", "{:.0f}"), ("opened", "opened", "{:.0f}"),
           ("moved", "moved", "{:.0f}"))


# How much longer the report query holds its connection than a read: the demo
# service's SQL against the rig's PostgreSQL (pinned to CPU 0), psycopg,
# medians: report 9.48 ms (p10-p90 9.31-10.10, 55 runs), read 0.27 ms, write
# 0.43 ms (docs/design.md, issue 16 third pass).  Additive: the client's own
# work per query (~1 ms in the pool's hold times) is the same for both.
REPORT_EXTRA_MS = 9.2


def _pg_share(pattern: str, f: float) -> float:
    w = loadgen.mix(pattern, f)
    return sum(w[2:]) / sum(w)


def _report_share(pattern: str) -> float:
    """Of the Postgres acquires, the share that are reports (mid-run mix)."""
    if pattern == "overload":
        return 0.0  # its own load: pg_sleep only
    w = loadgen.mix(pattern, 0.5)
    return w[4] / sum(w[2:])


def db_model(pattern: str, mean_ms: float, connect: tuple[float, float] | None = None) -> sim.DbModel:
    """The database of a twin: the measured mean hold split into the fast
    queries and the slow share (the report), so that a caller queued behind a
    report waits as long as it did for real (issue 16's SLO misses); connects
    as long as the real runs' (``connect``: median ms, lognormal sigma; None:
    the model's default, measured on an idle loop)."""
    share = _report_share(pattern)
    fast = max(0.1, mean_ms - share * REPORT_EXTRA_MS)
    more = {} if connect is None else {"connect_ms": connect[0], "connect_jitter": connect[1]}
    return sim.DbModel(service_ms=fast, slow_share=share, slow_ms=fast + REPORT_EXTRA_MS, **more)


# Fewer windows with connects than this in the runs: keep the model's default connect.
MIN_CONNECTS = 5


def connects(records: list[dict]) -> tuple[float, float] | None:
    """(median ms, lognormal sigma) of a Postgres connect made under the load in
    the real runs ``records`` (every contender's and pattern's: a connect is
    the driver's and the machine's, not the pool policy's), from the per-window
    connect totals the records carry (``opens``, ``connects_ms``); None when
    they hold fewer than ``MIN_CONNECTS`` windows with connects or predate
    those series.

    Issue 16, fifth pass: the model's 8-ms connect (median of 40 on an idle
    loop) was shorter than the connects the burst runs made under their load
    (window means 4-22 ms, median 11.2), and a caller at an edge that waits
    for a connect waits all of it.  Left out: the first window (the pool's
    first connections, opened before the load, which the twin opens before
    its load too) and an overload's windows (the overload's effect, which the
    twin's database adds itself).  A window's connects give one mean, counted
    once: the windows with many opens are those where callers piled up behind
    a stall (the fifth pass's diurnal: 16 opens of 36 ms in one window), and
    counted per connect they made the median the stall's.  So the spread is a
    window-mean's, an underestimate of a single connect's when a window holds
    several.  Connects are longer the more open at once (the burst runs: ~8.5
    ms alone, 10-20 ms with 6-19 in a window); the twin draws them from one distribution."""
    samples = []
    for r in records:
        pg = r["series"]["pools"].get("postgres", {})
        opens, total = pg.get("opens"), pg.get("connects_ms")
        if not opens or not total:
            continue
        span = realmode.overload_span(r["pattern"], len(r["series"]["t"]))
        for t, n, ms in list(zip(r["series"]["t"], opens, total))[1:]:
            if n > 0 and ms > 0 and (span is None or not span[0] < t <= span[1] + 2.0):
                samples.append(ms / n)
    if len(samples) < MIN_CONNECTS:
        return None
    # the sigma from the quartiles: a stalled repetition's connects (86-161 ms
    # in the fifth pass's diurnal) are the stall model's, not the connect's
    q1, q2, q3 = statistics.quantiles([math.log(x) for x in samples], n=4)
    return math.exp(q2), (q3 - q1) / 1.349


def calibrate(records: list[dict]) -> dict:
    """Per pattern: service_ms, client cpu_ms per Postgres request and background
    share, from the real runs (the calibrator contender's, else all)."""
    out = {}
    connect = connects(records)
    for pattern in {r["pattern"] for r in records}:
        rs = [r for r in records if r["pattern"] == pattern]
        cal = [r for r in rs if r["contender"] == CALIBRATOR] or rs
        holds, lags, busy, rates = [], [], [], []
        for r in cal:
            pg = r["series"]["pools"].get("postgres", {})
            lag = r["series"].get("workers", {}).get("lag_ms") or [0.0] * len(pg.get("hold_ms", []))
            span = realmode.overload_span(pattern, len(r["series"]["t"]))
            for t, h, lg, a in zip(r["series"]["t"], pg.get("hold_ms", []), lag, pg.get("acquire_rate", [])):
                # the healthy database: an overload's holds are its effect, not the service time
                if h and a and (span is None or not span[0] < t <= span[1] + 2.0):
                    holds.append(max(0.5, h - lg))
                    lags.append(lg)
                    rates.append(a)
            for row in r["series"].get("workers", {}).get("busy", []):
                vals = [x for x in row if x == x]
                if vals:
                    busy.append(sum(vals))
        stall_rate, stall_ms = _stalls(rs)
        service = statistics.median(holds) if holds else 4.0
        rate = statistics.median(rates) if rates else 1.0
        lag = statistics.median(lags) if lags else 0.0
        cores = statistics.median(busy) if busy else 0.0
        cpu_ms = min(50.0, cores * 1e3 / rate) if rate and pattern != "overload" else 0.0
        # the loop turn that makes the M/M/1 lag at the measured utilisation the measured lag
        u = min(0.95, rate * cpu_ms / 1e3)
        turn_ms = lag * (1 - u) / u if u > 0 else 0.0
        out[pattern] = {"service_ms": service, "cpu_ms": cpu_ms, "turn_ms": turn_ms,
                        "lag_ms": lag, "rate": rate, "stall_rate": stall_rate, "stall_ms": stall_ms,
                        "connect": connect}
    return out


# A loop stall shorter than this costs no SLO window (a 10-ms SLO with waits of
# a hold time or two): below it, lateness is the loop turn's, modelled as lag.
STALL_MIN_MS = 5.0


def _stalls(records: list[dict]) -> tuple[float, float]:
    """(stalls per second, their median length in ms) on the service's loops in
    ``records`` (every contender's: a stall is the machine's, not the pool's).
    A stall shows as a rise of a window's worst timer lateness so far
    (``lag_max_ms``) past ``STALL_MIN_MS``; only stalls longer than every one
    before them show, so this undercounts a run's later, shorter ones."""
    rises, seconds = [], 0.0
    for r in records:
        lag = r["series"].get("lag_max_ms") or []
        seconds += len(lag)
        rises += [b for a, b in zip(lag, lag[1:]) if b - a > 1.0 and b >= STALL_MIN_MS]
    if not rises or not seconds:
        return 0.0, 0.0
    return len(rises) / seconds, statistics.median(rises)


def pattern(name: str, seconds: float) -> sim.Pattern:
    """The real rig's pattern ``name`` as a simulator pattern of ``seconds``."""
    third = (seconds / 3, 2 * seconds / 3)

    def mid(t):
        return third[0] <= t < third[1]
    if name == "overload":
        return sim.Pattern(name, seconds, lambda t: realmode.OVERLOAD_RATE,
                           slowdown=lambda t: 9.0 / 4.0 if mid(t) else 1.0,
                           capacity=lambda t: 9.0 / 5.0 if mid(t) else sim.DbModel().capacity,
                           acquire_timeout=0.05, retries=3, overload=third)
    base = realmode.BASE_RATE

    def rate(t):
        f = min(1.0, max(0.0, t / seconds))
        return loadgen.rate(name, f, base) * _pg_share(name, f)
    if name == "retry_storm":
        return sim.Pattern(name, seconds, rate, slowdown=lambda t: 3.0 if mid(t) else 1.0,
                           acquire_timeout=0.1, retries=1, overload=third)
    return sim.Pattern(name, seconds, rate, acquire_timeout=ACQUIRE_TIMEOUT)


def run(real: list[dict], seeds: int = 3) -> list[dict]:
    """Twin records (mode "twin") for every (pattern, contender) of ``real``."""
    cal = calibrate(real)
    out = []
    for pat_name, c in sorted({(r["pattern"], r["contender"]) for r in real if r["pattern"] != "hot_spot"}):
        seconds = max(len(r["series"]["t"]) for r in real if r["pattern"] == pat_name)
        k = cal[pat_name]
        db = db_model(pat_name, k["service_ms"], k["connect"])
        client = sim.ClientModel(cpu_ms=k["cpu_ms"], turn_ms=k["turn_ms"],
                                 stall_rate=k["stall_rate"], stall_ms=k["stall_ms"])
        pat = pattern(pat_name, float(seconds))
        # the demo service runs two workers (strict per-worker pools); the
        # overload runner drives its pool from one
        workers = 1 if pat_name == "overload" else realmode.SERVICE_WORKERS
        for seed in range(1, seeds + 1):
            rec = simmode.record(pat, c, seed, seconds, pat.overload[1] if pat.overload else None,
                                 mode="twin", db=db, client=client, workers=workers,
                                 down_window=down_window(seconds))
            rec["calibration"] = k
            out.append(rec)
    return out


def _value(r: dict, k: str) -> float | None:
    if k == "conn_seconds":
        # the Postgres pool's alone (a real record's conn-s also counts the Redis
        # pool), per second of the run: a real record drops a window now and then
        # (the service's 1-s samples drift against the run's seconds and two
        # round to the same one), so its sum of sizes is 29 windows' where the
        # twin's is 30 (static-16: 464 against 480, outside a spread of 464-464)
        sizes = r["series"]["pools"].get("postgres", {}).get("size", [])
        if not sizes:
            return 0.0
        seconds = max(len(sizes), round(max(r["series"]["t"])))
        return float(sum(sizes)) / len(sizes) * seconds
    if k == "moved" and r.get("mode") == "real":
        # the Postgres pool's moves between workers (records since the fifth pass)
        moved = r["series"]["pools"].get("postgres", {}).get("counters", {}).get("connections_moved")
        return float(sum(moved)) if moved is not None else None
    return r["metrics"].get(k)


def _med(recs: list[dict], k: str) -> tuple[float, float, float] | None:
    v = [x for x in (_value(r, k) for r in recs) if x is not None]
    return (statistics.median(v), min(v), max(v)) if v else None


def by_cause(recs: list[dict], key: str = "opens_by") -> dict[str, float]:
    """Per cause, the median over ``recs`` of the Postgres pool's opens (or
    closes) in the run: why the connections were opened (PoolStats.opens_by),
    real and twin alike.  Empty for records made before the causes were kept."""
    totals = []
    for r in recs:
        per = r["series"]["pools"].get("postgres", {}).get(key)
        if per is not None:
            totals.append(collections.Counter())
            for w in per:
                totals[-1].update(w)
    causes = sorted({k for t in totals for k in t})
    return {k: statistics.median(t.get(k, 0) for t in totals) for k in causes}


def _causes(by: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:g}" for k, v in by.items()) or "-"


def side_by_side(real: list[dict], twins: list[dict]) -> str:
    """A markdown table: per pattern and contender, real median [min-max] beside
    the twin's, and whether the twin's median lies inside the real spread."""
    cal = calibrate(real)
    lines = ["# Simulator vs real", "",
             "Real: the rig's real-mode runs (median [min-max] over repetitions).  Sim: the twin "
             "(scripts/riglib/twin.py), same pattern, contender and seconds, models calibrated "
             "from the real static-16 runs, 3 seeds.  'in' = the sim median lies inside the real "
             "min-max (or within 5% of its edge for shares).", ""]
    for p in sorted({r["pattern"] for r in real if r["pattern"] != "hot_spot"}):
        k = cal[p]
        lines.append(f"## {p}: service {k['service_ms']:.2f} ms, client {k['cpu_ms']:.2f} ms CPU per "
                     f"Postgres request, loop turn {k['turn_ms']:.2f} ms, lag {k['lag_ms']:.1f} ms, "
                     f"stalls {k['stall_rate'] * 60:.1f}/min of {k['stall_ms']:.0f} ms, connect "
                     + (f"{k['connect'][0]:.1f} ms (sigma {k['connect'][1]:.2f}, from the runs)" if k["connect"]
                        else f"{sim.DbModel.connect_ms:.1f} ms (the model's default)"))
        lines.append("")
        head = ["contender"] + [f"{label} real | sim" for _, label, _ in METRICS] + ["inside"]
        # each figure is two columns (real | sim)
        lines += ["| " + " | ".join(head) + " |", "|" + "---|" * (2 + 2 * len(METRICS))]
        for c in sorted({r["contender"] for r in real if r["pattern"] == p}):
            rr = [r for r in real if r["pattern"] == p and r["contender"] == c]
            tt = [r for r in twins if r["pattern"] == p and r["contender"] == c]
            cells, inside, compared = [c], 0, 0
            for key, _, fmt in METRICS:
                a, b = _med(rr, key), _med(tt, key)
                if a is None or b is None:
                    cells.append("- | -")
                    continue
                slack = 0.05 if key in ("slo_windows", "good_share") else 0.0
                ok = a[1] - slack - 1e-9 <= b[0] <= a[2] + slack + 1e-9
                inside += ok
                compared += 1
                cells.append(f"{fmt.format(a[0])} [{fmt.format(a[1])}-{fmt.format(a[2])}] | "
                             f"{fmt.format(b[0])}")
            cells.append(f"{inside}/{compared}")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
        for c in sorted({r["contender"] for r in real if r["pattern"] == p}):
            rr = [r for r in real if r["pattern"] == p and r["contender"] == c]
            tt = [r for r in twins if r["pattern"] == p and r["contender"] == c]
            opens_real = by_cause(rr)
            if opens_real:
                lines.append(f"* {c}: opens by cause (medians) real {_causes(opens_real)} | "
                             f"sim {_causes(by_cause(tt))}; closes real {_causes(by_cause(rr, 'closes_by'))} "
                             f"| sim {_causes(by_cause(tt, 'closes_by'))}")
        lines.append("")
    return "\n".join(lines)


def agreement(real: list[dict], twins: list[dict]) -> tuple[int, int]:
    """(figures whose twin median lies inside the real spread, figures)."""
    n = ok = 0
    for p, c in {(r["pattern"], r["contender"]) for r in real if r["pattern"] != "hot_spot"}:
        rr = [r for r in real if r["pattern"] == p and r["contender"] == c]
        tt = [r for r in twins if r["pattern"] == p and r["contender"] == c]
        for key, _, _ in METRICS:
            a, b = _med(rr, key), _med(tt, key)
            if a is None or b is None or (isinstance(b[0], float) and math.isnan(b[0])):
                continue
            slack = 0.05 if key in ("slo_windows", "good_share") else 0.0
            n += 1
            ok += a[1] - slack - 1e-9 <= b[0] <= a[2] + slack + 1e-9
    return ok, n

