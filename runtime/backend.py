"""Which I/O backend a loop runs on: io_uring, or the epoll fallback.

What it does: :func:`choose` turns the user's ``backend="auto" | "uring" |
"epoll"`` into a :class:`Choice` (the backend and, in words, why).  ``auto``
probes once per process by creating a throw-away ring: where io_uring is
denied (a seccomp profile answering EPERM or ENOSYS, as Docker's, containerd's
and Kubernetes' ``RuntimeDefault`` do since late 2023; ``kernel.io_uring_disabled``;
gVisor; an old kernel) it picks epoll and logs ONE line at WARNING saying
why and how to enable io_uring.  ``"uring"`` never falls back: it raises the
:class:`~ringleader.uring.RingUnavailableError` the ring gives.
:func:`new_event_loop` builds the chosen loop.

What it does not do: run any loop (``runtime.loop`` and ``runtime.epoll`` do),
or re-probe: a process's answer does not change (a seccomp filter cannot be
lifted, the sysctl is the admin's).
"""
from __future__ import annotations

import dataclasses
import enum
import logging
import threading

from ..uring import RingUnavailableError

logger = logging.getLogger("ringleader.runtime")

__all__ = ["Backend", "Choice", "choose", "parse", "probe_uring", "new_event_loop"]


class Backend(str, enum.Enum):
    URING = "uring"
    EPOLL = "epoll"




@dataclasses.dataclass(frozen=True)
class Choice:
    """The backend a loop runs on and why (shown per worker on the debug socket)."""

    backend: Backend
    reason: str

    @property
    def name(self) -> str:
        return self.backend.value


_probed: RingUnavailableError | None | bool = False   # False: not probed yet
_lock = threading.Lock()


def probe_uring() -> RingUnavailableError | None:
    """None when this process may create io_uring rings, else the error that
    says why (probed once per process: one ring set up and torn down)."""
    global _probed
    if _probed is False:
        with _lock:
            if _probed is False:
                from ..uring import features
                try:
                    features.probe()
                    _probed = None
                except RingUnavailableError as exc:
                    _probed = exc
    return _probed


_logged = False


def parse(backend: str | Backend) -> str | Backend:
    """``"auto"`` or a :class:`Backend`; anything else is a ValueError (no probe)."""
    try:
        return "auto" if backend == "auto" else Backend(backend)
    except ValueError:
        raise ValueError(f"backend must be 'auto', 'uring' or 'epoll', got {backend!r}") from None


def choose(backend: str | Backend = "auto") -> Choice:
    """The backend to run on; ``auto`` logs one line the first time it falls back."""
    global _logged
    want = parse(backend)
    if want is Backend.EPOLL:
        return Choice(Backend.EPOLL, "backend='epoll' was asked for")
    if want is Backend.URING:
        # No fallback: the ring itself raises RingUnavailableError (cause and fix).
        return Choice(Backend.URING, "backend='uring' was asked for")
    err = probe_uring()
    if err is None:
        return Choice(Backend.URING, "io_uring is available")
    reason = f"io_uring is unavailable: {err}"
    if not _logged:
        _logged = True
        # err's message names the cause and the fix (uring/features.py).
        logger.warning("ringleader: running on the epoll fallback because %s", reason)
    return Choice(Backend.EPOLL, reason)


def new_event_loop(*, backend: str | Backend = "auto", **kwargs):
    """A single loop on the chosen backend:
    ``asyncio.Runner(loop_factory=ringleader.new_event_loop)``.  ``kwargs`` are
    the loop's options (``telemetry``; the ring's sizes are ignored on epoll)."""
    choice = choose(backend)
    if choice.backend is Backend.URING:
        from .loop import RingEventLoop
        return RingEventLoop(**kwargs)
    from .epoll import EpollEventLoop
    return EpollEventLoop(choice=choice, **kwargs)
