"""``scripts/bench redis`` (issue 4): GET and SET of a 100-byte value at several
concurrencies over a pool of at most ``--pool`` (16) connections.

Contenders, each in its own pinned client process (see :mod:`benchlib.dbbench`):

- ``ringleader``: ``ringleader.drivers.redis.Pool`` on one worker
  (``asyncio.Runner(loop_factory=ringleader.new_event_loop)``); with
  ``--workers 1,2`` also on two workers (``ringleader.run(..., workers=2)``,
  both threads on the client CPU);
- ``redis-py asyncio`` / ``redis-py uvloop``: ``redis.asyncio`` with hiredis and
  a ``BlockingConnectionPool(max_connections=pool)``;
- ``redis-benchmark -P 1``: the C limit, ``min(concurrency, pool)`` clients
  (one command in flight each), same command and value.

The server is a fresh ``redis-server`` (no persistence) pinned to the other
CPU, in a temp dir, on a free port.  Every client uses the same key.
"""
from __future__ import annotations

import shutil
import subprocess

from riglib import servers  # the rig's temporary servers serve the benchmarks too

from .dbbench import DBReport, Pins, contenders, run_c_tool, run_matrix

NAME = "redis"
HELP = ("GET/SET 100-byte values at concurrency 1/16/64 over a 16-connection pool: "
        "ringleader vs redis-py+hiredis (asyncio, uvloop) vs redis-benchmark -P 1")

KEY = "bench:key"
VALUE = "v" * 100


def add_arguments(p) -> None:
    p.set_defaults(reps=3, seconds=2.0)
    p.add_argument("--conc", default="1,16,64", help="concurrencies (default 1,16,64)")
    p.add_argument("--ops", default="get,set", help="workloads (default get,set)")
    p.add_argument("--pool", type=int, default=16, help="max connections per client (default 16)")
    p.add_argument("--workers", default="1", help="ringleader worker counts (default 1; e.g. 1,2)")
    p.add_argument("--warmup", type=float, default=0.5, help="seconds before each window")
    p.add_argument("--only", default="", help="comma-separated contender keys to run "
                   "(ringleader, ringleader-2w, redispy-asyncio, redispy-uvloop, redis-benchmark)")


def _redis_benchmark(pins: Pins, port: int, op: str, clients: int, n: int) -> dict:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise SystemExit("bench: redis-benchmark is missing (Debian package redis-tools)")
    cmd = [exe, "-h", "127.0.0.1", "-p", str(port), "-c", str(clients), "-n", str(n),
           "-P", "1", "--csv"]
    cmd += ["GET", KEY] if op == "get" else ["SET", KEY, VALUE]
    out, cpu = run_c_tool(pins.client() + cmd)
    lines = [ln for ln in out.splitlines() if ln.startswith('"') and not ln.startswith('"test"')]
    header = next(ln for ln in out.splitlines() if ln.startswith('"test"'))
    cols = [c.strip('"') for c in header.split(",")]
    vals = dict(zip(cols, (v.strip('"') for v in lines[-1].split(","))))
    rps = float(vals["rps"])
    return {"ops": n, "secs": n / rps, "ops_s": rps,
            "p50_us": float(vals["p50_latency_ms"]) * 1e3,
            "p99_us": float(vals["p99_latency_ms"]) * 1e3,
            "cpu_us_op": cpu / n * 1e6}


def run(args) -> DBReport:
    pins = Pins()
    concs = [int(x) for x in args.conc.split(",") if x]
    ops = [x.strip().lower() for x in args.ops.split(",") if x]
    workers = [int(x) for x in args.workers.split(",") if x]
    table = contenders(workers, "ringleader", {
        "redispy-uvloop": ("redis-py+hiredis uvloop", {"contender": "redispy", "loop": "uvloop"}),
        "redispy-asyncio": ("redis-py+hiredis asyncio", {"contender": "redispy", "loop": "asyncio"}),
        "redis-benchmark": ("redis-benchmark -P 1", None),
    }, args.only)
    names = [v[0] for v in table.values()]
    cases = [(op, c) for op in ops for c in concs]
    report = DBReport("redis", [
        pins.describe(),
        f"redis-server {_version()} (no persistence), TCP 127.0.0.1; value {len(VALUE)} bytes, "
        f"one key; pool max {args.pool} connections; {args.seconds} s windows after "
        f"{args.warmup} s warm-up",
        f"redis-benchmark: min(concurrency, {args.pool}) clients, -P 1, CPU from wait4 of its "
        f"process; Python CPU from getrusage over the window",
    ], names, [f"{op.upper()} c={c}" for op, c in cases],
        subjects=[v[0] for k, v in table.items() if k.startswith("ringleader")])
    for op in ops:
        peer_uv, peer_c = table.get("redispy-uvloop"), table.get("redis-benchmark")
        if peer_uv:
            report.goals[(f"{op.upper()} c=64", peer_uv[0])] = 3.0
        if peer_c:
            report.goals[(f"{op.upper()} c=64", peer_c[0])] = 0.75
    try:
        server = servers.Redis(core=pins.server_cpu).start()
    except servers.ServerError as exc:
        raise SystemExit(f"bench: {exc}") from None
    est: dict[tuple, float] = {}
    try:
        def c_tool(op: str, c: int) -> dict:
            # redis-benchmark runs a request count: aim it at --seconds from its last rate
            rate = est.get((op, c), 30000.0 if c == 1 else 80000.0)
            res = _redis_benchmark(pins, server.port, op, min(c, args.pool),
                                   max(5000, int(rate * args.seconds)))
            est[(op, c)] = res["ops_s"]
            return res
        run_matrix(report, args, "redis", server.url, table, cases,
                   lambda op, c: f"{op.upper()} c={c}", c_tool)
    finally:
        server.stop()
    return report


def _version() -> str:
    try:
        out = subprocess.run(["redis-server", "--version"], capture_output=True, text=True).stdout
        return next(w[2:] for w in out.split() if w.startswith("v="))
    except Exception:
        return "?"
