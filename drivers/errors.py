"""The exception hierarchy shared by ringleader's drivers and their pool.

Every error a driver raises on purpose derives from :class:`DriverError`, so a
service can catch "anything the database layer said" in one clause.  The kinds
that callers handle differently are separate classes:

* :class:`ConnectionError` — the connection is gone (reset, closed, killed);
  commands that were in flight on it fail with this and are *not* retried.
* :class:`TimeoutError` — a deadline set by the caller or the connection passed.
* :class:`ProtocolError` — the server sent bytes the driver cannot parse; the
  connection is discarded and never reused.
* :class:`PoolTimeout` / :class:`PoolClosed` — the pool could not hand out a
  connection in time, or is closed.
* :class:`InterfaceError` — the caller passed bad input (wrong argument type,
  malformed URL); nothing was sent.
* :class:`WrongLoop` (an InterfaceError) — a connection or pool was used from
  a thread whose loop does not drive it (a plain thread's asyncio loop, or the
  worker a connection has just migrated away from); nothing was sent or taken.

The I/O-flavoured classes also derive from the matching builtin
(``builtins.ConnectionError``, ``builtins.TimeoutError``) so generic code that
catches ``OSError``/``TimeoutError`` keeps working.  Drivers add their own
subclasses (``ringleader.drivers.redis.errors``); this module knows no driver.
"""
from __future__ import annotations

import builtins

__all__ = [
    "DriverError",
    "InterfaceError",
    "WrongLoop",
    "ConnectionError",
    "TimeoutError",
    "ProtocolError",
    "PoolError",
    "PoolTimeout",
    "PoolClosed",
]


class DriverError(Exception):
    """Base of every error raised by ringleader's drivers and pool."""


class InterfaceError(DriverError, ValueError):
    """Bad input from the caller (argument types, URL); nothing reached the server."""


class WrongLoop(InterfaceError):
    """Used from a loop that does not drive it: run the call on the worker that
    owns the connection or pool (``runtime.run_on`` / ``runtime.spawn``)."""


class ConnectionError(DriverError, builtins.ConnectionError):
    """The connection was lost or closed; the outcome of in-flight commands is unknown."""


class TimeoutError(DriverError, builtins.TimeoutError):
    """A client-side deadline passed before the server answered."""


class ProtocolError(DriverError):
    """The server sent malformed bytes; the connection that received them is discarded."""


class PoolError(DriverError):
    """Base of the pool's own errors."""


class PoolTimeout(PoolError, builtins.TimeoutError):
    """No connection could be handed out before the acquire timeout."""


class PoolClosed(PoolError):
    """The pool is closed (or closing) and hands out no more connections."""
