"""Statistics for the rig's summary: medians with spread over repeated runs, an
exact two-sided Mann-Whitney U test, and the acceptance figures per run.

Pure functions on plain lists and dicts; no I/O, no plotting.  The run record
these read is built by :mod:`riglib.simmode` and :mod:`riglib.realmode` (see
:func:`run_metrics` for the fields it needs).
"""
from __future__ import annotations

import itertools
import math
import statistics

# Acceptance thresholds from the issue (and research/control.md)
SLO_WINDOW_SHARE = 0.99
ORACLE_RATIO = 1.2
REVERSALS_PER_PERIOD = 2
FIRST_GROW_PERIODS = 2
HOT_SPOT_RATIO = 1.17
RECOVERY_PERIODS = 2


def median_spread(values: list[float]) -> tuple[float, float]:
    """Median and half the min..max range, as a fraction of the median (benchstat's ±)."""
    if not values:
        return math.nan, math.nan
    m = statistics.median(values)
    half = (max(values) - min(values)) / 2
    return m, (half / abs(m) if m else (0.0 if half == 0 else math.inf))


def mann_whitney_p(a: list[float], b: list[float]) -> float | None:
    """Exact two-sided p-value of the Mann-Whitney U test (ties get half ranks and
    the permutation distribution is enumerated, so it is exact for small samples).
    None when a side has fewer than 2 values.  With 3 vs 3 the smallest
    possible p is 0.1, so at least 4 repeats per side are needed to reach 0.05."""
    if len(a) < 2 or len(b) < 2:
        return None
    pooled = list(a) + list(b)
    ranks = _ranks(pooled)
    n = len(a)
    observed = sum(ranks[:n])
    mean = n * (len(pooled) + 1) / 2
    dev = abs(observed - mean)
    total = hits = 0
    for idx in itertools.combinations(range(len(pooled)), n):
        total += 1
        if abs(sum(ranks[i] for i in idx) - mean) >= dev - 1e-9:
            hits += 1
    return hits / total


def _ranks(values: list[float]) -> list[float]:
    order = sorted(range(len(values)), key=lambda i: values[i])
    ranks = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def cap_changes(ts: list[float], caps: list[int]) -> tuple[int, int, list[tuple[float, int, int]]]:
    """(adjustments, direction reversals, [(t, old, new)]) from a cap time series.
    Read from the series rather than from decision logs so that every contender,
    including ones that decide nothing (static) or decide per request
    (grow-on-wait), is counted the same way."""
    changes = []
    for i in range(1, len(caps)):
        if caps[i] != caps[i - 1]:
            changes.append((ts[i], caps[i - 1], caps[i]))
    rev, last = 0, 0
    for _, old, new in changes:
        d = 1 if new > old else -1
        if last and d != last:
            rev += 1
        last = d
    return len(changes), rev, changes


def first_grow_periods(edges: list[float], changes: list[tuple[float, int, int]],
                       cap_at, needed: int, period: float) -> float | None:
    """Worst delay, in supervisor periods, from a burst edge to the first grow,
    over the edges where the cap at the edge was below what the burst needs
    (an edge met by a cap still held from the last burst needs no grow).
    None: no edge needed a grow.  inf: some edge never got one."""
    worst = None
    for e in edges:
        if cap_at(e) >= needed:
            continue
        later = [t for t, old, new in changes if new > old and t >= e]
        d = (min(later) - e) / period if later else math.inf
        worst = d if worst is None else max(worst, d)
    return worst


def recovery_periods(starts: list[float], good: list[int], arrivals: list[int], end: float,
                     share: float = 0.95, period: float = 1.0) -> float:
    """Periods from the end of an overload (``end``) to the first window (by its
    start time) in which at least ``share`` of the arrivals were good; inf if none."""
    for t, g, a in zip(starts, good, arrivals):
        if t >= end - 1e-9 and a and g / a >= share:
            return max(0.0, (t - end) / period)
    return math.inf


def acceptance(m: dict) -> dict:
    """Per-run pass/miss of the issue's acceptance figures (None: not applicable)."""
    if m.get("hot_max_over_mean") is not None:
        return {"max/mean<=1.17": m["hot_max_over_mean"] <= HOT_SPOT_RATIO,
                "no ping-pong": m["ping_pong"] == 0}
    return {
        "slo>=99%": m["slo_windows"] >= SLO_WINDOW_SHARE,
        "conn-s<=1.2x oracle": (m["conn_vs_oracle"] <= ORACLE_RATIO) if m.get("conn_vs_oracle") else None,
        "opened<=2x max cap": (m["opened"] <= 2 * m["max_cap"]) if m.get("max_cap") else None,
        "reversals<=2/period": m["reversals_per_period"] <= REVERSALS_PER_PERIOD,
        "first grow<=2 periods": (None if m.get("first_grow_periods") is None
                                  else m["first_grow_periods"] <= FIRST_GROW_PERIODS),
        "0 grows while guard trips": (None if m.get("grows_while_guard_tripped") is None
                                      else m["grows_while_guard_tripped"] == 0),
        "recovers<=2 periods": (None if m.get("recovery_periods") is None
                                else m["recovery_periods"] <= RECOVERY_PERIODS),
    }
