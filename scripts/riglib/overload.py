"""The overload pattern, real mode: a capacity-limited storm made by the
workload's own database CPU, driven from inside one ringleader worker.

Run as its own process (pinned by the rig to the service core):

    python -m riglib.overload CONFIG.json

Open-loop Poisson arrivals at ``rate``/s; each request borrows a Postgres
connection (``acquire_timeout``, 50 ms), runs ``SELECT pg_sleep(4 ms)`` and
gives it back.  For the middle third of the run every query also burns about
``burn_ms`` of database CPU (a ``generate_series`` count sized by a calibration
query at start), so one database core cannot keep up: about 3x overload at
1500/s x 2 ms.  A request whose acquire times out is retried at once, at most
``retries`` times (what a naive client does); it is *good* when answered
within ``deadline`` of its arrival.

The load runs in the same process as the pool, so the pool, its supervisor
and the client share one loop and one clock, and the HTTP hop of the other
patterns (which would cap the rate this core can offer) is left out.

It writes the same two JSON documents the demo service and the load generator
write (per-second pool windows and decisions; per-second request windows), so
:func:`riglib.realmode.build_record` judges it like every other pattern.

Not here: servers, analysis, the other patterns.
"""
from __future__ import annotations

import asyncio
import json
import random
import sys
import time

import ringleader
from ringleader.drivers import postgres
from ringleader.drivers.errors import PoolTimeout
from ringleader.supervisor import Sampler

from .loadgen import close_windows
from .service import (GROW_ON_WAIT, _p99, capture_decisions, grow_on_wait, pool_sizing, pool_totals,
                      supervisor_config)

SLEEP_SQL = "SELECT pg_sleep(0.004)"
BURN_SQL = "SELECT pg_sleep(0.004), (SELECT count(*) FROM generate_series(1, $1))"


def in_overload(f: float) -> bool:
    """Fraction ``f`` of the run lies in the overload window (the middle third)."""
    return 1 / 3 <= f < 2 / 3


async def calibrate(pool, burn_ms: float) -> int:
    """generate_series length that costs about ``burn_ms`` of database CPU."""
    n = 200_000
    async with pool.acquire() as c:
        await c.fetchval("SELECT count(*) FROM generate_series(1, $1)", n)  # warm
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            await c.fetchval("SELECT count(*) FROM generate_series(1, $1)", n)
            best = min(best, time.perf_counter() - t0)
    return max(1000, int(n * burn_ms / 1e3 / best))


class Windows:
    """Per-second request counts, keyed by arrival second (like the load generator's)."""

    def __init__(self, start: float):
        self.start = start
        self.w: dict[int, dict] = {}

    def at(self, t: float) -> dict:
        return self.w.setdefault(int(t - self.start), {"arrivals": 0, "done": 0, "good": 0, "failed": 0,
                                                        "retries": 0, "lat": []})


async def amain(rt, cfg: dict):
    lo, hi, auto = pool_sizing(cfg["contender"], cfg["duration"])
    pool = postgres.Pool(cfg["pg_dsn"], min_size=lo, max_size=hi, acquire_timeout=cfg["acquire_timeout"],
                         window_s=1.0, autoscale=auto, name="postgres")
    await pool.open()
    n_burn = await calibrate(pool, cfg["burn_ms"])
    bg = []
    loop = asyncio.get_running_loop()
    if cfg["contender"] == "grow-on-wait":
        bg.append(loop.create_task(grow_on_wait({"postgres": pool}, *GROW_ON_WAIT)))
    rng = random.Random(cfg["seed"])
    dur, rate, retries = cfg["duration"], cfg["rate"], cfg["retries"]
    waits: list[float] = []
    timeouts = [0]
    tasks: set[asyncio.Task] = set()

    async def one(sched_wall: float, burn: bool, w: dict) -> None:
        for attempt in range(retries + 1):
            t0 = loop.time()
            try:
                conn = await pool.acquire(cfg["acquire_timeout"])
            except PoolTimeout:
                waits.append(cfg["acquire_timeout"] * 1e3)
                timeouts[0] += 1
                if attempt < retries:
                    w["retries"] += 1
                    continue
                w["failed"] += 1
                return
            except Exception:
                w["failed"] += 1
                return
            waits.append((loop.time() - t0) * 1e3)
            try:
                # the client gives up at its deadline, mid-query if need be
                async with asyncio.timeout(max(0.001, cfg["deadline"] - (time.time() - sched_wall))):
                    if burn:
                        await conn.fetchval(BURN_SQL, n_burn)
                    else:
                        await conn.fetchval(SLEEP_SQL)
            except Exception:
                w["failed"] += 1
                return
            finally:
                pool.release(conn)
            lat = time.time() - sched_wall
            w["done"] += 1
            w["lat"].append(lat * 1e3)
            if lat <= cfg["deadline"]:
                w["good"] += 1
            return

    def sample(now: float) -> dict:
        waits_now, waits[:] = list(waits), []
        tos, timeouts[0] = timeouts[0], 0
        ps = pool.stats()
        obs = sampler.observe(now, rt.stats(), (), {"postgres": ps})
        return {"t": round(now, 3), "opened": ps.connections_num, "workers": [],
                "pools": {p.name: {"cap": p.cap, "size": p.size, "in_use": p.in_use,
                                   "waiting": p.waiting, "acquire_rate": p.acquire_rate,
                                   "hold_ms": p.hold_ms, "wait_p99_ms": _p99(waits_now),
                                   "timeouts": tos, **pool_totals(ps)}
                          for p in obs.pools}}

    start = time.time() + cfg.get("warmup", 1.0)
    st = Windows(start)
    sampler = Sampler()
    svc_windows = []
    next_sample = time.time() + 1.0
    t = time.time() + rng.expovariate(rate)  # the next arrival
    while t - start < dur:
        now = time.time()
        if now >= next_sample:
            next_sample += 1.0
            svc_windows.append(sample(now))
        due = min(t, next_sample)
        if due > now:
            await asyncio.sleep(due - now)
        if time.time() < t:
            continue  # woke for a sample; the arrival is still due
        w = st.at(t)
        w["arrivals"] += 1
        burn = t >= start and in_overload((t - start) / dur)
        task = loop.create_task(one(t, burn, w))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        t += rng.expovariate(rate)
    if tasks:
        await asyncio.wait(list(tasks), timeout=10)
    for task in bg:
        task.cancel()
    out = close_windows(st.w, lambda i: rate)
    for w in out:
        w["overload"] = in_overload((w["t"] - 1) / dur)
    stats = pool.stats()
    await pool.close()
    return {"start": start, "windows": out, "opened": stats.connections_num, "n_burn": n_burn}, svc_windows


def main(argv: list[str]) -> int:
    cfg = json.load(open(argv[0]))
    log = capture_decisions()
    gen, windows = ringleader.run(lambda rt: amain(rt, cfg), workers=1,
                                  supervisor=supervisor_config(cfg["contender"], workers=False),
                                  debug_socket=False)
    with open(cfg["out"], "w") as f:
        json.dump({"windows": windows, "decisions": log.items}, f)
    with open(cfg["gen_out"], "w") as f:
        json.dump(gen, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
