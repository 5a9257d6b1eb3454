"""Unit tier, virtual time: a health check its caller leaves (issue 16).

A connection borrowed after idling ``check_after`` is ping()-ed before it is
lent.  The ping used to run under the caller's deadline: when the caller's
acquire timeout (or its cancellation) cut it short, the pool discarded a sound
connection as lost and opened another one later (static-16 reopened 20
connections in one stalled real burst run).  Now the check goes on without the
caller, within ``check_timeout``, and its outcome decides: kept if it passes,
discarded if it fails.  The pings here wait on a future the test resolves, so
each test decides when (and how) a check ends."""
import asyncio

import pytest

from ringleader.drivers.errors import PoolTimeout
from ringleader.drivers.pool import Pool
from ringleader.testing import run

from .test_pool import Factory, FakeConn


class GatedConn(FakeConn):
    """A connection whose ping() waits for ``gate`` (a future the test
    resolves) when one is set; ``pinging`` is set once a ping is under way."""

    def __init__(self, n, worker):
        super().__init__(n, worker)
        self.gate: asyncio.Future | None = None
        self.pinging = asyncio.Event()

    async def ping(self):
        self.pinging.set()
        if self.gate is not None:
            await self.gate
        await super().ping()


class GatedFactory(Factory):
    async def __call__(self):
        c = GatedConn(len(self.made), 0)
        self.made.append(c)
        return c


async def _stale(pool, loop, idle=2.0):
    """The pool's one connection, borrowed and returned, then left idle past
    check_after, with a gate on its next ping."""
    c = await pool.acquire()
    pool.release(c)
    loop.advance(idle)
    c.gate = loop.create_future()
    c.pinging.clear()
    return c


async def _cut_short(pool, loop, timeout=0.5):
    """An acquire whose deadline passes while the check waits on its gate: the
    caller gets PoolTimeout at its own deadline, no later."""
    t0 = loop.time()
    with pytest.raises(PoolTimeout, match="health check"):
        await pool.acquire(timeout=timeout)
    assert loop.time() - t0 == pytest.approx(timeout)


def _other_tasks():
    return [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]


def _run_with_pool(body):
    """Runs ``await body(pool, factory, loop)`` with an open one-connection
    pool of gated connections (check_after 1 s, check_timeout 5 s)."""
    async def main():
        loop = asyncio.get_running_loop()
        f = GatedFactory()
        async with Pool(f, min_size=0, max_size=1, check_after=1.0, check_timeout=5.0) as pool:
            await body(pool, f, loop)
    run(main())


def test_a_check_cut_short_by_the_callers_deadline_keeps_a_sound_connection():
    async def body(pool, f, loop):
        c = await _stale(pool, loop)
        await _cut_short(pool, loop)
        s = pool.stats()
        assert not c.is_closed and s.pool_size == 1 and s.connections_lost == 0
        assert (s.requests_timeouts, s.checks, s.checks_orphaned) == (1, 0, 0)

        # A caller queued while the check runs gets the connection when it
        # passes: no new open.
        nxt = asyncio.ensure_future(pool.acquire())
        await asyncio.sleep(0)
        assert pool.stats().requests_waiting == 1 and pool.stats().pool_size == 1
        c.gate.set_result(None)
        assert await nxt is c
        s = pool.stats()
        assert (s.checks, s.checks_orphaned, s.connections_num, len(f.made)) == (1, 1, 1, 1)
        assert s.closes_by == {} and s.connections_lost == 0 and c.pings == 1
        pool.release(c)

        # Nobody waiting: it goes back to the idle set, checked just now, so
        # the next caller gets it without another ping.
        c = await _stale(pool, loop)
        await _cut_short(pool, loop, timeout=0.1)
        c.gate.set_result(None)
        await asyncio.sleep(0.001)  # (virtual time: the check ends first)
        assert pool.stats().pool_available == 1
        async with pool.acquire() as again:
            assert again is c and c.pings == 2
        s = pool.stats()
        assert (s.checks, s.checks_orphaned, s.connections_num, s.closes_by) == (2, 2, 1, {})
    _run_with_pool(body)


def test_an_orphaned_check_that_fails_or_times_out_discards_the_connection():
    async def body(pool, f, loop):
        c = await _stale(pool, loop)
        await _cut_short(pool, loop)
        assert not c.is_closed  # the check goes on
        c.gate.set_exception(ConnectionError("gone"))
        fresh = await pool.acquire()  # queued behind the check, then opened for
        assert fresh is not c and c.is_closed
        s = pool.stats()
        assert (s.connections_lost, s.closes_by, s.checks_orphaned) == (1, {"bad": 1}, 1)
        assert s.connections_num == 2 and s.pool_size == 1
        pool.release(fresh)

        # The ping never answers: check_timeout (from the check's start)
        # ends it, and the connection is discarded as lost.
        c = await _stale(pool, loop)
        await _cut_short(pool, loop)  # 0.5 s into the check
        await asyncio.sleep(4.4)
        assert not c.is_closed and pool.stats().pool_size == 1
        await asyncio.sleep(0.2)
        assert c.is_closed
        s = pool.stats()
        assert (s.connections_lost, s.closes_by, s.checks_orphaned) == (2, {"bad": 2}, 2)
        assert s.pool_size == 0 and s.checks == 2
    _run_with_pool(body)


def test_a_cancelled_caller_leaves_a_sound_connection_kept():
    async def body(pool, f, loop):
        c = await _stale(pool, loop)
        caller = asyncio.ensure_future(pool.acquire())
        await c.pinging.wait()
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert not c.is_closed and pool.stats().pool_size == 1
        c.gate.set_result(None)
        async with pool.acquire() as again:
            assert again is c
        s = pool.stats()
        assert (s.connections_num, s.checks_orphaned, s.closes_by, s.connections_lost) == (1, 1, {}, 0)
    _run_with_pool(body)


@pytest.mark.filterwarnings("error")
def test_pool_close_or_loop_shutdown_during_an_orphaned_check_leaks_nothing():
    async def main():
        loop = asyncio.get_running_loop()
        f = GatedFactory()
        pool = Pool(f, min_size=0, max_size=1, check_after=1.0)
        c = await _stale(pool, loop)
        await _cut_short(pool, loop)
        assert not c.is_closed and pool.stats().pool_size == 1
        await pool.close()
        assert c.is_closed and _other_tasks() == []
        s = pool.stats()
        assert (s.pool_size, s.connections_lost, s.closes_by, s.checks_orphaned) == (0, 0, {}, 0)

        # The loop shutting down (asyncio.run cancels what is left) cancels the
        # check: the connection is closed and its slot freed all the same.
        pool = Pool(f, min_size=0, max_size=1, check_after=1.0)
        c = await _stale(pool, loop)
        await _cut_short(pool, loop)
        left = _other_tasks()
        for t in left:
            t.cancel()
        await asyncio.gather(*left, return_exceptions=True)
        s = pool.stats()
        assert c.is_closed and s.pool_size == 0 and s.closes_by == {"cancelled": 1}
        await pool.close()
    run(main())
