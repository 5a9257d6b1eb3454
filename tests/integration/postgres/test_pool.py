"""ringleader.drivers.postgres.Pool on the shared generic pool: shortcuts,
concurrency, dirty returns, killed connections and a server restart."""
import asyncio

import pytest

from ringleader.drivers import postgres as pg
from ringleader.drivers.errors import InterfaceError, PoolTimeout


def test_pool_shortcuts_and_concurrency(pg_server, run):
    async def main():
        setups = []

        async def setup(conn):
            setups.append(conn.backend_pid)
            await conn.execute("set application_name to 'pooled'")
        async with pg.Pool(pg_server.dsn(), min_size=1, max_size=3, setup=setup) as pool:
            assert await pool.fetchval("show application_name") == "pooled"
            await pool.execute("create table if not exists pool_t (v int)")
            await pool.execute("truncate pool_t")
            await pool.executemany("insert into pool_t values ($1)", [(i,) for i in range(10)])
            assert await pool.fetchval("select count(*) from pool_t") == 10
            assert (await pool.fetchrow("select max(v) as m from pool_t"))["m"] == 9
            got = await asyncio.gather(*(pool.fetchval("select $1::int + pg_backend_pid() * 0", i)
                                         for i in range(40)))
            assert got == list(range(40))
            s = pool.stats()
            assert s.pool_size <= 3 and s.requests_num >= 45 and len(setups) <= 3
            assert (await pool.fetch("select v from pool_t order by v limit 2")) == [(0,), (1,)]
            await pool.execute("drop table pool_t")
            with pytest.raises(PoolTimeout):
                conns = [await pool.acquire() for _ in range(3)]
                try:
                    await pool.acquire(timeout=0.1)
                finally:
                    for c in conns:
                        pool.release(c)
    run(main())


def test_pool_discards_dirty_connections(pg_server, run):
    async def main():
        # multiplex=False: the shortcuts borrow a connection per call, so a
        # cancelled one returns it dirty (test_pool_mux covers the shared path).
        async with pg.Pool(pg_server.dsn(), min_size=1, max_size=1, multiplex=False) as pool:
            async with pool.acquire() as conn:
                pid = conn.backend_pid
                await conn.execute("begin")
            async with pool.acquire() as conn:
                assert conn.backend_pid != pid  # the one left in a transaction was dropped
                assert conn.transaction_status == "I"
                pid = conn.backend_pid
            # cancelled mid-query: the connection has a query in flight; the pool
            # lets the server finish (the driver cancels it there) and reuses it
            # instead of opening another (issue 16: that churn kept an
            # overloaded server overloaded)
            t = asyncio.ensure_future(pool.fetchval("select pg_sleep(10)"))
            await asyncio.sleep(0.2)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            opened = pool.stats().connections_num
            assert await pool.fetchval("select pg_backend_pid()") == pid
            s = pool.stats()
            assert (s.returns_bad, s.returns_drained, s.connections_num) == (1, 1, opened)
            # ... but not when the abandoned query was inside a transaction block
            async with pool.acquire() as conn:
                await conn.execute("begin")
                t = asyncio.ensure_future(conn.fetchval("select pg_sleep(10)"))
                await asyncio.sleep(0.2)
                t.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await t
            assert await pool.fetchval("select pg_backend_pid()") != pid
            assert pool.stats().returns_bad == 2
        with pytest.raises(InterfaceError):
            pg.Pool(pg_server.dsn(), reset=lambda c: None)
        with pytest.raises(ValueError):
            pg.Pool("host=x sslmode=verify-full")
    run(main())


def test_pool_survives_killed_connections_and_restart(pg_server, run):
    async def main():
        loop = asyncio.get_running_loop()
        su = await pg.connect(pg_server.superuser_dsn())
        async with pg.Pool(pg_server.dsn(), min_size=2, max_size=2, check_after=0.05) as pool:
            async with pool.acquire() as a, pool.acquire() as b:
                pids = {a.backend_pid, b.backend_pid}
            for pid in pids:
                await su.fetchval("select pg_terminate_backend($1)", pid)
            await asyncio.sleep(0.2)
            assert await pool.fetchval("select 1") == 1
            await su.close()
            await loop.run_in_executor(None, pg_server.restart)
            await asyncio.sleep(0.1)
            got = await asyncio.gather(*(pool.fetchval("select $1::int", i) for i in range(6)))
            assert got == list(range(6))
            s = pool.stats()
            assert s.connections_num >= 4
            pool.resize(1, 4)
            assert (pool.min_size, pool.max_size) == (1, 4)
            assert await pool.fetchval("select 2") == 2
    run(main(), timeout=120)



def test_callers_giving_up_under_overload_cause_no_churn_and_it_recovers(pg_server, run):
    """Issue 16's metastable failure in small: hundreds of callers give up
    mid-acquire and mid-query (50 ms acquire timeout, a 30 ms deadline on
    queries of 20 ms); the pool opens no more than its cap plus its burst
    allowance, reuses the abandoned connections, and serves at once after."""
    async def main():
        async with pg.Pool(pg_server.dsn(), min_size=1, max_size=4, burst=2, acquire_timeout=0.05,
                           multiplex=False) as pool:
            async def impatient():
                try:
                    async with asyncio.timeout(0.03):
                        async with pool.acquire() as conn:
                            await conn.fetchval("select pg_sleep(0.02)")
                except (TimeoutError, PoolTimeout):
                    pass
            for _ in range(5):
                await asyncio.gather(*(impatient() for _ in range(100)))
            s = pool.stats()
            assert s.connections_num <= 4 + 2 and s.connections_errors == 0
            assert s.returns_drained > 0
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            got = await asyncio.gather(*(pool.fetchval("select $1::int", i) for i in range(20)))
            assert got == list(range(20)) and loop.time() - t0 < 2.0
            assert pool.stats().connections_num <= 4 + 2
    run(main())
