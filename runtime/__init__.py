"""ringleader.runtime: worker threads, each running an asyncio-compatible loop on its own ring
(or, where io_uring is denied, on the epoll fallback).

See :mod:`ringleader.runtime.loop` for the ring loop, :mod:`ringleader.runtime.transport`
for the fixed-file stream transport, :mod:`ringleader.runtime.backend` for the choice
of backend and :mod:`ringleader.runtime.epoll` for the fallback.
"""
from .errors import MigrationError, RingUnavailableError, RuntimeLayerError, WorkerError
from .backend import Backend, Choice, new_event_loop
from .loop import RingEventLoop
from .policy import RingEventLoopPolicy
from .stats import ConnStats, LoopStats
from .transport import RingTransport

__all__ = ["Backend", "Choice", "ConnStats", "LoopStats", "MigrationError", "RingEventLoop",
           "RingEventLoopPolicy", "RingTransport", "RingUnavailableError", "RuntimeLayerError",
           "WorkerError", "new_event_loop"]
from .epoll import EpollEventLoop
from .runtime import Runtime, ServerGroup, Worker
from .entry import run

__all__ += ["EpollEventLoop", "Runtime", "ServerGroup", "Worker", "run"]
