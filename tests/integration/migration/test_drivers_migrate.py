"""Integration tier: Postgres and Redis connections (bare, pooled, multiplexed)
migrated back and forth between two workers, over and over, while callers on
both workers keep writing through them.

Every call must end in its result or a typed error within the guard (none
hangs), no untyped error may reach a caller, no future may be dropped with its
exception unread, nothing written may be lost, nothing refused may have been
sent, and no server connection may stay open after close.  The run length
per case is RL_MIGRATION_SECONDS (default 3); the measured numbers are printed
(run with -s to see them).
"""
from __future__ import annotations

import asyncio
import json
import os
import uuid

import pytest

import ringleader
from ringleader.drivers import postgres as pg
from ringleader.drivers import redis

from migload import Tally, run_workload, until

pytestmark = pytest.mark.integration

SECONDS = float(os.environ.get("RL_MIGRATION_SECONDS", "3"))
KINDS = ["bare", "pooled", "multiplexed"]


def _judge(name: str, tally: Tally, stored: set[str]) -> None:
    print(f"\n{name}: {json.dumps(tally.summary())}")
    tally.check_stored(stored)
    assert tally.untyped == [], tally.untyped[:5]
    assert tally.hangs == 0 and tally.move_hangs == 0
    assert tally.completed > 0
    assert tally.moves > 0, "nothing moved: the test did not test migration"


@pytest.mark.parametrize("kind", KINDS)
def test_postgres_connections_migrate_under_load(pg_server, kind, fd_guard, never_retrieved):
    app = f"rl_mig_{uuid.uuid4().hex[:8]}"
    table = f"mig_{uuid.uuid4().hex[:8]}"
    dsn = pg_server.dsn(application_name=app)
    tally = Tally()

    async def backends() -> int:
        c = await pg.connect(pg_server.dsn(application_name="rl_mig_probe"))
        try:
            return await c.fetchval("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1",
                                    app)
        finally:
            await c.close()

    async def main(rt):
        setup = await pg.connect(dsn)
        await setup.execute(f"CREATE TABLE {table} (k text)")
        await setup.close()
        sql = f"INSERT INTO {table} (k) VALUES ($1) RETURNING k"
        if kind == "bare":
            conn = await pg.connect(dsn)

            async def call(key):
                # Runs where the connection is now; if it moves before the
                # call starts there, the call gets WrongLoop (typed, unsent).
                assert await rt.run_on(conn.worker_id, conn.fetchval(sql, key)) == key

            await run_workload(rt, tally, SECONDS, pg_server.port, {0: call, 1: call}, callers=3)
            await rt.run_on(conn.worker_id, conn.close())
        else:
            pool = pg.Pool(dsn, min_size=2, max_size=6, acquire_timeout=10,
                           multiplex=kind == "multiplexed")
            await pool.open()

            async def call(key):
                assert await pool.fetchval(sql, key) == key

            await run_workload(rt, tally, SECONDS, pg_server.port, {0: call, 1: call}, callers=6)
            await pool.close()
        check = await pg.connect(pg_server.dsn(application_name="rl_mig_probe"))
        stored = {r[0] for r in await check.fetch(f"SELECT k FROM {table}")}
        await check.execute(f"DROP TABLE {table}")
        await check.close()
        await until(lambda: _none(backends()), "backends open after close")
        return stored

    _judge(f"postgres/{kind}", tally, ringleader.run(main, workers=2, debug_socket=False))


@pytest.mark.parametrize("kind", KINDS)
def test_redis_connections_migrate_under_load(redis_server, kind, fd_guard, never_retrieved):
    name = f"rl_mig_{uuid.uuid4().hex[:8]}"
    prefix = f"mig:{name}:"
    tally = Tally()

    async def clients() -> int:
        c = await redis.connect(redis_server.url, client_name="rl_mig_probe")
        try:
            listing = await c.execute("CLIENT", "LIST")
        finally:
            c.close()
        text = listing.decode() if isinstance(listing, bytes) else listing
        return sum(f" name={name} " in f" {line} " for line in text.splitlines())

    async def main(rt):
        if kind == "bare":
            conn = await redis.connect(redis_server.url, client_name=name)

            async def call(key):
                assert await rt.run_on(conn.worker_id, conn.execute("SET", prefix + key, 1)) in (
                    True, b"OK", "OK")

            await run_workload(rt, tally, SECONDS, redis_server.port, {0: call, 1: call}, callers=3)

            async def close():
                conn.close()

            await rt.run_on(conn.worker_id, close())
        else:
            pool = redis.Pool(redis_server.url, client_name=name, min_size=2, max_size=6,
                              acquire_timeout=10, multiplex=kind == "multiplexed")
            await pool.open()

            async def call(key):
                assert await pool.execute("SET", prefix + key, 1) in (True, b"OK", "OK")

            await run_workload(rt, tally, SECONDS, redis_server.port, {0: call, 1: call}, callers=6)
            await pool.close()
        check = await redis.connect(redis_server.url, client_name="rl_mig_probe")
        keys = await check.execute("KEYS", prefix + "*")
        stored = {(k.decode() if isinstance(k, bytes) else k)[len(prefix):] for k in keys}
        if keys:
            await check.execute("DEL", *keys)
        check.close()
        await until(lambda: _none(clients()), "clients open after close")
        return stored

    _judge(f"redis/{kind}", tally, ringleader.run(main, workers=2, debug_socket=False))


async def _none(count) -> bool:
    return await count == 0
