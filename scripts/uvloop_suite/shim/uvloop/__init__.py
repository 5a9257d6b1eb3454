"""A stand-in for the ``uvloop`` package while uvloop's own test suite runs.

uvloop's tests reach their loop through a handful of names (``new_event_loop``,
``Loop``, ``EventLoopPolicy``, ``run``); this module binds them to ringleader's
ring loop, or to asyncio's default loop when ``RL_UVLOOP_SHIM_LOOP=asyncio``
(the same test ids are then rerun on asyncio to tell a real difference from a
test that fails on every loop).  ``_testbase.py`` is copied next to this file
from uvloop's sdist by ``scripts/uvloop-suite``; nothing of uvloop's compiled
extension is provided, so tests of uvloop-only APIs (``uvloop.loop``) fail
with ImportError and are listed as such in ``expected.txt``.
"""
import asyncio
import os

_TARGET = os.environ.get("RL_UVLOOP_SHIM_LOOP", "ringleader")

if _TARGET == "asyncio":
    Loop = asyncio.SelectorEventLoop
    EventLoopPolicy = asyncio.DefaultEventLoopPolicy

    def new_event_loop():
        return asyncio.DefaultEventLoopPolicy().new_event_loop()
elif _TARGET == "ringleader":
    import ringleader
    from ringleader.runtime.loop import RingEventLoop as Loop
    from ringleader.runtime.policy import RingEventLoopPolicy as EventLoopPolicy

    def new_event_loop():
        return ringleader.new_event_loop()
else:
    raise RuntimeError(f"RL_UVLOOP_SHIM_LOOP must be 'ringleader' or 'asyncio', not {_TARGET!r}")

__version__ = f"shim-{_TARGET}"


def run(main, *, loop_factory=new_event_loop, debug=None, **run_kwargs):
    """uvloop.run: asyncio.Runner with this loop, refusing a foreign loop as uvloop does."""
    async def wrapper():
        if not isinstance(asyncio.get_running_loop(), Loop):
            raise TypeError("uvloop.run() uses a non-uvloop event loop")
        return await main
    with asyncio.Runner(loop_factory=loop_factory, debug=debug) as runner:
        return runner.run(wrapper(), **run_kwargs)
