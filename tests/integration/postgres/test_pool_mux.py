"""The Postgres pool's multiplexed shortcuts (ringleader.drivers.mux): many
callers' statements pipelined on a few shared connections, each with its own
result; a failing statement does not affect the others; a lost connection
fails everything in flight on it with ConnectionLost; statements that change
session or transaction state borrow a connection of their own; a cancelled
statement is cancelled on the server and the connection keeps serving."""
import asyncio
import gc

import psycopg
import pytest

from ringleader.drivers import postgres as pg


def _mux(pool):
    return next(iter(pool._mux.by_loop.values()))


def test_results_reach_their_callers_over_few_connections(pg_server, run):
    async def main():
        async with pg.Pool(pg_server.dsn(), min_size=1, max_size=4) as pool:
            before = pool.stats().requests_num
            got = await asyncio.gather(*(pool.fetchval("select $1::int", i) for i in range(300)))
            assert got == list(range(300))
            rows = await asyncio.gather(*(pool.fetch("select $1::int as a, $2::text as b", i, str(i))
                                          for i in range(50)))
            assert [(r[0]["a"], r[0]["b"]) for r in rows] == [(i, str(i)) for i in range(50)]
            s = pool.stats()
            assert s.requests_num - before >= 350 and s.usage_p99_ms is not None
            assert s.pool_size <= 4 and len(_mux(pool).conns) <= 4
    run(main())


def test_program_order_per_task(pg_server, run):
    async def main():
        async with pg.Pool(pg_server.dsn(), max_size=3, mux_depth=2) as pool:
            await pool.execute("create table if not exists mux_order (task int, n int, "
                               "at timestamptz default clock_timestamp())")
            await pool.execute("truncate mux_order")

            async def writer(t):
                for n in range(20):
                    await pool.execute("insert into mux_order (task, n) values ($1, $2)", t, n)
            await asyncio.gather(*(writer(t) for t in range(16)))
            rows = await pool.fetch("select task, array_agg(n order by at) as ns "
                                    "from mux_order group by task")
            assert len(rows) == 16 and all(r["ns"] == list(range(20)) for r in rows)
            await pool.execute("drop table mux_order")
    run(main())


def test_a_failing_statement_does_not_poison_others(pg_server, run):
    async def main():
        async with pg.Pool(pg_server.dsn(), max_size=2) as pool:
            calls = [pool.fetchval("select 10 / $1::int", 0 if i % 4 == 0 else 2)
                     for i in range(80)]
            res = await asyncio.gather(*calls, return_exceptions=True)
            for i, r in enumerate(res):
                if i % 4 == 0:
                    assert isinstance(r, psycopg.errors.DivisionByZero)
                else:
                    assert r == 5
            s = pool.stats()
            assert s.connections_lost == 0 and s.returns_bad == 0
            assert all(c.transaction_status == "I" for c in _mux(pool).conns)
    run(main())


def test_connection_loss_fails_all_in_flight_with_connection_lost(pg_server, run):
    async def main():
        su = await pg.connect(pg_server.superuser_dsn())
        async with pg.Pool(pg_server.dsn(), min_size=1, max_size=1) as pool:
            pid = await pool.fetchval("select pg_backend_pid()")
            slow = asyncio.ensure_future(pool.fetchval("select pg_sleep(5)"))
            await asyncio.sleep(0.1)
            behind = [asyncio.ensure_future(pool.fetchval("select $1::int", i)) for i in range(10)]
            await asyncio.sleep(0.1)
            await su.fetchval("select pg_terminate_backend($1)", pid)
            res = await asyncio.gather(slow, *behind, return_exceptions=True)
            # the statement running when the backend died gets the server's own
            # FATAL (AdminShutdown), which explains it better; the rest ConnectionLost
            assert isinstance(res[0], (pg.ConnectionLost, psycopg.errors.AdminShutdown)), res
            assert all(isinstance(r, pg.ConnectionLost) for r in res[1:]), res
            assert await pool.fetchval("select pg_backend_pid()") != pid  # replaced
            assert pool.stats().returns_bad >= 1
        await su.close()
    run(main())


def test_stateful_statements_are_not_multiplexed(pg_server, run):
    async def main():
        async with pg.Pool(pg_server.dsn(), max_size=2) as pool:
            assert await pool.fetchval("select 1") == 1
            shared = set(map(id, _mux(pool).conns))
            await pool.fetch("set application_name to 'x'")  # borrowed, not shared
            assert await pool.fetchval("show application_name") != "x"
            await pool.execute("begin")  # no arguments: borrowed; the pool discards it
            assert all(c.transaction_status == "I" for c in _mux(pool).conns)
            assert set(map(id, _mux(pool).conns)) <= shared  # neither joined the rotation
            async with pool.acquire() as conn:
                async with conn.transaction():
                    await conn.execute("select 1")
    run(main())


# The pool's close() released the shared connection while the cancelled
# statement's CancelRequest was still under way; the reset hook then returned
# an awaitable to settle it, whose task close() cancelled before it started:
# "coroutine '_settled' was never awaited", and the connection was neither
# settled nor closed (its backend lived on).  Any warning fails this test.
@pytest.mark.filterwarnings("error")
def test_cancelled_statement_is_cancelled_and_the_connection_kept(pg_server, run):
    async def main():
        pids = []

        async def setup(conn):
            pids.append(conn.backend_pid)
        async with pg.Pool(pg_server.dsn(), min_size=1, max_size=1, setup=setup) as pool:
            pid = await pool.fetchval("select pg_backend_pid()")
            t = asyncio.ensure_future(pool.fetchval("select pg_sleep(10)"))
            await asyncio.sleep(0.2)
            t.cancel()
            with pytest.raises(asyncio.CancelledError):
                await t
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert await pool.fetchval("select pg_backend_pid()") == pid
            assert loop.time() - t0 < 5  # the sleep was cancelled on the server
        assert pids == [pid]  # kept: no second connection was opened
        s = pool.stats()
        assert (s.pool_size, s.pool_in_use, s.pool_available) == (0, 0, 0)
        # nothing of the pool's is left pending (the run fixture's wait_for aside)
        assert [t for t in asyncio.all_tasks() if not t.done() and t is not asyncio.current_task()
                and t.get_coro().__qualname__ != "wait_for"] == []
        c = await pg.connect(pg_server.dsn())
        try:  # and its backend is gone
            await wait_until_zero(c, "select count(*) from pg_stat_activity where pid = $1", pid)
        finally:
            await c.close()
        gc.collect()  # an unawaited coroutine warns when it is collected
    run(main())


async def wait_until_zero(conn, sql, *args, timeout=10.0):
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while left := await conn.fetchval(sql, *args):
        assert loop.time() < deadline, f"{sql}: still {left} after {timeout} s"
        await asyncio.sleep(0.05)


def test_exclusive_acquire_is_served_under_multiplexed_load(pg_server, run):
    async def main():
        async with pg.Pool(pg_server.dsn(), min_size=1, max_size=1,
                           acquire_timeout=5.0) as pool:
            stop = False

            async def load():
                while not stop:
                    await pool.fetchval("select $1::int", 1)
            tasks = [asyncio.ensure_future(load()) for _ in range(8)]
            await asyncio.sleep(0.1)
            async with pool.acquire(timeout=2.0) as conn:
                async with conn.transaction():
                    assert await conn.fetchval("select 2") == 2
            stop = True
            await asyncio.gather(*tasks)
            assert pool.stats().pool_size == 1
    run(main())
