"""A strict Postgres pool on a two-worker runtime moves an idle connection to
the worker whose caller needs one (issue 16) instead of closing it there and
connecting here: the caller waits for a move, not for a connect, and the
server forks no backend."""
import ringleader
from ringleader.drivers import postgres as pg

from ...tutil import wait_until


def test_a_caller_with_no_connection_of_its_own_gets_another_workers_idle_one(pg_server, fd_guard):
    async def main(rt):
        # min_size 2 in a runtime: one connection opened on each worker
        pool = pg.Pool(pg_server.dsn(), min_size=2, max_size=2, multiplex=False, name="moves")
        await pool.open()
        await wait_until(lambda: pool.stats().pool_available == 2, what="both connections open")
        assert pool.stats().connections_num == 2

        async def two_at_once():
            a = await pool.acquire()
            b = await pool.acquire(timeout=5.0)  # worker 1 has none left; worker 0 has one idle
            where = (a.worker_id, b.worker_id)
            assert await b.fetchval("SELECT 2") == 2  # it works where it arrived
            pool.release(a)
            pool.release(b)
            return where

        where = await rt.run_on(1, two_at_once())
        s = pool.stats()
        await rt.run_on(0, pool.close())
        return where, s

    (where, s) = ringleader.run(main, workers=2, debug_socket=False)
    assert where == (1, 1)
    assert s.connections_num == 2 and s.connections_moved == 1
