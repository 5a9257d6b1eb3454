"""The Redis driver against a real redis-server: handshake options, typed
helpers under RESP2 and RESP3, auto-pipelining, pipelines, transactions,
scripts, SCAN iterators, blocking commands, pub/sub and the pool."""
import asyncio
import uuid

import pytest

from ringleader.drivers import redis
from ringleader.drivers.pool import PoolStats


@pytest.fixture(params=[2, 3], ids=["resp2", "resp3"])
def resp(request):
    return request.param


def key(prefix="k"):
    return f"{prefix}:{uuid.uuid4().hex[:8]}"


def test_typed_helpers(run, redis_server, resp):
    async def main():
        conn = await redis.connect(redis_server.url, protocol=resp)
        k, h, l, s, z = key(), key(), key(), key(), key()
        assert await conn.ping() in (b"PONG", "PONG")
        assert await conn.set(k, "v", ex=100) is True
        assert await conn.set(k, "w", nx=True) is False
        assert await conn.get(k) == b"v" and 0 < await conn.ttl(k) <= 100
        assert await conn.incr(k + "n") == 1 and await conn.incr(k + "n", 5) == 6
        assert await conn.incrbyfloat(k + "f", 1.5) == 1.5
        assert await conn.exists(k, k + "n", "nope") == 2
        assert await conn.expire(k, 50) is True and await conn.persist(k) is True
        assert await conn.mset({k + "a": 1, k + "b": 2}) is True
        assert await conn.mget(k + "a", k + "b", "nope") == [b"1", b"2", None]

        assert await conn.hset(h, mapping={"a": 1, "b": "x"}) == 2
        assert await conn.hgetall(h) == {b"a": b"1", b"b": b"x"}
        assert await conn.hincrbyfloat(h, "a", 0.5) == 1.5 and await conn.hexists(h, "b") is True

        assert await conn.rpush(l, 1, 2, 3) == 3 and await conn.lrange(l, 0, -1) == [b"1", b"2", b"3"]
        assert await conn.lpop(l) == b"1" and await conn.llen(l) == 2

        assert await conn.sadd(s, "a", "b") == 2 and await conn.smembers(s) == {b"a", b"b"}
        assert await conn.smismember(s, "a", "z") == [True, False]

        assert await conn.zadd(z, {"a": 1, "b": 2.5}) == 2
        assert await conn.zrange(z, 0, -1, withscores=True) == [(b"a", 1.0), (b"b", 2.5)]
        assert await conn.zscore(z, "b") == 2.5 and await conn.zscore(z, "zz") is None
        assert await conn.zpopmin(z) == (b"a", 1.0) and await conn.zrank(z, "b") == 0

        with pytest.raises(redis.ReplyError) as info:
            await conn.lpush(k, "x")  # k holds a string
        assert info.value.code == "WRONGTYPE" and not conn.is_closed  # a reply error keeps it
        assert await conn.delete(k, h, l, s, z) == 5
        await conn.delete(k + "n", k + "f", k + "a", k + "b")
        conn.close()
    run(main())


def test_auth_acl_user_db_name_and_unix_socket(run, redis_server, resp):
    async def main():
        admin = await redis.connect(redis_server.url)
        user = "u" + uuid.uuid4().hex[:6]
        await admin.execute("ACL", "SETUSER", user, "on", ">s3cret", "~*", "&*", "+@all")
        conn = await redis.connect(f"redis://{user}:s3cret@127.0.0.1:{redis_server.port}/5"
                                   f"?protocol={resp}&client_name=svc-{resp}")
        assert await conn.execute("ACL", "WHOAMI") in (user.encode(), user)
        assert await conn.execute("CLIENT", "GETNAME") == f"svc-{resp}".encode()
        await conn.set("where", "db5")
        assert await admin.get("where") is None  # admin is on db 0
        if resp == 3:
            assert conn.server_info[b"proto"] == 3
        with pytest.raises(redis.ReplyError) as info:
            await redis.connect(f"redis://{user}:wrong@127.0.0.1:{redis_server.port}?protocol={resp}")
        assert info.value.code == "WRONGPASS"
        via_unix = await redis.connect(f"unix://{redis_server.socket}?db=5", decode_responses=True)
        assert await via_unix.get("where") == "db5"
        await via_unix.delete("where")
        for c in (admin, conn, via_unix):
            c.close()
    run(main())


def test_auto_pipelining_batches_one_iteration_into_one_write(run, redis_server):
    async def main():
        conn = await redis.connect(redis_server.url)
        k = key()
        before = conn.writes
        results = await asyncio.gather(*[conn.rpush(k, i) for i in range(200)])
        assert conn.writes == before + 1  # 200 commands, one write
        assert results == list(range(1, 201))  # FIFO: replies matched in issue order
        assert await conn.lrange(k, 0, 2) == [b"0", b"1", b"2"]
        # A caller that gives up keeps its place in the FIFO: its late reply is
        # dropped, not handed to the next caller.
        slow = asyncio.ensure_future(conn.execute("DEBUG", "SLEEP", "0.05"))
        await asyncio.sleep(0.01)
        slow.cancel()
        assert await conn.echo("mine") == b"mine" and not conn.is_closed
        await conn.delete(k)
        conn.close()
    run(main())


def test_pipeline_and_errors_in_it(run, redis_server, resp):
    async def main():
        conn = await redis.connect(redis_server.url, protocol=resp)
        k = key()
        pipe = conn.pipeline().set(k, 1).incr(k).hgetall(k).get(k)
        before = conn.writes
        with pytest.raises(redis.ReplyError):
            await pipe.execute()
        assert conn.writes == before + 1
        pipe.incr(k).hgetall(k).get(k)
        out = await pipe.execute(raise_on_error=False)
        assert out[0] == 3 and isinstance(out[1], redis.ReplyError) and out[2] == b"3"
        await conn.delete(k)
        conn.close()
    run(main())


def test_watch_multi_exec(run, redis_server, resp):
    async def main():
        async with redis.Pool(redis_server.url, protocol=resp, max_size=3) as pool:
            k = key()
            await pool.set(k, 1)
            async with pool.acquire() as conn:
                await conn.watch(k)
                tx = conn.transaction().incr(k).get(k)
                assert await tx.execute() == [2, b"2"]
                await conn.watch(k)
                await pool.set(k, 100)  # another connection changes the watched key
                tx = conn.transaction().incr(k)
                with pytest.raises(redis.WatchError):
                    await tx.execute()
            assert await pool.get(k) == b"100"
            # A WATCH left behind does not leak to the connection's next borrower.
            async with pool.acquire() as conn:
                await conn.watch(k)
                first = conn
            async with pool.acquire() as conn, pool.acquire() as other:
                assert conn is first
                await other.set(k, 7)
                assert await conn.transaction().incr(k).execute() == [8]
            tx = pool.transaction().incr(k).execute_command("NOSUCHCMD")
            with pytest.raises(redis.ReplyError, match="EXECABORT"):
                await tx.execute()
            await pool.delete(k)
    run(main())


def test_scripts_fall_back_to_eval(run, redis_server):
    async def main():
        async with redis.Pool(redis_server.url, max_size=2) as pool:
            await pool.script_flush()
            script = redis.Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
            k = key()
            assert await script(pool, [k], [5]) == 5  # NOSCRIPT -> EVAL
            assert await pool.script_exists(script.sha) == [True]
            assert await script(pool, [k], [5]) == 10  # EVALSHA
            await pool.delete(k)
    run(main())


def test_scan_iterators(run, redis_server, resp):
    async def main():
        conn = await redis.connect(redis_server.url, protocol=resp)
        prefix = key("scan")
        await conn.mset({f"{prefix}:{i}": i for i in range(50)})
        found = {k async for k in conn.scan_iter(match=f"{prefix}:*", count=7)}
        assert found == {f"{prefix}:{i}".encode() for i in range(50)}
        h, z = key(), key()
        await conn.hset(h, mapping={f"f{i}": i for i in range(30)})
        assert dict([kv async for kv in conn.hscan_iter(h, count=5)]) == \
            {f"f{i}".encode(): str(i).encode() for i in range(30)}
        await conn.zadd(z, {"a": 1.5, "b": 2})
        assert sorted([m async for m in conn.zscan_iter(z)]) == [(b"a", 1.5), (b"b", 2.0)]
        await conn.delete(h, z, *found)
        conn.close()
    run(main())


def test_blpop_timeout_and_wakeup(run, redis_server, resp):
    async def main():
        async with redis.Pool(redis_server.url, protocol=resp, max_size=3) as pool:
            k = key()
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            assert await pool.blpop(k, timeout=0.2) is None  # server-side timeout: nil
            assert loop.time() - t0 >= 0.15  # the server waited (generous: a loaded machine)
            waiter = asyncio.ensure_future(pool.blpop([k, k + "x"], timeout=5))
            await asyncio.sleep(0.05)
            await pool.rpush(k, "hi")
            assert await waiter == (k.encode(), b"hi")
    run(main())


def test_pubsub_subscribe_and_psubscribe(run, redis_server, resp, fd_guard):
    async def main():
        async with redis.Pool(redis_server.url, protocol=resp) as pool:
            ch = key("ch")
            async with pool.pubsub() as ps:
                await ps.subscribe(ch)
                await ps.psubscribe(ch + ".*")
                assert await pool.publish(ch, "one") == 1
                assert await pool.publish(ch + ".x", "two") == 1
                msgs = [await ps.get_message(timeout=2) for _ in range(2)]
                assert msgs[0] == redis.Message("message", ch.encode(), b"one")
                assert msgs[1] == redis.Message("pmessage", (ch + ".x").encode(), b"two",
                                                pattern=(ch + ".*").encode())
                await ps.unsubscribe(ch)
                await ps.punsubscribe()
                assert await pool.publish(ch, "three") == 0
                assert await ps.get_message(timeout=0.05) is None
            assert [m async for m in ps] == []  # closed: iteration ends
    run(main())


def test_pool_runs_commands_and_reports_stats(run, redis_server, fd_guard):
    async def main():
        async with redis.Pool(redis_server.url, min_size=2, max_size=4) as pool:
            k = key()
            await asyncio.gather(*[pool.incr(k) for _ in range(50)])
            assert await pool.get(k) == b"50"
            with pytest.raises(redis.ReplyError):
                await pool.hget(k, "f")
            s = pool.stats()
            assert isinstance(s, PoolStats)
            assert s.pool_min == 2 and 2 <= s.pool_size <= 4 and s.requests_num >= 52
            assert s.errors_by_kind == {"reply": 1} and s.usage_p99_ms is not None
            pool.resize(1, 1)
            await asyncio.gather(*[pool.incr(k) for _ in range(10)])
            assert pool.stats().pool_size == 1
            await pool.delete(k)
    run(main())
