"""A live Redis connection moves between workers (MSG_RING SEND_FD) and keeps working."""
import ringleader
from ringleader.drivers import redis


def test_connection_migrates_between_workers(redis_server, fd_guard):
    async def main(rt):
        conn = await redis.connect(redis_server.url)
        await conn.execute("DEL", "moved")
        for i in range(40):
            src = 0 if i == 0 else i % 2
            dst = 1 - src
            await rt.run_on(src, rt.migrate(conn._transport, dst))

            async def use(i=i):
                return await conn.execute("RPUSH", "moved", i), rt.current_worker()

            n, where = await rt.run_on(dst, use())
            assert (n, where) == (i + 1, dst)
        assert conn._transport._loop.worker_id == 0
        got = await conn.execute("LRANGE", "moved", 0, -1)
        await conn.execute("DEL", "moved")
        conn.close()
        return got, rt.stats()

    got, stats = ringleader.run(main, workers=2, debug_socket=False)
    assert [int(x) for x in got] == list(range(40))
    assert sum(s.migrations_in for s in stats) == 40
