"""The benchstat-style summary: per mode, pattern and contender, the median and
spread over repeated runs (seeds) of each metric, the delta against the best
static pool size with its significance, and the acceptance figures with how
many runs passed each.

Significance: an exact two-sided Mann-Whitney U test on the repeats, p < 0.05.
With fewer than 4 repeats per side the test cannot reach 0.05 (3 vs 3 gives at
best p = 0.1), so those deltas are marked "~" (not significant) whatever
their size, exactly as benchstat does.  The best static size is the static
contender with the fewest connection-seconds among those whose median run
meets the SLO in >= 99% of windows (or, if none does, the one with the highest
SLO share).

Each verdict line sets the connection-seconds against the floor the rails
force (:mod:`.floor`), so a goal no contender can reach at the rig's load is
called unreachable rather than left as a bare MISS.

Reads run records (see :mod:`riglib.simmode`); writes nothing itself except
through :func:`write`.
"""
from __future__ import annotations

import collections
import json
import math
import os

from . import floor, stats

METRICS = ("slo_windows", "good_share", "failed", "acquire_wait_p99_ms", "request_p99_ms", "throughput",
           "conn_seconds", "opened", "max_cap", "conn_vs_oracle", "adjustments", "reversals")
# issue 16's goals for the supervised pool against grow-on-wait's connection-seconds
CONN_VS_GROW = {"steady": 0.5, "diurnal": 0.5, "drift": 0.5, "burst": 0.7}
HOT_METRICS = ("hot_max_over_mean", "migrations", "ping_pong", "time_to_balance_s")
ALPHA = 0.05


def _group(records: list[dict]) -> dict:
    g: dict = collections.OrderedDict()
    for r in records:
        g.setdefault((r["mode"], r["pattern"]), collections.OrderedDict()).setdefault(
            r["contender"], []).append(r)
    return g


def _best_static(by_contender: dict) -> str | None:
    statics = {c: rs for c, rs in by_contender.items() if c.startswith("static-")}
    if not statics:
        return None

    def med(rs, k):
        return stats.median_spread([r["metrics"][k] for r in rs])[0]
    ok = [c for c, rs in statics.items() if med(rs, "slo_windows") >= stats.SLO_WINDOW_SHARE]
    if ok:
        return min(ok, key=lambda c: med(statics[c], "conn_seconds"))
    return max(statics, key=lambda c: med(statics[c], "slo_windows"))


def summarise(records: list[dict]) -> dict:
    out = []
    for (mode, pattern), by_c in _group(records).items():
        hot = pattern == "hot_spot"
        keys = HOT_METRICS if hot else METRICS
        best = None if hot else _best_static(by_c)
        rows = []
        for c, rs in by_c.items():
            row = {"contender": c, "runs": len(rs), "metrics": {}, "acceptance": {}}
            for k in keys:
                vals = [r["metrics"][k] for r in rs if r["metrics"].get(k) is not None]
                if not vals:
                    continue
                m, sp = stats.median_spread(vals)
                cell = {"median": m, "spread": sp, "values": vals}
                if best and c != best and k in by_c[best][0]["metrics"]:
                    base = [r["metrics"][k] for r in by_c[best]]
                    bm = stats.median_spread(base)[0]
                    p = stats.mann_whitney_p(vals, base)
                    cell["delta_vs_best_static"] = (m - bm) / abs(bm) if bm else None
                    cell["p"] = p
                    cell["significant"] = p is not None and p < ALPHA
                row["metrics"][k] = cell
            for crit in rs[0]["acceptance"]:
                vals = [r["acceptance"][crit] for r in rs if r["acceptance"].get(crit) is not None]
                if vals:
                    row["acceptance"][crit] = {"passed": sum(vals), "runs": len(vals)}
            if not hot:
                row["metrics"].update(_floor_cells(rs))
            # float(): records read back from runs.json carry inf as "inf" (clean)
            fg = [float(r["metrics"]["first_grow_periods"]) for r in rs
                  if r["metrics"].get("first_grow_periods") is not None]
            if fg:
                row["metrics"]["first_grow_periods"] = {"median": stats.median_spread(fg)[0],
                                                        "spread": 0.0, "values": fg}
            rows.append(row)
        out.append({"mode": mode, "pattern": pattern, "best_static": best, "rows": rows})
    return {"alpha": ALPHA, "test": "exact two-sided Mann-Whitney U on the repeats",
            "groups": out}


def _floor_cells(rs: list[dict]) -> dict:
    """The runs' connection-seconds floor (:mod:`.floor`) and what each run
    held above its own floor (per run: a run of 29 windows has a 29-window
    floor), as summary cells; nothing where the floor is unknown."""
    pairs = [(f, r["metrics"]["conn_seconds"]) for r in rs
             if (f := floor.conn_s_floor(r)) is not None
             and r["metrics"].get("conn_seconds") is not None]
    if not pairs:
        return {}
    out = {}
    for k, vals in (("conn_s_floor", [f for f, _ in pairs]),
                    ("conn_s_above_floor", [c - f for f, c in pairs])):
        m, sp = stats.median_spread(vals)
        out[k] = {"median": m, "spread": sp, "values": vals}
    return out


def _fmt(v: float, k: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    if math.isinf(v):
        return "inf"
    if k in ("slo_windows", "good_share"):
        return f"{v:.1%}"
    if k in ("conn_vs_oracle", "hot_max_over_mean"):
        return f"{v:.2f}"
    if abs(v) >= 100:
        return f"{v:.0f}"
    return f"{v:.3g}"


def _cell(cell: dict | None, k: str) -> str:
    if cell is None:
        return "-"
    s = _fmt(cell["median"], k)
    if cell.get("spread") and not math.isinf(cell["spread"]):
        s += f" ±{cell['spread']:.0%}"
    if "delta_vs_best_static" in cell:
        s += " " + _delta(cell["delta_vs_best_static"], cell["significant"])
    return s


def _delta(d: float | None, significant: bool) -> str:
    """A delta a person can read: a percentage up to +-100%, a factor beyond
    (x334, not +33233%), nothing against a zero baseline (no +inf)."""
    if not significant:
        return "(~)"
    if d is None or math.isinf(d) or math.isnan(d):
        return "(base 0)"
    if d > 1.0:
        return f"(x{1 + d:.3g})"
    return f"({d:+.0%})"


def mark(a: dict | None) -> str:
    """The one PASS/MISS notation, for the terminal and summary.md alike:
    runs passing / runs."""
    if a is None:
        return "-"
    return f"{'PASS' if a['passed'] == a['runs'] else 'MISS'} {a['passed']}/{a['runs']}"


def _pick_supervisor(rows: dict) -> str | None:
    sup = [c for c in rows if c.startswith("supervisor-") and not c.endswith("-noguard")]
    return "supervisor-littles" if "supervisor-littles" in sup else (sup[0] if sup else None)


def verdict(group: dict) -> str | None:
    """One line per pattern: the supervised pool against the best static size
    and grow-on-wait on SLO windows, good requests, connection-seconds and
    connections opened (medians), then PASS/MISS on issue 16's goals (good >=
    both; conn-s against grow-on-wait's where a target exists).  Beside the
    conn-s, what each held above its rails' floor (:mod:`.floor`); beside a
    conn-s MISS, whether the goal is under the supervisor's floor (then no
    contender on these rails can meet it at this load) or above it."""
    rows = {r["contender"]: r for r in group["rows"]}
    sup = _pick_supervisor(rows)
    if sup is None or group["pattern"] == "hot_spot":
        return None
    names = [sup] + [c for c in (group["best_static"], "grow-on-wait") if c in rows and c != sup]

    def med(c, k):
        cell = rows[c]["metrics"].get(k)
        return None if cell is None else cell["median"]

    def col(k, fmt=_fmt):
        return " / ".join(fmt(med(c, k), k) for c in names)
    goals = []
    others = names[1:]
    slo = med(sup, "slo_windows")
    if slo is not None:
        goals.append(f"SLO {'PASS' if slo >= stats.SLO_WINDOW_SHARE else 'MISS'}")
    g = med(sup, "good_share")
    if g is not None and others:
        ok = all(med(c, "good_share") is None or g >= med(c, "good_share") - 0.005 for c in others)
        goals.append(f"good {'PASS' if ok else 'MISS'}")
    opened, top = med(sup, "opened"), med(sup, "max_cap")
    if opened is not None and top:
        goals.append(f"opened {opened / top:.1f}x max cap {'PASS' if opened <= 2 * top else 'MISS'}")
    target = CONN_VS_GROW.get(group["pattern"])
    if target and "grow-on-wait" in rows and med("grow-on-wait", "conn_seconds"):
        grow = med("grow-on-wait", "conn_seconds")
        ratio = med(sup, "conn_seconds") / grow
        goals.append(f"conn-s {ratio:.2f}x grow-on-wait (<= {target}) {'PASS' if ratio <= target else 'MISS'}"
                     + ("" if ratio <= target else _floor_note(target, grow, med(sup, "conn_s_floor"))))
    above = (f" | above the floor {col('conn_s_above_floor', _above)}"
             if med(sup, "conn_s_above_floor") is not None else "")
    return (f"{group['mode']} {group['pattern']}: {' vs '.join(names)} | SLO windows {col('slo_windows')}"
            f" | good {col('good_share')} | conn-s {col('conn_seconds')}{above} | opened {col('opened')}"
            + (f" | {'; '.join(goals)}" if goals else ""))


def _above(v: float | None, _k: str) -> str:
    return "-" if v is None else f"{v:+.0f}"


def _floor_note(target: float, grow: float, fl: float | None) -> str:
    """Why a connection-seconds MISS is or is not the rails' doing: the goal
    (``target`` x grow-on-wait's ``grow``) against the supervisor's floor."""
    if fl is None:
        return ""
    goal = target * grow
    if goal < fl:
        return (f" ({target}x = {goal:.0f} is under the rails' floor {fl:.0f}, {fl / grow:.2f}x:"
                f" unreachable at this load)")
    return f" ({target}x = {goal:.0f} is above the rails' floor {fl:.0f}: reachable)"


def markdown(summary: dict) -> str:
    lines = ["# Rig summary", "",
             f"Median ±(half range / median) over the repeats (seeds).  In brackets: the delta of the "
             f"median against the best static size, shown when {summary['test']} gives p < "
             f"{summary['alpha']}; '~' = not significant (fewer than 4 repeats can never be).  "
             "Acceptance: runs passing / runs.", ""]
    for g in summary["groups"]:
        hot = g["pattern"] == "hot_spot"
        lines.append(f"## {g['mode']}: {g['pattern']}" +
                     (f" (best static: {g['best_static']})" if g["best_static"] else ""))
        lines.append("")
        v = verdict(g)
        if v:
            lines += [f"**Verdict**: {v}", ""]
        keys = HOT_METRICS if hot else METRICS
        crits = []
        for r in g["rows"]:
            for c in r["acceptance"]:
                if c not in crits:
                    crits.append(c)
        head = ["contender", "n"] + list(keys) + (["first grow"] if not hot else []) + crits
        lines.append("| " + " | ".join(head) + " |")
        lines.append("|" + "---|" * len(head))
        for r in g["rows"]:
            cells = [r["contender"], str(r["runs"])] + [_cell(r["metrics"].get(k), k) for k in keys]
            if not hot:
                fg = r["metrics"].get("first_grow_periods")
                cells.append(_fmt(fg["median"], "x") if fg else "-")
            for c in crits:
                cells.append(mark(r["acceptance"].get(c)))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def misses(summary: dict) -> list[str]:
    """One line per (pattern, contender, criterion) that did not pass in every run."""
    out = []
    for g in summary["groups"]:
        for r in g["rows"]:
            if r["contender"].startswith("static-") or r["contender"] == "rebalance-off":
                continue
            for c, a in r["acceptance"].items():
                if a["passed"] < a["runs"]:
                    out.append(f"{g['mode']} {g['pattern']} {r['contender']}: {c} missed in "
                               f"{a['runs'] - a['passed']}/{a['runs']} runs")
    return out


def write(summary: dict, outdir: str) -> tuple[str, str]:
    os.makedirs(outdir, exist_ok=True)
    md = os.path.join(outdir, "summary.md")
    js = os.path.join(outdir, "summary.json")
    with open(md, "w") as f:
        f.write(markdown(summary))
        miss = misses(summary)
        f.write("\n## Where the adaptive contenders miss\n\n")
        f.write("\n".join(f"- {m}" for m in miss) if miss else "- nothing missed")
        f.write("\n")
    with open(js, "w") as f:
        json.dump(clean(summary), f, indent=1)
    return md, js


def clean(o):
    """JSON has no inf/nan: write them as strings (e.g. a grow that never came)."""
    if isinstance(o, float) and (math.isinf(o) or math.isnan(o)):
        return str(o)
    if isinstance(o, dict):
        return {k: clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [clean(v) for v in o]
    return o
