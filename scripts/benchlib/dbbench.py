"""Shared machinery of ``scripts/bench redis`` and ``scripts/bench postgres``:
pinning, the contender matrix, running client processes, and the report.

Pinning: the server on the first allowed CPU (``taskset -c 0``), every client
process (Python contenders and the C tools) on the second (``taskset -c 1``),
so the client's CPU time per operation is its own and the server never
competes with it.  Each measurement is one fresh client process (see
:mod:`benchlib.dbclient`); a C tool's CPU comes from ``wait4``'s rusage of
its process.  Repetitions run every (workload, concurrency, contender) once,
contenders in a rotating order, so slow drift of a shared machine hits all of
them alike.  Reported: median ops/s with min-max over repetitions, median p99
and CPU µs/op, and the ratio of median ops/s of the first contender (the
ringleader one) against each peer, with the issue's goals.

Not here: servers' specifics and the C tools' command lines (the two modules).
"""
from __future__ import annotations

import dataclasses
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

from .common import host_info, write_json

SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Pins:
    def __init__(self) -> None:
        cpus = sorted(os.sched_getaffinity(0))
        self.taskset = shutil.which("taskset")
        self.enabled = len(cpus) >= 2 and self.taskset is not None
        self.server_cpu = cpus[0]
        self.client_cpu = cpus[1] if len(cpus) >= 2 else cpus[0]

    def server(self) -> list[str]:
        return [self.taskset, "-c", str(self.server_cpu)] if self.enabled else []

    def client(self) -> list[str]:
        return [self.taskset, "-c", str(self.client_cpu)] if self.enabled else []

    def describe(self) -> str:
        if not self.enabled:
            return "pinning: none (fewer than 2 CPUs or no taskset): server and client share CPUs"
        return (f"pinning: server on CPU {self.server_cpu} (taskset -c {self.server_cpu}), "
                f"each client process on CPU {self.client_cpu} (taskset -c {self.client_cpu})")


def run_python_client(pins: Pins, spec: dict, timeout: float = 120,
                      python: str | None = None) -> dict:
    """One measurement in a fresh pinned client process (benchlib.dbclient), under
    ``python`` when given (another venv, e.g. an older ringleader)."""
    cmd = pins.client() + [python or sys.executable, "-m", "benchlib.dbclient", json.dumps(spec)]
    res = subprocess.run(cmd, cwd=SCRIPTS, capture_output=True, text=True, timeout=timeout)
    if res.returncode != 0:
        tail = "\n".join(res.stderr.strip().splitlines()[-15:])
        raise SystemExit(f"bench: client {spec['contender']} {spec['op']} c={spec['conc']} "
                         f"failed:\n{tail}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def run_c_tool(cmd: list[str], timeout: float = 300, cwd: str | None = None
               ) -> tuple[str, float]:
    """Runs a C client; returns (stdout, CPU seconds of that process from wait4)."""
    import tempfile
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, text=True, cwd=cwd)
        deadline = time.monotonic() + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                os.wait4(proc.pid, 0)
                raise SystemExit(f"bench: {' '.join(cmd)} timed out")
            time.sleep(0.02)
        proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here, not by Popen
        out.seek(0)
        err.seek(0)
        text = out.read()
        if proc.returncode != 0:
            raise SystemExit(f"bench: {' '.join(cmd)} failed ({proc.returncode}): "
                             f"{err.read().strip()[-800:]}")
    return text, ru.ru_utime + ru.ru_stime


# ---------------------------------------------------------------- the report

@dataclasses.dataclass
class Cell:
    samples: list[dict] = dataclasses.field(default_factory=list)

    def med(self, key: str) -> float | None:
        vals = [s[key] for s in self.samples if s.get(key) is not None]
        return statistics.median(vals) if vals else None

    def span(self, key: str) -> tuple[float, float]:
        vals = [s[key] for s in self.samples]
        return min(vals), max(vals)


@dataclasses.dataclass
class DBReport:
    benchmark: str
    notes: list[str]
    contenders: list[str]  # display names; the first is ringleader's
    cases: list[str]  # "GET c=64", ...
    cells: dict[tuple[str, str], Cell] = dataclasses.field(default_factory=dict)
    goals: dict[tuple[str, str], float] = dataclasses.field(default_factory=dict)  # (case, peer) -> min ratio
    subjects: list[str] = dataclasses.field(default_factory=list)  # contenders compared with the peers

    def add(self, case: str, contender: str, sample: dict) -> None:
        self.cells.setdefault((case, contender), Cell()).samples.append(sample)

    def ratio(self, case: str, a: str, b: str) -> float | None:
        ca, cb = self.cells.get((case, a)), self.cells.get((case, b))
        if not ca or not cb or not ca.samples or not cb.samples:
            return None
        return ca.med("ops_s") / cb.med("ops_s")

    def _subjects(self) -> list[str]:
        return self.subjects or self.contenders[:1]

    def table(self) -> str:
        lines = [f"== {self.benchmark} =="] + [f"  {n}" for n in self.notes] + [""]
        head = ("case", "contender", "ops/s", "min-max", "p99 µs", "CPU µs/op")
        rows = [head]
        for case in self.cases:
            for c in self.contenders:
                cell = self.cells.get((case, c))
                if not cell or not cell.samples:
                    continue
                lo, hi = cell.span("ops_s")
                p99, cpu = cell.med("p99_us"), cell.med("cpu_us_op")
                rows.append((case, c, _k(cell.med("ops_s")), f"{_k(lo)}-{_k(hi)}",
                             "-" if p99 is None else f"{p99:.0f}",
                             "-" if cpu is None else f"{cpu:.1f}"))
            rows.append(None)
        widths = [max(len(r[i]) for r in rows if r) for i in range(len(head))]
        for i, r in enumerate(rows):
            if r is None:
                continue
            lines.append("  ".join(x.ljust(w) if j < 2 else x.rjust(w)
                                   for j, (x, w) in enumerate(zip(r, widths))).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        lines.append("")
        lines.append("ratios of median ops/s (subject / peer):")
        for case in self.cases:
            for subj in self._subjects():
                parts = []
                for peer in self.contenders:
                    if peer in self._subjects():
                        continue
                    r = self.ratio(case, subj, peer)
                    if r is None:
                        continue
                    goal = self.goals.get((case, peer))
                    flag = "" if goal is None else (f" (goal {goal}x: met)" if r >= goal
                                                    else f" (goal {goal}x: MISSED)")
                    parts.append(f"{r:.2f}x {peer}{flag}")
                if parts:
                    lines.append(f"  {case:<14} {subj}: " + "; ".join(parts))
        reps = max((len(c.samples) for c in self.cells.values()), default=0)
        lines.append(f"\n  k = 1e3; medians of {reps} repetitions, contenders interleaved; "
                     f"p99 and CPU are medians of the per-repetition values")
        return "\n".join(lines)

    def as_dict(self) -> dict:
        out = {"benchmark": self.benchmark,
               "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
               "host": host_info(),
               "notes": self.notes, "results": [], "ratios": []}
        for (case, c), cell in self.cells.items():
            lo, hi = cell.span("ops_s")
            out["results"].append({"case": case, "contender": c, "samples": cell.samples,
                                   "ops_s_median": cell.med("ops_s"), "ops_s_min": lo,
                                   "ops_s_max": hi, "p99_us_median": cell.med("p99_us"),
                                   "cpu_us_op_median": cell.med("cpu_us_op")})
        for case in self.cases:
            for subj in self._subjects():
                for peer in self.contenders:
                    if peer in self._subjects():
                        continue
                    r = self.ratio(case, subj, peer)
                    if r is not None:
                        goal = self.goals.get((case, peer))
                        out["ratios"].append({"case": case, "subject": subj, "peer": peer,
                                              "ratio": r, "goal": goal,
                                              "met": None if goal is None else r >= goal})
        return out

    def write_json(self, path: str) -> None:
        write_json(path, self.as_dict())


def _k(v: float) -> str:
    return f"{v / 1e3:.1f}k" if v >= 1e3 else f"{v:.0f}"


def percentile(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * q))]


def contenders(workers: list[int], ringleader: str, others: dict,
               only: str) -> dict[str, tuple[str, dict | None]]:
    """key -> (display name, client spec; None = the server's own C tool):
    ringleader (client ``ringleader``) on each worker count, then ``others``,
    kept to the comma-separated keys of ``--only`` when given."""
    table: dict[str, tuple[str, dict | None]] = {}
    for w in workers:
        key = "ringleader" if w == 1 else f"ringleader-{w}w"
        table[key] = (f"ringleader {w}w", {"contender": ringleader, "workers": w})
    table.update(others)
    if only:
        keep = {x.strip() for x in only.split(",")}
        table = {k: v for k, v in table.items() if k in keep}
    return table


def rotate(items: list, k: int) -> list:
    k %= max(1, len(items))
    return items[k:] + items[:k]


def run_matrix(report: DBReport, args, kind: str, target: str, table: dict,
               cases: list[tuple[str, int]], label, c_tool) -> None:
    """Every repetition measures each case with each contender, the contenders
    in an order rotated per case and repetition.  ``table``: key -> (display
    name, client spec or None for the C tool); ``c_tool(op, conc)`` measures
    the C tool; ``label(op, conc)`` names the case."""
    pins = Pins()
    for rep in range(args.reps):
        for i, (op, c) in enumerate(cases):
            for key in rotate(list(table), rep + i):
                name, spec = table[key]
                if spec is None:
                    res = c_tool(op, c)
                else:
                    res = run_python_client(pins, dict(
                        spec, kind=kind, target=target, op=op, conc=c, pool=args.pool,
                        seconds=args.seconds, warmup=args.warmup))
                report.add(label(op, c), name, res)
                print(f"  rep {rep + 1} {op} c={c} {name}: {res['ops_s']:.0f} ops/s "
                      f"p99 {res['p99_us']:.0f} us cpu {res['cpu_us_op']:.1f} us/op", flush=True)
