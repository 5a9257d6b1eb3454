"""The Redis pool's multiplexed path (ringleader.drivers.mux): commands from
many tasks share a few connections and are pipelined, each caller still gets
its own reply, an error reply fails only its command, a lost connection fails
every command in flight on it with ConnectionError, stateful and blocking
commands borrow a connection of their own, and exclusive acquire() is not
starved by multiplexed load."""
import asyncio
import uuid

import pytest

from ringleader.drivers import redis


def key() -> str:
    return f"mux:{uuid.uuid4().hex[:12]}"


def _writes(pool) -> int:
    mux = next(iter(pool._mux.by_loop.values()))
    return sum(c.writes for c in mux.conns)


def test_replies_reach_their_callers_and_commands_are_pipelined(run, redis_server, fd_guard):
    async def main():
        async with redis.Pool(redis_server.url, min_size=1, max_size=4) as pool:
            keys = [key() for _ in range(200)]
            await asyncio.gather(*(pool.set(k, i) for i, k in enumerate(keys)))
            before = pool.stats().requests_num
            got = await asyncio.gather(*(pool.get(k) for k in keys))
            assert got == [str(i).encode() for i in range(200)]
            s = pool.stats()
            assert s.requests_num - before >= 200  # each multiplexed command counts
            assert s.usage_p99_ms is not None
            # 200 commands issued in one loop iteration: far fewer writes than commands
            assert 0 < _writes(pool) < 200
            assert s.pool_size <= 4
            await pool.delete(*keys)
    run(main())


def test_each_task_sees_its_commands_in_program_order(run, redis_server):
    async def main():
        async with redis.Pool(redis_server.url, max_size=3, mux_depth=2) as pool:
            keys = [key() for _ in range(32)]

            async def writer(k):
                for i in range(25):
                    await pool.rpush(k, i)
                return await pool.lrange(k, 0, -1)
            lists = await asyncio.gather(*(writer(k) for k in keys))
            assert all(lst == [str(i).encode() for i in range(25)] for lst in lists)
            assert len(next(iter(pool._mux.by_loop.values())).conns) > 1  # it did spread
            await pool.delete(*keys)
    run(main())


def test_an_error_reply_fails_only_its_command(run, redis_server):
    async def main():
        async with redis.Pool(redis_server.url, max_size=2) as pool:
            h, s = key(), key()
            await pool.hset(h, "f", "1")
            await pool.set(s, "ok")
            calls = [pool.get(h) if i % 3 == 0 else pool.get(s) for i in range(60)]
            res = await asyncio.gather(*calls, return_exceptions=True)
            for i, r in enumerate(res):
                if i % 3 == 0:
                    assert isinstance(r, redis.ReplyError) and r.code == "WRONGTYPE"
                else:
                    assert r == b"ok"
            st = pool.stats()
            assert st.connections_lost == 0 and st.returns_bad == 0  # none was dropped
            assert pool.stats().errors_by_kind["reply"] == 20
            await pool.delete(h, s)
    run(main())


def test_connection_loss_fails_all_in_flight_then_recovers(run, own_redis_server):
    async def main():
        loop = asyncio.get_running_loop()
        async with redis.Pool(own_redis_server.url, max_size=2, timeout=5.0) as pool:
            k = key()
            await pool.set(k, "v")
            # 10 s: the kill below must come while it runs (it ends it at once),
            # however long a loaded machine takes to get there
            stall = asyncio.ensure_future(pool.execute("DEBUG", "SLEEP", "10"))
            await asyncio.sleep(0.05)
            behind = [asyncio.ensure_future(pool.get(k)) for _ in range(20)]
            await asyncio.sleep(0.1)
            await loop.run_in_executor(None, own_redis_server.kill)
            res = await asyncio.gather(stall, *behind, return_exceptions=True)
            assert all(isinstance(r, redis.ConnectionError) for r in res), res
            await loop.run_in_executor(None, own_redis_server.start)
            assert await pool.set(k, "again") is True
            assert await pool.get(k) == b"again"
            assert pool.stats().errors_by_kind["connection"] == 21
    run(main())


def test_blocking_and_stateful_commands_do_not_use_shared_connections(run, redis_server):
    async def main():
        async with redis.Pool(redis_server.url, max_size=3) as pool:
            k, q = key(), key()
            await pool.set(k, "v")
            blpop = asyncio.ensure_future(pool.blpop(q, timeout=30))
            await asyncio.sleep(0.05)
            assert await pool.get(k) == b"v"
            assert not blpop.done()  # the GET was not queued behind the BLPOP
            await pool.rpush(q, "x")
            assert await blpop == (q.encode(), b"x")
            assert await pool.execute("WATCH", k) == b"OK"  # released, UNWATCHed
            mux = next(iter(pool._mux.by_loop.values()))
            assert all(not c.watching for c in mux.conns)
            await pool.delete(k)
    run(main())


def test_exclusive_acquire_is_served_under_multiplexed_load(run, redis_server):
    async def main():
        async with redis.Pool(redis_server.url, min_size=1, max_size=1,
                              acquire_timeout=5.0) as pool:
            k = key()
            stop = False

            async def load():
                while not stop:
                    await pool.incr(k)
            tasks = [asyncio.ensure_future(load()) for _ in range(8)]
            await asyncio.sleep(0.1)
            async with pool.acquire(timeout=2.0) as conn:  # the only connection
                assert await conn.ping() in (b"PONG", "PONG", True)
            stop = True
            await asyncio.gather(*tasks)
            assert pool.stats().pool_size == 1
            await pool.delete(k)
    run(main())


def test_multiplex_false_borrows_per_command(run, redis_server):
    async def main():
        async with redis.Pool(redis_server.url, max_size=2, multiplex=False) as pool:
            k = key()
            await asyncio.gather(*(pool.incr(k) for _ in range(10)))
            assert await pool.get(k) == b"10"
            assert not pool._mux.by_loop
            await pool.delete(k)
    run(main())


def test_close_with_commands_in_flight_ends_them(run, redis_server):
    async def main():
        pool = redis.Pool(redis_server.url, max_size=2)
        await pool.open()
        k = key()
        await pool.set(k, "v")
        futs = [asyncio.ensure_future(pool.get(k)) for _ in range(10)]
        await asyncio.sleep(0)
        await pool.close()
        res = await asyncio.gather(*futs, return_exceptions=True)
        assert all(r == b"v" or isinstance(r, (redis.ConnectionError, redis.PoolClosed))
                   for r in res), res
        with pytest.raises(redis.PoolClosed):
            await pool.get(k)
    run(main())
