"""Unit tier: the pool's burst allowance in virtual time (issue 16): it opens
above the cap only for callers its returns will not serve sooner, keeps its
burst connections while bursts recur, and a shrink keeps the workers even."""
import asyncio

from ringleader.drivers.pool import Pool
from ringleader.drivers.poolopen import BurstMemory
from ringleader.testing import run

from .test_pool import Factory


def test_burst_memory_holds_while_edges_recur_and_lets_go_when_they_stop():
    m = BurstMemory(quiet=1.0, recur=60.0)
    assert not m.holding(0.0)
    for t in (10.0, 10.5, 10.9):   # uses under a second apart: one burst, one edge
        m.note(t)
    assert m.edges == 1 and not m.holding(11.0)  # a single burst is not kept
    m.note(30.0)                                 # the next edge, 20 s later: recurring
    assert m.edges == 2 and m.hold == 30.0
    assert m.holding(30.0 + 29.0)                # kept across the next gap
    assert not m.holding(30.0 + 30.0)            # the edges stopped: let go
    m.note(200.0)                                # 170 s later: past recur, not recurring
    assert m.hold == 0.0 and not m.holding(200.5)


def test_a_lull_inside_a_burst_does_not_shorten_the_hold():
    """Uses more than ``quiet`` apart inside one burst count as an edge; its
    short gap used to replace the hold learned from the real edges, so the
    burst connections closed before the next edge and were opened there again."""
    m = BurstMemory(quiet=1.0, recur=60.0)
    m.note(10.0)
    m.note(20.0)                     # recurring every 10 s: hold 15 s
    m.note(22.0)                     # a lull of 2 s inside the second burst
    assert m.hold == 15.0
    assert m.holding(22.0 + 14.0)    # still open at the next edge (t = 30)
    m.note(30.0)
    assert m.holding(30.0 + 11.0)    # the gap from the lull is 8 s: hold 12
    assert not m.holding(30.0 + 15.0)  # the edges stopped: let go


def test_a_queue_its_returns_serve_opens_nothing_above_the_cap():
    """A caller queued at the cap behind connections that come back well
    within one connect gets the next return, and no burst connection is
    opened for it (issue 16: such opens arrived after the return they raced
    and were closed a second later)."""
    async def main():
        f = Factory(delay=0.05)  # a connect takes 50 ms
        async with Pool(f, min_size=0, max_size=1, burst=2, maintain_every=1000.0) as pool:
            for _ in range(5):  # holds of 1 ms: 50 returns per connect
                c = await pool.acquire()
                await asyncio.sleep(0.001)
                pool.release(c)
            a = await pool.acquire()
            b = asyncio.ensure_future(pool.acquire())
            await asyncio.sleep(0)
            assert pool.stats().pool_size == 1 and pool.stats().requests_waiting == 1
            pool.release(a)
            assert await b is a
            assert len(f.made) == 1 and pool.stats().connections_burst == 0
            pool.release(a)
    run(main())


def test_returns_slower_than_measured_still_get_a_burst_connection():
    """When no return came within one connect, the waiter's worker is slower
    than its history said: a burst connection is opened for it."""
    async def main():
        f = Factory(delay=0.05)
        loop = asyncio.get_running_loop()
        async with Pool(f, min_size=0, max_size=1, burst=2, maintain_every=1000.0) as pool:
            for _ in range(5):
                pool.release(await pool.acquire())
            a = await pool.acquire()  # held past any connect
            t0 = loop.time()
            b = await pool.acquire(timeout=1.0)
            assert b is not a and pool.stats().connections_burst == 1
            assert 0.049 <= loop.time() - t0 <= 0.11  # a connect's wait, then a connect
            pool.release(a)
            pool.release(b)
    run(main())


def test_burst_connections_are_kept_while_bursts_recur():
    """A burst connection goes after ``burst_linger`` idle when bursts do not
    recur; once two edges came within ``burst_recur`` it is kept across the
    gap to the next one, and let go when the edges stop."""
    async def burst(pool, n):
        conns = await asyncio.gather(*(pool.acquire() for _ in range(n)))
        await asyncio.sleep(0.5)  # a burst lasts: the pool stays above its cap
        for c in conns:
            pool.release(c)

    async def main():
        f = Factory()
        loop = asyncio.get_running_loop()
        async with Pool(f, min_size=0, max_size=2, burst=3, burst_linger=1.0, burst_recur=60.0,
                        maintain_every=1000.0) as pool:
            pool.release(await pool.acquire())  # a hold measured: no cold start
            await burst(pool, 5)
            assert pool.stats().pool_burst == 3
            pool._maintain(loop.time() + 2.0)
            assert pool.stats().pool_size == 2  # one burst: released
            await asyncio.sleep(10.0)
            await burst(pool, 5)             # the second edge, 10 s later
            made = len(f.made)
            pool._maintain(loop.time() + 2.0)
            assert pool.stats().pool_burst == 3  # kept across the gap
            await asyncio.sleep(10.0)
            await burst(pool, 5)             # the third edge finds them open
            assert len(f.made) == made
            pool._maintain(loop.time() + 14.0)
            assert pool.stats().pool_burst == 3  # within 1.5 intervals (~11 s) of the last use
            pool._maintain(loop.time() + 17.0)
            assert pool.stats().pool_size == 2  # the edges stopped
    run(main())


def test_a_shrink_leaves_each_worker_its_share():
    """Issue 16: a shrink closed the stalest idle connections wherever they
    were and left a worker short, whose callers then traded slots (a close
    and a connect they waited for).  It now sheds from the worker holding most."""
    async def main():
        f = Factory()
        loop = asyncio.get_running_loop()
        async with Pool(f, min_size=0, max_size=6, affinity="strict") as pool:
            loop.worker_id = 1
            one = [await pool.acquire() for _ in range(2)]
            loop.worker_id = 2
            two = [await pool.acquire() for _ in range(4)]
            for c in two + one:  # worker 1's are the most recently used
                pool.release(c)
            pool.resize(0, 4)
            left = [c for c in f.made if not c.is_closed]
            assert sorted(c.worker for c in left) == [1, 1, 2, 2]
    run(main())


def test_a_return_is_not_traded_to_a_worker_holding_its_share_of_the_cap():
    """Issue 16: with the burst allowance counted in the fair share, every
    worker was below it, and a return on one worker while only another's
    callers waited was closed there and reopened there: a connect the caller
    waited for (it usually got its own worker's return first), then a slot
    traded back.  The share is of the cap: a worker holding its share waits
    for its own returns."""
    async def main():
        f = Factory(delay=0.05)
        loop = asyncio.get_running_loop()
        async with Pool(f, min_size=0, max_size=2, burst=4, affinity="strict",
                        maintain_every=1000.0) as pool:
            for worker in (1, 2):  # one connection each, and holds of 1 ms measured
                loop.worker_id = worker
                for _ in range(3):
                    c = await pool.acquire()
                    await asyncio.sleep(0.001)
                    pool.release(c)
            loop.worker_id = 1
            a = await pool.acquire()
            loop.worker_id = 2
            b = await pool.acquire()
            c = asyncio.ensure_future(pool.acquire())
            await asyncio.sleep(0)
            loop.worker_id = 1
            pool.release(a)  # worker 2 holds its share (1 of 2): no trade
            assert not a.is_closed and pool.stats().pool_size == 2
            loop.worker_id = 2
            pool.release(b)
            assert await c is b
            assert len(f.made) == 2
            pool.release(b)
    run(main())


def test_no_burst_connection_while_the_returns_slow_down():
    """Issue 16: at the real overload's onset the pool opened its whole burst
    allowance before the guard tripped (which then closed them): a queue that
    forms because holds got slower is the database slowing, and more
    connections add load to it, not service.  A queue of the same length
    behind holds of the usual length still gets its burst connections."""
    async def main():
        f = Factory(delay=0.005)
        loop = asyncio.get_running_loop()
        async with Pool(f, min_size=0, max_size=2, burst=2, maintain_every=1000.0) as pool:
            for _ in range(20):  # holds of 1 ms: the mean
                c = await pool.acquire()
                await asyncio.sleep(0.001)
                pool.release(c)
            a, b = await pool.acquire(), await pool.acquire()
            made = len(f.made)
            await asyncio.sleep(0.02)  # both held 20 ms, past 2 x 1 ms + 2 ms
            waiter = asyncio.ensure_future(pool.acquire(timeout=1.0))
            await asyncio.sleep(0.05)  # many connects long
            assert not waiter.done() and len(f.made) == made
            pool.release(a)
            assert await waiter is a and pool.stats().connections_burst == 0
            pool.release(a)
            pool.release(b)
            # the same queue behind fresh holds: a burst connection after a connect
            a, b = await pool.acquire(), await pool.acquire()
            t0 = loop.time()
            c = await pool.acquire(timeout=1.0)
            assert c not in (a, b) and pool.stats().connections_burst == 1
            assert loop.time() - t0 < 0.02
            for x in (a, b, c):
                pool.release(x)
    run(main())


def test_a_cold_start_opens_up_to_the_cap_and_no_burst():
    """Before anything came back the pool knows no hold, so it cannot tell a
    queue its returns will serve from one they will not: it opens up to the
    cap for it and no burst connection (the real overload's start-up opened
    8 above a cap of 4 and closed 4 a second later).  After the first return
    the burst rules apply."""
    async def main():
        f = Factory(delay=0.01)
        async with Pool(f, min_size=0, max_size=2, burst=4, maintain_every=1000.0) as pool:
            async def once():
                c = await pool.acquire(timeout=1.0)
                await asyncio.sleep(0.001)
                pool.release(c)
            await asyncio.gather(*(once() for _ in range(6)))
            s = pool.stats()
            assert len(f.made) == 2 and s.connections_burst == 0 and dict(s.opens_by) == {"queue": 2}
    run(main())


def test_multiplexed_commands_teach_the_hold_too():
    """A pool whose holds are counted only as multiplexed commands
    (count_request) is past its cold start once they came back: an exclusive
    caller queued above the cap still gets a burst connection."""
    async def main():
        f = Factory(delay=0.01)
        async with Pool(f, min_size=0, max_size=1, burst=1, maintain_every=1000.0) as pool:
            a = await pool.acquire()
            for _ in range(5):
                pool.count_request(0.001)
            b = await pool.acquire(timeout=1.0)  # a held past a connect: a burst open
            assert b is not a and pool.stats().connections_burst == 1
            pool.release(a)
            pool.release(b)
    run(main())


def test_only_a_stay_above_the_cap_is_a_burst_use():
    """Issue 16: every lend above the cap was a burst use, so a steady load
    that briefly took two connections past a cut cap every second made
    recurring "edges" and the cut's surplus was held for the whole run.  A
    lend counts once the pool has spent a quarter of the last second above
    its cap (a real burst: ~0.3 s in)."""
    m = BurstMemory(quiet=1.0, recur=60.0)
    t = 0.0
    for _ in range(100):              # 10 s: above the cap for 5 ms every 100 ms
        m.level(t, True)
        m.level(t + 0.005, False)
        t += 0.1
    assert m.edges == 0 and m.last_use is None and m.share_above(t) < 0.1
    m.level(t, True)                   # now it stays above
    start = t
    while m.last_use is None:
        t += 0.01
        m.level(t, True)
    assert 0.2 <= t - start <= 0.4 and m.edges == 1
    m.level(t, False)
    assert m.share_above(t + 2.0) < 0.25  # it decays once the pool is back at its cap


def test_a_cut_takes_effect_under_steady_traffic():
    """Issue 16: a cut keeps the idle connections within the burst allowance
    (a cut the next step undoes costs no open), but under steady traffic
    they were lent again at once, never idled ``burst_linger``, and each lend
    above the new cap counted as a burst: the cut never took effect.  Now a
    connection coming back above the cap that no burst needs is closed."""
    async def caller(pool):
        async with pool.acquire(timeout=1.0):
            await asyncio.sleep(0.002)

    async def main():
        f = Factory(delay=0.05)  # a connect costs 50 ms: a short queue waits for returns
        async with Pool(f, min_size=0, max_size=4, burst=4, burst_linger=1.0,
                        maintain_every=0.25) as pool:
            held = [await pool.acquire() for _ in range(4)]
            for c in held:
                pool.release(c)
            pool.resize(0, 2)
            assert pool.stats().pool_size == 4  # within the allowance: kept for now
            made = len(f.made)
            for _ in range(30):  # 3 s: three callers at once every 100 ms (2 ms above the cap)
                await asyncio.gather(*(caller(pool) for _ in range(3)))
                await asyncio.sleep(0.1)
            st = pool.stats()
            assert st.pool_size == 2 and len(f.made) == made
            assert st.closes_by.get("linger") == 2
    run(main())


def test_burst_connections_survive_returns_nobody_waits_for_during_a_burst():
    """The other side of the rule above: inside a burst that keeps the pool
    above its cap, a return that finds nobody waiting at that instant keeps
    its connection (closing it would cost a connect a moment later)."""
    async def worker(pool, until):
        loop = asyncio.get_running_loop()
        while loop.time() < until:
            async with pool.acquire(timeout=1.0):
                await asyncio.sleep(0.005)
            await asyncio.sleep(0.001)

    async def main():
        f = Factory(delay=0.001)
        loop = asyncio.get_running_loop()
        async with Pool(f, min_size=0, max_size=2, burst=4, burst_linger=1.0,
                        maintain_every=0.25) as pool:
            for _ in range(5):  # holds measured: no cold start
                c = await pool.acquire()
                await asyncio.sleep(0.005)
                pool.release(c)
            until = loop.time() + 3.0
            await asyncio.gather(*(worker(pool, until) for _ in range(5)))
            st = pool.stats()
            assert st.connections_burst == 3 and len(f.made) == 5  # opened once, kept
    run(main())


def test_a_cut_takes_effect_on_each_worker_of_a_strict_pool():
    """Strict pools split the cap among the workers using the pool: the
    surplus above a worker's share closes on its return, even when the other
    worker is not busy at that instant (at a light load they seldom are, and
    each worker kept the whole cap); a worker at its share keeps its own."""
    async def main():
        f = Factory(delay=0.05)
        loop = asyncio.get_running_loop()
        async with Pool(f, min_size=0, max_size=4, burst=4, affinity="strict",
                        maintain_every=1000.0) as pool:
            for worker in (1, 2):  # two connections on each worker
                loop.worker_id = worker
                held = [await pool.acquire() for _ in range(2)]
                for c in held:
                    pool.release(c)
            pool.resize(0, 2)
            assert pool.stats().pool_size == 4
            for worker in (1, 2, 1, 2):  # one caller at a time, on each worker in turn
                loop.worker_id = worker
                c = await pool.acquire()
                await asyncio.sleep(0.002)
                pool.release(c)
            left = [c for c in f.made if not c.is_closed]
            assert sorted(c.worker for c in left) == [1, 2] and len(f.made) == 4
    run(main())
