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

import json
import os
import uuid

import pytest

import ringleader
from ringleader.drivers import postgres as pg
from ringleader.drivers import redis

from migload import Tally, none_left, redis_take_keys, run_workload

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
        check = await pg.connect(pg_server.dsn(application_name="rl_probe"))
        stored = {r[0] for r in await check.fetch(f"SELECT k FROM {table}")}
        await check.execute(f"DROP TABLE {table}")
        await check.close()
        await none_left(server_pg=pg_server, app=app)
        return stored

    _judge(f"postgres/{kind}", tally, ringleader.run(main, workers=2, debug_socket=False))


@pytest.mark.parametrize("kind", KINDS)
def test_redis_connections_migrate_under_load(redis_server, kind, fd_guard, never_retrieved):
    name = f"rl_mig_{uuid.uuid4().hex[:8]}"
    prefix = f"mig:{name}:"
    tally = Tally()

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
        stored = await redis_take_keys(redis_server, prefix)
        await none_left(app=name, server_redis=redis_server)
        return stored

    _judge(f"redis/{kind}", tally, ringleader.run(main, workers=2, debug_socket=False))
