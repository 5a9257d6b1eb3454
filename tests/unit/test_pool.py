"""Unit tests of the shared pool's logic (ringleader.drivers.pool).

The connections are fakes on purpose: this tier tests the pool's bookkeeping,
not a driver (the Redis integration tests run the pool on real connections).
Time is virtual (ringleader.testing.VirtualTimeLoop): the loop's clock jumps to
the next timer when nothing is ready, so timeouts and ages cost no wall-clock time.
"""
import asyncio
import dataclasses
import gc
import threading

import pytest

from ringleader.drivers.errors import DriverError, InterfaceError, PoolClosed, PoolTimeout
from ringleader.drivers.pool import Pool, PoolStats
from ringleader.testing import run


class FakeConn:
    def __init__(self, n, worker):
        self.n = n
        self.worker = worker
        self.broken = False
        self.is_closed = False
        self.ping_ok = True
        self.pings = 0

    def close(self):
        self.is_closed = True

    async def ping(self):
        self.pings += 1
        if not self.ping_ok:
            raise ConnectionError("gone")


class Factory:
    def __init__(self, delay=0.0):
        self.made: list[FakeConn] = []
        self.fail: Exception | None = None
        self.delay = delay

    async def __call__(self):
        if self.delay:
            await asyncio.sleep(self.delay)
        if self.fail is not None:
            raise self.fail
        loop = asyncio.get_running_loop()
        c = FakeConn(len(self.made), getattr(loop, "worker_id", 0))
        self.made.append(c)
        return c


def test_reuse_and_stats_snapshot():
    async def main():
        f = Factory()
        async with Pool(f, min_size=1, max_size=3) as pool:
            assert pool.stats().pool_size == 1 and pool.stats().pool_available == 1
            async with pool.acquire() as c1:
                assert pool.stats().pool_in_use == 1
            c2 = await pool.acquire()
            assert c2 is c1  # the idle one is reused
            pool.release(c2)
            s = pool.stats()
            assert isinstance(s, PoolStats)
            with pytest.raises(dataclasses.FrozenInstanceError):
                s.pool_size = 9
            assert (s.pool_min, s.pool_max, s.pool_size, s.pool_available) == (1, 3, 1, 1)
            assert s.requests_num == 2 and s.requests_queued == 0 and s.connections_num == 1
            assert s.acquire_wait_p50_ms == 0.0 and s.usage_p99_ms is not None
        assert c1.is_closed and pool.closed
    run(main())


def test_waiters_are_served_fifo_and_time_out():
    async def main():
        f = Factory()
        pool = Pool(f, min_size=0, max_size=1, acquire_timeout=5.0)
        held = await pool.acquire()
        order = []

        async def taker(i):
            async with pool.acquire() as c:
                order.append(i)
                await asyncio.sleep(1.0)
                assert c is held

        tasks = [asyncio.create_task(taker(i)) for i in range(3)]
        await asyncio.sleep(0.5)
        assert pool.stats().requests_waiting == 3
        pool.release(held)
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2]
        s = pool.stats()
        assert s.requests_queued == 3 and s.requests_wait_ms == pytest.approx(500 + 1500 + 2500)
        assert s.acquire_wait_p99_ms == pytest.approx(2500)

        held = await pool.acquire()
        t0 = asyncio.get_running_loop().time()
        with pytest.raises(PoolTimeout):
            await pool.acquire(timeout=2.0)
        assert asyncio.get_running_loop().time() - t0 == pytest.approx(2.0)
        s = pool.stats()
        assert s.requests_timeouts == 1 and s.requests_errors == 1
        assert s.errors_by_kind == {"pool_timeout": 1} and s.requests_waiting == 0
        pool.release(held)
        async with pool.acquire(timeout=0.1) as c:  # still works after a timeout
            assert c is held
        # The error window forgets old errors.
        assert pool.stats(now=asyncio.get_running_loop().time() + 60).errors_by_kind == {}
        await pool.close()
    run(main())


def test_broken_return_is_discarded_and_replaced():
    async def main():
        f = Factory()
        async with Pool(f, min_size=0, max_size=2) as pool:
            c = await pool.acquire()
            c.broken = True
            pool.release(c)
            assert c.is_closed
            s = pool.stats()
            assert s.returns_bad == 1 and s.pool_size == 0 and s.errors_by_kind == {"returned_bad": 1}
            async with pool.acquire() as c2:
                assert c2 is not c and not c2.is_closed
            with pytest.raises(InterfaceError):
                pool.release(c2)  # released twice
    run(main())


def test_connect_failure_raises_and_frees_slot():
    async def main():
        f = Factory()
        f.fail = OSError("refused")
        async with Pool(f, min_size=0, max_size=1) as pool:
            with pytest.raises(OSError):
                await pool.acquire()
            s = pool.stats()
            assert s.pool_size == 0 and s.connections_errors == 1 and s.requests_errors == 1
            f.fail = None  # the server is back: the pool recovers by itself
            async with pool.acquire() as c:
                assert c.n == 0

        # A failing background refill is counted and logged, not left as an
        # unretrieved task exception.
        loop = asyncio.get_running_loop()
        problems = []
        loop.set_exception_handler(lambda _loop, ctx: problems.append(ctx))
        f.fail = OSError("refused")
        pool = Pool(f, min_size=1, max_size=1)
        with pytest.raises(OSError):
            await pool.open()
        assert pool._maintain(loop.time()) == 1
        await asyncio.sleep(0.1)
        assert pool.stats().errors_by_kind == {"connect": 2} and pool.stats().pool_size == 0
        await pool.close()
        gc.collect()
        await asyncio.sleep(0)
        assert problems == []
    run(main())


def test_slow_connect_counts_against_acquire_timeout_but_is_not_thrown_away():
    async def main():
        f = Factory(delay=5.0)
        async with Pool(f, min_size=0, max_size=1) as pool:
            with pytest.raises(PoolTimeout):
                await pool.acquire(timeout=1.0)
            # The open outlives the caller that asked for it (issue 16: connects
            # abandoned at each caller's deadline were the churn) ...
            assert pool.stats().pool_size == 1 and len(f.made) == 0
            await asyncio.sleep(5)
            s = pool.stats()
            assert (s.pool_size, s.pool_available, s.connections_num) == (1, 1, 1)
            # ... and the next caller gets it without a new connect.
            async with pool.acquire(timeout=0.001) as c:
                assert c is f.made[0]
            assert len(f.made) == 1
    run(main())


def test_lifetime_and_idle_reaping_in_virtual_time():
    async def main():
        f = Factory()
        pool = Pool(f, min_size=1, max_size=4, max_lifetime=100.0, max_idle=10.0,
                    maintain_every=1000.0)
        await pool.open()
        loop = asyncio.get_running_loop()
        conns = [await pool.acquire() for _ in range(3)]
        for c in conns:
            pool.release(c)
        assert pool.stats().pool_available == 3
        now = loop.time()
        assert pool._maintain(now + 5) == 0  # not idle long enough
        assert pool.stats().pool_available == 3
        pool._maintain(now + 11)  # idle ones reaped down to min_size
        assert pool.stats().pool_size == 1 and sum(c.is_closed for c in conns) == 2
        started = pool._maintain(now + 101)  # past lifetime: closed, then refilled
        assert started == 1
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert all(c.is_closed for c in conns) and len(f.made) == 4
        assert pool.stats().pool_available == 1
        # An in-use connection past its lifetime is retired on release.
        c = await pool.acquire()
        loop.vt += 200
        pool.release(c)
        assert c.is_closed
        await pool.close()
    run(main())


def test_health_check_after_idleness():
    async def main():
        f = Factory()
        async with Pool(f, min_size=0, max_size=2, check_after=5.0) as pool:
            loop = asyncio.get_running_loop()
            c = await pool.acquire()
            pool.release(c)
            async with pool.acquire():  # borrowed right away: no check
                pass
            assert c.pings == 0
            loop.vt += 6
            async with pool.acquire() as again:
                assert again is c and c.pings == 1
            loop.vt += 6
            c.ping_ok = False
            async with pool.acquire() as fresh:
                assert fresh is not c and c.is_closed
            s = pool.stats()
            assert s.connections_lost == 1 and s.errors_by_kind == {"lost": 1}
    run(main())


def test_health_checks_counted_with_their_time():
    """A check is a database round trip inside the caller's acquire wait: the
    stats count each one and its time (a failed one too), and none for a
    connection borrowed again within check_after."""
    class SlowPing(FakeConn):
        async def ping(self):
            await asyncio.sleep(0.004)
            await super().ping()

    async def main():
        async def connect():
            return SlowPing(0, 0)
        async with Pool(connect, min_size=0, max_size=1, check_after=1.0) as pool:
            loop = asyncio.get_running_loop()
            c = await pool.acquire()
            pool.release(c)
            async with pool.acquire():
                pass
            assert (pool.stats().checks, pool.stats().checks_ms) == (0, 0.0)
            loop.vt += 2
            async with pool.acquire():
                pass
            s = pool.stats()
            assert s.checks == 1 and s.checks_ms == pytest.approx(4.0, abs=0.5)
            assert s.acquire_wait_p99_ms >= 4.0  # the caller waited for it
            loop.vt += 2
            c.ping_ok = False
            async with pool.acquire():
                pass
            assert pool.stats().checks == 2 and pool.stats().checks_ms >= s.checks_ms
    run(main())


def test_resize_shrinks_idle_now_and_in_use_on_release():
    async def main():
        f = Factory()
        async with Pool(f, min_size=0, max_size=4) as pool:
            conns = [await pool.acquire() for _ in range(4)]
            for c in conns[:2]:
                pool.release(c)
            pool.resize(0, 1)
            s = pool.stats()
            assert (s.pool_max, s.pool_size, s.pool_available) == (1, 2, 0)
            assert conns[0].is_closed and conns[1].is_closed
            pool.release(conns[2])  # above max: retired
            assert conns[2].is_closed
            pool.release(conns[3])  # at max: kept
            assert not conns[3].is_closed and pool.stats().pool_size == 1

            # Growing lets a queued caller connect at once.
            held = await pool.acquire()
            waiter = asyncio.ensure_future(pool.acquire(timeout=100))
            await asyncio.sleep(0.1)
            assert pool.stats().requests_waiting == 1
            pool.resize(2, 3)
            got = await waiter
            assert got is not held
            await asyncio.sleep(0)
            assert pool.stats().pool_size == 2
            pool.release(got)
            pool.release(held)
            with pytest.raises(InterfaceError):
                pool.resize(3, 2)
    run(main())


def test_prefers_connections_of_the_callers_worker():
    async def main():
        f = Factory()
        loop = asyncio.get_running_loop()
        async with Pool(f, min_size=0, max_size=4) as pool:
            loop.worker_id = 1
            a = await pool.acquire()
            loop.worker_id = 2
            b = await pool.acquire()
            pool.release(a)
            pool.release(b)
            loop.worker_id = 1
            async with pool.acquire() as c:
                assert c is a
            loop.worker_id = 2
            async with pool.acquire() as c:
                assert c is b
            loop.worker_id = 3  # nothing of its own: takes another worker's
            async with pool.acquire() as c:
                assert c in (a, b)
    run(main())


def strict_pool(factory, size=2):
    """An empty strict pool of ``size``: the worker-affinity tests' starting point."""
    return Pool(factory, min_size=0, max_size=size, affinity="strict")


def test_strict_affinity_never_crosses_workers():
    async def main():
        f = Factory()
        loop = asyncio.get_running_loop()
        async with strict_pool(f) as pool:
            loop.worker_id = 1
            a = await pool.acquire()
            pool.release(a)
            loop.worker_id = 2
            b = await pool.acquire()  # a is idle, but belongs to worker 1
            assert b is not a and b.worker == 2
            c = await pool.acquire()  # full (a idle + b): a is evicted for the slot
            assert a.is_closed and c.worker == 2 and pool.stats().pool_size == 2
            # A worker-2 connection released while only worker 1 waits is retired
            # so that worker 1 can connect in its slot.
            loop.worker_id = 1
            waiter = asyncio.create_task(pool.acquire())  # acquire() is a Coroutine
            await asyncio.sleep(0.1)
            loop.worker_id = 2
            pool.release(b)
            assert b.is_closed
            loop.worker_id = 1
            d = await waiter
            assert d.worker == 1
            pool.release(c)
            pool.release(d)
        with pytest.raises(InterfaceError):
            Pool(f, affinity="sometimes")
    run(main())


def test_reset_hook_runs_on_release():
    seen = []

    def reset(conn):
        seen.append(conn)
        if conn.n == 1:
            raise RuntimeError("cannot reset")

    async def main():
        f = Factory()
        async with Pool(f, min_size=0, max_size=2, reset=reset) as pool:
            a = await pool.acquire()
            b = await pool.acquire()
            pool.release(a)
            pool.release(b)
            assert seen == [a, b] and not a.is_closed and b.is_closed
            assert pool.stats().returns_bad == 1
    run(main())


@pytest.mark.filterwarnings("error")
def test_a_connection_settling_at_close_is_settled_or_closed_never_leaked():
    """reset() returning an awaitable (a caller gave up mid-query): the pool
    settles the connection in a background task.  Released right before
    close(), the task used to be cancelled before its first step: the awaitable
    was never awaited (a RuntimeWarning) and the connection neither reused nor
    closed (its slot and server backend leaked)."""
    settled = []

    async def settling(conn, delay):
        await asyncio.sleep(delay)
        settled.append(conn)

    def reset(conn):
        return settling(conn, conn.delay)

    async def main():
        f = Factory()
        pool = Pool(f, min_size=0, max_size=3, reset=reset)
        conns = [await pool.acquire() for _ in range(3)]
        # settles at once, within close's grace, and never (past the grace)
        for c, delay in zip(conns, (0.0, 0.5, 60.0)):
            c.delay = delay
            pool.release(c)
        await pool.close()
        assert settled == conns[:2]
        assert all(c.is_closed for c in conns)
        s = pool.stats()
        assert (s.pool_size, s.pool_in_use, s.pool_available) == (0, 0, 0)
        assert s.returns_drained == 2
        assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []

        # A loop shutting down cancels what is left (asyncio.run does), here the
        # settle task before its first step: the connection is closed all the same.
        pool = Pool(f, min_size=0, max_size=1, reset=reset)
        c = await pool.acquire()
        c.delay = 60.0
        pool.release(c)
        left = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for t in left:
            t.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        assert c.is_closed and pool.stats().pool_size == 0
        await pool.close()
        gc.collect()  # an unawaited coroutine warns when it is collected
    run(main())


def test_close_fails_waiters_and_later_acquires():
    async def main():
        f = Factory()
        pool = Pool(f, min_size=0, max_size=1)
        held = await pool.acquire()
        waiter = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0.1)
        await pool.close()
        with pytest.raises(PoolClosed):
            await waiter
        with pytest.raises(PoolClosed):
            await pool.acquire()
        assert not held.is_closed
        pool.release(held)  # in use at close: closed on release
        assert held.is_closed
        assert issubclass(PoolClosed, DriverError)
    run(main())


def test_cancelled_waiter_leaks_nothing():
    async def main():
        f = Factory()
        async with Pool(f, min_size=0, max_size=1) as pool:
            held = await pool.acquire()
            waiter = asyncio.ensure_future(pool.acquire())
            await asyncio.sleep(0.1)
            pool.release(held)  # handed to the waiter ...
            waiter.cancel()  # ... which is cancelled before it runs
            with pytest.raises(asyncio.CancelledError):
                await waiter
            s = pool.stats()
            assert s.pool_available == 1 and s.pool_in_use == 0 and s.pool_size == 1
    run(main())


def test_async_close_and_bad_arguments():
    closed = []

    class AsyncCloseConn:
        broken = False

        async def close(self):
            closed.append(self)

    async def main():
        async def factory():
            return AsyncCloseConn()
        pool = Pool(factory, min_size=1, max_size=1)
        await pool.open()
        await pool.close()
        await asyncio.sleep(0)
        assert len(closed) == 1

    run(main())
    with pytest.raises(InterfaceError):
        Pool(Factory(), min_size=2, max_size=1)
    with pytest.raises(InterfaceError):
        Pool(Factory(), acquire_timeout=-1)
    with pytest.raises(InterfaceError):
        Pool("not callable")


def test_hand_off_between_worker_threads():
    """Two loops in two threads share a pool: a release on one wakes the other."""
    f = Factory()
    pool = Pool(f, min_size=0, max_size=1, acquire_timeout=10)
    got = {}
    held_evt, waiting_evt = threading.Event(), threading.Event()

    def worker_a():
        async def main():
            conn = await pool.acquire()
            held_evt.set()
            await asyncio.get_running_loop().run_in_executor(None, waiting_evt.wait)
            await asyncio.sleep(0.05)
            pool.release(conn)
            got["a"] = conn
        asyncio.run(main())

    def worker_b():
        async def main():
            await asyncio.get_running_loop().run_in_executor(None, held_evt.wait)
            task = asyncio.ensure_future(pool.acquire())
            await asyncio.sleep(0.01)
            waiting_evt.set()
            got["b"] = await task
        asyncio.run(main())

    threads = [threading.Thread(target=worker_a), threading.Thread(target=worker_b)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert got["a"] is got["b"]


def test_burst_allowance_absorbs_a_step_and_is_released():
    """Issue 16: callers above the cap get connections opened at once (within
    the allowance), which close again once idle past burst_linger; without the
    allowance they queue."""
    async def main():
        f = Factory(delay=0.001)
        loop = asyncio.get_running_loop()
        async with Pool(f, min_size=0, max_size=2, burst=3, burst_after=0.002, burst_linger=1.0,
                        maintain_every=1000.0) as pool:
            c = await pool.acquire()  # a hold of 5 ms measured: no cold start (no burst)
            await asyncio.sleep(0.005)
            pool.release(c)
            held = [await pool.acquire() for _ in range(2)]
            t0 = loop.time()
            more = await asyncio.gather(*(pool.acquire() for _ in range(3)))
            assert loop.time() - t0 < 0.01  # opened for them, not waiting for a return
            s = pool.stats()
            assert (s.pool_size, s.pool_burst, s.connections_burst) == (5, 3, 3)
            extra = asyncio.ensure_future(pool.acquire(timeout=0.5))  # allowance used up
            await asyncio.sleep(0.1)
            assert pool.stats().requests_waiting == 1
            pool.release(more[0])
            assert await extra is more[0]
            for c in [*held, *more[1:], more[0]]:
                pool.release(c)
            assert pool.stats().pool_size == 5  # lingering, not closed on return
            pool._maintain(loop.time() + 2.0)
            s = pool.stats()
            assert (s.pool_size, s.pool_burst) == (2, 0) and sum(c.is_closed for c in f.made) == 3
            pool.set_burst(0)  # withdrawn (the guard holds): callers above the cap queue
            held = [await pool.acquire() for _ in range(2)]
            with pytest.raises(PoolTimeout):
                await pool.acquire(timeout=0.1)
            assert len(f.made) == 5
            for c in held:
                pool.release(c)
    run(main())


def test_opens_are_rate_limited_and_counted():
    """A queue of callers gets connections at connect_rate once the bucket is
    empty: bounded churn, and the delays are counted."""
    async def main():
        f = Factory()
        loop = asyncio.get_running_loop()
        async with Pool(f, min_size=0, max_size=20, connect_rate=10.0, connect_burst=4,
                        max_connecting=2) as pool:
            t0 = loop.time()
            conns = await asyncio.gather(*(pool.acquire(timeout=5.0) for _ in range(8)))
            took = loop.time() - t0
            assert len(f.made) == 8 and 0.35 <= took <= 0.5  # 4 at once, then 4 at 10/s
            assert pool.stats().connections_delayed >= 1
            for c in conns:
                pool.release(c)
    run(main())


def test_strict_pool_trades_slots_only_toward_a_worker_below_its_share():
    """Issue 16: two workers on a small full strict pool used to hand slots back
    and forth (a close and a connect each time).  A worker holding its fair
    share waits for its own returns; one holding less gets the slot."""
    async def main():
        f = Factory()
        loop = asyncio.get_running_loop()
        async with strict_pool(f) as pool:
            loop.worker_id = 1
            a = await pool.acquire()
            loop.worker_id = 2
            b = await pool.acquire()
            loop.worker_id = 1
            waiter = asyncio.create_task(pool.acquire())
            await asyncio.sleep(0.1)
            loop.worker_id = 2
            pool.release(b)  # worker 1 holds 1 of 2: its share; no trade
            assert not b.is_closed and len(f.made) == 2
            pool.release(a)
            assert await waiter is a
            pool.release(a)
            # worker 3 holds nothing: below its share, so worker 2's idle b is
            # closed for it
            loop.worker_id = 3
            c = await pool.acquire()
            assert c.worker == 3 and len(f.made) == 3 and (a.is_closed or b.is_closed)
            pool.release(c)
    run(main())


def test_strict_pool_refills_spread_over_its_workers():
    """Issue 16: a strict pool's refill opened every connection on the worker
    running its timer, so the other workers' first callers each closed one of
    them to connect their own (a connect wait, and an open the pool did not
    need).  Now the refill goes to the worker holding fewest: after growing
    the floor to 4 with callers from two workers, each finds two of its own."""
    async def main():
        f = Factory()
        loop = asyncio.get_running_loop()
        async with strict_pool(f, size=1) as pool:
            for w in (1, 2):  # both workers have used it (a trade opens the second)
                loop.worker_id = w
                pool.release(await pool.acquire())
            made = len(f.made)
            pool.resize(4, 4)
            await asyncio.sleep(0.1)
            assert len(f.made) == made + 3
            for w in (1, 2):
                loop.worker_id = w
                held = [await pool.acquire(), await pool.acquire()]
                for c in held:
                    pool.release(c)
            assert len(f.made) == made + 3  # no caller had to open (or trade) one
            assert not any(c.is_closed for c in f.made[made:])
    run(main())

