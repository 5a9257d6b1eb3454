"""The rig's load generator: skewed, open-loop HTTP traffic against the demo service.

Run as its own process (pinned by the rig to the client core), on uvloop:

    python -m riglib.loadgen CONFIG.json

* Arrivals are open-loop Poisson at the pattern's rate: a request's latency
  counts from its *scheduled* arrival, so a slow service cannot slow the
  offered load down (no coordinated omission).  Requests queue in the client
  for one of ``conns`` keep-alive connections.
* Endpoints and keys are Zipf-distributed: the endpoint mix is a Zipf-like
  ranking that the pattern can move (drift: from mostly Redis to mostly
  Postgres), keys follow Zipf(s = 1.1) over 10 000 keys.
* The hot spot: ``heavy`` extra connections are placed on worker 0 (the
  service names its worker in ``X-Worker``; connections that land elsewhere
  are closed and redialled) and fetch a 64 KiB value back to back.
* The retry storm: a request that times out (client timeout) or gets 503 is
  retried up to 3 times after 10-50 ms; the rig slows the database meanwhile.

It writes per-second windows (arrivals, completions, failures, retries,
request p99) as JSON.  Not here: the service, the servers, analysis.
"""
from __future__ import annotations

import asyncio
import bisect
import itertools
import json
import math
import random
import sys
import time

from ringleader.drivers.poolstats import percentile

ENDPOINTS = ("/cache", "/kv", "/read", "/write", "/report")
REDIS_SHARE = {"/cache": 1, "/kv": 1}
KEYS = 10_000


def zipf_cdf(n: int, s: float) -> list[float]:
    w = [1.0 / (k ** s) for k in range(1, n + 1)]
    tot = sum(w)
    return list(itertools.accumulate(x / tot for x in w))


KEY_CDF = zipf_cdf(KEYS, 1.1)


def mix(pattern: str, f: float) -> list[float]:
    """Endpoint weights at fraction ``f`` of the run (cache, kv, read, write, report)."""
    redis_heavy = [0.55, 0.25, 0.12, 0.06, 0.02]
    pg_heavy = [0.12, 0.06, 0.55, 0.23, 0.04]
    if pattern == "drift":
        return [a + (b - a) * f for a, b in zip(redis_heavy, pg_heavy)]
    return [0.40, 0.15, 0.30, 0.12, 0.03]


def rate(pattern: str, f: float, base: float) -> float:
    """Offered requests/s at fraction ``f`` of the run, ``base`` = the steady rate."""
    if pattern == "diurnal":
        return base * (1.0 - 0.8 * math.cos(2 * math.pi * f * 2)) / 1.0
    if pattern == "burst":
        return base * 2.5 if (f * 3) % 1.0 >= 0.65 else base * 0.3
    return base


class Stats:
    def __init__(self, t0: float):
        self.t0 = t0
        self.w: dict[int, dict] = {}

    def at(self, t: float) -> dict:
        i = math.floor(t - self.t0)
        return self.w.setdefault(i, {"arrivals": 0, "done": 0, "failed": 0, "retries": 0, "lat": [],
                                     "status": {}})


class Client:
    def __init__(self, port: int):
        self.port = port
        self.r = self.w = None
        self.worker = None

    async def connect(self):
        self.r, self.w = await asyncio.open_connection("127.0.0.1", self.port)

    async def get(self, path: str) -> tuple[int, bytes]:
        self.w.write(f"GET {path} HTTP/1.1\r\nHost: rig\r\n\r\n".encode())
        head = await self.r.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        n = 0
        for ln in lines[1:]:
            k, _, v = ln.partition(":")
            if k.lower() == "content-length":
                n = int(v)
            elif k.lower() == "x-worker":
                self.worker = v.strip()
        body = await self.r.readexactly(n)
        return status, body

    def close(self):
        if self.w is not None:
            self.w.close()


async def run(cfg: dict) -> dict:
    rng = random.Random(cfg["seed"])
    pattern, dur, base = cfg["pattern"], cfg["duration"], cfg["rate"]
    storm = pattern == "retry_storm"
    timeout = 0.25 if storm else 2.0
    st = Stats(cfg["t0"])
    q: asyncio.Queue = asyncio.Queue()
    loop = asyncio.get_running_loop()

    async def conn_worker():
        c = Client(cfg["port"])
        await c.connect()
        while True:
            sched, path, attempt = await q.get()
            if sched is None:
                c.close()
                return
            try:
                status, _ = await asyncio.wait_for(c.get(path), timeout)
            except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError, ValueError):
                status = 0
                c.close()
                c = Client(cfg["port"])
                try:
                    await c.connect()
                except OSError:
                    await asyncio.sleep(0.05)
            now = time.time()
            w = st.at(now)
            w["status"][status] = w["status"].get(status, 0) + 1
            if status == 200:
                w["done"] += 1
                w["lat"].append((now - sched) * 1e3)
            elif storm and attempt < 3:
                w["retries"] += 1
                loop.call_later(rng.uniform(0.01, 0.05), q.put_nowait, (sched, path, attempt + 1))
            else:
                w["failed"] += 1

    async def heavy_worker(stop: asyncio.Event):
        c = None
        for _ in range(200):
            c = Client(cfg["port"])
            await c.connect()
            await c.get("/whoami")
            if c.worker == "0":
                break
            c.close()
        while not stop.is_set():
            try:
                await asyncio.wait_for(c.get("/big"), 2.0)
            except (asyncio.TimeoutError, OSError, asyncio.IncompleteReadError):
                return
            await asyncio.sleep(0.004)
        c.close()

    workers = [loop.create_task(conn_worker()) for _ in range(cfg["conns"])]
    stop = asyncio.Event()
    heavy = [loop.create_task(heavy_worker(stop)) for _ in range(cfg.get("heavy", 0))]
    await asyncio.sleep(max(0.0, cfg["t0"] - time.time()))
    # A warm-up at the base rate and mix first: the pools' first connections
    # are all made on worker 0 and must spread over the workers (strict
    # affinity) before anything is measured.  A loaded machine can start this
    # process late: windows count from the actual start, which is reported so
    # the rig aligns the service's telemetry.
    warm = cfg.get("warmup", 3.0)
    t = time.time()
    start = st.t0 = t + warm
    while t - start < dur:
        f = max(0.0, (t - start) / dur)
        r = rate(pattern, f, base) if t >= start else base
        t += rng.expovariate(r)
        delay = t - time.time()
        if delay > 0:
            await asyncio.sleep(delay)
        weights = mix(pattern, f)
        path = rng.choices(ENDPOINTS, weights)[0]
        if path != "/report":
            path += f"?k={bisect.bisect_left(KEY_CDF, rng.random()) + 1}"
        st.at(t)["arrivals"] += 1
        q.put_nowait((t, path, 0))
    # let stragglers (and, in the storm, up to 3 retries of 250 ms) finish
    await asyncio.sleep(timeout + 0.3 if not storm else 4 * timeout + 0.3)
    stop.set()
    for _ in workers:
        q.put_nowait((None, None, None))
    await asyncio.wait(workers + heavy, timeout=5)
    out = close_windows(st.w, lambda i: rate(pattern, min(1.0, i / dur), base))
    for w in out:
        w["status"] = {str(k): v for k, v in w["status"].items()}
    return {"start": start, "windows": out}


def close_windows(windows: dict[int, dict], offered) -> list[dict]:
    """Per-second windows as written: latencies folded into their p99 (the
    pools' nearest-rank percentile), ``t`` counted from 1, ``offered(i)``."""
    out = []
    for i in sorted(k for k in windows if k >= 0):
        w = windows[i]
        w["p99_ms"] = percentile(w.pop("lat"), 0.99) or 0.0
        w["t"] = i + 1
        w["offered"] = offered(i)
        out.append(w)
    return out


def main(argv: list[str]) -> int:
    cfg = json.load(open(argv[0]))
    try:
        import uvloop
        runner = uvloop.run
    except ImportError:
        runner = asyncio.run
    res = runner(run(cfg))
    with open(cfg["out"], "w") as f:
        json.dump(res, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
