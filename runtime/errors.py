"""Errors of the runtime layer.

``RuntimeLayerError`` is the base.  io_uring failures keep their own
:class:`ringleader.uring.UringError` (an ``OSError``) so socket code can catch
them as usual; the runtime only adds errors about workers and migration.
"""
from ..uring import RingUnavailableError  # re-exported: start-up fails with it

__all__ = ["RuntimeLayerError", "WorkerError", "MigrationError", "MigrationRefused",
           "RingUnavailableError"]


class RuntimeLayerError(Exception):
    """Base class of runtime errors."""


class WorkerError(RuntimeLayerError):
    """A worker could not start, or the requested worker does not exist."""


class MigrationError(RuntimeLayerError):
    """A connection could not be moved to another worker.  ``where`` says what
    became of it: ``"source"`` (it never left, or came back, and works there),
    ``"closed"`` (it failed on the way and was closed; its protocol was told
    through ``connection_lost``)."""

    def __init__(self, message: str, where: str = "source"):
        super().__init__(message)
        self.where = where


class MigrationRefused(MigrationError):
    """The connection cannot move now (busy, closing, TLS, wrong thread, a
    draining target): nothing was detached and it keeps working where it was.
    ``permanent`` is True when it never can (TLS)."""

    def __init__(self, message: str, permanent: bool = False):
        super().__init__(message, "source")
        self.permanent = permanent
