"""``scripts/bench ring``: the binding against liburing in C, side by side.

Contenders (all on rings with the same set-up flags, which the Python ``Ring`` picks
and the C program ``scripts/bench_c/ring_bench.c`` is given):

- NOP round trips: one NOP per ``enter`` (Python ``nop()`` + ``enter(1)``); 32 ``nop()``
  calls per ``enter``; the bulk helper ``nops(N)`` per ``enter`` for N = 32, 128; and
  C doing the same with 1/32/128 NOPs per ``io_uring_submit_and_wait``.
- socketpair ping-pong: 64-byte messages on fixed files, multishot recv into a
  provided-buffer ring, one socket (a round trip per enter) or 32 sockets in flight
  (32 sends per enter); the echo peer is the C program, pinned to the other core.

Every repetition runs each contender once, in a rotating order, for ``--seconds``.
What it does not measure: the event loop (the runtime's benchmarks do that).
"""
from __future__ import annotations

import errno
import socket
import subprocess
import tempfile
import time

from ringleader.uring import Ring, consts, probe

from .common import Pinning, compile_c, load_note, run_rate
from .report import Report

NAME = "ring"
HELP = "NOP and socketpair ping-pong rates: the Python binding vs liburing in C"

MSG = b"p" * 64
SEND = 1 << 32
_F_MORE = consts.CQE_F_MORE


def add_arguments(p) -> None:
    p.add_argument("--batches", default="32,128", help="NOP batch sizes (default 32,128)")
    p.add_argument("--depths", default="1,32", help="ping-pong sockets in flight (default 1,32)")


# ---- Python contenders: each returns (operations, seconds measured) ----

def _timed(step, seconds: float, per_step: int) -> tuple[int, float]:
    """Run ``step()`` (``per_step`` ops each) in chunks until ``seconds`` have passed,
    after one untimed warm-up chunk."""
    chunk = 64
    for _ in range(chunk):
        step()
    ops = 0
    t0 = time.perf_counter()
    end = t0 + seconds
    while True:
        for _ in range(chunk):
            step()
        ops += chunk * per_step
        t1 = time.perf_counter()
        if t1 >= end:
            return ops, t1 - t0


def py_nop_single(seconds: float) -> tuple[int, float]:
    with Ring(256, files=0) as r:
        nop, enter = r.nop, r.enter

        def step():
            nop(1)
            enter(1)
        return _timed(step, seconds, 1)


def _harvest(enter, n: int) -> None:
    got = len(enter(n)[0])
    while got < n:
        got += len(enter(n - got)[0])


def py_nop_calls(batch: int, seconds: float) -> tuple[int, float]:
    with Ring(max(256, batch), files=0) as r:
        nop, enter = r.nop, r.enter

        def step():
            for i in range(batch):
                nop(i)
            _harvest(enter, batch)
        return _timed(step, seconds, batch)


def py_nops(batch: int, seconds: float) -> tuple[int, float]:
    with Ring(max(256, batch), files=0) as r:
        nops, enter = r.nops, r.enter

        def step():
            nops(batch, 0)
            _harvest(enter, batch)
        return _timed(step, seconds, batch)


def py_pingpong(socks: list[socket.socket], seconds: float) -> tuple[int, float]:
    depth = len(socks)
    with Ring(256, files=max(depth, 8), kernel_slots=0) as r:
        slots = [r.files.install(s.fileno()) for s in socks]
        br = r.buffer_ring(256, 4096)
        for i, slot in enumerate(slots):
            r.recv_select(slot, br, i, multishot=True, fixed=True)
        r.flush()
        send, enter, take = r.send, r.enter, br.take

        def step():
            for i in range(depth):
                send(slots[i], MSG, SEND | i, fixed=True)
            need, sends = depth * len(MSG), depth
            while need or sends:
                uds, res, fls = enter(1)
                for u, n, f in zip(uds, res, fls):
                    if u & SEND:
                        if n != len(MSG):
                            raise OSError(-n if n < 0 else errno.EIO, "send")
                        sends -= 1
                        continue
                    if n > 0:
                        take(f >> 16, n)
                        need -= n
                    elif n != -errno.ENOBUFS:
                        raise OSError(-n if n < 0 else errno.EPIPE, "recv")
                    if not f & _F_MORE:  # ran dry: re-arm
                        r.recv_select(slots[u], br, u, multishot=True, fixed=True)
        return _timed(step, seconds, depth)


# ---- the run ----

class _Peers:
    """``depth`` socketpairs and a C echo process on the peer ends, pinned."""

    def __init__(self, binary: str, depth: int, pin: Pinning):
        pairs = [socket.socketpair() for _ in range(depth)]
        self.ring_side = [a for a, _ in pairs]
        peer = [b for _, b in pairs]
        fds = [b.fileno() for b in peer]
        self.proc = subprocess.Popen(pin.prefix(peer=True) + [binary, "echo", *map(str, fds)],
                                     pass_fds=fds)
        for b in peer:
            b.close()  # the echo process holds them now

    def close(self) -> None:
        for a in self.ring_side:
            a.close()  # EOF: the echo process exits
        self.proc.wait(10)


def run(args) -> Report:
    batches = [int(x) for x in args.batches.split(",") if x]
    depths = [int(x) for x in args.depths.split(",") if x]
    pin = Pinning()
    feats = probe()
    with Ring(8, files=0) as r:
        flags = r.flags
    report = Report("ring", [
        pin.describe(),
        f"kernel {feats.kernel}; ring set-up flags {flags:#x} for Python and C alike; "
        f"{args.seconds} s per contender per repetition",
        load_note(),
    ])
    with tempfile.TemporaryDirectory(prefix="ringbench-") as tmp:
        binary = compile_c("ring_bench", tmp)

        def c_nop(batch):
            return run_rate(pin.prefix(peer=False) + [binary, "nop", str(batch),
                                                      str(args.seconds), str(flags)])

        def with_peers(depth, fn):
            peers = _Peers(binary, depth, pin)
            try:
                return fn(peers.ring_side)
            finally:
                peers.close()

        def c_pingpong(socks):
            fds = [s.fileno() for s in socks]
            return run_rate(pin.prefix(peer=False) + [binary, "pingpong", str(len(fds)),
                                                      str(args.seconds), str(flags),
                                                      *map(str, fds)], pass_fds=fds)

        runs = {}  # contender name -> callable returning (ops, secs)

        def add(name, impl, unit, fn):
            report.add(name, impl, unit)
            runs[name] = fn

        add("py nop x1", "python", "ops/s", lambda: py_nop_single(args.seconds))
        add("c nop x1", "c", "ops/s", lambda: c_nop(1))
        report.pairs.append(("NOP, 1 per enter", "py nop x1", "c nop x1"))
        for b in batches:
            add(f"py nop() x{b}", "python", "ops/s", lambda b=b: py_nop_calls(b, args.seconds))
            add(f"py nops({b})", "python", "ops/s", lambda b=b: py_nops(b, args.seconds))
            add(f"c nop x{b}", "c", "ops/s", lambda b=b: c_nop(b))
            report.pairs.append((f"NOP, {b} nop() calls per enter", f"py nop() x{b}", f"c nop x{b}"))
            report.pairs.append((f"NOP, nops({b}) per enter", f"py nops({b})", f"c nop x{b}"))
            report.target[f"NOP, nops({b}) per enter"] = 0.3
        for d in depths:
            add(f"py pingpong x{d}", "python", "round trips/s",
                lambda d=d: with_peers(d, lambda socks: py_pingpong(socks, args.seconds)))
            add(f"c pingpong x{d}", "c", "round trips/s", lambda d=d: with_peers(d, c_pingpong))
            label = "ping-pong, 1 socket" if d == 1 else f"ping-pong, {d} sockets per enter"
            report.pairs.append((label, f"py pingpong x{d}", f"c pingpong x{d}"))

        names = list(runs)
        pin.pin_self()
        try:
            for rep in range(args.reps):
                k = rep % len(names)
                for name in names[k:] + names[:k]:  # rotate: no contender always goes first
                    ops, secs = runs[name]()
                    report.contenders[name].samples.append(ops / secs)
        finally:
            pin.unpin_self()
    return report
