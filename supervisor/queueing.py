"""Queueing arithmetic shared by the pool controller and the simulator: how
many connections (servers) an M/M/c queue needs so that an acquire waits
longer than the SLO only rarely (Erlang C).

Pure functions, no state; the controller staffs the pool with it and the
simulator's oracle (the least a pool could hold and meet the SLO) is the
same formula, so "connection-seconds against the oracle" measures the
controller's lag and margin, not a different model.
"""
from __future__ import annotations

import math


def erlang_c_servers(lam: float, service_s: float, slo_s: float, target: float = 0.01,
                     cap: int = 512) -> int:
    """Fewest servers so that P(wait > slo) <= target for an M/M/c queue."""
    a = lam * service_s
    if a <= 0:
        return 1
    c = max(1, math.ceil(a))
    while c < cap:
        if c > a:
            # Erlang B by recurrence, then C; stable for large c
            b = 1.0
            for k in range(1, c + 1):
                b = a * b / (k + a * b)
            pc = b / (1 - (a / c) * (1 - b))
            if pc * math.exp(-(c - a) * slo_s / service_s) <= target:
                return c
        c += 1
    return cap
