"""Real mode: PostgreSQL + Redis (started here unless DSNs are given), the demo
service on a ringleader runtime, and the open-loop load generator, one run per
(pattern, contender, repeat); the telemetry of both sides becomes a run record
like simulation mode's.

Placement on the 2-core box: the database servers on CPU 0, the service and the
load generator on CPU 1 (``taskset``; skipped with fewer cores), so the
database has a finite capacity the retry storm can exhaust.  The retry storm
slows the database down by running CPU-heavy queries on it (the backends share
its core with the service's queries) for the middle third of the run, while
the clients time out after 250 ms and retry.

Cleanup: servers, child processes and temp dirs are released in ``finally``;
SIGTERM is turned into KeyboardInterrupt so it takes the same path as Ctrl-C.

Not here: statistics (:mod:`.stats`), summary, plots.
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time

from ringleader.drivers.poolstats import percentile
from ringleader.supervisor.sim import erlang_c_servers

from . import floor, servers, stats
from .service import pool_sizing, rails

PATTERNS = ("steady", "diurnal", "burst", "drift", "retry_storm", "hot_spot", "overload")
SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SERVICE_CORE, CLIENT_CORE = 1, 1
BASE_RATE = 200.0
SERVICE_WORKERS = 2  # the demo service's workers (--workers), as the twin models them
WARMUP = 2


class RigError(RuntimeError):
    pass


def _csv(s):
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def _sigterm(*_):
    raise KeyboardInterrupt


@contextlib.contextmanager
def database(args, console):
    """(pg_dsn, redis_url), started here unless given; always cleaned up."""
    started = []
    old = signal.signal(signal.SIGTERM, _sigterm)
    try:
        def use(given, check, make, attr):
            if given:
                check(given)
                return given
            srv = make()
            started.append(srv)
            return getattr(srv.start(), attr)
        try:
            dsn = use(args.pg_dsn, servers.check_pg_dsn, servers.Postgres, "dsn")
            url = use(args.redis_url, servers.check_redis_url, servers.Redis, "url")
        except servers.ServerError as exc:
            raise RigError(str(exc)) from None
        console.print(f"[bold]real mode[/]: PostgreSQL {dsn} and Redis {url}"
                      f"{' (started here, pinned to CPU 0)' if started else ''}; service and load "
                      f"generator on CPU {SERVICE_CORE}")
        yield dsn, url
    finally:
        for s in reversed(started):
            s.stop()
        signal.signal(signal.SIGTERM, old)


def run(args, prof, console) -> list[dict]:
    patterns = _csv(args.real_patterns) or prof["real_patterns"]
    contenders = _csv(args.real_contenders) or prof["real_contenders"]
    for p in patterns:
        if p not in PATTERNS:
            raise RigError(f"unknown real pattern {p!r}; known: {', '.join(PATTERNS)}")
    for c in contenders:
        try:
            pool_sizing(c)
        except ValueError as exc:
            raise RigError(str(exc)) from None
    seconds = args.real_seconds or prof["real_seconds"]
    repeats = args.real_repeats or prof["real_repeats"]
    # the short profile trims the matrix per pattern (the static sizes matter for
    # the burst; the storm and the hot spot compare off against on)
    per = {} if _csv(args.real_contenders) else prof.get("real_per_pattern", {})
    jobs = [(p, c, r) for r in range(1, repeats + 1) for p in patterns for c in per.get(p, contenders)]
    from . import _progress
    recs = []
    with database(args, console) as (dsn, url), _progress(console) as prog:
        task = prog.add_task("real", total=len(jobs))
        for p, c, r in jobs:
            prog.update(task, description=f"real {p} {c} #{r} ({seconds:.0f} s)")
            recs.append(run_one(p, c, r, seconds, dsn, url, args.workers))
            prog.update(task, advance=1)
    return recs


def _spawn(module: str, cfg: dict, core: int, tmp: str) -> subprocess.Popen:
    path = os.path.join(tmp, f"{module}.json")
    with open(path, "w") as f:
        json.dump(cfg, f)
    env = dict(os.environ, PYTHONPATH=SCRIPTS)
    return subprocess.Popen([*servers.taskset(core), sys.executable, "-m", f"riglib.{module}", path],
                            env=env, stdout=subprocess.DEVNULL, stderr=open(path + ".err", "w"))


def _stop(proc: subprocess.Popen | None, sig=signal.SIGTERM, wait: float = 15.0) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(wait)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def _hog(dsn: str, until: float, stop: threading.Event) -> None:
    """CPU-heavy queries on the database's core: the database slows down."""
    import psycopg
    with psycopg.connect(dsn, autocommit=True) as c:
        while time.time() < until and not stop.is_set():
            c.execute("SELECT count(*) FROM generate_series(1, 1500000)")


# The overload pattern's real load: 600/s with 5 ms of database CPU per query
# is the 3x overload of one database core (1500/s x 2 ms) at 40% of the
# client work: at 1500/s the one-core client process itself ran out of CPU
# on the shared machine (load average ~10), and then it measured the client.
OVERLOAD_RATE, OVERLOAD_BURN_MS = 600.0, 5.0


def run_overload(contender, rep, seconds, dsn) -> dict:
    """The overload pattern (:mod:`.overload`): load and pool in one process on
    the service core, the database's own CPU as the limit."""
    tmp = tempfile.mkdtemp(prefix="rl-rig-run-")
    proc = None
    try:
        cfg = {"pg_dsn": dsn, "contender": contender, "duration": seconds, "rate": OVERLOAD_RATE,
               "burn_ms": OVERLOAD_BURN_MS,
               "acquire_timeout": 0.05, "retries": 3, "deadline": 0.2, "seed": rep,
               "out": os.path.join(tmp, "service-out.json"), "gen_out": os.path.join(tmp, "gen-out.json")}
        proc = _spawn("overload", cfg, SERVICE_CORE, tmp)
        proc.wait(seconds + 120)
        if proc.returncode != 0 or not os.path.exists(cfg["gen_out"]):
            raise RigError("the overload run failed:\n" +
                           open(os.path.join(tmp, "overload.json.err")).read()[-2000:])
        gen = json.load(open(cfg["gen_out"]))
        return build_record("overload", contender, rep, seconds, gen["start"], json.load(open(cfg["out"])), gen)
    finally:
        _stop(proc, signal.SIGKILL)
        shutil.rmtree(tmp, ignore_errors=True)


def run_one(pattern, contender, rep, seconds, dsn, url, workers, debug_socket=None, keep=None) -> dict:
    if pattern == "overload":
        return run_overload(contender, rep, seconds, dsn)
    tmp = tempfile.mkdtemp(prefix="rl-rig-run-")
    svc = gen = None
    stop = threading.Event()
    hogs = []
    try:
        scfg = {"pg_dsn": dsn, "redis_url": url, "contender": contender, "workers": workers,
                "seconds": seconds, "duration": seconds + 30, "rebalance": pattern == "hot_spot", "port_file": os.path.join(tmp, "port"),
                "out": os.path.join(tmp, "service-out.json"), "debug_socket": debug_socket}
        svc = _spawn("service", scfg, SERVICE_CORE, tmp)
        deadline = time.time() + 30
        while not os.path.exists(scfg["port_file"]):
            if svc.poll() is not None or time.time() > deadline:
                err = open(os.path.join(tmp, "service.json.err")).read()[-2000:]
                raise RigError(f"the demo service did not start ({contender}):\n{err}")
            time.sleep(0.05)
        port = int(open(scfg["port_file"]).read())
        t0 = time.time() + 0.5
        gcfg = {"port": port, "pattern": pattern, "duration": seconds, "rate": BASE_RATE, "seed": rep,
                "t0": t0, "warmup": 3.0, "conns": 48, "heavy": 4 if pattern == "hot_spot" else 0,
                "out": os.path.join(tmp, "loadgen-out.json")}
        gen = _spawn("loadgen", gcfg, CLIENT_CORE, tmp)
        if pattern == "retry_storm":
            a, b = t0 + 3.0 + seconds / 3, t0 + 3.0 + 2 * seconds / 3
            for _ in range(2):
                th = threading.Timer(a - time.time(), _hog, (dsn, b, stop))
                th.start()
                hogs.append(th)
        if keep is not None:
            keep(svc, gen, t0)
        gen.wait(seconds + 60)
        if gen.returncode != 0:
            raise RigError("the load generator failed:\n" +
                           open(os.path.join(tmp, "loadgen.json.err")).read()[-2000:])
        _stop(svc)
        if not os.path.exists(scfg["out"]):
            raise RigError("the demo service wrote no telemetry:\n" +
                           open(os.path.join(tmp, "service.json.err")).read()[-2000:])
        res = json.load(open(gcfg["out"]))
        return build_record(pattern, contender, rep, seconds, res["start"], json.load(open(scfg["out"])),
                            res)
    finally:
        stop.set()
        for th in hogs:
            th.cancel()
            th.join(30)
        _stop(gen, signal.SIGKILL)
        _stop(svc)
        shutil.rmtree(tmp, ignore_errors=True)


def overload_span(pattern: str, seconds: float) -> tuple[float, float] | None:
    """(start, end) in run seconds of the overload a pattern inflicts (its middle third)."""
    return (seconds / 3, 2 * seconds / 3) if pattern in ("retry_storm", "overload") else None


def _p(values, q):
    return percentile(values, q) or 0.0


def build_record(pattern, contender, rep, seconds, t0, svc: dict, gen: dict) -> dict:
    gw = {w["t"]: w for w in gen["windows"]}
    sw = {}
    for w in svc["windows"]:
        sw.setdefault(int(round(w["t"] - t0)), w)
    idx = [i for i in range(1, int(seconds) + 1) if i in sw]
    nworkers = max((len(sw[i]["workers"]) for i in idx), default=0)
    names = sorted({n for i in idx for n in sw[i]["pools"]})
    pools = {n: {"cap": [], "size": [], "wait_p99_ms": [], "oracle": [], "hold_ms": [], "acquire_rate": [],
                 "timeouts": [], "opens_by": [], "closes_by": []} for n in names}
    # The service records its pools' totals so far; the record keeps each
    # window's rise (per pool and group of totals: the last window's values).
    last: dict[tuple[str, str], dict] = {}

    def rise(n: str, group: str, now: dict) -> dict:
        was, last[(n, group)] = last.get((n, group), {}), now
        return {k: v - was.get(k, 0) for k, v in now.items()}

    # per window: connects and borrow-time health checks, with their time
    # (deltas of the pool's totals; absent from records made before they were)
    totals = {"opened": "opens", "connect_ms": "connects_ms", "checks": "checks", "checks_ms": "checks_ms"}
    has_totals = bool(idx) and all(k in sw[i]["pools"].get(n, {}) for i in idx for n in names for k in totals)
    if has_totals:
        for n in names:
            pools[n].update({v: [] for v in totals.values()})
    # the workers whose callers used each pool, per window (records since the
    # floor: a strict pool needs a connection on each, riglib.floor)
    if idx and all("workers" in sw[i]["pools"].get(n, {}) for i in idx for n in names):
        for n in names:
            pools[n]["workers"] = [sw[i]["pools"][n]["workers"] for i in idx]
    # the pool's counters per window (deltas), where the service recorded them
    counted = {n: sorted(set.intersection(*(set(sw[i]["pools"].get(n, {}).get("counters", {})) for i in idx)))
               for n in names} if idx else {}
    for n in names:
        if counted.get(n):
            pools[n]["counters"] = {k: [] for k in counted[n]}
    busy, batch, load, lag = [], [], [], []
    for i in idx:
        for n in names:
            p = sw[i]["pools"].get(n, {})
            if has_totals:
                d = rise(n, "totals", {k: p[k] for k in totals})
                for k, v in totals.items():
                    pools[n][v].append(d[k])
            if counted.get(n):
                d = rise(n, "counters", {k: p["counters"][k] for k in counted[n]})
                for k in counted[n]:
                    pools[n]["counters"][k].append(d[k])
            pools[n]["cap"].append(p.get("cap", 0))
            pools[n]["size"].append(p.get("size", 0))
            pools[n]["wait_p99_ms"].append(p.get("wait_p99_ms", 0.0))
            rate, hold = p.get("acquire_rate", 0.0), p.get("hold_ms") or 0.0
            pools[n]["hold_ms"].append(hold)
            if "hold_p99_ms" in p:
                pools[n].setdefault("hold_p99_ms", []).append(p["hold_p99_ms"] or 0.0)
            pools[n]["acquire_rate"].append(rate)
            pools[n]["timeouts"].append(p.get("timeouts", 0))
            for key in ("opens_by", "closes_by"):  # the causes that rose in the window
                pools[n][key].append({k: d for k, d in rise(n, key, p.get(key, {})).items() if d > 0})
            pools[n]["oracle"].append(erlang_c_servers(rate, hold / 1e3, 0.01) if rate and hold else 1)
        ws = {w["worker"]: w for w in sw[i]["workers"]}
        busy.append([ws[k]["busy"] if k in ws else math.nan for k in range(nworkers)])
        # (batch is None on the epoll fallback: no ring, no batches; a gap in the plot)
        batch.append([ws[k]["batch"] if k in ws and ws[k]["batch"] is not None else math.nan
                      for k in range(nworkers)])
        load.append([ws[k]["load"] if k in ws else math.nan for k in range(nworkers)])
        lag.append(max((ws[k].get("lag_ms", 0.0) for k in ws), default=0.0))
    g = [gw.get(i, {}) for i in idx]
    req_p99 = [w.get("p99_ms", 0.0) for w in g]
    decisions = [dict(d, t=round(d["t"] - t0, 3)) for d in svc["decisions"]
                 if -1.0 <= d["t"] - t0 <= seconds + 1.0]
    # the pool-wait SLO holds in a window when every pool met it
    worst_wait = [max(pools[n]["wait_p99_ms"][k] for n in names) for k in range(len(idx))]
    # The SLO is judged from the first second (issue 16: "including the first
    # seconds"), outside an overload and the two periods after it.
    over = overload_span(pattern, seconds)
    judged = [k for k, i in enumerate(idx) if over is None or not (over[0] < i <= over[1] + 2.0)]
    period = {"diurnal": seconds / 2, "burst": seconds / 3}.get(pattern, seconds)
    adj = rev = 0
    changes_pg = []
    for n in names:
        a, r, ch = stats.cap_changes([float(i) for i in idx], pools[n]["cap"])
        adj, rev = adj + a, rev + r
        if n == "postgres":
            changes_pg = [(t - 1.0, o, nw) for t, o, nw in ch]
    conn_s = sum(sum(pools[n]["size"]) for n in names)
    oracle_s = sum(sum(pools[n]["oracle"]) for n in names)
    m = {
        "slo_windows": sum(1 for k in judged if worst_wait[k] <= 10.0) / max(1, len(judged)),
        "acquire_wait_p99_ms": _p([worst_wait[k] for k in judged], 0.99),
        "max_cap": float(max(pools["postgres"]["cap"], default=0)) if "postgres" in pools else 0.0,
        "request_p99_ms": sorted(req_p99[WARMUP:] or [0.0])[int(0.99 * (len(req_p99[WARMUP:] or [0]) - 1))],
        "throughput": sum(w.get("done", 0) for w in g) / max(1, len(g)),
        "failed": sum(w.get("failed", 0) for w in g),
        # good: answered within the deadline (the overload runner counts them;
        # elsewhere every completed request within the client's timeout is)
        "good_share": (sum(w.get("good", w.get("done", 0)) for w in g)
                       / max(1, sum(w.get("arrivals", 0) for w in g))),
        "opened": float(max((sw[i]["pools"].get("postgres", {}).get("opened", 0) for i in idx), default=0)),
        "retries": sum(w.get("retries", 0) for w in g),
        "conn_seconds": float(conn_s),
        "conn_vs_oracle": conn_s / oracle_s if oracle_s else 0.0,
        "adjustments": adj, "reversals": rev,
        "reversals_per_period": rev / max(1.0, seconds / period),
    }
    grows = [(d["t"], d["old"], d["new"]) for d in decisions
             if d["kind"] == "resize_pool" and d["target"] == "postgres" and d.get("applied")]
    if grows:
        # the supervisor's own decision times are exact; the cap series only
        # resolves changes to the 1-s window (the grow-on-wait contender has no log)
        changes_pg = grows
    if pattern == "burst" and "postgres" in pools:
        edges = [seconds * (k + 0.65) / 3 for k in range(3)]
        caps = pools["postgres"]["cap"]
        in_burst = [pools["postgres"]["oracle"][k] for k, i in enumerate(idx)
                    if any(e <= i - 1 < e + seconds * 0.35 / 3 for e in edges)]
        needed = int(_p(in_burst, 0.5)) if in_burst else 1

        def cap_at(e):
            return next((caps[k] for k, i in enumerate(idx) if i > e), caps[-1] if caps else 0)
        m["first_grow_periods"] = stats.first_grow_periods(edges, changes_pg, cap_at, needed, 1.0)
    if pattern == "overload":
        m["recovery_periods"] = stats.recovery_periods(
            [i - 1.0 for i in idx], [w.get("good", 0) for w in g], [w.get("arrivals", 0) for w in g],
            2 * seconds / 3)
    if pattern in ("retry_storm", "overload") and contender.startswith("supervisor-"):
        guard_t = {(d["target"], round(d["t"])) for d in decisions if "guard" in d.get("reason", "")}
        m["grows_while_guard_tripped"] = sum(
            1 for d in decisions if d["kind"] == "resize_pool" and d["new"] > d["old"]
            and (d["target"], round(d["t"])) in guard_t)
        m["guard_periods"] = len(guard_t)
    if pattern == "hot_spot" and load:
        ratios = [max(x for x in row if x == x) / (sum(x for x in row if x == x) / sum(1 for x in row if x == x))
                  for row in load if sum(x for x in row if x == x) > 0]
        tail = ratios[-max(1, len(ratios) // 4):]
        moves = [d for d in decisions if d["kind"] == "migrate" and d.get("applied")]
        m["hot_max_over_mean"] = _p(tail, 0.5) if tail else math.nan
        m["migrations"] = len(moves)
        last, back = {}, 0
        for d in moves:
            if d["target"] in last and last[d["target"]][1] == d["dst"] and d["t"] - last[d["target"]][0] < 20:
                back += 1
            last[d["target"]] = (d["t"], d["src"])
        m["ping_pong"] = back
    lo, hi = rails(contender)
    rec = {
        "mode": "real", "pattern": pattern, "contender": contender, "seed": rep, "period": period,
        # the sizes the contender's policy may give each pool (the floor's minimum)
        "rails": {"min": lo, "max": hi},
        # what the service's workers ran on: "uring", or "epoll" where io_uring is denied
        "backend": next((w["backend"] for w in svc["windows"] if "backend" in w), None),
        # offered = the window's arrivals, on the same 1-s windows as completed
        "series": {"t": [float(i) for i in idx], "offered": [w.get("arrivals", 0) for w in g],
                   "achieved": [w.get("done", 0) for w in g], "pools": pools,
                   "request_p99_ms": req_p99, "failed": [w.get("failed", 0) for w in g],
                   # the Postgres acquires over 5 ms and the workers' worst loop
                   # lateness so far, per window: why a window missed the SLO
                   "slow": [sw[i].get("slow", []) for i in idx],
                   "lag_max_ms": [max(sw[i].get("lag_max_ms", {}).values(), default=0.0) for i in idx],
                   "workers": {"busy": busy, "batch": batch, "load": load, "lag_ms": lag}},
        "decisions": decisions, "metrics": m, "acceptance": stats.acceptance(m),
    }
    # what the rails force the run to hold, over the windows conn_seconds sums
    m["conn_s_floor"] = floor.conn_s_floor(rec)
    return rec


# What the demo's closing table calls the hot-spot run's figures.
_DEMO_LABELS = {
    "throughput": "requests per second (mean)",
    "request_p99_ms": "request p99 (ms)",
    "acquire_wait_p99_ms": "pool wait p99 (ms)",
    "slo_windows": "share of seconds with pool wait <= 10 ms",
    "failed": "failed requests",
    "retries": "retried requests",
    "conn_seconds": "connection-seconds held",
    "conn_vs_oracle": "connection-seconds / least needed",
    "adjustments": "pool resizes",
    "reversals": "resizes reversed",
    "reversals_per_period": "reversals per period",
    "hot_max_over_mean": "busiest worker / mean load (last quarter)",
    "migrations": "connections moved",
    "ping_pong": "moved back within 20 s (ping-pong)",
}


def _demo_table(rec: dict):
    from ringleader.runtime.debug_render import compact_table, num
    t = compact_table("the run, in figures", [("figure", "left"), ("value", "right")])
    for k, v in rec["metrics"].items():
        t.add_row(_DEMO_LABELS.get(k, k.replace("_", " ")), num(v))
    for k, ok in rec.get("acceptance", {}).items():
        if ok is not None:
            t.add_row(f"goal: {k}", "met" if ok else "missed")
    return t


def debug_demo(args, console) -> int:
    """The demo service under steady load with the debug socket on; halfway
    through, show what ``ringleader stats`` and ``ringleader decisions`` say."""
    from rich.console import Console
    console = Console(highlight=False)  # the terminal's width, not the rig reports' 140 columns
    seconds = args.real_seconds or 20.0
    sock = os.path.join(tempfile.gettempdir(), f"rl-rig-debug-{os.getpid()}.sock")
    ringleader_cli = os.path.join(os.path.dirname(sys.executable), "ringleader")
    shown_cli = os.path.relpath(ringleader_cli) if not os.path.relpath(ringleader_cli).startswith(
        "..") else ringleader_cli
    console.print(f"the demo service runs for {seconds:g} s (--real-seconds N); inspect it live "
                  f"from another terminal:")
    console.print(f"  {shown_cli} top --socket {sock}", soft_wrap=True)  # whole, to paste

    def show(svc, gen, t0):
        time.sleep(max(0.0, t0 + seconds / 2 - time.time()))
        for cmd in (["stats", "--hot", "3"], ["decisions", "-n", "10"]):
            console.rule(f"{shown_cli} {' '.join(cmd)} --socket …", align="left")
            subprocess.run([ringleader_cli, *cmd, "--socket", sock])

    try:
        with database(args, console) as (dsn, url):
            rec = run_one("hot_spot", "supervisor-littles", 1, seconds, dsn, url, args.workers,
                          debug_socket=sock, keep=lambda *a: threading.Thread(target=show, args=a).start())
    except RigError as exc:
        console.print(f"[red]rig: {exc}")
        return 2
    console.print(_demo_table(rec))
    return 0
