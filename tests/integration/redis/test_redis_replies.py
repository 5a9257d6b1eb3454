"""How replies reach their callers, on every loop: on the ring the transport
matches them to the waiting futures in C (runtime.contract.ReplyMatchingTransport),
elsewhere the connection's Python path does; both must give each caller its own
reply whatever the receives look like: pipelined replies split across receives,
a reply larger than one provided buffer (16 KiB), RESP3 pushes between replies,
a connection killed in the middle of a reply, and a connection going in and
out of RESP2 pub/sub mode (where matching goes back to Python)."""
import asyncio
import uuid

import pytest

from ringleader.drivers import redis

from .conftest import FakeRedis

BIG = 200 * 1024 + 7  # spans many 16-KiB provided buffers


def key() -> str:
    return f"replies:{uuid.uuid4().hex[:12]}"


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(value), value)


def test_pipelined_replies_split_across_receives(run):
    def script(n, cmd):
        if cmd[0] == "GET" and cmd[1] == "k9":
            # the replies to k0..k9 arrive only now, cut at awkward places:
            # inside a length, inside a payload, between CR and LF
            wire = b"".join(_bulk(b"v%d" % i * (i + 1)) for i in range(10))
            return [wire[:3], wire[3:11], wire[11:12], wire[12:40], wire[40:41], wire[41:]]
        return [] if cmd[0] == "GET" else b"+OK\r\n"

    async def main():
        async with FakeRedis(script) as fake:
            conn = await redis.connect(fake.url)
            got = await asyncio.gather(*(conn.get(f"k{i}") for i in range(10)))
            assert got == [b"v%d" % i * (i + 1) for i in range(10)]
            assert not conn.is_closed
            conn.close()
    run(main())


def test_a_reply_larger_than_a_provided_buffer(run, redis_server):
    async def main():
        conn = await redis.connect(redis_server.url)
        k, small = key(), key()
        big = bytes(range(256)) * (BIG // 256) + b"tail!!!"
        await conn.set(k, big)
        await conn.set(small, b"s")
        # small and big replies pipelined together, the big one in the middle
        got = await asyncio.gather(conn.get(small), conn.get(k), conn.get(small),
                                   conn.strlen(k), conn.get(k))
        assert got == [b"s", big, b"s", len(big), big]
        await conn.delete(k, small)
        conn.close()
    run(main())


def test_resp3_pushes_between_replies_go_to_on_push(run):
    hello = b"%1\r\n$6\r\nserver\r\n$5\r\nredis\r\n"
    push = b">2\r\n$10\r\ninvalidate\r\n*1\r\n$1\r\nk\r\n"

    def script(n, cmd):
        if cmd[0] == "HELLO":
            return hello
        if cmd[1] == "x":  # a push, the reply, and a push split over two receives
            return [push + b"$1\r\na\r\n" + push[:9], push[9:]]
        return b"$1\r\nb\r\n"

    async def main():
        async with FakeRedis(script) as fake:
            conn = await redis.connect(fake.url, protocol=3)
            pushes = []
            conn.on_push = pushes.append
            assert await conn.get("x") == b"a"
            assert await conn.get("y") == b"b"
            assert pushes == [[b"invalidate", [b"k"]]] * 2
            assert not conn.is_closed
            conn.close()
    run(main())


def test_connection_killed_mid_reply_fails_every_caller(run):
    def script(n, cmd):
        if cmd[0] == "GET" and cmd[1] == "cut":
            return [b"$1\r\nx\r\n" + b"$100\r\n" + b"y" * 40]  # one reply and a half
        if cmd[0] == "GET" and cmd[1] == "last":
            return None  # hang up with the half reply unfinished
        return []

    async def main():
        async with FakeRedis(script) as fake:
            conn = await redis.connect(fake.url)
            first = asyncio.ensure_future(conn.get("a"))
            second = asyncio.ensure_future(conn.get("cut"))
            await asyncio.sleep(0.05)
            third = asyncio.ensure_future(conn.get("last"))
            results = await asyncio.gather(first, second, third, return_exceptions=True)
            assert results[0] == b"x"
            assert all(isinstance(r, redis.ConnectionError) for r in results[1:])
            assert conn.is_closed and conn.broken
    run(main())


def test_pubsub_mode_switches_matching_off_and_back(run, redis_server):
    async def main():
        conn = await redis.connect(redis_server.url)
        frames = []
        conn.on_push = frames.append
        conn.pubsub_mode = True
        conn.send_only("SUBSCRIBE", "ch-replies")
        pub = await redis.connect(redis_server.url)
        for _ in range(200):
            if await pub.publish("ch-replies", "hello") == 1:
                break
            await asyncio.sleep(0.01)
        for _ in range(200):
            if any(f[0] == b"message" for f in frames):
                break
            await asyncio.sleep(0.01)
        assert [b"subscribe", b"ch-replies", 1] in frames
        assert [b"message", b"ch-replies", b"hello"] in frames
        conn.send_only("UNSUBSCRIBE", "ch-replies")
        for _ in range(200):
            if any(f[0] == b"unsubscribe" for f in frames):
                break
            await asyncio.sleep(0.01)
        conn.pubsub_mode = False
        conn.on_push = None
        assert await conn.ping() in (b"PONG", "PONG")
        assert await conn.echo("back") == b"back"
        pub.close()
        conn.close()
    run(main())


@pytest.mark.parametrize("resp", [2, 3])
def test_many_callers_many_replies(run, redis_server, resp):
    async def main():
        conn = await redis.connect(redis_server.url, protocol=resp)
        ks = [key() for _ in range(300)]
        await asyncio.gather(*(conn.set(k, k * 50) for k in ks))
        got = await asyncio.gather(*(conn.get(k) for k in ks))
        assert got == [k.encode() * 50 for k in ks]
        await conn.delete(*ks)
        conn.close()
    run(main())
