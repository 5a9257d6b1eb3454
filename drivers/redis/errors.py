"""Redis-specific errors, each a subclass of the shared driver error it refines.

``ReplyError`` is an error *reply* from the server (the command reached it and
it said no; the connection is fine).  ``ConnectionError``, ``TimeoutError`` and
``ProtocolError`` are about the connection (see :mod:`ringleader.drivers.errors`
for what each promises).  ``WatchError`` is an ``EXEC`` that the server aborted
because a ``WATCH``-ed key changed.  Nothing here does I/O.
"""
from __future__ import annotations

from .. import errors as _base
from ..errors import PoolClosed, PoolTimeout

__all__ = [
    "RedisError",
    "ReplyError",
    "ConnectionError",
    "TimeoutError",
    "ProtocolError",
    "InterfaceError",
    "WrongLoop",
    "WatchError",
    "PipelineNotExecuted",
    "PoolClosed",
    "PoolTimeout",
]


class RedisError(_base.DriverError):
    """Base of the Redis driver's errors."""


class ReplyError(RedisError):
    """An error reply.  ``code`` is its leading upper-case word (``ERR``,
    ``WRONGTYPE``, ``NOSCRIPT``, ``WRONGPASS`` ...), ``message`` the whole text."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        head = message.split(" ", 1)[0]
        self.code = head if head.isupper() else "ERR"


class ConnectionError(RedisError, _base.ConnectionError):
    """The connection is gone; commands in flight on it have an unknown outcome."""


class TimeoutError(RedisError, _base.TimeoutError):
    """No reply before the deadline; the connection it was on has been closed."""


class ProtocolError(RedisError, _base.ProtocolError):
    """Malformed RESP from the server; the connection has been discarded."""


class InterfaceError(RedisError, _base.InterfaceError):
    """Bad input: an argument Redis cannot take, a malformed URL or option."""


class WrongLoop(InterfaceError, _base.WrongLoop):
    """The connection was used from a loop that does not drive it (a plain
    thread, or the worker it migrated away from); nothing was sent."""


class WatchError(RedisError):
    """``EXEC`` returned nil: a watched key changed, the transaction did not run."""


class PipelineNotExecuted(InterfaceError):
    """An ``async with`` pipeline block ended with commands never executed."""
