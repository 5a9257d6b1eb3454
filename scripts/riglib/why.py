"""Why the real runs missed the SLO: every judged window whose worst pool wait
was over the SLO, with the Postgres acquires over 5 ms that made it and the
pool as each of those callers found it (cap, size, idle, in use, waiting,
whether a connection was opened or a burst connection made meanwhile), and
whether a worker's loop stalled in that window (its worst timer lateness rose).

    python -m riglib.why results/rig/runs.json [--pattern P] [--contender C]

Reads only the run records (``runs.json``) the rig writes; it classifies each
slow acquire by its likeliest cause:

* ``connect``: a connection was opened while the caller waited (the pool was
  below its cap, or a burst or a slot trade opened one for it);
* ``stall``: a worker's worst loop lateness rose in that window by more than
  the wait's excess over the SLO (the wake-up itself was late);
* ``queue``: neither: the caller queued for a return (too few connections).

Not here: running anything, plots, the verdicts (:mod:`.summary`).
"""
from __future__ import annotations

import argparse
import collections
import json
import sys

SLO_MS = 10.0


def classify(slow: dict, stall_ms: float) -> str:
    if slow.get("opened", 0) > 0:
        return "connect"
    if stall_ms >= max(1.0, slow["ms"] - SLO_MS):
        return "stall"
    return "queue"


def misses(rec: dict) -> list[dict]:
    """The record's windows over the SLO, with their slow acquires classified."""
    s = rec["series"]
    if "slow" not in s:
        return []
    pools = s["pools"]
    out = []
    lag = s.get("lag_max_ms", [])
    for k, t in enumerate(s["t"]):
        worst = max(p["wait_p99_ms"][k] for p in pools.values())
        if worst <= SLO_MS:
            continue
        stall = (lag[k] - lag[k - 1]) if k > 0 and k < len(lag) else (lag[k] if lag else 0.0)
        slow = [dict(x, cause=classify(x, stall)) for x in s["slow"][k] if x["ms"] > SLO_MS]
        pg = pools.get("postgres", {})
        out.append({"t": t, "worst_ms": worst, "stall_ms": stall, "slow": slow,
                    "cap": pg.get("cap", [0])[k] if pg else 0,
                    "acquires": pg.get("acquire_rate", [0])[k] if pg else 0,
                    "redis": pools.get("redis", {}).get("wait_p99_ms", [0.0] * (k + 1))[k]})
    return out


def report(recs: list[dict]) -> str:
    lines = []
    causes: collections.Counter = collections.Counter()
    for rec in recs:
        ms = misses(rec)
        n = len(rec["series"]["t"])
        lines.append(f"{rec['pattern']} {rec['contender']} #{rec['seed']}: {len(ms)} of {n} windows over "
                     f"{SLO_MS:g} ms")
        for m in ms:
            head = (f"  t={m['t']:>4.0f}s worst {m['worst_ms']:.1f} ms (redis {m['redis']:.1f}), "
                    f"cap {m['cap']}, {m['acquires']:.0f} acq/s, stall +{m['stall_ms']:.0f} ms")
            lines.append(head)
            for x in m["slow"]:
                causes[x["cause"]] += 1
                lines.append(f"      {x['ms']:6.1f} ms w{x['worker']} {x['cause']:<7} cap {x['cap']} "
                             f"size {x['size']} idle {x['idle']} in use {x['in_use']} "
                             f"waiting {x['waiting']} opened {x['opened']} burst {x['burst']}")
            if not m["slow"]:
                causes["not postgres (or not recorded)"] += 1
    lines.append("causes of the slow acquires in missed windows: " +
                 ", ".join(f"{k} {v}" for k, v in causes.most_common()))
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m riglib.why", description=__doc__.split("\n\n")[0])
    p.add_argument("runs")
    p.add_argument("--pattern")
    p.add_argument("--contender")
    a = p.parse_args(argv)
    recs = [r for r in json.load(open(a.runs)) if r.get("mode") == "real"
            and (a.pattern is None or r["pattern"] == a.pattern)
            and (a.contender is None or r["contender"] == a.contender)]
    print(report(recs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
