"""What the debug socket costs the service it watches (issue 15, item 6).

Sub-command ``debug-cost`` (wired into ``scripts/bench``; this file also runs
on its own): the HTTP "hello" server of ``bench_serve`` (ringleader, 2 workers,
SO_REUSEPORT, debug socket on) under wrk, pinned as there (server on core 1,
wrk on core 0), measured alternately without and with a *hammer* next to it:
one same-uid client requesting every view of the debug socket in a loop as
fast as it is answered, plus ``--watchers`` clients that start a fast watch of
every view and never read.  The hammer is one process, started before the
first repetition and switched on and off between phases (so its interpreter's
start-up is not charged to a phase), pinned with wrk on core 0: what is
measured is what serving it costs the service's core, not the client's own
CPU.  Each repetition runs both phases back to back (order alternating), so
drift of the shared machine hits both; the report is the per-repetition ratio
of requests per second with/without, its median and its min-max.  Since a
shared machine moves req/s by tens of percent on its own, it first measures
what does not depend on the neighbours: the CPU the server process uses
serving the hammer alone (no HTTP load: share of a core, quiet vs hammered,
``--idle-reps`` times), and it reports the server's CPU per HTTP request in
each phase of the HTTP repetitions.

``--hammer PATH --seconds S`` runs only the hammer against a debug socket and
prints ``{"requests": n, "errors": {...}}`` as JSON; with ``--phases`` it
hammers between ``on`` and ``off`` lines on stdin instead (the debug tier's
cost test drives it so against a runtime in the test process).

Not here: the CLI's rendering cost (it runs in its own process), or anything
that needs control=True.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))

# Every read-only view with its most expensive arguments.
VIEWS = [("summary", {}), ("workers", {}), ("hot", {"n": 1000}), ("pools", {}),
         ("supervisor", {}), ("decisions", {"n": 10000}), ("metrics", {}), ("help", {})]


def hammer(path: str, seconds: float, watchers: int = 40,
           stop: threading.Event | None = None) -> dict:
    """Requests every view in a loop for ``seconds`` (or until ``stop``) while
    ``watchers`` clients watch everything every 50 ms and never read; returns
    counts."""
    from ringleader.runtime.debug_cli import DebugClient
    from ringleader.runtime.debug_protocol import WATCHABLE, DebugError

    idle = []
    for _ in range(watchers):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(path)
        s.sendall(json.dumps({"id": 1, "cmd": "watch", "args": {
            "what": list(WATCHABLE), "interval": 0.05, "n": 1000}}).encode() + b"\n")
        idle.append(s)
    done, errors = 0, {}
    end = time.monotonic() + seconds
    client = DebugClient(path, timeout=30)
    try:
        while time.monotonic() < end and not (stop is not None and stop.is_set()):
            for cmd, args in VIEWS:
                try:
                    client.request(cmd, **args)
                    done += 1
                except DebugError as exc:
                    key = type(exc).__name__ + ":" + str(getattr(exc, "code", ""))
                    errors[key] = errors.get(key, 0) + 1
                    if not getattr(exc, "code", None):  # the connection is gone: reconnect
                        client.close()
                        client = DebugClient(path, timeout=30)
    finally:
        client.close()
        for s in idle:
            s.close()
    return {"requests": done, "errors": errors}


def hammer_phases(path: str, watchers: int) -> dict:
    """Hammers between an ``on`` and an ``off`` line on stdin (answering each
    with ``ok``), for as many phases as come; at EOF returns the counts.  One
    process serves a run of short alternating phases."""
    total: dict = {"requests": 0, "errors": {}, "phases": 0}
    stop, worker, got = threading.Event(), None, {}

    def one():
        got.update(hammer(path, 3600.0, watchers, stop))

    for line in sys.stdin:
        cmd = line.strip()
        if cmd == "on" and worker is None:
            stop.clear()
            got.clear()
            worker = threading.Thread(target=one)
            worker.start()
        elif cmd == "off" and worker is not None:
            stop.set()
            worker.join()
            worker = None
            total["phases"] += 1
            total["requests"] += got.get("requests", 0)
            for k, v in got.get("errors", {}).items():
                total["errors"][k] = total["errors"].get(k, 0) + v
        print("ok", flush=True)
    if worker is not None:
        stop.set()
        worker.join()
    return total


class HammerProcess:
    """The hammer in its own process (as an operator's CLI would be), switched
    on and off through ``hammer_phases``; ``prefix`` pins it (taskset)."""

    def __init__(self, path: str, watchers: int, prefix: list[str] = ()):
        self.proc = subprocess.Popen([*prefix, sys.executable, os.path.abspath(__file__),
                                      "--hammer", str(path), "--phases", "--watchers",
                                      str(watchers)],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def say(self, cmd: str) -> None:
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        if self.proc.stdout.readline().strip() != "ok":
            raise RuntimeError(f"the hammer did not acknowledge {cmd!r}")

    def finish(self) -> dict:
        out, _ = self.proc.communicate(timeout=60)
        return json.loads(out.strip().splitlines()[-1])


def _socket_of(pid: int, timeout: float = 10.0) -> str:
    from ringleader.runtime.debug_protocol import DebugSocketError, find_socket
    deadline = time.monotonic() + timeout
    while True:
        try:
            return str(find_socket(pid))
        except DebugSocketError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def run(args) -> dict:
    sys.path.insert(0, HERE)
    import bench_serve as bs

    srv = bs.Server("ringleader-2-reuseport", "http")
    runs = []
    h = None
    try:
        path = _socket_of(srv.proc.pid)
        h = HammerProcess(path, args.watchers, ["taskset", "-c", bs.CLIENT_CPU])
        idle = []
        for _ in range(args.idle_reps):
            # No HTTP load: whatever CPU the server uses now is serving the hammer.
            h.say("on")
            time.sleep(0.3)
            cpu0, t0 = sum(srv.cpu_s()), time.monotonic()
            time.sleep(args.duration)
            idle.append((sum(srv.cpu_s()) - cpu0) / (time.monotonic() - t0))
            h.say("off")
            print(f"idle: serving the hammer cost the server {idle[-1] * 100:.1f}% of a core",
                  flush=True)
        bs.run_wrk(srv.port, args.connections, args.warmup)
        for rep in range(args.repeat):
            got = {}
            for phase in (("quiet", "hammered") if rep % 2 == 0 else ("hammered", "quiet")):
                if phase == "hammered":
                    h.say("on")
                    time.sleep(0.3)  # the watchers are connected before wrk starts
                cpu0 = sum(srv.cpu_s())
                got[phase] = r = bs.run_wrk(srv.port, args.connections, args.duration)
                r["cpu_us_per_req"] = (sum(srv.cpu_s()) - cpu0) / max(1, r["requests"]) * 1e6
                if phase == "hammered":
                    h.say("off")
            got["ratio"] = got["hammered"]["rps"] / got["quiet"]["rps"]
            got["cpu_ratio"] = got["hammered"]["cpu_us_per_req"] / got["quiet"]["cpu_us_per_req"]
            got["loadavg_1m"] = os.getloadavg()[0]
            runs.append(got)
            print(f"rep {rep + 1}: quiet {got['quiet']['rps']:.0f} req/s (p99 "
                  f"{got['quiet']['p99_us'] / 1e3:.2f} ms), hammered {got['hammered']['rps']:.0f} "
                  f"req/s (p99 {got['hammered']['p99_us'] / 1e3:.2f} ms), ratio "
                  f"{got['ratio']:.3f}; server CPU/request {got['quiet']['cpu_us_per_req']:.1f} -> "
                  f"{got['hammered']['cpu_us_per_req']:.1f} us ({got['cpu_ratio']:.3f}x)", flush=True)
        hammer = h.finish()
        print(f"the hammer got {hammer['requests']} answers in {hammer['phases']} phases "
              f"{hammer['errors'] or ''}")
    finally:
        if h is not None and h.proc.poll() is None:
            h.proc.kill()
            h.proc.wait()
        srv.stop()
    ratios = [r["ratio"] for r in runs]
    cpu_ratios = [r["cpu_ratio"] for r in runs]
    summary = {"ratio_median": statistics.median(ratios), "ratio_min": min(ratios),
               "ratio_max": max(ratios), "cpu_ratio_median": statistics.median(cpu_ratios),
               "cpu_ratio_min": min(cpu_ratios), "cpu_ratio_max": max(cpu_ratios),
               "idle_hammered_share": idle,
               "watchers": args.watchers, "duration": args.duration,
               "loadavg_1m": [r["loadavg_1m"] for r in runs]}
    print(f"hammered/quiet req/s: median {summary['ratio_median']:.3f} "
          f"(min {summary['ratio_min']:.3f}, max {summary['ratio_max']:.3f}) over {len(runs)} reps; "
          f"machine load {min(summary['loadavg_1m']):.1f}-{max(summary['loadavg_1m']):.1f} "
          f"on {os.cpu_count()} cores (others' work on the shared machine is noise here)")
    print(f"server CPU per request hammered/quiet: median {summary['cpu_ratio_median']:.3f} "
          f"(min {summary['cpu_ratio_min']:.3f}, max {summary['cpu_ratio_max']:.3f})")
    print(f"server CPU serving the hammer alone: {', '.join(f'{x * 100:.1f}%' for x in idle)} "
          f"of a core (no HTTP load)")
    return {"runs": runs, "summary": summary}


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repeat", type=int, default=5)
    p.add_argument("--duration", type=float, default=4.0, help="seconds per phase")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--watchers", type=int, default=40, help="clients that watch and never read")
    p.add_argument("--idle-reps", type=int, default=3,
                   help="measurements of the server's CPU serving the hammer alone")
    p.add_argument("--json", metavar="PATH", help="write all runs and the summary as JSON")


def _command(args) -> int:
    res = run(args)
    if args.json:
        from benchlib.common import write_json
        write_json(args.json, res)
        print(f"wrote {args.json}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("debug-cost", help="HTTP req/s of a 2-worker service with and "
                              "without a client hammering its debug socket (ratio)")
    add_arguments(p)
    p.set_defaults(func=_command)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--hammer", metavar="PATH", help="only hammer this debug socket")
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--phases", action="store_true",
                   help="with --hammer: hammer between 'on' and 'off' lines on stdin")
    add_arguments(p)
    a = p.parse_args(argv)
    if a.hammer:
        res = hammer_phases(a.hammer, a.watchers) if a.phases else \
            hammer(a.hammer, a.seconds, a.watchers)
        print(json.dumps(res), flush=True)
        return 0
    sys.path.insert(0, HERE)
    return _command(a)


if __name__ == "__main__":
    sys.exit(main())
