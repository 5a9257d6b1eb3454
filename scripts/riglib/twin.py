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
  older than those series: the model's idle-loop 8 ms); under the
  overload's burn, the throughput the real database kept (:func:`overload_served`),
  with no contention loss (:func:`db_model`);
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
    the model's default, measured on an idle loop).

    No contention loss (``thrash`` 0): past its capacity the real database
    shares itself out without losing throughput.  Issue 16, sixth pass: in the
    overload's middle third (one core burning every query) the real pools got
    the same ~220 queries/s back (acquires less timeouts; = connections in use
    over hold, Little) with 5-7, 16 and 32 connections (supervisor, static-16,
    grow-on-wait), where the model's default contention (30% per 100%
    oversubscription) cut the twin's to ~100/s for every contender and its
    good share to 69-70% against the real 74-79%."""
    share = _report_share(pattern)
    fast = max(0.1, mean_ms - share * REPORT_EXTRA_MS)
    more = {} if connect is None else {"connect_ms": connect[0], "connect_jitter": connect[1]}
    return sim.DbModel(service_ms=fast, slow_share=share, slow_ms=fast + REPORT_EXTRA_MS, thrash=0.0, **more)


# Queries the database was guessed to serve at full speed at once under the
# burn, where the runs did not measure it: one core over 5 ms of CPU per 9-ms
# query (at best 180/s).
GUESSED_BURN_CAPACITY = 9.0 / 5.0

# The overload's query in its middle third as a multiple of the healthy one:
# pg_sleep(4 ms) plus ~5 ms of database CPU (realmode.OVERLOAD_BURN_MS) against
# ~4 ms alone.
OVERLOAD_SLOWDOWN = 9.0 / 4.0


def overload_served(records: list[dict]) -> float | None:
    """Queries per second the real database served in the overload's middle
    third (``records``: the calibrator's overload runs): per window, the
    acquires less the timeouts (each other acquire ran one query), the median
    over the windows wholly inside it.  None without the series."""
    served = []
    for r in records:
        pg = r["series"]["pools"].get("postgres", {})
        span = realmode.overload_span("overload", len(r["series"]["t"]))
        for t, a, to in zip(r["series"]["t"], pg.get("acquire_rate", []), pg.get("timeouts", [])):
            # the window ending at t holds the second before it: wholly inside
            if a is not None and to is not None and span[0] + 1.0 <= t <= span[1]:
                served.append(a - to)
    return statistics.median(served) if served else None


def overload_capacity(served: float | None, service_ms: float) -> float:
    """Queries the database serves at full speed at once under the overload's
    burn (a query's healthy mean demand ``service_ms`` x OVERLOAD_SLOWDOWN), so
    that it serves ``served`` per second when saturated: the real
    database's throughput, measured (:func:`overload_served`), not guessed.
    Issue 16: the guess (one core over 5 ms of CPU per 9-ms query: 1.8 at
    once, 180/s at best) was below the real ~220/s.  None: the guess."""
    if not served:
        return GUESSED_BURN_CAPACITY
    return served * service_ms * OVERLOAD_SLOWDOWN / 1e3


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
    """Per pattern: service_ms, the client's CPU per Postgres request, its
    background share, loop turn and lag floor (:func:`_client`), from the real
    runs (the calibrator contender's, else all)."""
    out = {}
    connect = connects(records)
    for pattern in {r["pattern"] for r in records}:
        rs = [r for r in records if r["pattern"] == pattern]
        cal = [r for r in rs if r["contender"] == CALIBRATOR] or rs
        holds, lags, rates = [], [], []
        pairs = []  # per window: (Postgres acquires/s, the workers' busy share summed)
        for r in cal:
            pg = r["series"]["pools"].get("postgres", {})
            lag = r["series"].get("workers", {}).get("lag_ms") or [0.0] * len(pg.get("hold_ms", []))
            busy = r["series"].get("workers", {}).get("busy") or [[]] * len(pg.get("hold_ms", []))
            span = realmode.overload_span(pattern, len(r["series"]["t"]))
            for t, h, lg, a, row in zip(r["series"]["t"], pg.get("hold_ms", []), lag,
                                        pg.get("acquire_rate", []), busy):
                # the healthy database: an overload's holds are its effect, not the service time
                if h and a and (span is None or not span[0] < t <= span[1] + 2.0):
                    holds.append(max(0.5, h - lg))
                    lags.append(lg)
                    rates.append(a)
                    vals = [x for x in row if x == x]
                    if vals:
                        pairs.append((a, sum(vals)))
        stall_rate, stall_ms = _stalls(rs)
        service = statistics.median(holds) if holds else 4.0
        rate = statistics.median(rates) if rates else 1.0
        lag = statistics.median(lags) if lags else 0.0
        client = _client(pairs, rate, lag) if pattern != "overload" else \
            {"cpu_ms": 0.0, "background": 0.0, "turn_ms": 0.0, "floor_ms": 0.0}
        out[pattern] = {"service_ms": service, **client,
                        "lag_ms": lag, "rate": rate, "stall_rate": stall_rate, "stall_ms": stall_ms,
                        "connect": connect,
                        "served": overload_served(cal) if pattern == "overload" else None}
    return out


# The Postgres rates of a pattern's windows must span this ratio (90th over
# 10th percentile) for the CPU per request to be fitted from them.
FIT_SPAN = 2.0


def _client(pairs: list[tuple[float, float]], rate: float, lag: float) -> dict:
    """The client model's CPU from the windows' (Postgres acquires/s, busy)
    ``pairs``: busy = background + rate x cpu_ms, least squares, where the
    rates span ``FIT_SPAN``; else all of the median busy per request at the
    median ``rate``.  The loop turn is one request's CPU and the rest of the
    measured median ``lag`` the loop's wake-up floor, unless such turns alone
    lag more than measured (then the turn that makes the M/M/1 lag the
    measured one, no floor).  Issue 16, sixth pass: with the whole busy share
    per request and the turn fitted to the quiet windows (the burst's: 0.86 ms
    of CPU, a 2.4-ms turn) the twin's lag rose from 0.07 to ~0.55 ms at the
    burst's 220/s, where the real loops' stayed at 0.07 (busy 0.03 -> 0.12:
    0.39 ms per request over a 0.014 background)."""
    cpu_ms, background = 0.0, 0.0
    xs = sorted(a for a, _ in pairs)
    if len(xs) >= 10 and xs[len(xs) // 10] > 0 and xs[(9 * len(xs)) // 10] / xs[len(xs) // 10] >= FIT_SPAN:
        mx = statistics.fmean(a for a, _ in pairs)
        my = statistics.fmean(b for _, b in pairs)
        sxx = sum((a - mx) ** 2 for a, _ in pairs)
        slope = sum((a - mx) * (b - my) for a, b in pairs) / sxx
        if slope > 0:
            cpu_ms, background = slope * 1e3, max(0.0, my - slope * mx)
    if not cpu_ms and pairs and rate:
        cpu_ms = min(50.0, statistics.median(b for _, b in pairs) * 1e3 / rate)
    u = min(0.95, rate * cpu_ms / 1e3 + background)
    queueing = cpu_ms * u / (1 - u)
    if u <= 0:
        return {"cpu_ms": cpu_ms, "background": background, "turn_ms": 0.0, "floor_ms": lag}
    if queueing <= lag:
        return {"cpu_ms": cpu_ms, "background": background, "turn_ms": cpu_ms, "floor_ms": lag - queueing}
    # the loop turn that makes the M/M/1 lag at the measured utilisation the measured lag
    return {"cpu_ms": cpu_ms, "background": background, "turn_ms": lag * (1 - u) / u, "floor_ms": 0.0}


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


def pattern(name: str, seconds: float, burn_capacity: float = GUESSED_BURN_CAPACITY) -> sim.Pattern:
    """The real rig's pattern ``name`` as a simulator pattern of ``seconds``
    (``burn_capacity``: the overload's, :func:`overload_capacity`)."""
    third = (seconds / 3, 2 * seconds / 3)

    def mid(t):
        return third[0] <= t < third[1]
    if name == "overload":
        return sim.Pattern(name, seconds, lambda t: realmode.OVERLOAD_RATE,
                           slowdown=lambda t: OVERLOAD_SLOWDOWN if mid(t) else 1.0,
                           capacity=lambda t: burn_capacity if mid(t) else sim.DbModel().capacity,
                           acquire_timeout=0.05, retries=3, overload=third)
    base = realmode.BASE_RATE

    def rate(t):
        f = min(1.0, max(0.0, t / seconds))
        return loadgen.rate(name, f, base) * _pg_share(name, f)
    if name == "retry_storm":
        return sim.Pattern(name, seconds, rate, slowdown=lambda t: 3.0 if mid(t) else 1.0,
                           acquire_timeout=0.1, retries=1, overload=third)
    return sim.Pattern(name, seconds, rate, acquire_timeout=ACQUIRE_TIMEOUT)


def _seconds(r: dict) -> int:
    """The seconds a run record covers: its windows, or the time of its last
    one when a window was dropped (see :func:`_value`).  Issue 16, sixth
    pass: the twin ran as many seconds as the real records had windows, 29
    where every burst and retry-storm run had dropped one of 30, so its
    static-16 held 464 conn-s against the real 480."""
    return max(len(r["series"]["t"]), round(max(r["series"]["t"], default=0)))


def run(real: list[dict], seeds: int = 3) -> list[dict]:
    """Twin records (mode "twin") for every (pattern, contender) of ``real``."""
    cal = calibrate(real)
    out = []
    for pat_name, c in sorted({(r["pattern"], r["contender"]) for r in real if r["pattern"] != "hot_spot"}):
        seconds = max(_seconds(r) for r in real if r["pattern"] == pat_name)
        k = cal[pat_name]
        db = db_model(pat_name, k["service_ms"], k["connect"])
        client = sim.ClientModel(cpu_ms=k["cpu_ms"], turn_ms=k["turn_ms"], background=k["background"],
                                 floor_ms=k["floor_ms"], stall_rate=k["stall_rate"], stall_ms=k["stall_ms"])
        # the mean query's demand at full speed (the service time's lognormal jitter has mean exp(s^2/2))
        pat = pattern(pat_name, float(seconds),
                      overload_capacity(k.get("served"), db.mean_ms * math.exp(db.jitter ** 2 / 2)))
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
        return float(sum(sizes)) / len(sizes) * _seconds(r)
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
                     f"Postgres request over {k['background']:.3f} of the core, loop turn {k['turn_ms']:.2f} ms, "
                     f"lag {k['lag_ms']:.2f} ms (floor {k['floor_ms']:.2f}), "
                     f"stalls {k['stall_rate'] * 60:.1f}/min of {k['stall_ms']:.0f} ms, connect "
                     + (f"{k['connect'][0]:.1f} ms (sigma {k['connect'][1]:.2f}, from the runs)" if k["connect"]
                        else f"{sim.DbModel.connect_ms:.1f} ms (the model's default)")
                     + (f", the burn served {k['served']:.0f} queries/s (from the runs)" if k.get("served") else ""))
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

