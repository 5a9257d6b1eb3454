"""A live Postgres connection moves between workers (MSG_RING SEND_FD) and keeps working."""
import asyncio

import ringleader
from ringleader.drivers import postgres as pg


def test_connection_migrates_between_workers_and_keeps_its_session(pg_server, fd_guard):
    async def main(rt):
        conn = await pg.connect(pg_server.dsn())
        await conn.execute("CREATE TEMP TABLE moved (i int)")
        for i in range(40):
            src = rt.current_worker() if i == 0 else i % 2
            dst = 1 - src

            async def hop(i=i, dst=dst):
                await rt.migrate(conn._transport, dst)

            await rt.run_on(src, hop())

            async def use(i=i):
                # the session (temp table, prepared statements) survived the move
                await conn.execute("INSERT INTO moved VALUES ($1)", i)
                return await conn.fetchval("SELECT count(*) FROM moved"), rt.current_worker()

            count, where = await rt.run_on(dst, use())
            assert (count, where) == (i + 1, dst)
        final = rt.current_worker()
        if conn._transport._loop.worker_id != final:
            await rt.run_on(conn._transport._loop.worker_id, rt.migrate(conn._transport, final))
        await conn.close()
        return rt.stats()

    stats = ringleader.run(main, workers=2, debug_socket=False)
    assert sum(s.migrations_in for s in stats) >= 40
