"""Queries on the happy path leave no reference cycles behind.

An operation that references itself through its future (op -> fut -> op)
keeps every result's rows alive until the cyclic GC runs; under load those
gen-1 collections cost a quarter of a FETCH's client CPU.  Here the cyclic
collector is switched off while queries run, and what it then finds is what
refcounting could not free."""
import asyncio

from ringleader.drivers import postgres as pg

from ...tutil import cyclic_garbage


def _cyclic_garbage(coro_fn, run) -> list[str]:
    async def main():
        await coro_fn()  # warm-up: connections, prepared statements, caches
        return await cyclic_garbage(coro_fn)
    return run(main())


def test_pool_queries_leave_no_cycles(pg_server, run):
    holder = {}

    async def queries():
        pool = holder.get("pool")
        if pool is None:
            pool = holder["pool"] = pg.Pool(pg_server.dsn(), min_size=2, max_size=4)
            await pool.open()
        for _ in range(3):
            await asyncio.gather(
                *(pool.fetch("select g, g::text from generate_series(1, 10) g") for _ in range(20)),
                *(pool.fetchval("select $1::int", i) for i in range(20)),
                *(pool.execute("select $1::text", "x") for _ in range(20)))
    try:
        assert _cyclic_garbage(queries, run) == []
    finally:
        if "pool" in holder:
            run(holder["pool"].close())


def test_connection_queries_leave_no_cycles(pg_server, run):
    holder = {}

    async def queries():
        conn = holder.get("conn")
        if conn is None:
            conn = holder["conn"] = await pg.connect(pg_server.dsn())
        for i in range(20):
            await conn.fetch("select g from generate_series(1, $1::int) g", i)
            await conn.fetchrow("select $1::int, 'a'::text", i)
        await asyncio.gather(*(conn.fetchval("select $1::int", i) for i in range(20)))
    try:
        assert _cyclic_garbage(queries, run) == []
    finally:
        if "conn" in holder:
            run(holder["conn"].close())
