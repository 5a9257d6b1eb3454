"""The workload the migration fault tests share: callers on every worker that
each make numbered writes, movers that migrate the driver's connections back
and forth between the workers, and a thread-safe tally of what came of it.

A call ends in its result, or a typed error (a driver error, a psycopg error),
or, if it runs past GUARD, counts as a hang; anything else is "untyped".  Keys
whose call failed before anything was sent (WrongLoop, PoolTimeout,
PoolClosed) must not be stored; keys whose outcome is unknown (a lost
connection) may be; every successful key must be.
"""
from __future__ import annotations

import asyncio
import collections
import random
import threading
import time

import psycopg

from ringleader.drivers.errors import DriverError, PoolClosed, PoolTimeout, WrongLoop
from ringleader.runtime.errors import MigrationError, MigrationRefused

GUARD = 20.0  # a call or a move running longer than this counts as hung

NOT_SENT = (WrongLoop, PoolTimeout, PoolClosed)


class Hang(Exception):
    pass


class Tally:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.completed = 0
        self.errors: collections.Counter = collections.Counter()
        self.untyped: list[str] = []
        self.hangs = 0
        self.max_wait = 0.0
        self.moves = 0
        self.refused = 0
        self.move_errors: collections.Counter = collections.Counter()
        self.move_hangs = 0
        self.ok: set[str] = set()
        self.unsent: set[str] = set()
        self.unknown: set[str] = set()

    def call_done(self, key: str, exc: BaseException | None, waited: float) -> None:
        with self.lock:
            self.max_wait = max(self.max_wait, waited)
            if exc is None:
                self.completed += 1
                self.ok.add(key)
                return
            self.errors[type(exc).__name__] += 1
            if isinstance(exc, Hang):
                self.hangs += 1
                self.unknown.add(key)
            elif isinstance(exc, NOT_SENT):
                self.unsent.add(key)
            elif isinstance(exc, (DriverError, psycopg.Error)):
                self.unknown.add(key)
            else:
                self.untyped.append(repr(exc))
                self.unknown.add(key)

    def check_stored(self, stored: set[str]) -> None:
        """Nothing lost, nothing invented, nothing sent that was refused."""
        assert self.ok <= stored, f"lost: {sorted(self.ok - stored)[:5]}"
        assert stored <= self.ok | self.unknown, f"unexpected: {sorted(stored - self.ok - self.unknown)[:5]}"
        assert not (self.unsent & stored), f"refused yet stored: {sorted(self.unsent & stored)[:5]}"

    def summary(self) -> dict:
        return {"moves": self.moves, "refused_moves": self.refused,
                "move_errors": dict(self.move_errors), "completed": self.completed,
                "errors": dict(self.errors), "untyped": len(self.untyped),
                "hangs": self.hangs + self.move_hangs, "max_wait_s": round(self.max_wait, 3)}


async def caller(tally: Tally, deadline: float, call, tag: str, seed: int) -> None:
    """``await call(key)`` until ``deadline`` (time.monotonic()), with short,
    random pauses so connections are idle now and then (when they may move)."""
    rng = random.Random(seed)
    loop = asyncio.get_running_loop()
    i = 0
    while time.monotonic() < deadline:
        i += 1
        key = f"{tag}-{i}"
        t0 = loop.time()
        exc: BaseException | None = None
        try:
            async with asyncio.timeout(GUARD) as scope:
                await call(key)
        except TimeoutError as e:
            exc = Hang(f"{key} ran past {GUARD}s") if scope.expired() else e
        except Exception as e:
            exc = e
        tally.call_done(key, exc, loop.time() - t0)
        await asyncio.sleep(rng.random() * 0.003)


async def mover(rt, tally: Tally, deadline: float, port: int, pause: float = 0.002) -> None:
    """On this worker: move every connection to ``port`` to the other worker,
    over and over, until ``deadline``."""
    loop = asyncio.get_running_loop()
    other = 1 - loop.worker_id
    while time.monotonic() < deadline:
        for t in list(loop._conns.values()):
            if time.monotonic() >= deadline:
                break
            peer = t.get_extra_info("peername")
            if t._loop is not loop or t.is_closing() or not peer or peer[1] != port:
                continue
            try:
                async with asyncio.timeout(GUARD) as scope:
                    await rt.migrate(t, other)
                with tally.lock:
                    tally.moves += 1
            except MigrationRefused:
                with tally.lock:
                    tally.refused += 1
            except MigrationError as exc:
                with tally.lock:
                    tally.move_errors[f"{type(exc).__name__}({exc.where})"] += 1
            except TimeoutError:
                if not scope.expired():
                    raise
                with tally.lock:
                    tally.move_hangs += 1
        await asyncio.sleep(pause)


async def run_workload(rt, tally: Tally, seconds: float, port: int, calls_by_worker: dict,
                       callers: int | dict, movers: bool = True) -> None:
    """``calls_by_worker``: worker -> ``async call(key)``; ``callers`` tasks on
    each worker (or worker -> how many), and a mover on each (``movers``), for
    ``seconds``."""
    deadline = time.monotonic() + seconds
    futs = []
    for w, call in calls_by_worker.items():
        for k in range(callers if isinstance(callers, int) else callers[w]):
            futs.append(rt.spawn(caller(tally, deadline, call, f"w{w}c{k}", seed=w * 1000 + k), w))
        if movers:
            futs.append(rt.spawn(mover(rt, tally, deadline, port), w))
    done = await asyncio.wait_for(asyncio.gather(*(asyncio.wrap_future(f) for f in futs)),
                                  seconds + 3 * GUARD)
    assert len(done) == len(futs)


async def until(predicate, what: str, limit: float = GUARD) -> None:
    """Polls an async ``predicate`` (bounded by ``limit`` seconds)."""
    deadline = time.monotonic() + limit
    while not await predicate():
        assert time.monotonic() < deadline, f"still {what} after {limit}s"
        await asyncio.sleep(0.05)


async def pg_backends(server, app: str) -> int:
    """Server connections with ``application_name`` = ``app`` (a probe connection's own excepted)."""
    from ringleader.drivers import postgres as pg
    c = await pg.connect(server.dsn(application_name="rl_probe"))
    try:
        return await c.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                                app)
    finally:
        await c.close()


async def redis_clients(server, name: str) -> int:
    """Clients of ``server`` named ``name``."""
    from ringleader.drivers import redis
    c = await redis.connect(server.url, client_name="rl_probe")
    try:
        listing = await c.execute("CLIENT", "LIST")
    finally:
        c.close()
    text = listing.decode() if isinstance(listing, bytes) else listing
    return sum(f" name={name} " in f" {line} " for line in text.splitlines())


async def redis_take_keys(server, prefix: str) -> set[str]:
    """The keys under ``prefix`` (without it), deleted."""
    from ringleader.drivers import redis
    c = await redis.connect(server.url, client_name="rl_probe")
    try:
        keys = await c.execute("KEYS", prefix + "*")
        if keys:
            await c.execute("DEL", *keys)
    finally:
        c.close()
    return {(k.decode() if isinstance(k, bytes) else k)[len(prefix):] for k in keys}


async def none_left(server_pg=None, app: str = "", server_redis=None) -> None:
    """Waits (bounded) until neither server has a connection named ``app``."""
    async def gone():
        n = await pg_backends(server_pg, app) if server_pg is not None else 0
        m = await redis_clients(server_redis, app) if server_redis is not None else 0
        return n == 0 and m == 0
    await until(gone, f"connections named {app} open after close")
