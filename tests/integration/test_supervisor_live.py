"""Integration tier: the supervisor in a real runtime, controlling a real pool of
loopback connections served by the same runtime (Postgres/Redis variants live
with their drivers' tests)."""
import asyncio

import ringleader
from ringleader.drivers.pool import Pool
from ringleader.supervisor import PoolAutoscale, SupervisorConfig
from ..tutil import Echo


class Conn:
    def __init__(self, r, w):
        self.r, self.w, self.closed = r, w, False

    def close(self):
        self.closed = True
        self.w.close()


def test_supervisor_grows_a_registered_pool_inside_its_rails(fd_guard):
    async def main(rt):
        g = await rt.serve(Echo, "127.0.0.1", 0)

        async def connect():
            return Conn(*await asyncio.open_connection("127.0.0.1", g.port))

        pool = Pool(connect, min_size=1, max_size=3, name="echo", autoscale=PoolAutoscale(min=2, max=12))
        await pool.open()
        assert "echo" in {e.name for e in rt.registry.pools()}

        async def req():
            async with pool.acquire() as c:
                c.w.write(b"x")
                await c.r.readexactly(1)
                await asyncio.sleep(0.005)

        loop = asyncio.get_running_loop()
        t0 = loop.time()
        while loop.time() - t0 < 4:
            await asyncio.gather(*[req() for _ in range(30)])
        snap = rt.supervisor.snapshot()
        await pool.close()
        g.close()
        return snap, pool.max_size

    snap, cap = ringleader.run(main, workers=2, supervisor=SupervisorConfig(period=0.5),
                               debug_socket=False)
    resizes = [d for d in snap["decisions"] if d["kind"] == "resize_pool"]
    assert resizes and resizes[0]["new"] > resizes[0]["old"] == 3
    assert all(2 <= d["new"] <= 12 for d in resizes)
    assert all(d["reason"] and d["inputs"] for d in snap["decisions"])
    assert 3 < cap <= 12
    assert snap["errors"] == 0 and snap["ticks"] >= 4
