"""Unit tier, virtual time: why the pool opens and closes connections
(issue 16: connections opened <= 2x the largest cap).  Every open is a
backend fork and an authentication, so the pool counts each by its cause
(``PoolStats.opens_by``/``closes_by``), and the paths that closed a
connection only for the next step to open one again move or keep it."""
import asyncio

from ringleader.drivers.pool import Pool
from ringleader.testing import run

from .test_pool import Factory, FakeConn


class MovableConn(FakeConn):
    """A fake connection a (fake) runtime can move between workers: pinned
    while lent, like drivers.contract's PooledConnection."""

    def __init__(self, n, worker):
        super().__init__(n, worker)
        self.worker_id = worker
        self.pinned = None

    def pin(self, reason):
        self.pinned = reason

    def migration_blocker(self):
        return "closed" if self.is_closed else self.pinned


class MovableFactory(Factory):
    async def __call__(self):
        loop = asyncio.get_running_loop()
        c = MovableConn(len(self.made), getattr(loop, "worker_id", 0))
        self.made.append(c)
        return c


class FakeRuntime:
    """Only what a pool uses of its runtime: registration (a pool opened on
    a loop whose ``runtime`` has ``register_pool`` belongs to it) and
    ``migrate`` (a move takes no time here)."""

    def __init__(self):
        self.moves = []
        self.registry = self
        self.workers = ()

    def pools(self):
        return []

    def register_pool(self, name, pool):
        pass

    def unregister_pool(self, name):
        pass

    async def migrate(self, conn, worker):
        if conn.migration_blocker() is not None:
            raise RuntimeError(f"cannot move: {conn.migration_blocker()}")
        self.moves.append((conn.n, conn.worker_id, worker))
        conn.worker_id = worker


def test_opens_and_closes_are_counted_by_cause():
    async def main():
        f = Factory()
        loop = asyncio.get_running_loop()
        async with Pool(f, min_size=1, max_size=2, burst=1, burst_linger=1.0,
                        maintain_every=1000.0) as pool:
            pool.release(await pool.acquire())  # a hold measured: no cold start (no burst)
            conns = await asyncio.gather(*(pool.acquire() for _ in range(3)))
            for c in conns:
                pool.release(c)
            s = pool.stats()
            assert dict(s.opens_by) == {"refill": 1, "queue": 1, "burst": 1}
            assert sum(s.opens_by.values()) == s.connections_num == 3
            pool._maintain(loop.time() + 2.0)  # the burst connection idled past its linger
            pool.set_burst(0)
            pool.resize(1, 1)                  # and a cut without an allowance
            assert dict(pool.stats().closes_by) == {"linger": 1, "shrink": 1}
    run(main())


def test_a_return_moves_to_the_worker_short_of_its_share_instead_of_trading():
    """A strict pool's return while only another worker's caller waits, and
    that worker holds less than its share of the cap: the connection moves
    there (the runtime's migration) instead of being closed here and opened
    there.  It was still pinned to the caller that returned it, so this path
    always traded: a connect the waiter paid and a backend the server forked."""
    async def main():
        f = MovableFactory()
        loop = asyncio.get_running_loop()
        loop.runtime = rt = FakeRuntime()
        async with Pool(f, min_size=0, max_size=2, affinity="strict",
                        maintain_every=1000.0) as pool:
            loop.worker_id = 1
            a, b = await pool.acquire(), await pool.acquire()  # both on worker 1
            loop.worker_id = 2
            waiter = asyncio.ensure_future(pool.acquire(timeout=5.0))
            await asyncio.sleep(0)
            loop.worker_id = 1
            pool.release(a)  # worker 2 holds 0 of its share of 1: it gets this one
            got = await waiter
            assert got is a and a.worker_id == 2 and not a.is_closed
            s = pool.stats()
            assert len(f.made) == 2 and s.connections_moved == 1 and rt.moves == [(0, 1, 2)]
            assert "trade" not in s.closes_by
            pool.release(got)
            pool.release(b)
    run(main())


def test_a_cut_keeps_idle_connections_within_the_burst_allowance_until_they_linger():
    """A cut used to close every idle connection above the new cap at once,
    and the next up-step (or burst edge) opened them again.  Within the burst
    allowance they now stay as burst connections: an undo within
    ``burst_linger`` costs no open, and they close once idle past it."""
    async def main():
        f = Factory()
        loop = asyncio.get_running_loop()
        async with Pool(f, min_size=0, max_size=4, burst=2, burst_linger=1.0,
                        maintain_every=1000.0) as pool:
            conns = [await pool.acquire() for _ in range(4)]
            for c in conns:
                pool.release(c)
            pool.resize(0, 2)  # the cut: 2 above the cap, within the allowance of 2
            assert pool.stats().pool_size == 4 and pool.stats().pool_burst == 2
            pool.resize(0, 4)  # the next step undoes it: nothing to open
            conns = [await pool.acquire() for _ in range(4)]
            for c in conns:
                pool.release(c)
            assert len(f.made) == 4 and "shrink" not in pool.stats().closes_by
            pool.resize(0, 2)
            pool._maintain(loop.time() + 2.0)  # idle past the linger: closed
            s = pool.stats()
            assert s.pool_size == 2 and dict(s.closes_by) == {"linger": 2}
            pool.resize(0, 1)  # without a burst allowance to hold it: closed at once
            pool.set_burst(0)
            assert pool.stats().pool_size == 1
    run(main())


def test_withdrawing_the_burst_allowance_closes_idle_connections_above_the_cap_now():
    """The guard's set_burst(0): a sick database gets no connections above
    the cap, idle ones included (they could be lent again at once)."""
    async def main():
        f = Factory()
        async with Pool(f, min_size=0, max_size=4, burst=2, maintain_every=1000.0) as pool:
            conns = [await pool.acquire() for _ in range(4)]
            pool.release(conns.pop())
            pool.resize(0, 2)
            assert pool.stats().pool_size == 4
            pool.set_burst(0)
            s = pool.stats()
            assert s.pool_size == 3 and s.pool_available == 0 and s.closes_by["over_limit"] == 1
            pool.release(conns.pop())  # in use above the cap: closed on return
            assert pool.stats().pool_size == 2 and pool.stats().closes_by["over_limit"] == 2
            for c in conns:
                pool.release(c)
            assert pool.stats().pool_size == 2
    run(main())
