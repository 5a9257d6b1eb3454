"""Helpers for testing code that runs on ringleader, in virtual time.

:class:`VirtualTimeLoop` is an asyncio event loop whose clock does not follow
the wall clock: whenever no callback is ready it jumps to the earliest pending
timer, so a test of timeouts, ages and periodic work (pool reaping, acquire
deadlines, a supervisor's period) runs in microseconds and sees exact times.
:func:`run` is ``asyncio.run`` on one.  Code under test reads the loop's
``time()`` (the injected clock ringleader's pools and supervisor use), never
``time.monotonic()``.

What it does not do: it is a plain selector loop, not a ring; I/O still
happens in real time, so a test that waits on a socket while timers are
pending sees those timers fire at once.  Use it for logic that waits only on
timers and futures.  It relies on two private attributes of CPython's
``BaseEventLoop`` (``_ready``, ``_scheduled``) and its ``_run_once``; see
docs/cpython-internals.md.  Imports nothing outside the standard library.
"""
from __future__ import annotations

import asyncio
from typing import Any, Coroutine

__all__ = ["VirtualTimeLoop", "run"]


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A loop whose clock starts at ``start`` and jumps to the next timer when
    no callback is ready.  ``worker_id`` (optional) is set as an attribute, the
    way a runtime's worker loops carry one."""

    def __init__(self, start: float = 1000.0, *, worker_id: int | None = None) -> None:
        super().__init__()
        self.vt = float(start)
        if worker_id is not None:
            self.worker_id = worker_id

    def time(self) -> float:
        return self.vt

    def advance(self, seconds: float) -> None:
        """Moves the clock forward by ``seconds`` (timers due by then run on
        the next iteration)."""
        if seconds < 0:
            raise ValueError(f"the clock only moves forward, not by {seconds}")
        self.vt += seconds

    def _run_once(self) -> None:
        # Nothing to run now: move the clock to the earliest live timer, so the
        # base class's select() does not block and runs it.
        if not self._ready and self._scheduled:
            live = [h.when() for h in self._scheduled if not h.cancelled()]
            if live:
                self.vt = max(self.vt, min(live))
        super()._run_once()


def run(coro: Coroutine[Any, Any, Any], *, start: float = 1000.0,
        worker_id: int | None = None) -> Any:
    """Runs ``coro`` to completion on a fresh :class:`VirtualTimeLoop` and
    closes it (like ``asyncio.run``, without the task clean-up of leftovers)."""
    loop = VirtualTimeLoop(start, worker_id=worker_id)
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()
