"""Errors of the runtime layer.

``RuntimeLayerError`` is the base.  io_uring failures keep their own
:class:`ringleader.uring.UringError` (an ``OSError``) so socket code can catch
them as usual; the runtime only adds errors about workers and migration.
"""
import os

from ..uring import RingUnavailableError  # re-exported: start-up fails with it

__all__ = ["builtin_error", "RuntimeLayerError", "WorkerError", "MigrationError", "RingUnavailableError"]


class RuntimeLayerError(Exception):
    """Base class of runtime errors."""


class WorkerError(RuntimeLayerError):
    """A worker could not start, or the requested worker does not exist."""


class MigrationError(RuntimeLayerError):
    """A connection could not be moved to another worker (it stays where it was)."""


def builtin_error(res: int) -> OSError:
    """The exception asyncio's own loop gives for a failed operation with
    result ``res`` (a negative errno): the builtin ``OSError`` subclass
    (``BrokenPipeError``, ``ConnectionResetError`` ...).  Protocols and the
    loop's ``sock_*`` API see these, as on every other loop; the binding's
    ``Uring*Error`` (with op and fd) stay on :mod:`ringleader.uring`'s API."""
    return OSError(-res, os.strerror(-res))
