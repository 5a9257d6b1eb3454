"""``scripts/bench postgres`` (issue 5): ``SELECT $1::int``, a 10-row x 10-column
fetch and a single-row INSERT at several concurrencies over a pool of at most
``--pool`` (16) connections.

Contenders, each in its own pinned client process (see :mod:`benchlib.dbbench`):

- ``ringleader``: ``ringleader.drivers.postgres.Pool`` shortcuts on one worker
  (``asyncio.Runner(loop_factory=ringleader.new_event_loop)``); with
  ``--workers 1,2`` also on two workers;
- ``asyncpg uvloop``: ``asyncpg.create_pool`` shortcuts with the per-release
  reset disabled (``reset=`` a no-op), on uvloop; ``--asyncpg-reset`` adds one
  with asyncpg's default reset;
- ``psycopg pool``: ``psycopg_pool.AsyncConnectionPool`` (autocommit
  connections, psycopg's default server-side prepare after 5 uses) on asyncio;
- ``pgbench``: the C limit, the same statements as pgbench scripts with
  ``-M prepared``, ``min(concurrency, pool)`` clients, one thread.

The server is a fresh PostgreSQL cluster (initdb as ``postgres`` via runuser,
``fsync=off``, ``synchronous_commit=off``, trust auth on 127.0.0.1) pinned to
the other CPU; the tables are made once: ``bench_wide`` (10 rows: 5 int and 5
text columns) and ``bench_ins (a int, b text)``.
"""
from __future__ import annotations

import glob
import math
import os
import re
import shutil
import subprocess
import tempfile

from riglib import servers  # the rig's temporary servers serve the benchmarks too

from .dbbench import DBReport, Pins, contenders, percentile, run_c_tool, run_matrix
from .dbclient import FETCH10, FETCHBIG

NAME = "postgres"
HELP = ("SELECT $1::int, 10x10 fetch, INSERT at concurrency 1/16/64 over a 16-connection pool: "
        "ringleader vs asyncpg (uvloop) vs psycopg pool vs pgbench")

BIN = servers.PG_BIN
LABELS = {"select1": "SELECT $1", "fetch10": "FETCH 10x10", "insert": "INSERT",
          "fetchbig": "FETCH 10kx10"}
PGBENCH = {
    "select1": "\\set v random(1, 1000000)\nSELECT :v::int;\n",
    "fetch10": FETCH10 + ";\n",  # the same statements as the Python clients run
    "insert": "\\set v random(1, 1000000)\nINSERT INTO bench_ins (a, b) VALUES (:v, 'payload');\n",
    "fetchbig": FETCHBIG + ";\n",
}
SETUP = """
CREATE TABLE bench_wide (c0 int, c1 int, c2 int, c3 int, c4 int,
                         c5 text, c6 text, c7 text, c8 text, c9 text);
INSERT INTO bench_wide SELECT i, i * 2, i * 3, i * 4, i * 5, 'text-' || i, 'value-' || i,
       'more-' || i, 'column-' || i, 'last-' || i FROM generate_series(1, 10) i;
CREATE TABLE bench_ins (a int, b text);
"""


def add_arguments(p) -> None:
    p.set_defaults(reps=3, seconds=2.0)
    p.add_argument("--conc", default="1,16,64", help="concurrencies (default 1,16,64)")
    p.add_argument("--ops", default="select1,fetch10,insert",
                   help="workloads (default select1,fetch10,insert; also fetchbig: "
                        "10,000 rows x 10 columns)")
    p.add_argument("--pool", type=int, default=16, help="max connections per client (default 16)")
    p.add_argument("--workers", default="1", help="ringleader worker counts (default 1; e.g. 1,2)")
    p.add_argument("--warmup", type=float, default=0.5, help="seconds before each window")
    p.add_argument("--asyncpg-reset", action="store_true",
                   help="also run asyncpg with its default per-release reset")
    p.add_argument("--only", default="", help="comma-separated contender keys to run "
                   "(ringleader, ringleader-2w, asyncpg, asyncpg-reset, psycopg, pgbench)")


def _start_server(pins: Pins) -> servers.Postgres:
    """A fresh cluster pinned to the server core, with the bench schema in ``rlbench``."""
    srv = servers.Postgres(core=pins.server_cpu, max_connections=200)
    try:
        srv.start()
        srv.sql("CREATE DATABASE rlbench")
        srv.sql(SETUP, dbname="rlbench")
    except servers.ServerError as exc:
        srv.stop()
        raise SystemExit(f"bench: {exc}") from None
    return srv


def _version() -> str:
    out = subprocess.run([f"{BIN}/postgres", "--version"], capture_output=True, text=True)
    m = re.search(r"\d+\.\d+", out.stdout)  # "postgres (PostgreSQL) 15.18 (Debian ...)"
    return m.group(0) if m else "?"


def _pgbench(pins: Pins, server: servers.Postgres, op: str, clients: int, seconds: float) -> dict:
    exe = shutil.which("pgbench") or (BIN and os.path.join(BIN, "pgbench"))
    if not exe or not os.path.exists(exe):
        raise SystemExit("bench: pgbench is missing (Debian package postgresql-contrib)")
    with tempfile.TemporaryDirectory(prefix="rl-pgbench-") as tmp:
        script = os.path.join(tmp, f"{op}.sql")
        with open(script, "w") as f:
            f.write(PGBENCH[op])
        # A 20% sample of per-transaction latencies gives p99 at a small logging cost.
        cmd = [exe, "-h", "127.0.0.1", "-p", str(server.port), "-U", "postgres", "-n",
               "-M", "prepared", "-c", str(clients), "-j", "1",
               "-T", str(max(1, math.ceil(seconds))), "-f", script, "-l", "--sampling-rate",
               "0.2", "--log-prefix", os.path.join(tmp, "lat"), "rlbench"]
        out, cpu = run_c_tool(pins.client() + cmd, cwd=tmp)
        tps = ops = None
        for line in out.splitlines():
            if line.startswith("tps = "):
                tps = float(line.split()[2])
            elif line.startswith("number of transactions actually processed:"):
                ops = int(line.split(":")[1].split()[0])
        lat = []
        for path in glob.glob(os.path.join(tmp, "lat*")):
            with open(path) as f:
                lat += [int(ln.split()[2]) for ln in f if ln.strip()]
    if tps is None or not ops or not lat:
        raise SystemExit(f"bench: could not parse pgbench output:\n{out}")
    return {"ops": ops, "secs": ops / tps, "ops_s": tps, "p50_us": percentile(lat, 0.5),
            "p99_us": percentile(lat, 0.99), "cpu_us_op": cpu / ops * 1e6}


def run(args) -> DBReport:
    pins = Pins()
    concs = [int(x) for x in args.conc.split(",") if x]
    ops = [x.strip().lower() for x in args.ops.split(",") if x]
    for op in ops:
        if op not in LABELS:
            raise SystemExit(f"bench: unknown workload {op!r} (choose from {', '.join(LABELS)})")
    workers = [int(x) for x in args.workers.split(",") if x]
    others: dict[str, tuple[str, dict | None]] = {
        "asyncpg": ("asyncpg uvloop (no reset)", {"contender": "asyncpg", "loop": "uvloop"})}
    if args.asyncpg_reset:
        others["asyncpg-reset"] = ("asyncpg uvloop (reset)",
                                   {"contender": "asyncpg", "loop": "uvloop", "reset": True})
    others["psycopg"] = ("psycopg AsyncConnectionPool", {"contender": "psycopg", "loop": "asyncio"})
    others["pgbench"] = ("pgbench -M prepared", None)
    table = contenders(workers, "ringleader-pg", others, args.only)
    cases = [(op, c) for op in ops for c in concs]
    server = _start_server(pins)
    dsn = f"postgresql://postgres@127.0.0.1:{server.port}/rlbench"
    try:
        report = DBReport("postgres", [
            pins.describe(),
            f"PostgreSQL {_version()} (fsync=off, synchronous_commit=off), TCP 127.0.0.1, "
            f"trust auth; pool max {args.pool} connections; {args.seconds} s windows after "
            f"{args.warmup} s warm-up",
            f"pgbench: min(concurrency, {args.pool}) clients, -j 1, -M prepared, whole seconds "
            f"(-T), p99 from a 20% latency log sample, CPU from wait4 of its process",
        ], [v[0] for v in table.values()], [f"{LABELS[op]} c={c}" for op, c in cases],
            subjects=[v[0] for k, v in table.items() if k.startswith("ringleader")])
        for op in ops:
            case = f"{LABELS[op]} c=64"
            for key, goal in (("asyncpg", 1.2), ("psycopg", 2.0), ("pgbench", 0.5)):
                if key in table:
                    report.goals[(case, table[key][0])] = goal
        # A fresh cluster is slow for its first seconds (the first rep's first
        # contender measured half its later rate); one discarded pgbench pass
        # over every workload warms it for all contenders alike.
        for op in ops:
            _pgbench(pins, server, op, args.pool, 1.0)
        report.notes.append("server warmed by a discarded 1 s pgbench pass per workload")
        run_matrix(report, args, "postgres", dsn, table, cases,
                   lambda op, c: f"{LABELS[op]} c={c}",
                   lambda op, c: _pgbench(pins, server, op, min(c, args.pool), args.seconds))
    finally:
        server.stop()
    return report
