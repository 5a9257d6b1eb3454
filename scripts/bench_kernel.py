"""``scripts/bench kernel``: where a server's kernel time goes per request.

The HTTP hello server of ``bench_serve`` (keep-alive, or ``--close`` for
connection-per-request) on ringleader's loop and on uvloop (``--baseline
PYTHON`` adds ringleader as installed for another interpreter), under
``wrk -t1 -c64``, server on CPU 1 and wrk on CPU 0, contenders interleaved in
each repetition.  Per request it reports:

* CPU (user / system) from ``/proc/<pid>/stat`` and voluntary context switches
  (the server's sleeps) from every thread's ``/proc/<pid>/task/*/status``, in
  a window with nothing attached;
* with ``perf`` installed, in a second window: syscalls, ``io_uring_enter``
  calls, SQEs submitted and CQEs posted (tracepoint counts: they slow the
  server, so no CPU figure is taken from this window);
* with ``--record``, in a third window: ``perf record -g`` and the inclusive
  share of the server's CPU spent in each of the paths in :data:`PATHS`
  (the response's send, the loopback delivery, the receive, readiness, ...)
  turned into µs per request with that window's own CPU per request.

What it does not do: attribute user time (use py-spy for that), or measure
anything but the server process; the numbers are this machine's, with the
others' work on it.
"""
from __future__ import annotations

import os
import re
import shutil
import statistics
import subprocess
import tempfile

import bench_serve

# Inclusive kernel paths reported with --record: label -> (ring's symbol,
# uvloop's symbol, a symbol whose inclusive share is subtracted or None).
PATHS = {
    "send (io_send / ksys_write)": (("io_send", None), ("ksys_write", None)),
    "  loopback delivery (net_rx_action)": (("net_rx_action", None), ("net_rx_action", None)),
    "receive (io_recv / ksys_read)": (("io_recv", None), ("ksys_read", None)),
    "readiness (task work minus recv / epoll_wait)": (("__io_run_local_work", "io_recv"),
                                                     ("do_epoll_wait", None)),
    "submission (io_submit_sqes minus io_send)": (("io_submit_sqes", "io_send"), (None, None)),
    "sleep/wake (schedule)": (("schedule", None), ("schedule", None)),
}
# tracepoint -> the row it is reported as (per request)
COUNTERS = {"raw_syscalls:sys_enter": "syscalls", "syscalls:sys_enter_io_uring_enter": "io_uring_enter",
            "io_uring:io_uring_submit_req": "SQEs", "io_uring:io_uring_complete": "CQEs"}
NAMES = {"ringleader": "ringleader-1", "uvloop": "uvloop", "baseline": "ringleader-1"}


def _threads_vcs(pid: int) -> int:
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/status") as f:
                for line in f:
                    if line.startswith("voluntary_ctxt_switches"):
                        total += int(line.split()[1])
        except FileNotFoundError:  # a thread that ended meanwhile
            pass
    return total


def _perf_stat(pid: int, seconds: int) -> dict[str, int]:
    out = subprocess.run(["perf", "stat", "-x,", "-e", ",".join(COUNTERS), "-p", str(pid), "--",
                          "sleep", str(seconds)], capture_output=True, text=True).stderr
    counts = {}
    for line in out.splitlines():
        parts = line.split(",")
        if len(parts) > 2 and parts[2] in COUNTERS and parts[0].isdigit():
            counts[parts[2]] = int(parts[0])
    return counts


def _perf_record(pid: int, seconds: int, kind: str) -> dict[str, float]:
    """Inclusive shares (fractions of the window's samples) of PATHS' symbols."""
    with tempfile.TemporaryDirectory() as d:
        data = os.path.join(d, "perf.data")
        rec = subprocess.run(["perf", "record", "-F", "999", "-g", "-o", data, "-p", str(pid), "--",
                              "sleep", str(seconds)], capture_output=True, text=True)
        if rec.returncode != 0:  # e.g. perf_event_paranoid too strict: no breakdown, say why
            print(f"  perf record failed: {rec.stderr.strip().splitlines()[-1:]}", flush=True)
            return {}
        rep = subprocess.run(["perf", "report", "-i", data, "--children", "--sort", "sym",
                              "--stdio", "-g", "none"], capture_output=True, text=True).stdout
    incl = {}
    for line in rep.splitlines():
        m = re.match(r"\s*([\d.]+)%\s+[\d.]+%\s+\[[k.]\]\s+(\S+)", line)
        if m:
            incl.setdefault(m.group(2), float(m.group(1)) / 100)
    kernel = sum(float(m.group(1)) for m in re.finditer(r"^\s*[\d.]+%\s+([\d.]+)%\s+\[k\]", rep, re.M))
    side = 0 if kind != "uvloop" else 1
    shares = {}
    for label, paths in PATHS.items():
        sym, minus = paths[side]
        if sym is not None:
            shares[label] = incl.get(sym, 0.0) - (incl.get(minus, 0.0) if minus else 0.0)
    shares["kernel total"] = kernel / 100
    return shares


def _one(contender: str, args) -> dict:
    python = args.baseline if contender == "baseline" else None
    proto = "http-close" if args.close else "http"
    srv = bench_serve.Server(NAMES[contender], proto, python)
    pid = srv.proc.pid

    def load(seconds: int) -> subprocess.Popen:
        cmd = ["taskset", "-c", bench_serve.CLIENT_CPU, "wrk", "-t1", "-c64", f"-d{seconds}s",
               *(["-H", "Connection: close"] if args.close else []), f"http://127.0.0.1:{srv.port}/"]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)

    def requests(p: subprocess.Popen) -> int:
        out = p.communicate()[0]
        return int(re.search(r"(\d+) requests in", out).group(1))

    try:
        requests(load(1))  # warm-up
        c0, v0 = srv.cpu_s(), _threads_vcs(pid)
        n = requests(load(args.seconds))
        c1, v1 = srv.cpu_s(), _threads_vcs(pid)
        r = {"cpu_us": (sum(c1) - sum(c0)) / n * 1e6, "user_us": (c1[0] - c0[0]) / n * 1e6,
             "sys_us": (c1[1] - c0[1]) / n * 1e6, "sleeps": (v1 - v0) / n, "rps": n / args.seconds}
        if shutil.which("perf"):
            # the load runs a second longer than the counting window, which is
            # measured against the requests wrk reports per second
            p = load(args.seconds + 1)
            counts = _perf_stat(pid, args.seconds)
            rate = requests(p) / (args.seconds + 1)
            for k, v in counts.items():
                r[COUNTERS[k]] = v / (rate * args.seconds)
            if args.record:
                p = load(args.seconds + 1)
                c0 = srv.cpu_s()
                shares = _perf_record(pid, args.seconds, contender)
                c1 = srv.cpu_s()
                rate = requests(p) / (args.seconds + 1)
                us = (sum(c1) - sum(c0)) / (rate * args.seconds) * 1e6
                for label, share in shares.items():
                    r["path:" + label] = share * us
    finally:
        srv.stop()
    return r


def run_command(args) -> int:
    contenders = ["ringleader", "uvloop"] + (["baseline"] if args.baseline else [])
    runs = {c: [] for c in contenders}
    for rep in range(args.reps):
        order = contenders[rep % len(contenders):] + contenders[:rep % len(contenders)]
        for c in order:
            r = _one(c, args)
            runs[c].append(r)
            print(f"  rep {rep + 1}/{args.reps} {c:<10} {r['cpu_us']:6.2f} us/req "
                  f"({r['user_us']:.2f} user, {r['sys_us']:.2f} sys) {r['rps']:9.0f} req/s", flush=True)
    keys = list(dict.fromkeys(k for rs in runs.values() for r in rs for k in r))
    print(f"\n== kernel: server per request, {'connection-per-request' if args.close else 'keep-alive'}"
          f" HTTP hello c=64, medians of {args.reps} ({bench_serve.loadavg():.2f} loadavg at the end) ==")
    print(f"{'':<48}" + "".join(f"{c:>12}" for c in contenders) + f"{'rl/uv':>8}")
    for k in keys:
        med = {c: statistics.median(r[k] for r in rs) if all(k in r for r in rs) else None
               for c, rs in runs.items()}
        ratio = (f"{med['ringleader'] / med['uvloop']:8.2f}" if med["ringleader"] and med["uvloop"]
                 else f"{'':>8}")
        label = k[5:] + " (us)" if k.startswith("path:") else k
        print(f"{label:<48}" + "".join(f"{med[c]:>12.4g}" if med[c] is not None else f"{'-':>12}"
                                       for c in contenders) + ratio)
    print("\n  cpu/user/sys in us per request (window without perf); sleeps = voluntary context"
          " switches;\n  counts per request from tracepoints in a second window; paths from perf"
          " record -g (inclusive)\n  in a third window, in us per request of that window")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("kernel", help="the server's kernel time per request: ring vs uvloop")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seconds", type=int, default=3, help="each measuring window (default 3)")
    p.add_argument("--close", action="store_true", help="connection-per-request instead of keep-alive")
    p.add_argument("--record", action="store_true", help="also perf record -g and break the CPU down")
    p.add_argument("--baseline", metavar="PYTHON", default="",
                   help="also ringleader as installed for this interpreter")
    p.set_defaults(func=run_command)
