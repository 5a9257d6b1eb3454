"""Fixtures for the runtime tier: a single-ring loop and a multi-worker runtime."""
import asyncio

import pytest

import ringleader
from ringleader.runtime import Runtime


@pytest.fixture
def ring_run():
    """Run a coroutine on a fresh single-ring loop (like asyncio.run)."""
    def run(coro, **kw):
        with asyncio.Runner(loop_factory=ringleader.new_event_loop, **kw) as r:
            return r.run(coro)
    return run


@pytest.fixture
def runtime2():
    rt = Runtime(2).start()
    yield rt
    rt.stop(drain_timeout=1.0)
