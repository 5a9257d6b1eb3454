"""The connection-seconds floor: the least a contender's rails let a run hold.

A pool never holds fewer connections than its rails' minimum (the supervisor's
``PoolAutoscale.min``, grow-on-wait's 2, a static pool's own size), and a
strict pool (each connection bound to its worker's ring) needs one on every
worker whose callers use it, or those callers wait for a connect.  So per pool
and 1-s window the floor is ``max(rails' min, workers serving it)``, and a
run's floor is the sum over its pools and over the windows its
connection-seconds are summed over.  Issue 16's goal (the supervisor at <= 0.5x
grow-on-wait's connection-seconds) cannot be met where 0.5x grow-on-wait is
under the supervisor's floor: the rig says so beside the MISS
(:func:`riglib.summary.verdict`) and draws it (:mod:`riglib.plots`).

Pure: reads run records, writes nothing.  Records made before the rails and
the serving workers were recorded get the rails from the contender's name
(:func:`riglib.service.rails`) and the workers from the service's workers in
each window (both of the demo's pools are strict and at the rig's load every
worker serves both); where neither is known, one worker (the floor is then the
rails' minimum, never more than the run was forced to hold).

Not here: the goal itself (:data:`riglib.summary.CONN_VS_GROW`), plotting.
"""
from __future__ import annotations

import math

from .service import rails


def rails_min(rec: dict) -> int | None:
    """The rails' minimum per pool of a record's contender; None if unknown."""
    if rec.get("rails"):
        return int(rec["rails"]["min"])
    try:
        return rails(rec["contender"])[0]
    except ValueError:
        return None


def _number(x) -> bool:
    # runs.json writes NaN (a worker absent from a window) as the string "nan"
    return isinstance(x, (int, float)) and not math.isnan(x)


def _service_workers(rec: dict, n: int) -> list[int]:
    """Per window, the service's workers (old records): the columns of the
    busy series with a value; one where the run recorded none (overload)."""
    rows = rec["series"].get("workers", {}).get("busy") or []
    return ([max(1, sum(1 for x in row if _number(x))) for row in rows] + [1] * n)[:n]


def per_window(rec: dict) -> dict[str, list[int]] | None:
    """Per pool, the connections the rails force in each window; None if the
    record's contender has no known rails (e.g. the hot-spot contenders)."""
    lo = rails_min(rec)
    pools = rec["series"].get("pools")
    if lo is None or not pools:
        return None
    out = {}
    for name, p in pools.items():
        n = len(p.get("size", []))
        workers = p.get("workers") or _service_workers(rec, n)
        out[name] = [max(lo, w) for w in workers]
    return out


def conn_s_floor(rec: dict) -> float | None:
    """The run's floor in connection-seconds: as recorded, or computed."""
    if rec["metrics"].get("conn_s_floor") is not None:
        return float(rec["metrics"]["conn_s_floor"])
    f = per_window(rec)
    return None if f is None else float(sum(sum(v) for v in f.values()))


def held(rec: dict) -> list[int]:
    """Per window, the connections the run held: every pool's size summed."""
    sizes = [p.get("size", []) for p in rec["series"].get("pools", {}).values()]
    return [sum(col) for col in zip(*sizes)] if sizes else []


def floor_held(rec: dict) -> list[int]:
    """Per window, the floor summed over the pools (the plot's dashed line)."""
    f = per_window(rec)
    return [sum(col) for col in zip(*f.values())] if f else []
