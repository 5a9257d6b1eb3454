"""ringleader: an io_uring event-loop runtime for Python services.

Subpackages: :mod:`ringleader.uring` (the liburing binding), :mod:`ringleader.runtime`
(worker threads each running an asyncio-compatible loop on its own ring),
:mod:`ringleader.drivers` (Postgres and Redis on the same rings),
:mod:`ringleader.supervisor` (telemetry-driven adaptation).

``ringleader.run(main, workers=N)`` and ``ringleader.new_event_loop`` are the entry
points; they are imported on first use so ``import ringleader`` stays cheap.
"""
__version__ = "0.1.0"

_LAZY = {"run": "runtime", "new_event_loop": "runtime", "Runtime": "runtime",
         "RingEventLoop": "runtime", "RingEventLoopPolicy": "runtime"}


def __getattr__(name):
    sub = _LAZY.get(name)
    if sub is None:
        raise AttributeError(f"module 'ringleader' has no attribute {name!r}")
    import importlib
    return getattr(importlib.import_module(f"ringleader.{sub}"), name)


__all__ = ["__version__", *_LAZY]
