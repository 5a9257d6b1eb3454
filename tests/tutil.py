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
* :data:`REPO`: the root of the clone (the source tree of the package).
"""
from __future__ import annotations

import asyncio
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
