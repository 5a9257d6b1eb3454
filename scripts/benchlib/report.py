"""Samples, statistics and output (text table, JSON) shared by all benchmarks.

A :class:`Report` holds named contenders, each with one rate sample per repetition,
and comparison rows (a Python contender against its C baseline).  It prints medians
with min-max and IQR, and the ratio of medians.  It measures nothing itself.
"""
from __future__ import annotations

import dataclasses
import statistics
import time

from .common import host_info, write_json


@dataclasses.dataclass
class Contender:
    name: str
    impl: str          # "python" or "c"
    unit: str
    samples: list[float] = dataclasses.field(default_factory=list)

    def summary(self) -> dict:
        s = sorted(self.samples)
        q = statistics.quantiles(s, n=4, method="inclusive") if len(s) > 1 else [s[0]] * 3
        return {"median": statistics.median(s), "min": s[0], "max": s[-1],
                "q1": q[0], "q3": q[2], "n": len(s)}


@dataclasses.dataclass
class Report:
    benchmark: str
    notes: list[str]
    contenders: dict[str, Contender] = dataclasses.field(default_factory=dict)
    # (label, python contender, c contender)
    pairs: list[tuple[str, str, str]] = dataclasses.field(default_factory=list)
    target: dict[str, float] = dataclasses.field(default_factory=dict)  # label -> min ratio

    def add(self, name: str, impl: str, unit: str) -> Contender:
        c = self.contenders[name] = Contender(name, impl, unit)
        return c

    def ratio(self, label: str) -> float:
        _, py, c = next(p for p in self.pairs if p[0] == label)
        return (self.contenders[py].summary()["median"]
                / self.contenders[c].summary()["median"])

    def table(self) -> str:
        rows = [("case", "Python median", "Python min-max", "C median", "C min-max", "Py/C")]
        for label, py, c in self.pairs:
            p, k = self.contenders[py].summary(), self.contenders[c].summary()
            ratio = p["median"] / k["median"]
            flag = ""
            if label in self.target:
                flag = "  ok" if ratio >= self.target[label] else f"  below target {self.target[label]}x"
            rows.append((label, _fmt(p["median"]), f"{_fmt(p['min'])}-{_fmt(p['max'])}",
                         _fmt(k["median"]), f"{_fmt(k['min'])}-{_fmt(k['max'])}",
                         f"{ratio:.2f}x{flag}"))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
        lines = [f"== {self.benchmark} =="] + [f"  {n}" for n in self.notes] + [""]
        for i, r in enumerate(rows):
            lines.append("  ".join(x.ljust(w) if j == 0 else x.rjust(w)
                                   for j, (x, w) in enumerate(zip(r, widths))).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        units = sorted({c.unit for c in self.contenders.values()})
        lines.append(f"\n  rates in {', '.join(units)}; k = 1e3, M = 1e6; "
                     f"{self._reps()} repetitions, contenders interleaved")
        return "\n".join(lines)

    def _reps(self) -> int:
        return max((len(c.samples) for c in self.contenders.values()), default=0)

    def as_dict(self) -> dict:
        return {
            "benchmark": self.benchmark,
            "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "host": host_info(),
            "notes": self.notes,
            "contenders": {n: {"impl": c.impl, "unit": c.unit, "samples": c.samples, **c.summary()}
                           for n, c in self.contenders.items()},
            "comparisons": [{"case": label, "python": py, "c": c, "ratio": self.ratio(label),
                             "target": self.target.get(label)}
                            for label, py, c in self.pairs],
        }

    def write_json(self, path: str) -> None:
        write_json(path, self.as_dict())


def _fmt(v: float) -> str:
    if v >= 1e6:
        return f"{v / 1e6:.2f}M"
    if v >= 1e3:
        return f"{v / 1e3:.1f}k"
    return f"{v:.1f}"
