"""The supervisor in a real runtime controlling a real Redis pool, its decisions
read back through the debug socket (issue 7's done-when, on Redis)."""
import asyncio

import ringleader
from ringleader.drivers import redis
from ringleader.runtime.debug_cli import DebugClient
from ringleader.supervisor import PoolAutoscale, SupervisorConfig


def test_supervisor_resizes_a_redis_pool_and_shows_it_on_the_debug_socket(redis_server, tmp_path):
    sock = tmp_path / "dbg.sock"

    async def main(rt):
        pool = redis.Pool(redis_server.url, min_size=1, max_size=2, name="cache",
                          autoscale=PoolAutoscale(min=2, max=10))
        await pool.open()
        await pool.set("k", "v" * 100)

        async def user():
            # exclusive use with a hold time, so demand (not Redis speed) sets the size
            async with pool.acquire() as conn:
                assert await conn.get("k") == b"v" * 100
                await asyncio.sleep(0.005)

        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while loop.time() - t0 < 4:
            await asyncio.gather(*[user() for _ in range(24)])

        def read_socket():
            with DebugClient(sock) as c:
                return c.request("decisions"), c.request("pools")

        decisions, pools = await loop.run_in_executor(None, read_socket)
        cap = pool.stats().pool_max
        await pool.close()
        return decisions, pools, cap

    decisions, pools, cap = ringleader.run(main, workers=2, debug_socket=sock,
                                           supervisor=SupervisorConfig(period=0.5))
    assert 2 < cap <= 10
    text = repr(decisions)
    assert "resize_pool" in text and "cache" in text and "littles" in text
    assert "cache" in repr(pools)
