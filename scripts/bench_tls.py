"""Does a second worker pay on a TLS-terminating service?  (issue 16)

With the GIL, a second ringleader worker overlaps only kernel time and code
that releases the GIL.  The ssl module encrypts and decrypts with the GIL
released, so a service that terminates TLS and sends sizable responses is
where a second worker could pay.  This benchmark serves HTTP/1.1 keep-alive
GETs answered with ``--body`` bytes, over TLS and (the control) in the clear,
from a ringleader runtime of 1 and of 2 workers (one asyncio TLS server per
worker on one SO_REUSEPORT port), and drives it with wrk.

Placement: the machine has two cores, and a second worker can only pay if
the server may use both, so the server and wrk share cores 0-1 (wrk's own TLS
work competes, as it would on a real host).  Contenders are interleaved inside
each repetition; reported: requests/s (median, min-max) and the server's CPU
(utime + stime over the run, all threads, in cores), and the 2-worker/1-worker
ratio per repetition.  Run it inside ``flock /work/wt/_bench.lock``.

    scripts/bench_tls.py [--reps 3] [--seconds 8] [--body 131072] [--conns 32]
"""
from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import tempfile

TICK = os.sysconf("SC_CLK_TCK")
CPUS = "0,1"


class BigHttp(asyncio.Protocol):
    """Answers every request (wrk's GETs, no body) with the configured body."""

    response = b""

    def connection_made(self, transport):
        self.transport = transport
        self.buf = b""

    def data_received(self, data):
        self.buf += data
        n = self.buf.count(b"\r\n\r\n")
        if n:
            self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4:]
            self.transport.write(self.response * n)


def serve(workers: int, body: int, certdir: str | None) -> None:
    import ringleader

    BigHttp.response = (b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                        b"Content-Length: %d\r\n\r\n" % body) + b"x" * body
    ctx = None
    if certdir:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(os.path.join(certdir, "cert.pem"), os.path.join(certdir, "key.pem"))

    async def main(rt):
        port = 0
        for w in range(workers):
            async def start(port=port):
                loop = asyncio.get_running_loop()
                srv = await loop.create_server(BigHttp, "127.0.0.1", port, ssl=ctx, reuse_port=True,
                                               backlog=1024)
                return srv.sockets[0].getsockname()[1]
            port = await rt.run_on(w, start())
        print(f"READY {port}", flush=True)
        await asyncio.Event().wait()

    ringleader.run(main, workers=workers)


def certs(d: str) -> str:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=localhost", "-keyout", os.path.join(d, "key.pem"),
                    "-out", os.path.join(d, "cert.pem")], check=True, capture_output=True)
    return d


def cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def one(workers: int, tls: bool, args, certdir: str) -> dict:
    cmd = ["taskset", "-c", CPUS, sys.executable, os.path.abspath(__file__), "--serve", str(workers),
           "--body", str(args.body)] + (["--certs", certdir] if tls else [])
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            raise RuntimeError(f"server did not start: {line!r}")
        port = int(line.split()[1])
        url = f"{'https' if tls else 'http'}://127.0.0.1:{port}/"
        subprocess.run(["wrk", "-t1", "-c2", "-d1s", url], capture_output=True, check=True)  # warm-up
        c0 = cpu_s(proc.pid)
        out = subprocess.run(["taskset", "-c", CPUS, "wrk", "-t2", f"-c{args.conns}",
                              f"-d{max(1, round(args.seconds))}s", url], capture_output=True, text=True, check=True).stdout
        cpu = cpu_s(proc.pid) - c0
        reqs = int(re.search(r"(\d+) requests in", out).group(1))
        return {"rps": reqs / args.seconds, "server_cores": cpu / args.seconds}
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    p.add_argument("--certs", help=argparse.SUPPRESS)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--seconds", type=float, default=8.0)
    p.add_argument("--body", type=int, default=131072)
    p.add_argument("--conns", type=int, default=32)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve, args.body, args.certs)
        return 0
    if shutil.which("wrk") is None or shutil.which("openssl") is None:
        sys.exit("bench_tls: needs wrk and openssl (./scripts/bootstrap installs them)")
    d = certs(tempfile.mkdtemp(prefix="rl-tls-"))
    names = [(tls, w) for tls in (True, False) for w in (1, 2)]
    runs = {n: [] for n in names}
    for rep in range(args.reps):
        for n in names:
            runs[n].append(one(n[1], n[0], args, d))
            r = runs[n][-1]
            print(f"rep {rep + 1} {'tls  ' if n[0] else 'plain'} {n[1]} worker(s): {r['rps']:8.0f} req/s, "
                  f"server {r['server_cores']:.2f} cores", flush=True)
    shutil.rmtree(d, ignore_errors=True)
    print(f"\n{args.body} B responses, wrk -t2 -c{args.conns}, {args.seconds:g} s x {args.reps} reps, "
          f"server and client sharing cores {CPUS}; load average {os.getloadavg()[0]:.1f}")
    for tls in (True, False):
        one_w, two_w = runs[(tls, 1)], runs[(tls, 2)]
        ratios = [b["rps"] / a["rps"] for a, b in zip(one_w, two_w)]

        def med(rs, k):
            v = [r[k] for r in rs]
            return f"{statistics.median(v):.0f} ({min(v):.0f}-{max(v):.0f})" if k == "rps" else \
                f"{statistics.median(v):.2f} ({min(v):.2f}-{max(v):.2f})"
        print(f"{'TLS  ' if tls else 'plain'}: 1 worker {med(one_w, 'rps')} req/s, {med(one_w, 'server_cores')} "
              f"cores | 2 workers {med(two_w, 'rps')} req/s, {med(two_w, 'server_cores')} cores | "
              f"2w/1w {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
