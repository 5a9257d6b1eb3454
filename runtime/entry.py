"""``ringleader.run``: the ``asyncio.run`` of ringleader, and its signal handling.

What it does: :func:`run` makes a :class:`~.runtime.Runtime` on the chosen
backend (:mod:`.backend`), runs ``main`` on worker 0 in the calling thread,
drains and stops when it returns, and ends as ``asyncio.run`` does on SIGINT
and SIGTERM (:class:`_StopOnSignal`).

What it does not do: serve, migrate or scale (the Runtime's methods).
"""
from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from typing import Any, Awaitable, Callable

from .runtime import Runtime

logger = logging.getLogger("ringleader.runtime")

__all__ = ["run"]


class _StopOnSignal:
    """``ringleader.run``'s SIGINT/SIGTERM handling: the first signal cancels
    ``main`` (the graceful drain follows); later ones only count (a SIGINT
    still makes ``run`` raise KeyboardInterrupt after the drain, as
    ``asyncio.run`` does).  Installed only on the main thread (signal handlers
    live there)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self, main_task: asyncio.Task):
        self.requested = False     # main was cancelled by a signal (or has ended)
        self.sigint_during = False   # a SIGINT arrived while main ran
        self.sigint_after = False    # ... or once main was done (the drain)
        self._task = main_task
        self._loop = asyncio.get_running_loop()
        self._installed: list[int] = []
        if threading.current_thread() is not threading.main_thread():
            return
        for sig in self.SIGNALS:
            self._loop.add_signal_handler(sig, self._on_signal, sig)
            self._installed.append(sig)

    def _on_signal(self, sig: int) -> None:
        if sig == signal.SIGINT:
            if self._task.done():
                self.sigint_after = True
            else:
                self.sigint_during = True
        if self.requested:
            logger.info("%s again while stopping: ignored", signal.Signals(sig).name)
            return
        self.requested = True
        logger.info("%s: draining and stopping", signal.Signals(sig).name)
        self._task.cancel()

    async def flush(self) -> None:
        """Run the handlers of signals raised but not yet seen by the loop."""
        if self._installed and not self._loop.is_closed():
            deliver = getattr(self._loop, "deliver_pending_signals", None)
            if deliver is not None:   # the ring loop
                deliver()
                await asyncio.sleep(0)
            else:
                # asyncio's loop (epoll): one iteration reads the wake-up fd and
                # schedules the handlers, the next runs them.
                await asyncio.sleep(0)
                await asyncio.sleep(0)

    def uninstall(self) -> None:
        for sig in self._installed:
            if not self._loop.is_closed():
                self._loop.remove_signal_handler(sig)
        self._installed.clear()


def run(main: Callable[..., Awaitable] | Awaitable, *, workers: int = 1, drain_timeout: float = 10.0,
        debug: bool | None = None, loop_options: dict | None = None,
        debug_socket: bool | str | os.PathLike = True, control: bool = False,
        supervisor=None, backend: str = "auto") -> Any:
    """Like ``asyncio.run``: run ``main`` on worker 0 (this thread) with ``workers`` rings.

    ``main`` is a coroutine, or a coroutine function taking the :class:`Runtime`.
    Returns its result; on return the runtime drains and stops.  On the main
    thread the first SIGINT or SIGTERM cancels ``main`` and the drain follows;
    then, as with ``asyncio.run``, a SIGINT raises KeyboardInterrupt (unless
    ``main`` caught the cancellation and returned a value), a SIGTERM returns
    ``None``.  ``debug_socket``, ``control``, ``supervisor`` and ``backend``
    (``"auto"``: io_uring where allowed, else the epoll fallback) are
    :class:`Runtime`'s.
    """
    rt = Runtime(workers, loop_options=loop_options, debug_socket=debug_socket, control=control,
                 supervisor=supervisor, backend=backend)
    w0 = rt.workers[0]
    runner = asyncio.Runner(debug=debug, loop_factory=w0.make_loop)
    outcome = {"interrupt": False}

    async def entry():
        rt.start(skip=(0,))
        await rt.start_supervisor()
        coro = main(rt) if callable(main) else main
        main_task = asyncio.ensure_future(coro)
        stop = _StopOnSignal(main_task)
        cancelled = False
        try:
            return await main_task
        except asyncio.CancelledError:
            if not stop.requested:
                raise
            cancelled = True
            return None  # SIGINT/SIGTERM: a requested stop, not a failure
        finally:
            # main runs in its own task, so a signal arriving from here on
            # (uvicorn re-raises the one it handled after its own shutdown)
            # cannot cancel the drain below midway.
            stop.requested = True
            try:
                await rt.shutdown(drain_timeout)
            finally:
                await stop.flush()
                stop.uninstall()
                # As asyncio.run: KeyboardInterrupt when a SIGINT cancelled
                # main or came once main was done; not when main caught the
                # cancellation and returned a value.
                outcome["interrupt"] = stop.sigint_after or (stop.sigint_during and cancelled)

    with runner:
        result = runner.run(entry())
    if outcome["interrupt"]:
        raise KeyboardInterrupt()
    return result
