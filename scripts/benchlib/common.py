"""Helpers shared by benchmarks: compiling a C baseline, CPU pinning, child processes,
the host description and JSON output of reports.

Not here: any measurement.  Pinning follows the machine notes: on 2 cores a client and
a server on the same core distort every figure, so the ring side and its peer get one
core each (``taskset -c``); with a single CPU nothing is pinned and the notes say so.
"""
from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess

BENCH_C = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "bench_c")


def compile_c(name: str, out_dir: str, libs: tuple[str, ...] = ("uring",)) -> str:
    """Compile scripts/bench_c/<name>.c with gcc -O2 into out_dir; returns the binary."""
    gcc = shutil.which("gcc")
    if gcc is None:
        raise SystemExit("bench: gcc is missing (./scripts/bootstrap installs it)")
    src = os.path.join(BENCH_C, f"{name}.c")
    out = os.path.join(out_dir, name)
    cmd = [gcc, "-O2", "-Wall", "-o", out, src] + [f"-l{lib}" for lib in libs]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"bench: compiling {src} failed:\n{res.stderr}")
    return out


class Pinning:
    """Which CPU runs the side under test and which runs its peer."""

    def __init__(self):
        cpus = sorted(os.sched_getaffinity(0))
        self.taskset = shutil.which("taskset")
        self.enabled = len(cpus) >= 2 and self.taskset is not None
        self.ring_cpu = cpus[0]
        self.peer_cpu = cpus[1] if len(cpus) >= 2 else cpus[0]
        self._saved = set(cpus)

    def describe(self) -> str:
        if not self.enabled:
            why = "one CPU available" if self.taskset else "taskset not found"
            return f"pinning: none ({why}); figures with a peer are distorted"
        return (f"pinning: ring side (this Python process, and the C baseline via taskset -c "
                f"{self.ring_cpu}) on CPU {self.ring_cpu}; ping-pong echo peer on CPU "
                f"{self.peer_cpu} (taskset -c {self.peer_cpu})")

    def prefix(self, peer: bool) -> list[str]:
        """Command prefix that pins a child to the ring CPU or the peer CPU."""
        if not self.enabled:
            return []
        return [self.taskset, "-c", str(self.peer_cpu if peer else self.ring_cpu)]

    def pin_self(self) -> None:
        if self.enabled:
            os.sched_setaffinity(0, {self.ring_cpu})

    def unpin_self(self) -> None:
        os.sched_setaffinity(0, self._saved)


def load_note() -> str:
    """The 1/5/15-minute load averages: on a shared machine they explain most noise."""
    one, five, fifteen = os.getloadavg()
    return f"load average at start {one:.2f} / {five:.2f} / {fifteen:.2f} on {os.cpu_count()} CPUs"


def run_rate(cmd: list[str], pass_fds=()) -> tuple[int, float]:
    """Run a C baseline that prints ``ops <n> secs <s>``; returns (n, s)."""
    res = subprocess.run(cmd, capture_output=True, text=True, pass_fds=pass_fds, timeout=120)
    if res.returncode != 0:
        raise SystemExit(f"bench: {' '.join(cmd)} failed: {res.stderr.strip()}")
    words = res.stdout.split()
    return int(words[words.index("ops") + 1]), float(words[words.index("secs") + 1])


def host_info() -> dict:
    """What a saved result needs to say about the machine it was measured on."""
    return {"kernel": platform.release(), "python": platform.python_version(),
            "cpus": os.cpu_count(), "machine": platform.machine()}


def write_json(path: str, data: dict) -> None:
    """A report as indented JSON at ``path`` (its directory made if missing)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
        f.write("\n")
