"""Errors of the runtime layer.

``RuntimeLayerError`` is the base.  io_uring failures keep their own
:class:`ringleader.uring.UringError` (an ``OSError``) so socket code can catch
them as usual; the runtime only adds errors about workers and migration.
"""
from ..uring import RingUnavailableError  # re-exported: start-up fails with it

__all__ = ["RuntimeLayerError", "WorkerError", "MigrationError", "RingUnavailableError"]


class RuntimeLayerError(Exception):
    """Base class of runtime errors."""


class WorkerError(RuntimeLayerError):
    """A worker could not start, or the requested worker does not exist."""


class MigrationError(RuntimeLayerError):
    """A connection could not be moved to another worker (it stays where it was)."""
