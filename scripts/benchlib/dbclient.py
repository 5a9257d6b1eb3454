"""The client process of ``scripts/bench redis`` and ``scripts/bench postgres``.

One process measures one contender (a driver on an event loop) on one
workload at one concurrency, then prints one JSON line and exits, so each
contender is pinned (``taskset``) and CPU-accounted on its own.  Run by the
benchmarks as ``python -m benchlib.dbclient '<json spec>'`` from ``scripts/``
(``-m`` keeps ``scripts/benchlib`` off ``sys.path``, where ``redis.py`` would
shadow redis-py).

Method: ``conc`` tasks each loop "issue one command, await it" against a pool
of at most ``pool`` connections; after ``warmup`` seconds the measured window
of ``seconds`` starts: operations completed in it, the latency of each (issue
to reply, perf_counter), and this process's CPU time (``getrusage``, all
threads) over it.  Output: ``ops``, ``secs``, ``ops_s``, ``p50_us``,
``p99_us``, ``cpu_us_op``.

What it does not do: start servers, repeat, or compare (the benchmark modules).
"""
from __future__ import annotations

import asyncio
import json
import resource
import sys
import time

VALUE = b"v" * 100
KEY = "bench:key"

SELECT1 = "SELECT $1::int"
FETCH10 = "SELECT c0, c1, c2, c3, c4, c5, c6, c7, c8, c9 FROM bench_wide"
INSERT = "INSERT INTO bench_ins (a, b) VALUES ($1, $2)"
FETCHBIG = ("SELECT g, g * 2, g * 3, g * 4, g * 5, 'text-' || g, 'value-' || g, 'more-' || g, "
            "'column-' || g, 'last-' || g FROM generate_series(1, 10000) g")
PAYLOAD = "payload"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


class Measure:
    """Drives ``conc`` looping tasks (split over one or more loops) and cuts
    the measured window out of their latency logs by index, so no list is
    touched by two threads."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        self.stop = False
        self.logs: list[list[float]] = []

    async def tasks(self, call, n: int, base: int = 0) -> None:
        log: list[float] = []
        self.logs.append(log)
        perf = time.perf_counter

        async def one(i: int) -> None:
            append = log.append
            while not self.stop:
                t0 = perf()
                await call(i)
                append(perf() - t0)

        if n:
            await asyncio.gather(*(one(base + i) for i in range(n)))

    async def window(self) -> dict:
        s = self.spec
        await asyncio.sleep(s["warmup"])
        marks = [len(x) for x in self.logs]
        c0, t0 = _cpu(), time.perf_counter()
        await asyncio.sleep(s["seconds"])
        ends = [len(x) for x in self.logs]
        c1, t1 = _cpu(), time.perf_counter()
        self.stop = True
        lat = sorted(v for log, a, b in zip(self.logs, marks, ends) for v in log[a:b])
        n = len(lat)
        if not n:
            raise SystemExit("no operation completed in the measured window")
        return {"ops": n, "secs": t1 - t0, "ops_s": n / (t1 - t0),
                "p50_us": lat[n // 2] * 1e6, "p99_us": lat[min(n - 1, int(n * 0.99))] * 1e6,
                "cpu_us_op": (c1 - c0) / n * 1e6}


# ---------------------------------------------------------------- redis

def _redis_call(client, op: str):
    if op == "get":
        return lambda i: client.get(KEY)
    if op == "set":
        return lambda i: client.set(KEY, VALUE)
    raise SystemExit(f"unknown redis op {op!r}")


async def ringleader_redis(spec: dict, m: Measure, rt=None) -> dict:
    from ringleader.drivers import redis
    pool = redis.Pool(spec["target"], min_size=1 if rt else spec["pool"], max_size=spec["pool"],
                      timeout=None, **({"mux_depth": spec["mux_depth"]} if "mux_depth" in spec else {}))
    async with pool:
        await pool.set(KEY, VALUE)
        return await _drive(pool, _redis_call(pool, spec["op"]), spec, m, rt)


async def redispy(spec: dict, m: Measure) -> dict:
    import redis.asyncio as aioredis
    from redis.asyncio.connection import BlockingConnectionPool
    pool = BlockingConnectionPool.from_url(spec["target"], max_connections=spec["pool"],
                                           timeout=None)
    client = aioredis.Redis(connection_pool=pool)
    try:
        await client.set(KEY, VALUE)
        return await _drive(client, _redis_call(client, spec["op"]), spec, m, None)
    finally:
        await client.aclose()
        await pool.disconnect()


# ---------------------------------------------------------------- postgres

def _pg_call(pool, op: str, style: str):
    if op == "select1":
        return lambda i: pool.fetchval(SELECT1, i)
    if op == "fetch10":
        return lambda i: pool.fetch(FETCH10)
    if op == "fetchbig":
        return lambda i: pool.fetch(FETCHBIG)
    if op == "insert":
        return lambda i: pool.execute(INSERT, i, PAYLOAD)
    raise SystemExit(f"unknown postgres op {op!r}")


async def ringleader_pg(spec: dict, m: Measure, rt=None) -> dict:
    from ringleader.drivers import postgres
    pool = postgres.Pool(spec["target"], min_size=1 if rt else spec["pool"],
                         max_size=spec["pool"],
                         **({"mux_depth": spec["mux_depth"]} if "mux_depth" in spec else {}))
    async with pool:
        return await _drive(pool, _pg_call(pool, spec["op"], "rl"), spec, m, rt)


async def asyncpg_pool(spec: dict, m: Measure) -> dict:
    import asyncpg

    async def no_reset(conn) -> None:
        # The baseline: asyncpg with its per-release reset disabled
        # (the default reset costs a round trip per release).
        pass

    kw = {} if spec.get("reset") else {"reset": no_reset}
    pool = await asyncpg.create_pool(spec["target"], min_size=spec["pool"],
                                     max_size=spec["pool"], **kw)
    try:
        return await _drive(pool, _pg_call(pool, spec["op"], "asyncpg"), spec, m, None)
    finally:
        await pool.close()


async def psycopg_pool(spec: dict, m: Measure) -> dict:
    from psycopg_pool import AsyncConnectionPool
    pool = AsyncConnectionPool(spec["target"], min_size=spec["pool"], max_size=spec["pool"],
                               kwargs={"autocommit": True}, open=False)
    await pool.open(wait=True)
    sel, fetch, ins = (q.replace("$1", "%s").replace("$2", "%s") for q in (SELECT1, FETCH10, INSERT))
    big = FETCHBIG
    op = spec["op"]

    async def call(i: int):
        async with pool.connection() as conn:
            if op == "select1":
                return await (await conn.execute(sel, (i,))).fetchone()
            if op == "fetch10":
                return await (await conn.execute(fetch)).fetchall()
            if op == "fetchbig":
                return await (await conn.execute(big)).fetchall()
            return await conn.execute(ins, (i, PAYLOAD))
    try:
        return await _drive(pool, call, spec, m, None)
    finally:
        await pool.close()


# ---------------------------------------------------------------- driving

async def _drive(client, call, spec: dict, m: Measure, rt) -> dict:
    conc = spec["conc"]
    for i in range(min(conc, 4) * 10):  # each contender's first calls (prepare, connect)
        await call(i)
    if rt is None:
        main = asyncio.ensure_future(m.tasks(call, conc))
        res = await m.window()
        await main
        return res
    # Several workers: the tasks are split evenly, worker 0 (this one) included.
    nw = len(rt.workers)
    shares = [conc // nw + (1 if w < conc % nw else 0) for w in range(nw)]
    futs = [asyncio.wrap_future(rt.spawn(m.tasks(call, shares[w], sum(shares[:w])), w))
            for w in range(1, nw)]
    local = asyncio.ensure_future(m.tasks(call, shares[0]))
    res = await m.window()
    await asyncio.gather(local, *futs)
    return res


def loop_factory(name: str):
    """asyncio.Runner's loop_factory for a loop name: ringleader, uvloop or asyncio."""
    if name == "ringleader":
        import ringleader
        return ringleader.new_event_loop
    if name == "uvloop":
        import uvloop
        return uvloop.new_event_loop
    if name == "asyncio":
        return None
    raise SystemExit(f"unknown loop {name!r} (ringleader, uvloop, asyncio)")


def main(argv: list[str]) -> int:
    spec = json.loads(argv[0])
    m = Measure(spec)
    who, workers = spec["contender"], spec.get("workers", 1)
    if who in ("ringleader", "ringleader-pg"):
        fn = ringleader_redis if who == "ringleader" else ringleader_pg
        if workers == 1:
            # ringleader's drivers are loop-agnostic: "loop" runs them on uvloop or
            # asyncio too (the "does the ring pay for itself" comparison)
            with asyncio.Runner(loop_factory=loop_factory(spec.get("loop", "ringleader"))) as r:
                res = r.run(fn(spec, m))
        else:
            import ringleader
            res = ringleader.run(lambda rt: fn(spec, m, rt), workers=workers, debug_socket=False)
    else:
        fn = {"redispy": redispy, "asyncpg": asyncpg_pool, "psycopg": psycopg_pool}[who]
        with asyncio.Runner(loop_factory=loop_factory(spec.get("loop", "asyncio"))) as r:
            res = r.run(fn(spec, m))
    print(json.dumps(res), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
