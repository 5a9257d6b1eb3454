"""ringleader.runtime: worker threads, each running an asyncio-compatible loop on its own ring.

See :mod:`ringleader.runtime.loop` for the loop, :mod:`ringleader.runtime.transport`
for the fixed-file stream transport.
"""
from .errors import MigrationError, RingUnavailableError, RuntimeLayerError, WorkerError
from .loop import RingEventLoop, RingEventLoopPolicy, new_event_loop
from .stats import ConnStats, LoopStats
from .transport import RingTransport

__all__ = ["ConnStats", "LoopStats", "MigrationError", "RingEventLoop", "RingEventLoopPolicy",
           "RingTransport", "RingUnavailableError", "RuntimeLayerError", "WorkerError",
           "new_event_loop"]
from .runtime import Runtime, ServerGroup, Worker, run

__all__ += ["Runtime", "ServerGroup", "Worker", "run"]
