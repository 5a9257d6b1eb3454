"""Helpers shared by the test tiers (imported as ``from ..tutil import Echo``;
fixtures live in the conftest.py files, plain helpers here).

* :class:`Echo`: the asyncio protocol the runtime, debug and supervisor tests
  serve: writes back what it receives.
* :func:`wait_until`: waits for a condition (polled, with a generous
  deadline) where a test would otherwise sleep and hope the other side got
  there.
* :func:`python_without`: runs Python code in a child interpreter in which some
  top-level modules cannot be imported, the way an install without an extra
  behaves (a meta-path blocker, so nothing is uninstalled).
* :func:`cyclic_garbage`: the types of the reference cycles an awaited piece of
  work leaves behind, counting only what it made.
* :data:`REPO`: the root of the clone (the source tree of the package).
"""
from __future__ import annotations

import asyncio
import gc
import inspect
import os
import subprocess
import sys
import textwrap

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Echo(asyncio.Protocol):
    """Writes back every byte it receives; ``t`` is its transport."""

    def connection_made(self, transport):
        self.t = transport

    def data_received(self, data):
        self.t.write(data)


async def wait_until(predicate, *, timeout: float = 10.0, what: str = "the condition",
                     interval: float = 0.005) -> None:
    """Returns once ``predicate()`` (a callable, sync or async) is true; fails the
    test after ``timeout`` seconds of the running loop's clock."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        ok = predicate()
        if inspect.isawaitable(ok):
            ok = await ok
        if ok:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(interval)



async def cyclic_garbage(work) -> list[str]:
    """The type names of the cyclic garbage ``await work()`` leaves, found with
    the collector off while it runs (warm ``work`` up first: first-use caches
    are not garbage).

    Only objects made inside the window count, whatever earlier tests left.
    One ``gc.collect()`` before it is not enough for that: its weakref
    callbacks and finalizers can free more cycles, which the next pass finds
    (~11k matplotlib objects after the rig's plotting test).  So the collector
    runs until it finds nothing, and every object alive before the window is
    held for its length, so none of them can become garbage inside it."""
    for _ in range(10):
        if gc.collect() == 0:
            break
    gc.disable()
    held = gc.get_objects()
    saved = len(gc.garbage)
    try:
        await work()
        gc.set_debug(gc.DEBUG_SAVEALL)  # what was found stays in gc.garbage, to name it
        gc.collect()
        return sorted({type(o).__qualname__ for o in gc.garbage[saved:]})
    finally:
        gc.set_debug(0)
        del gc.garbage[saved:]
        del held
        gc.enable()

_BLOCKER = '''
import sys
class _Blocked:
    """Makes the named top-level modules (and their submodules) unimportable."""
    def __init__(self, names):
        self.names = set(names)
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in self.names:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, _Blocked(%r))
'''


def python_without(blocked: list[str], code: str, *, cwd: str | None = None,
                   timeout: float = 120) -> subprocess.CompletedProcess:
    """Runs ``code`` with this interpreter, ``blocked`` made unimportable;
    returns the finished process (stdout/stderr as text)."""
    src = _BLOCKER % (list(blocked),) + textwrap.dedent(code)
    return subprocess.run([sys.executable, "-c", src], capture_output=True, text=True,
                          cwd=cwd or os.path.expanduser("~"), timeout=timeout)
