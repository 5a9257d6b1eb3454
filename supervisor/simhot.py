"""A virtual-time model of hot-connection rebalancing: connections with
skewed load on several rings, observed once a second by the *same*
:class:`~.policy.Policy` the live supervisor runs, which moves them.

It models per-connection load only (bytes per second, with jitter), not
queries, pools or the database: that is :mod:`.sim`'s model.
"""
from __future__ import annotations

import random

from .config import Rebalance, SupervisorConfig
from .observe import ConnObs, Observation, WorkerObs
from .policy import Policy


def simulate_hot_spot(*, workers: int = 4, conns: int = 64, hot: int = 8, seed: int = 1,
                      duration: float = 120.0, cfg: Rebalance | None = None) -> dict:
    """Connections with skewed load (a few heavy ones hashed onto worker 0) on
    ``workers`` rings; the rebalancer moves them.  Returns max/mean over time,
    the per-worker loads per tick, the moves, and ping-pong count (a connection
    moved back within residency)."""
    cfg = cfg or Rebalance(enabled=True)
    rng = random.Random(seed)
    pol = Policy(SupervisorConfig(rebalance=cfg))
    rate = {c: rng.paretovariate(1.5) * 5e3 * (6 if c < hot else 1) for c in range(conns)}
    where = {c: (0 if c < hot else rng.randrange(workers)) for c in range(conns)}
    moved_at: dict[int, float] = {}
    history, moves, loads = [], [], []
    for i in range(int(duration)):
        t = float(i)
        ws = []
        for w in range(workers):
            cs = tuple(ConnObs(c, w, rate[c] * rng.uniform(0.9, 1.1), moved_at.get(c))
                       for c in rate if where[c] == w)
            ws.append(WorkerObs(worker=w, busy=0.5, lag_ms=0.1, batch=1.0, flush_depth=1.0,
                                throughput=1.0, load=sum(x.rate for x in cs), conns=cs))
        per = [x.load for x in ws]
        loads.append(per)
        history.append(max(per) / (sum(per) / workers))
        for a in pol.decide(Observation(t=t, period=1.0, workers=tuple(ws))):
            c = int(a.target)
            moves.append((t, c, a.src, a.dst))
            where[c] = a.dst
            moved_at[c] = t
    back = 0
    last: dict[int, tuple] = {}
    for t, c, s, d in moves:
        if c in last and last[c][1] == d and t - last[c][0] < cfg.min_residency * 2:
            back += 1
        last[c] = (t, s)
    return {"max_over_mean": history, "moves": moves, "ping_pong": back, "loads": loads,
            "final_max_over_mean": history[-1], "start_max_over_mean": history[0]}
