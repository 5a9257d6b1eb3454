"""``running_loop()``: ``asyncio.get_running_loop()`` for per-request paths, without the
getpid(2) system call CPython makes on every call of it.

CPython checks the caller's pid against the one recorded by ``_set_running_loop`` on
every ``get_running_loop()`` (so a forked child never sees its parent's loop); that is
one system call per lookup, about 9% of the Redis pool's client CPU when the drivers
looked the loop up per command.  A loop that knows exactly when it runs on a thread
publishes itself here for that time (:class:`ringleader.runtime.RingEventLoop` does, in
``run_forever``); on such a thread ``running_loop()`` is one thread-local read.  On any
other thread, or under any other loop (uvloop, asyncio's), it is
``asyncio.get_running_loop()`` itself.  A fork clears the publication in the child,
which keeps CPython's guarantee.

What it does not do: replace asyncio's own bookkeeping (the loop still calls
``events._set_running_loop``, so ``asyncio.get_running_loop()`` stays right everywhere),
or cache anything for a loop that did not publish itself.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from typing import Iterator

__all__ = ["publish", "running_loop"]


class _Published(threading.local):
    # The loop running on this thread, if it published itself; None otherwise.
    loop: asyncio.AbstractEventLoop | None = None


_published = _Published()


def running_loop() -> asyncio.AbstractEventLoop:
    """The loop running on this thread; ``RuntimeError`` if none (as asyncio's)."""
    loop = _published.loop
    if loop is not None:
        return loop
    return asyncio.get_running_loop()


@contextlib.contextmanager
def publish(loop: asyncio.AbstractEventLoop) -> Iterator[None]:
    """Publishes ``loop`` for this thread while the block runs.  The block must be the
    whole of the loop's ``run_forever`` (nothing of the loop runs outside it).  The
    previous value is restored, not cleared, so a refused re-entrant ``run_forever``
    does not retract the loop that is still running."""
    prev = _published.loop
    _published.loop = loop
    try:
        yield
    finally:
        _published.loop = prev


def _forget_in_child() -> None:
    # Only the forking thread survives a fork; its publication names the parent's loop.
    _published.loop = None


os.register_at_fork(after_in_child=_forget_in_child)
