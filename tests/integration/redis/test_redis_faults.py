"""Fault tests of the Redis driver: server restart under load, CLIENT KILL, a
stalled server (DEBUG SLEEP) against timeouts, a health check cut short by
its caller (CLIENT PAUSE), refused connections, and fake
servers (asyncio servers in the test) that send malformed RESP, unsolicited
replies or hang up mid-command.  The property under test everywhere: every
command ends in a result or a typed error, nothing hangs, and the pool recovers
by itself."""
import asyncio
import uuid

import pytest

from ringleader.drivers import errors as base
from ringleader.drivers import redis

from ...tutil import wait_until
from .conftest import FakeRedis, free_port


async def _subscribers(pool, channel: str) -> int:
    try:
        return (await pool.execute("PUBSUB", "NUMSUB", channel))[1]
    except redis.RedisError:  # the server is still coming back
        return 0


async def _blocked_on_server(admin, client_name: str) -> bool:
    """Whether the server lists a client of that name as blocked (BLPOP & co.)."""
    listing = (await admin.execute("CLIENT", "LIST")).decode()
    return any(f" name={client_name} " in f" {line} " and " flags=b " in f" {line} "
               for line in listing.splitlines())


def test_restart_under_load_every_command_ends_and_pool_recovers(run, own_redis_server):
    async def main():
        loop = asyncio.get_running_loop()
        outcomes = {"ok": 0}
        stop = asyncio.Event()
        async with redis.Pool(own_redis_server.url, min_size=2, max_size=6, timeout=2.0,
                              acquire_timeout=2.0) as pool:
            async def client(i):
                k = f"load:{i}"
                while not stop.is_set():
                    try:
                        await pool.incr(k)
                        outcomes["ok"] += 1
                    except (redis.RedisError, base.PoolTimeout) as exc:
                        name = type(exc).__name__
                        outcomes[name] = outcomes.get(name, 0) + 1
                        await asyncio.sleep(0.01)

            ps = pool.pubsub()
            await ps.subscribe("news")
            tasks = [asyncio.create_task(client(i)) for i in range(20)]
            await wait_until(lambda: outcomes["ok"] > 50, what="50 INCRs before the restart")
            ok_before = outcomes["ok"]
            await loop.run_in_executor(None, own_redis_server.restart)
            await wait_until(lambda: outcomes["ok"] > ok_before + 50,
                             what="50 INCRs after the restart")
            # ... and the subscriber is back on the new server by itself.
            await wait_until(lambda: _subscribers(pool, "news"), what="the subscriber to resubscribe")
            stop.set()
            # No task hangs on a dead connection: all finish promptly.
            await asyncio.wait_for(asyncio.gather(*tasks), 5)
            # (the waits above saw it work before and again after the restart)
            errors = set(outcomes) - {"ok"}
            assert errors and errors <= {"ConnectionError", "PoolTimeout", "TimeoutError"}, outcomes
            assert await pool.set("after", "restart") is True
            # No caller is left queued.  Not at this instant: the reconnects spent
            # the pool's open budget (connect_rate), so a request that arrives
            # now may wait for the next token (tens of ms) before its open starts.
            await wait_until(lambda: pool.stats().requests_waiting == 0,
                             what="no caller queued once the open budget refills")
            s = pool.stats()
            assert s.errors_by_kind.get("connection", 0) >= 1
            assert s.pool_size <= 6
            # The subscriber came back by itself, subscribed again (twice when its
            # first reconnect reached the old server as it shut down).
            assert 1 <= ps.reconnects <= 3
            assert await pool.publish("news", "still here") == 1
            assert (await ps.get_message(2)).data == b"still here"
            await ps.close()
    run(main())


def test_client_kill_fails_in_flight_and_pool_replaces(run, redis_server, fd_guard):
    async def main():
        admin = await redis.connect(redis_server.url)
        victim = await redis.connect(redis_server.url)
        victim_id = await victim.execute("CLIENT", "ID")
        blocked = asyncio.ensure_future(victim.blpop("never:" + uuid.uuid4().hex, timeout=10))
        await asyncio.sleep(0.05)
        await admin.execute("CLIENT", "KILL", "ID", victim_id)
        with pytest.raises(redis.ConnectionError):
            await asyncio.wait_for(blocked, 2)
        assert victim.is_closed and victim.broken
        with pytest.raises(redis.ConnectionError):
            await victim.get("x")  # a closed connection is never reused

        async with redis.Pool(redis_server.url, min_size=1, max_size=1, client_name="pooled") as pool:
            async with pool.acquire() as conn:
                pooled_id = await conn.execute("CLIENT", "ID")
            await admin.execute("CLIENT", "KILL", "ID", pooled_id)
            await wait_until(lambda: conn.is_closed, what="the pooled connection to see the kill")
            assert await pool.ping() == b"PONG"  # the dead idle one was replaced
            async with pool.acquire() as conn:
                assert await conn.execute("CLIENT", "ID") != pooled_id
        admin.close()
    run(main())


def test_cancelled_blocking_command_does_not_block_the_pool(run, redis_server):
    async def main():
        admin = await redis.connect(redis_server.url)
        async with redis.Pool(redis_server.url, min_size=1, max_size=1, client_name="cbc") as pool:
            blocked = asyncio.ensure_future(pool.blpop("never:" + uuid.uuid4().hex, timeout=0))
            await wait_until(lambda: _blocked_on_server(admin, "cbc"), what="the BLPOP to block")
            blocked.cancel()
            with pytest.raises(asyncio.CancelledError):
                await blocked
            # The connection with the orphaned BLPOP was dropped, not handed on.
            assert await asyncio.wait_for(pool.ping(), 2) == b"PONG"
            assert pool.stats().returns_bad == 1
        admin.close()
    run(main())


def test_stalled_server_times_out_and_recovers(run, own_redis_server):
    async def main():
        loop = asyncio.get_running_loop()
        admin = await redis.connect(own_redis_server.url)
        conn = await redis.connect(own_redis_server.url, timeout=0.2)
        stall = asyncio.ensure_future(admin.execute("DEBUG", "SLEEP", "2", timeout=10))
        await asyncio.sleep(0.05)  # (the sleep is what the gets wait behind)
        t0 = loop.time()
        first = asyncio.ensure_future(conn.get("a"))
        second = asyncio.ensure_future(conn.get("b", ))
        with pytest.raises(redis.TimeoutError):
            await first
        # The client's deadline ended it, not the server's late reply: the
        # stall is still running (no upper wall-clock bound to flake on).
        assert loop.time() - t0 >= 0.15 and not stall.done()
        with pytest.raises(redis.ConnectionError, match="no reply within"):
            await second  # same connection: closed along with the timed-out command
        assert conn.is_closed
        # A per-call deadline beats the connection default.
        conn2 = await redis.connect(own_redis_server.url, timeout=0.2)
        assert await conn2.execute("PING", timeout=3) == b"PONG"
        await stall

        async with redis.Pool(own_redis_server.url, max_size=2, timeout=0.2) as pool:
            stall = asyncio.ensure_future(admin.execute("DEBUG", "SLEEP", "0.5", timeout=5))
            await asyncio.sleep(0.05)
            with pytest.raises(redis.TimeoutError):
                await pool.get("x")
            await stall
            assert await pool.get("x") is None  # recovered
            assert pool.stats().errors_by_kind["timeout"] == 1
        for c in (admin, conn2):
            c.close()
    run(main())


def test_a_health_check_its_caller_gave_up_on_keeps_the_connection(run, own_redis_server):
    """Issue 16: a PING the caller's acquire deadline cut short (the server
    paused by CLIENT PAUSE) used to discard a sound connection as lost; the
    check now goes on, and the connection passing it is lent to the next
    caller: the same server-side client, no new connection."""
    async def main():
        async with redis.Pool(own_redis_server.url, min_size=1, max_size=1, check_after=0.0,
                              check_timeout=10.0, timeout=10.0) as pool:
            async with pool.acquire() as conn:
                client_id = await conn.execute("CLIENT", "ID")
            admin = await redis.connect(own_redis_server.url)
            assert await admin.execute("CLIENT", "PAUSE", "1500", "ALL") == b"OK"
            with pytest.raises(base.PoolTimeout, match="health check"):
                await pool.acquire(timeout=0.1)
            assert not conn.is_closed
            async with pool.acquire(timeout=10.0) as again:  # served once the pause ends
                assert again is conn and await again.execute("CLIENT", "ID") == client_id
            s = pool.stats()
            assert (s.connections_num, s.connections_lost, s.checks_orphaned) == (1, 0, 1)
            assert s.closes_by == {} and s.requests_timeouts == 1
            admin.close()
    run(main())


def test_refused_connection_is_a_typed_error(run, fd_guard):
    async def main():
        port = free_port()  # nothing listens there
        with pytest.raises(redis.ConnectionError, match=f"127.0.0.1:{port}"):
            await redis.connect(f"redis://127.0.0.1:{port}")
        async with redis.Pool(f"redis://127.0.0.1:{port}", min_size=0, max_size=2) as pool:
            with pytest.raises(redis.ConnectionError):
                await pool.get("k")
            s = pool.stats()
            assert s.connections_errors == 1 and s.pool_size == 0
        pool = redis.Pool(f"redis://127.0.0.1:{port}", min_size=1)
        with pytest.raises(redis.ConnectionError):
            async with pool:
                pass
        assert pool.closed  # a failed `async with` leaves nothing running
        with pytest.raises(redis.InterfaceError):
            redis.Pool("redis://h:notaport")
    run(main())


def test_malformed_reply_discards_connection(run, fd_guard):
    def script(n, cmd):
        if cmd[0] == "GET" and cmd[1] == "bad":
            return b"$3\r\nabc\r\n?garbage\r\n"  # a good reply, then junk
        if cmd[0] == "GET" and cmd[1] == "junk":
            return b":12x\r\n"  # not an integer
        return b"+PONG\r\n" if cmd[0] == "PING" else b"$2\r\nok\r\n"

    async def main():
        async with FakeRedis(script) as fake:
            conn = await redis.connect(fake.url)
            results = await asyncio.gather(conn.get("bad"), conn.get("next"), conn.get("third"),
                                           return_exceptions=True)
            assert results[0] == b"abc"
            assert isinstance(results[1], redis.ProtocolError)
            assert isinstance(results[2], redis.ProtocolError)
            assert conn.is_closed and conn.broken
            async with redis.Pool(fake.url, min_size=1, max_size=1) as pool:
                with pytest.raises(redis.ProtocolError):
                    await pool.get("junk")
                # Never reused: the next command runs on a new connection.
                assert await pool.get("good") == b"ok"
                s = pool.stats()
                assert s.returns_bad == 1 and s.errors_by_kind["protocol"] == 1
            assert fake.connections == 3
    run(main())


def test_unsolicited_reply_and_hangup_mid_command(run):
    def script(n, cmd):
        if cmd[0] == "GET" and cmd[1] == "extra":
            return b"$1\r\na\r\n$1\r\nb\r\n"  # two replies to one command
        if cmd[0] == "GET" and cmd[1] == "hangup":
            return None
        return b"$1\r\nx\r\n"

    async def main():
        async with FakeRedis(script) as fake:
            conn = await redis.connect(fake.url)
            assert await conn.get("extra") == b"a"
            await asyncio.sleep(0.05)
            assert conn.is_closed  # the stray reply closed it
            with pytest.raises(redis.ProtocolError, match="no command waiting"):
                await conn.get("k")
            conn = await redis.connect(fake.url)
            with pytest.raises(redis.ConnectionError):
                await conn.get("hangup")
    run(main())


def test_retry_only_idempotent_commands_when_opted_in(run):
    def script(n, cmd):
        if n == 0 and cmd[0] != "PING":  # the first connection dies under any command
            return None
        return b"+OK\r\n" if cmd[0] == "SET" else b"$1\r\nv\r\n"

    async def main():
        async with FakeRedis(script) as fake:
            async with redis.Pool(fake.url, min_size=1, max_size=1, retry_idempotent=True) as pool:
                assert await pool.get("k") == b"v"  # retried on a new connection
        async with FakeRedis(script) as fake:
            async with redis.Pool(fake.url, min_size=1, max_size=1, retry_idempotent=True) as pool:
                with pytest.raises(redis.ConnectionError):
                    await pool.set("k", "v")  # a write is never retried
        async with FakeRedis(script) as fake:
            async with redis.Pool(fake.url, min_size=1, max_size=1) as pool:
                with pytest.raises(redis.ConnectionError):
                    await pool.get("k")  # not opted in
    run(main())


def test_pubsub_resubscribes_after_the_connection_is_killed(run, redis_server):
    async def main():
        admin = await redis.connect(redis_server.url)
        ch = "ch:" + uuid.uuid4().hex[:6]
        async with redis.Pool(redis_server.url, protocol=3).pubsub() as ps:
            await ps.subscribe(ch)
            await ps.psubscribe(ch + ".*")
            killed = await admin.execute("CLIENT", "KILL", "TYPE", "pubsub")
            assert killed >= 1
            for _ in range(100):  # until resubscribed (on the loop clock, ~50 ms)
                if ps.reconnects:
                    break
                await asyncio.sleep(0.01)
            assert ps.reconnects == 1
            assert await admin.publish(ch, "back") == 1
            assert await admin.publish(ch + ".y", "too") == 1
            assert (await ps.get_message(2)).data == b"back"
            assert (await ps.get_message(2)).pattern == (ch + ".*").encode()
        admin.close()
    run(main())
