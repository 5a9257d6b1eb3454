"""scripts/bench udp: a UDP echo server on asyncio, uvloop and ringleader's loop.

Each contender is a server process (``create_datagram_endpoint`` echoing every
datagram) pinned to one CPU; the client (this process, pinned to the other)
keeps a window of datagrams in flight over a connected socket for
``--seconds``.  ``ring-1shot`` is ringleader's loop with multishot receive
turned off (``loop.datagram_multishot = False``).  Reported per contender: datagrams echoed per second and the
server's CPU time per datagram (utime+stime from /proc, 10 ms ticks), medians
with min-max over ``--reps`` repetitions, contenders interleaved, and the
ratios of the medians against uvloop and asyncio.  The client is plain Python
and may bound the rate; the CPU per datagram is the figure that compares loops.
"""
from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time

from benchlib.common import Pinning

SERVER = r"""
import asyncio, socket, sys
kind = sys.argv[1]
if kind == "uvloop":
    import uvloop; factory = uvloop.new_event_loop
elif kind in ("ringleader", "ring-1shot"):
    import ringleader
    def factory():
        loop = ringleader.new_event_loop()
        if kind == "ring-1shot":
            loop.datagram_multishot = False   # one recvmsg per ring operation
        return loop
else:
    factory = asyncio.new_event_loop

class Echo(asyncio.DatagramProtocol):
    def connection_made(self, t): self.t = t
    def datagram_received(self, d, a): self.t.sendto(d, a)

async def main():
    loop = asyncio.get_running_loop()
    t, _ = await loop.create_datagram_endpoint(Echo, local_addr=("127.0.0.1", 0))
    print(t.get_extra_info("sockname")[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)   # until the client closes stdin
    t.close()

with asyncio.Runner(loop_factory=factory) as r:
    r.run(main())
"""

# ringleader receives with a multishot recvmsg where the kernel has it; ring-1shot
# is the same loop told to arm one recvmsg at a time (its fallback).
CONTENDERS = ("asyncio", "uvloop", "ringleader", "ring-1shot")


def _cpu_s(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _one_run(kind: str, pin: Pinning, seconds: float, window: int, size: int) -> tuple[float, float]:
    proc = subprocess.Popen(pin.prefix(peer=False) + [sys.executable, "-c", SERVER, kind],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.connect(("127.0.0.1", port))
        s.settimeout(0.2)
        payload = b"x" * size
        for _ in range(window):  # warm the path, then measure
            s.send(payload)
        got = 0
        cpu0, t0 = _cpu_s(proc.pid), time.perf_counter()
        end = t0 + seconds
        while time.perf_counter() < end:
            try:
                s.recv(65536)
                got += 1
                s.send(payload)
            except socket.timeout:  # a drop: refill the window
                for _ in range(window):
                    s.send(payload)
        wall = time.perf_counter() - t0
        cpu = _cpu_s(proc.pid) - cpu0
        s.close()
        return got / wall, cpu / max(got, 1) * 1e6
    finally:
        proc.stdin.close()
        proc.wait(30)


def run(args) -> int:
    pin = Pinning()
    if pin.enabled:
        os.sched_setaffinity(0, {pin.peer_cpu})  # the client: the other CPU
    rates: dict[str, list[float]] = {k: [] for k in CONTENDERS}
    cpus: dict[str, list[float]] = {k: [] for k in CONTENDERS}
    for rep in range(args.reps):
        order = CONTENDERS if rep % 2 == 0 else tuple(reversed(CONTENDERS))
        for kind in order:
            r, c = _one_run(kind, pin, args.seconds, args.window, args.size)
            rates[kind].append(r)
            cpus[kind].append(c)
    print("== udp echo ==")
    where = (f"server pinned to CPU {pin.ring_cpu}, client (this process) to CPU {pin.peer_cpu}"
             if pin.enabled else "no pinning (one CPU): figures distorted")
    print(f"  {where}; the machine is shared, expect noise from other work")
    print(f"  window {args.window} datagrams of {args.size} bytes, {args.seconds}s per run, "
          f"{args.reps} repetitions, contenders interleaved (order alternates)\n")
    print(f"  {'loop':<11}{'datagrams/s median (min-max)':>32}{'server CPU us/dgram median (min-max)':>40}")
    for kind in CONTENDERS:
        r, c = sorted(rates[kind]), sorted(cpus[kind])
        print(f"  {kind:<11}{statistics.median(r):>14.0f} ({r[0]:.0f}-{r[-1]:.0f})"
              f"{statistics.median(c):>22.2f} ({c[0]:.2f}-{c[-1]:.2f})")
    ring = statistics.median(cpus["ringleader"])
    for peer in ("uvloop", "asyncio", "ring-1shot"):
        per_rep = sorted(p / q for p, q in zip(cpus[peer], cpus["ringleader"]))
        print(f"  server CPU per datagram, {peer}/ringleader: "
              f"{statistics.median(cpus[peer]) / ring:.2f}x "
              f"(per-repetition ratios {per_rep[0]:.2f}-{per_rep[-1]:.2f}); >1 = ringleader cheaper")
    return 0


def register(sub) -> None:
    p = sub.add_parser("udp", help="UDP echo server on asyncio, uvloop, ringleader: "
                                   "datagrams/s and server CPU per datagram")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--seconds", type=float, default=2.0)
    p.add_argument("--window", type=int, default=32)
    p.add_argument("--size", type=int, default=64)
    p.set_defaults(func=run)
