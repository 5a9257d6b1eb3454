"""Redis commands on the happy path leave no reference cycles behind: with
the cyclic collector off while they run, it then finds nothing (a cycle per
command would hold replies until a gen-1 collection, costing CPU under load)."""
import asyncio

import pytest

from ringleader.drivers import redis

from ...tutil import cyclic_garbage


def test_commands_leave_no_cycles(run, redis_server):
    async def main():
        async with redis.Pool(redis_server.url, min_size=2, max_size=4) as pool:
            async def commands():
                await asyncio.gather(*(pool.set(f"gc:{i}", i) for i in range(50)))
                await asyncio.gather(*(pool.get(f"gc:{i}") for i in range(50)))
                await asyncio.gather(*(pool.hset("gc:h", f"f{i}", i) for i in range(20)))
                await pool.hgetall("gc:h")
                async with pool.pipeline() as p:
                    for i in range(10):
                        p.incr("gc:n")
                    await p.execute()
            await commands()  # warm-up
            found = await cyclic_garbage(commands)
            await pool.delete("gc:h", "gc:n", *(f"gc:{i}" for i in range(50)))
            return found
    assert run(main()) == []


def test_pipeline_block_without_execute_is_an_error(run, redis_server):
    async def main():
        async with redis.Pool(redis_server.url, min_size=1, max_size=2) as pool:
            async with pool.pipeline() as p:
                p.set("gc:p", 1).get("gc:p")
                assert await p.execute() == [True, b"1"]
            with pytest.raises(redis.PipelineNotExecuted, match="2 queued command.*'SET'"):
                async with pool.pipeline() as p:
                    p.set("gc:p", 2).get("gc:p")
            assert await pool.get("gc:p") == b"1"  # nothing was sent
            with pytest.raises(KeyError):  # another exception: discarded, it propagates
                async with pool.pipeline() as p:
                    p.set("gc:p", 3)
                    raise KeyError("x")
            assert len(p) == 0 and await pool.get("gc:p") == b"1"
            await pool.delete("gc:p")
    run(main())
