"""ringleader.testing: the virtual-time loop jumps to the next timer, exactly,
and ignores cancelled ones."""
import asyncio
import time

import pytest

from ringleader.testing import VirtualTimeLoop, run


def test_timers_fire_at_their_virtual_time_without_waiting():
    seen = []

    async def main():
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await asyncio.sleep(3600)
        seen.append(loop.time() - t0)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.Event().wait(), 30)
        seen.append(loop.time() - t0)
        return loop

    wall = time.monotonic()
    loop = run(main(), start=50.0, worker_id=3)
    assert time.monotonic() - wall < 30   # nowhere near the hour it simulated
    assert seen == [3600.0, 3630.0]
    assert loop.worker_id == 3 and loop.is_closed()


def test_cancelled_timers_do_not_move_the_clock():
    async def main():
        loop = asyncio.get_running_loop()
        far = loop.call_later(1000, lambda: None)
        far.cancel()
        t0 = loop.time()
        await asyncio.sleep(1)
        return loop.time() - t0

    assert run(main()) == 1.0


def test_advance_moves_forward_only():
    loop = VirtualTimeLoop(10.0)
    try:
        loop.advance(2.5)
        assert loop.time() == 12.5
        with pytest.raises(ValueError):
            loop.advance(-1)
    finally:
        loop.close()
