"""ringleader: an io_uring event-loop runtime for Python services.

Subpackages: :mod:`ringleader.uring` (the liburing binding), :mod:`ringleader.runtime`
(worker threads each running an asyncio-compatible loop on its own ring),
:mod:`ringleader.drivers` (Postgres and Redis on the same rings),
:mod:`ringleader.supervisor` (telemetry-driven adaptation).
"""
__version__ = "0.1.0"
