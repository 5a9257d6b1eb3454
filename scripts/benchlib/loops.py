"""``scripts/bench loops``: issue 13's table in one run: ringleader's loop against
uvloop and asyncio's own loop, per workload, with CPU per operation and ratios.

Rows (c=64 unless ``--conns`` says otherwise):

* server side (``bench_serve``'s servers and clients: the server pinned to one
  CPU, wrk or the C echo client on the other; CPU = the server process's
  utime+stime over the window / requests): HTTP hello keep-alive, HTTP
  connection-per-request, TCP echo with ringleader on 1 and on 2 workers;
* client side (``benchlib.dbclient`` processes pinned to one CPU against
  Redis/PostgreSQL pinned to the other; CPU = the client's getrusage over the
  window / operations): redis-py+hiredis GET, asyncpg SELECT (reset off),
  psycopg's AsyncConnectionPool SELECT, and ringleader's own Redis and
  PostgreSQL pools (these drivers are loop-agnostic, so they run on all three
  loops too: does the ring pay for itself?).

The server rows also run ringleader's epoll fallback (``backend="epoll"``, column
"epoll fallback", issue 18: what a service pays where io_uring is denied); the
client rows leave it empty (the drivers on asyncio's loop are the asyncio column).

``--baseline PYTHON`` adds a column: ringleader's loop as installed in
another interpreter's environment (e.g. a venv built from an older commit),
run by the same servers and clients, for before/after ratios in one run.

Every repetition measures every row on every loop, the loops in an order
rotated per row and repetition, so drift of the shared machine hits them
alike.  The table shows medians, and the ringleader/uvloop ratios as the
median of the per-repetition ratios with their min-max (the spread).  Goals
are the issue's.  ``--quick`` shortens windows so a run takes a few minutes.

Not here: the servers, clients and CPU accounting (bench_serve, dbclient).
"""
from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import time
from typing import Callable

from .common import host_info, write_json
from .dbbench import Pins, rotate, run_python_client

NAME = "loops"
HELP = ("issue 13's table: ringleader's loop vs uvloop vs asyncio (HTTP, echo, redis-py, "
        "asyncpg, psycopg, ringleader's pools), CPU per op and ratios in one run")
LOOPS = ("ringleader", "uvloop", "asyncio", "epoll")   # epoll: ringleader's fallback (issue 18)


@dataclasses.dataclass
class Row:
    key: str
    title: str
    side: str                      # whose CPU is measured: "server" or "client"
    run: Callable[[str], dict]     # loop name -> {"cpu_us": .., "ops_s": ..}
    cpu_goal: float | None = None  # max ringleader/uvloop CPU per op
    rate_goal: float | None = None  # min ringleader/uvloop ops/s
    samples: dict = dataclasses.field(default_factory=dict)  # loop -> [sample per rep]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.set_defaults(reps=3, seconds=3.0)
    p.add_argument("--quick", action="store_true",
                   help="1 s windows, 0.3 s warm-up (about 3 minutes for 3 repetitions)")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds before each window")
    p.add_argument("--conns", type=int, default=64, help="concurrency of every row (default 64)")
    p.add_argument("--pool", type=int, default=16, help="database pool size (default 16)")
    p.add_argument("--baseline", metavar="PYTHON", default="",
                   help="also run ringleader from this interpreter's environment (column 'baseline')")
    p.add_argument("--rows", default="", help="comma-separated row keys to run (default all: "
                   "http,http-close,echo,echo-2w,redispy,asyncpg,psycopg,rl-redis,rl-pg)")


def _server_row(key, title, proto, names, args, **goals) -> Row:
    import bench_serve  # scripts/ is on sys.path (scripts/bench puts it there)
    ns = argparse.Namespace(connections=args.conns, duration=args.seconds, warmup=args.warmup,
                            size=64)

    def run(loop: str) -> dict:
        if loop == "baseline":
            r = bench_serve.measure(names["ringleader"], proto, ns, python=args.baseline)
        elif loop == "epoll" and loop not in names:
            return {}   # (a row the fallback has no contender in)
        else:
            r = bench_serve.measure(names[loop], proto, ns)
        return {"cpu_us": r["cpu_us_per_req"], "ops_s": r["rps"],
                "user_us": r["user_us_per_req"], "sys_us": r["sys_us_per_req"]}
    return Row(key, title, "server", run, **goals)


class _Databases:
    """Redis and PostgreSQL, started on first use and stopped at the end."""

    def __init__(self, pins: Pins, pool: int) -> None:
        self.pins, self.pool = pins, pool
        self.redis = self.pg = None
        self.targets: dict[str, str] = {}

    def target(self, kind: str) -> str:
        if kind not in self.targets:
            if kind == "redis":
                from riglib import servers
                self.redis = servers.Redis(core=self.pins.server_cpu).start()
                self.targets[kind] = self.redis.url
            else:
                from . import postgres
                self.pg = postgres._start_server(self.pins)
                # a fresh cluster is slow for its first seconds: warm it for everyone
                postgres._pgbench(self.pins, self.pg, "select1", self.pool, 1.0)
                self.targets[kind] = f"postgresql://postgres@127.0.0.1:{self.pg.port}/rlbench"
        return self.targets[kind]

    def stop(self) -> None:
        for s in (self.redis, self.pg):
            if s is not None:
                s.stop()


def _client_row(key, title, dbs: _Databases, kind, spec, args, **goals) -> Row:
    def run(loop: str) -> dict:
        if loop == "epoll":
            return {}   # the drivers on asyncio's loop are the "asyncio" column already
        r = run_python_client(dbs.pins, dict(spec, loop="ringleader" if loop == "baseline" else loop,
                                             kind=kind, target=dbs.target(kind),
                                             conc=args.conns, pool=args.pool,
                                             seconds=args.seconds, warmup=args.warmup),
                              python=args.baseline if loop == "baseline" else None)
        return {"cpu_us": r["cpu_us_op"], "ops_s": r["ops_s"]}
    return Row(key, title, "client", run, **goals)


def _rows(args, dbs: _Databases) -> list[Row]:
    same = {"ringleader": "ringleader-1", "uvloop": "uvloop", "asyncio": "asyncio", "epoll": "epoll-1"}
    c = args.conns
    rows = [
        _server_row("http", f"HTTP hello keep-alive c={c}", "http", same, args,
                    cpu_goal=0.8, rate_goal=1.0),
        _server_row("http-close", f"HTTP hello connection-per-request c={c}", "http-close", same,
                    args, cpu_goal=1.0),
        _server_row("echo", f"TCP echo 64 B c={c}, 1 worker", "echo", same, args, cpu_goal=1.0),
        _server_row("echo-2w", f"TCP echo 64 B c={c}, ringleader 2 workers", "echo",
                    dict(same, ringleader="ringleader-2-reuseport", epoll="epoll-2-reuseport"), args,
                    cpu_goal=1.0),
        _client_row("redispy", f"redis-py+hiredis GET c={c}", dbs, "redis",
                    {"contender": "redispy", "op": "get"}, args, cpu_goal=1.0),
        _client_row("asyncpg", f"asyncpg SELECT (reset off) c={c}", dbs, "postgres",
                    {"contender": "asyncpg", "op": "select1"}, args, cpu_goal=1.0),
        _client_row("psycopg", f"psycopg AsyncConnectionPool SELECT c={c}", dbs, "postgres",
                    {"contender": "psycopg", "op": "select1"}, args, cpu_goal=1.0),
        _client_row("rl-redis", f"ringleader Redis pool GET c={c}", dbs, "redis",
                    {"contender": "ringleader", "op": "get"}, args, rate_goal=1.15),
        _client_row("rl-pg", f"ringleader Postgres pool SELECT c={c}", dbs, "postgres",
                    {"contender": "ringleader-pg", "op": "select1"}, args, rate_goal=1.15),
    ]
    if args.rows:
        keep = [k.strip() for k in args.rows.split(",") if k.strip()]
        unknown = set(keep) - {r.key for r in rows}
        if unknown:
            raise SystemExit(f"bench loops: unknown rows {', '.join(sorted(unknown))}")
        rows = [r for r in rows if r.key in keep]
    return rows


@dataclasses.dataclass
class LoopsReport:
    notes: list[str]
    rows: list[Row]

    def _ratios(self, row: Row, key: str, who: str = "ringleader") -> list[float]:
        rl, uv = row.samples.get(who, []), row.samples.get("uvloop", [])
        return [a[key] / b[key] for a, b in zip(rl, uv) if b[key]]

    def table(self) -> str:
        base = any("baseline" in r.samples for r in self.rows)
        head = ("workload", "CPU of", "uvloop us/op", "ringleader", "asyncio", "epoll fallback",
                "rl/uv CPU", "spread", "rl/uv ops/s", "spread", "goal")
        if base:
            head = head + ("baseline", "base/uv CPU")
        out = [head]
        for row in self.rows:
            def med(loop, k):
                v = [s[k] for s in row.samples.get(loop, [])]
                return statistics.median(v) if v else float("nan")
            cells = [f"{med(lp, 'cpu_us'):.2f} ({med(lp, 'ops_s') / 1e3:.1f}k/s)"
                     if row.samples.get(lp) else "-" for lp in LOOPS]
            rc, rr = self._ratios(row, "cpu_us"), self._ratios(row, "ops_s")
            mc = statistics.median(rc) if rc else float("nan")
            mr = statistics.median(rr) if rr else float("nan")
            goal = []
            if row.cpu_goal is not None:
                goal.append(f"CPU <= {row.cpu_goal}x: {'met' if mc <= row.cpu_goal else 'MISSED'}")
            if row.rate_goal is not None:
                goal.append(f"ops/s >= {row.rate_goal}x: "
                            f"{'met' if mr >= row.rate_goal else 'MISSED'}")
            line = (row.title, row.side, cells[1], cells[0], cells[2], cells[3], f"{mc:.2f}x",
                    f"{min(rc, default=0):.2f}-{max(rc, default=0):.2f}", f"{mr:.2f}x",
                    f"{min(rr, default=0):.2f}-{max(rr, default=0):.2f}", "; ".join(goal))
            if base:
                bc = self._ratios(row, "cpu_us", "baseline")
                line += (f"{med('baseline', 'cpu_us'):.2f} ({med('baseline', 'ops_s') / 1e3:.1f}k/s)",
                         f"{statistics.median(bc):.2f}x" if bc else "-")
            out.append(line)
        widths = [max(len(r[i]) for r in out) for i in range(len(head))]
        lines = ["== loops: ringleader's loop vs uvloop vs asyncio (and ringleader's epoll fallback) =="]
        lines += [f"  {n}" for n in self.notes] + [""]
        for i, r in enumerate(out):
            lines.append("  ".join(x.ljust(w) if j < 2 else x.rjust(w)
                                   for j, (x, w) in enumerate(zip(r, widths))).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("\n  cells: median CPU us per operation (median ops/s); ratios: median of "
                     "the per-repetition ringleader/uvloop ratios, spread = their min-max")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        return {"benchmark": NAME, "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "host": host_info(), "notes": self.notes,
                "rows": [{"key": r.key, "title": r.title, "side": r.side, "cpu_goal": r.cpu_goal,
                          "rate_goal": r.rate_goal, "samples": r.samples,
                          "cpu_ratios": self._ratios(r, "cpu_us"),
                          "rate_ratios": self._ratios(r, "ops_s")} for r in self.rows]}

    def write_json(self, path: str) -> None:
        write_json(path, self.as_dict())


def run(args) -> LoopsReport:
    if args.quick:
        args.seconds, args.warmup = 1.0, 0.3
    pins = Pins()
    dbs = _Databases(pins, args.pool)
    rows = _rows(args, dbs)
    loops = list(LOOPS) + (["baseline"] if args.baseline else [])
    try:
        for rep in range(args.reps):
            for i, row in enumerate(rows):
                for loop in rotate(loops, rep + i):
                    s = row.run(loop)
                    if not s:
                        continue
                    row.samples.setdefault(loop, []).append(s)
                    print(f"  rep {rep + 1}/{args.reps} {row.key:<10} {loop:<10} "
                          f"{s['cpu_us']:8.2f} us/op {s['ops_s']:10.0f} ops/s",
                          file=sys.stderr, flush=True)
    finally:
        dbs.stop()
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    notes = [pins.describe() + " (database rows); server rows: server on CPU 1, client on CPU 0",
             f"{args.reps} repetitions, {args.seconds} s windows after {args.warmup} s warm-up, "
             f"loops interleaved (rotated per row and repetition); database pools of {args.pool}",
             f"1-min loadavg at the end: {load} on {len(__import__('os').sched_getaffinity(0))} "
             f"CPUs (others' work on a shared machine inflates every figure)"]
    if args.baseline:
        notes.append(f"baseline: ringleader as installed for {args.baseline}")
    return LoopsReport(notes, rows)
