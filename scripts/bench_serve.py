"""Server benchmarks for issue 3: HTTP/1.1 keep-alive "hello" and TCP echo.

Sub-commands (wired into ``scripts/bench``; this file also runs on its own):

* ``http``        wrk against the same httptools ``asyncio.Protocol`` on asyncio's
                  default loop, uvloop, and ringleader (1 worker, 2 workers in
                  both serve modes, 1 worker with telemetry off);
* ``echo``        the same contenders under a small C ping-pong client (compiled
                  by this script with gcc; wrk cannot drive raw TCP);
* ``serve-modes`` ringleader 2 workers, SO_REUSEPORT per worker against one
                  multishot acceptor handing sockets to workers;
* ``fallback``    what the epoll fallback costs (issue 18): ringleader on epoll
                  (``backend="epoll"``: asyncio's selector loop plus the
                  runtime's telemetry and migration) beside the ring, uvloop and
                  asyncio's plain loop, HTTP hello and echo (``--proto``).

Method: every server runs in its own subprocess pinned to core 1
(``taskset -c 1``; with 2 workers both threads share that core, since the
client needs the other one), the client is pinned to core 0.  Contenders are
interleaved round-robin inside each repetition, so slow drift of the shared
machine hits them all alike.  Server CPU per request is the delta of
utime+stime in ``/proc/<pid>/stat`` (all threads) over the client's run,
divided by the requests the client completed: unlike req/s it does not
depend on how fast the client is.  Medians over repetitions, with min–max.

The server side (``--serve``) is the same module: one handler class per
workload, whichever loop runs it.
"""
from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

SERVER_CPU = "1"
CLIENT_CPU = "0"
TICK = os.sysconf("SC_CLK_TCK")

# --------------------------------------------------------------- handlers
HELLO = (b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n"
         b"Connection: keep-alive\r\n\r\nhello")
BAD = b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"


class HttpHello(asyncio.Protocol):
    """Keep-alive "hello" with httptools parsing: identical on every loop."""

    __slots__ = ("transport", "parser")

    def connection_made(self, transport):
        import httptools
        self.transport = transport
        self.parser = httptools.HttpRequestParser(self)

    def data_received(self, data):
        import httptools
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.transport.write(BAD)
            self.transport.close()

    def on_message_complete(self):
        self.transport.write(HELLO)
        if not self.parser.should_keep_alive():
            self.transport.close()

    def connection_lost(self, exc):
        self.transport = None


class Echo(asyncio.Protocol):
    __slots__ = ("transport",)

    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


HANDLERS = {"http": HttpHello, "echo": Echo}


def serve_main(kind: str, proto: str, workers: int, mode: str, telemetry: bool) -> None:
    """Run one server until killed; prints ``READY <port>`` once it accepts."""
    factory = HANDLERS[proto]

    def ready(port: int) -> None:
        print(f"READY {port}", flush=True)

    if kind in ("asyncio", "uvloop"):
        if kind == "uvloop":
            import uvloop
            loop = uvloop.new_event_loop()
        else:
            loop = asyncio.new_event_loop()
        srv = loop.run_until_complete(loop.create_server(factory, "127.0.0.1", 0, backlog=1024))
        ready(srv.sockets[0].getsockname()[1])
        loop.run_forever()
        return
    import ringleader

    async def main(rt):
        group = await rt.serve(factory, "127.0.0.1", 0, mode=mode)
        ready(group.port)
        await asyncio.Event().wait()

    ringleader.run(main, workers=workers, loop_options={} if telemetry else {"telemetry": False},
                   backend="epoll" if kind == "ringleader-epoll" else "uring")


# ------------------------------------------------------------ contenders
# name -> (server kind, workers, serve mode, telemetry)
CONTENDERS = {
    "asyncio": ("asyncio", 1, "-", True),
    "uvloop": ("uvloop", 1, "-", True),
    "ringleader-1": ("ringleader", 1, "reuseport", True),
    "ringleader-1-notelemetry": ("ringleader", 1, "reuseport", False),
    "ringleader-2-reuseport": ("ringleader", 2, "reuseport", True),
    "ringleader-2-acceptor": ("ringleader", 2, "acceptor", True),
    # the epoll fallback (backend="epoll"), where io_uring is denied
    "epoll-1": ("ringleader-epoll", 1, "reuseport", True),
    "epoll-1-notelemetry": ("ringleader-epoll", 1, "reuseport", False),
    "epoll-2-reuseport": ("ringleader-epoll", 2, "reuseport", True),
    "epoll-2-acceptor": ("ringleader-epoll", 2, "acceptor", True),
}
DEFAULT = ["asyncio", "uvloop", "ringleader-1", "ringleader-1-notelemetry",
           "ringleader-2-reuseport", "ringleader-2-acceptor", "epoll-1"]
SERVE_MODES = ["ringleader-2-reuseport", "ringleader-2-acceptor"]
FALLBACK = ["uvloop", "asyncio", "ringleader-1", "epoll-1", "epoll-1-notelemetry"]


class Server:
    def __init__(self, name: str, proto: str, python: str | None = None):
        # python: another interpreter (e.g. a venv with an older ringleader) to serve with
        kind, workers, mode, telemetry = CONTENDERS[name]
        cmd = ["taskset", "-c", SERVER_CPU, python or sys.executable, os.path.abspath(__file__), "--serve",
               kind, "--proto", "echo" if proto == "echo" else "http", "--workers", str(workers), "--mode", mode,
               "--telemetry", "on" if telemetry else "off"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("READY"):
            self.stop()
            raise RuntimeError(f"{name}: server did not start (got {line!r})")
        self.port = int(line.split()[1])

    def cpu_s(self) -> tuple[float, float]:
        """(user, system) CPU seconds of the server process, all threads."""
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        # fields[0] is the state (3rd field): utime/stime are fields 14/15
        return int(fields[11]) / TICK, int(fields[12]) / TICK

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()


# ---------------------------------------------------------------- clients
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0}


def run_wrk(port: int, conns: int, duration: float, close: bool = False) -> dict:
    # close: "Connection: close" makes wrk open a new connection per request,
    # which is what exercises Runtime.serve's accept path.
    cmd = ["taskset", "-c", CLIENT_CPU, "wrk", "-t1", f"-c{conns}", f"-d{max(1, round(duration))}s", "--latency",
           *(["-H", "Connection: close"] if close else []), f"http://127.0.0.1:{port}/"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    reqs = int(re.search(r"(\d+) requests in", out).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))
    m = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    p99 = float(m.group(1)) * _UNITS[m.group(2)] * 1e6
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)|Socket errors: .*", out)
    return {"requests": reqs, "rps": rps, "p99_us": p99, "errors": errors.group(0) if errors else ""}


ECHO_C = r"""
/* Ping-pong TCP echo load: C connections, each sends SIZE bytes and waits for
 * them to come back before sending again.  Prints round trips and p50/p99. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#define MAXC 4096
#define HB 2000000 /* latency histogram: 1 us buckets up to 2 s */
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t);
                          return t.tv_sec + t.tv_nsec * 1e-9; }
static unsigned long hist[HB + 1];
int main(int argc, char **argv) {
    int port = atoi(argv[1]), nc = atoi(argv[2]), size = atoi(argv[4]);
    double dur = atof(argv[3]);
    static int fds[MAXC], got[MAXC]; static double sent[MAXC];
    char *msg = malloc(size), *buf = malloc(65536);
    memset(msg, 'x', size);
    int ep = epoll_create1(0);
    struct sockaddr_in a = {0}; a.sin_family = AF_INET; a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(0x7f000001);
    for (int i = 0; i < nc && i < MAXC; i++) {
        fds[i] = socket(AF_INET, SOCK_STREAM, 0);
        int one = 1; setsockopt(fds[i], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        if (connect(fds[i], (void *)&a, sizeof a)) { perror("connect"); return 1; }
        struct epoll_event ev = {.events = EPOLLIN, .data.u32 = i};
        epoll_ctl(ep, EPOLL_CTL_ADD, fds[i], &ev);
    }
    double start = now(), end = start + dur;
    unsigned long n = 0, errs = 0;
    for (int i = 0; i < nc; i++) { sent[i] = now(); got[i] = 0;
                                   if (write(fds[i], msg, size) != size) errs++; }
    struct epoll_event evs[256];
    double t = start;
    while (t < end) {
        int k = epoll_wait(ep, evs, 256, 100);
        t = now();
        for (int j = 0; j < k; j++) {
            int i = evs[j].data.u32;
            ssize_t r = read(fds[i], buf, 65536);
            if (r <= 0) { if (r < 0 && errno == EAGAIN) continue; errs++; close(fds[i]);
                          epoll_ctl(ep, EPOLL_CTL_DEL, fds[i], NULL); continue; }
            got[i] += r;
            if (got[i] < size) continue;
            long b = (long)((t - sent[i]) * 1e6);
            hist[b > HB ? HB : b]++; n++;
            got[i] = 0; sent[i] = t;
            if (write(fds[i], msg, size) != size) errs++;
        }
    }
    double el = now() - start;
    unsigned long acc = 0; double p50 = -1, p99 = -1;
    for (int b = 0; b <= HB; b++) { acc += hist[b];
        if (p50 < 0 && acc * 2 >= n) p50 = b;
        if (p99 < 0 && acc * 100 >= n * 99) { p99 = b; break; } }
    printf("%lu %.3f %.1f %.1f %lu\n", n, el, p50, p99, errs);
    return 0;
}
"""


def echo_client() -> str:
    """Compile the echo client once (cached by source hash)."""
    digest = hashlib.sha1(ECHO_C.encode()).hexdigest()[:12]
    exe = os.path.join(tempfile.gettempdir(), f"ringleader-echo-client-{digest}")
    if not os.path.exists(exe):
        src = exe + ".c"
        with open(src, "w") as f:
            f.write(ECHO_C)
        subprocess.run(["gcc", "-O2", "-o", exe + ".tmp", src], check=True)
        os.replace(exe + ".tmp", exe)
    return exe


def run_echo(port: int, conns: int, duration: float, size: int) -> dict:
    cmd = ["taskset", "-c", CLIENT_CPU, echo_client(), str(port), str(conns), str(duration), str(size)]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.split()
    n, el, p50, p99, errs = int(out[0]), float(out[1]), float(out[2]), float(out[3]), int(out[4])
    return {"requests": n, "rps": n / el, "p99_us": p99, "p50_us": p50,
            "errors": f"{errs} errors" if errs else ""}


# ------------------------------------------------------ telemetry (micro)
def telemetry_micro(n: int = 5000, reps: int = 25) -> dict:
    """ns per receive+send completion pair through RingTransport with telemetry on/off.

    In-process and without the kernel, so it isolates what the counters cost;
    the best of ``reps`` runs is kept, which filters out other users of the core."""
    import ringleader
    from ringleader.runtime.transport import RingTransport

    class Sink(asyncio.Protocol):
        def data_received(self, data):
            pass

    async def one(loop) -> float:
        a, b = socket.socketpair()
        t = RingTransport(loop, a, Sink())
        await asyncio.sleep(0)
        data, best = b"x" * 64, float("inf")
        for _ in range(reps):
            t0 = time.perf_counter()
            c = t  # its compiled base: what the dispatcher calls per completion
            for _ in range(n):
                c._on_recv(64, 3, data)           # F_BUFFER | F_MORE
                c.inflight, c.wsize = data, 64
                c._on_send(64, 0)
            best = min(best, time.perf_counter() - t0)
        t.abort()
        b.close()
        return best / n * 1e9

    out = {}
    for on in (True, False) * 4:  # alternated, so a busy spell hits both
        with asyncio.Runner(loop_factory=lambda: ringleader.new_event_loop(telemetry=on)) as r:
            ns = r.run(one(r.get_loop()))
        out[on] = min(out.get(on, float("inf")), ns)
    return {"on_ns": out[True], "off_ns": out[False]}


def loadavg() -> float:
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


# ---------------------------------------------------------------- driver
def measure(name: str, proto: str, args, python: str | None = None) -> dict:
    srv = Server(name, proto, python)
    try:
        client = (lambda d: run_wrk(srv.port, args.connections, d, proto == "http-close")) \
            if proto.startswith("http") else \
                 (lambda d: run_echo(srv.port, args.connections, d, args.size))
        if args.warmup > 0:
            client(args.warmup)
        c0 = srv.cpu_s()
        r = client(args.duration)
        c1 = srv.cpu_s()
    finally:
        srv.stop()
    user, system = c1[0] - c0[0], c1[1] - c0[1]
    r["cpu_s"] = user + system
    # user = the interpreter and C extensions; system = the kernel (TCP, io_uring/epoll)
    r["user_us_per_req"] = user / r["requests"] * 1e6 if r["requests"] else float("nan")
    r["sys_us_per_req"] = system / r["requests"] * 1e6 if r["requests"] else float("nan")
    r["loadavg_1m"] = loadavg()
    r["cpu_us_per_req"] = r["cpu_s"] / r["requests"] * 1e6 if r["requests"] else float("nan")
    return r


def summarize(runs: list[dict]) -> dict:
    out = {}
    for key in ("rps", "p99_us", "cpu_us_per_req", "user_us_per_req", "sys_us_per_req"):
        vals = [r[key] for r in runs]
        out[key] = {"median": statistics.median(vals), "min": min(vals), "max": max(vals)}
    return out


def spread(s: dict) -> str:
    m = s["median"]
    return f"±{(s['max'] - s['min']) / 2 / m * 100:.0f}%" if m else ""


def run_suite(proto: str, names: list[str], args) -> dict:
    results = {n: [] for n in names}
    for rep in range(args.repeat):
        for n in names:
            r = measure(n, proto, args)
            results[n].append(r)
            print(f"  rep {rep + 1}/{args.repeat} {n:<26} {r['rps']:>10.0f} req/s  p99 {r['p99_us']:>8.0f} us"
                  f"  cpu {r['cpu_us_per_req']:6.2f} us/req {r['errors']}", file=sys.stderr, flush=True)
    summary = {n: summarize(rs) for n, rs in results.items()}
    return {"runs": results, "summary": summary}


def print_table(title: str, summary: dict, args) -> None:
    base = {k: summary[k] for k in ("uvloop", "asyncio") if k in summary}
    print(f"\n{title}")
    hdr = (f"{'contender':<26} {'req/s':>9} {'spread':>7} {'p99 us':>8} {'CPU us/req':>11} {'spread':>7}"
           f" {'user':>6} {'sys':>6}")
    for b in base:
        hdr += f" {'rps/' + b:>12} {'cpu/' + b:>11}"
    print(hdr)
    for name, s in summary.items():
        line = (f"{name:<26} {s['rps']['median']:>9.0f} {spread(s['rps']):>7} "
                f"{s['p99_us']['median']:>8.0f} {s['cpu_us_per_req']['median']:>11.2f} "
                f"{spread(s['cpu_us_per_req']):>7} {s['user_us_per_req']['median']:>6.2f}"
                f" {s['sys_us_per_req']['median']:>6.2f}")
        for b, bs in base.items():
            line += (f" {s['rps']['median'] / bs['rps']['median']:>12.2f}"
                     f" {s['cpu_us_per_req']['median'] / bs['cpu_us_per_req']['median']:>11.2f}")
        print(line)


def describe(args) -> str:
    return (f"pinning: server `taskset -c {SERVER_CPU}` (all its threads), client `taskset -c {CLIENT_CPU}`; "
            f"{os.cpu_count()} cores shared with other users of this machine; "
            f"{args.repeat} repetitions interleaved, median and ±half-range; "
            f"{args.connections} connections, {args.duration}s runs after {args.warmup}s warm-up; "
            f"CPU = server utime+stime from /proc/<pid>/stat over the run / requests done "
            f"(user: interpreter and extensions, sys: kernel)")


def cmd_suite(proto: str, names: list[str], args) -> dict:
    print(describe(args))
    res = run_suite(proto, names, args)
    title = {"http": "HTTP/1.1 keep-alive hello (wrk -t1, httptools on every side)",
             "http-close": "HTTP/1.1 hello, Connection: close (a new connection per request)",
             "echo": f"TCP echo ping-pong, {args.size} B messages (C client)"}[proto]
    print_table(title, res["summary"], args)
    s = res["summary"]
    if "ringleader-1" in s and "ringleader-1-notelemetry" in s:
        on, off = s["ringleader-1"]["cpu_us_per_req"]["median"], s["ringleader-1-notelemetry"]["cpu_us_per_req"]["median"]
        print(f"telemetry overhead (ringleader-1 vs telemetry off): {on - off:+.2f} us/req "
              f"({(on / off - 1) * 100:+.1f}%; compare with the spread)")
    if "ringleader-2-reuseport" in s and "ringleader-2-acceptor" in s:
        rp, ac = s["ringleader-2-reuseport"], s["ringleader-2-acceptor"]
        better = "reuseport" if rp["cpu_us_per_req"]["median"] <= ac["cpu_us_per_req"]["median"] else "acceptor"
        print(f"serve modes (2 workers): reuseport {rp['rps']['median']:.0f} req/s "
              f"{rp['cpu_us_per_req']['median']:.2f} us/req; acceptor {ac['rps']['median']:.0f} req/s "
              f"{ac['cpu_us_per_req']['median']:.2f} us/req -> lower CPU/request: {better}")
    loads = [r["loadavg_1m"] for rs in res["runs"].values() for r in rs]
    print(f"machine load (1-min loadavg at the end of each run): {min(loads):.1f}-{max(loads):.1f} "
          f"on {os.cpu_count()} cores; above ~1 other work shares the cores and inflates every figure")
    if "ringleader-1-notelemetry" in s:
        m = telemetry_micro()
        res["telemetry_micro"] = m
        print(f"telemetry, in-process micro (best of 4x25 runs): {m['on_ns']:.0f} ns on vs {m['off_ns']:.0f} ns off "
              f"per recv+send completion pair -> {(m['on_ns'] - m['off_ns']) / 1000:+.2f} us/request")
    if proto == "http" and "uvloop" in s and "ringleader-1" in s:  # the goal
        u, r = s["uvloop"], s["ringleader-1"]
        cpu_ratio = r["cpu_us_per_req"]["median"] / u["cpu_us_per_req"]["median"]
        rps_ratio = r["rps"]["median"] / u["rps"]["median"]
        met = cpu_ratio <= 0.8 and rps_ratio >= 1.0
        print(f"goal (1 worker: CPU/req <= 0.8x uvloop and req/s >= uvloop): cpu {cpu_ratio:.2f}x, "
              f"req/s {rps_ratio:.2f}x -> {'MET' if met else 'NOT met'}")
    res["method"] = describe(args)
    res["proto"] = proto
    return res


def add_arguments(p: argparse.ArgumentParser, default_names: list[str]) -> None:
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--duration", type=float, default=5.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=1.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--size", type=int, default=64, help="echo message bytes")
    p.add_argument("--only", default=",".join(default_names),
                   help=f"comma-separated contenders from {','.join(CONTENDERS)}")
    p.add_argument("--json", metavar="PATH", help="write all runs and summaries as JSON")
    p.add_argument("--close", action="store_true",
                   help="http: send 'Connection: close' (a new connection per request)")


def run_command(name: str, args) -> int:
    names = [n for n in args.only.split(",") if n]
    for n in names:
        if n not in CONTENDERS:
            raise SystemExit(f"unknown contender {n!r}; choose from {', '.join(CONTENDERS)}")
    if name == "fallback":
        res = cmd_suite(args.proto, names, args)
        fallback_ratios(res["summary"])
    elif name == "serve-modes":
        # Keep-alive measures the steady state; close puts every request
        # through accept and the hand-over, where the two modes differ.
        res = {"keepalive": cmd_suite("http", names, args), "close": cmd_suite("http-close", names, args)}
    else:
        res = cmd_suite("echo" if name == "echo" else "http-close" if args.close else "http",
                        names, args)
    res["command"] = name
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)
        print(f"wrote {args.json}")
    return 0


# name -> (help, default contenders): scripts/bench registers these
COMMANDS = {
    "http": ("HTTP/1.1 hello under wrk: asyncio, uvloop, ringleader (CPU us/request, ratios)", DEFAULT),
    "echo": ("TCP echo ping-pong under a C client: same contenders", DEFAULT),
    "serve-modes": ("ringleader Runtime.serve: SO_REUSEPORT per worker vs one acceptor", SERVE_MODES),
    "fallback": ("the epoll fallback beside the ring, uvloop and asyncio (--proto http|echo)",
                 FALLBACK),
}


def fallback_ratios(s: dict) -> None:
    """What the fallback costs, as ratios of median CPU per request."""
    def cpu(n):
        return s[n]["cpu_us_per_req"]["median"] if n in s else None
    ep = cpu("epoll-1")
    if ep is None:
        return
    parts = [f"epoll-1 {ep:.2f} us/req"]
    for other in ("ringleader-1", "uvloop", "asyncio", "epoll-1-notelemetry"):
        if cpu(other):
            parts.append(f"{ep / cpu(other):.2f}x {other}")
    print("the fallback's CPU per request: " + ", ".join(parts))


def register(subparsers) -> None:
    for name, (help_, names) in COMMANDS.items():
        p = subparsers.add_parser(name, help=help_)
        add_arguments(p, names)
        if name == "fallback":
            p.add_argument("--proto", choices=("http", "echo", "http-close"), default="http")
        p.set_defaults(func=lambda a, n=name: run_command(n, a))


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--serve"]:
        p = argparse.ArgumentParser()
        p.add_argument("--serve", required=True)
        p.add_argument("--proto", default="http")
        p.add_argument("--workers", type=int, default=1)
        p.add_argument("--mode", default="reuseport")
        p.add_argument("--telemetry", default="on")
        a = p.parse_args(argv)
        serve_main(a.serve, a.proto, a.workers, a.mode, a.telemetry == "on")
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    register(p.add_subparsers(dest="cmd", required=True))
    a = p.parse_args(argv)
    return a.func(a)


if __name__ == "__main__":
    sys.exit(main())
