"""Errors of the Postgres driver.

Server errors are psycopg's own classes, picked by SQLSTATE with
``psycopg.errors.lookup`` (or psycopg's class-prefix fallback for codes it has
no class for), carrying every ErrorResponse field: ``err.diag`` is a real
``psycopg.errors.Diagnostic`` over the fields, and the common ones are also
attributes (``err.sqlstate``, ``err.severity``, ``err.detail``, ...).

Client-side faults are the classes below, one per kind of mistake, each
deriving from :mod:`ringleader.drivers.errors`' hierarchy (``DriverError``)
and also from a ``psycopg`` error class, so either ``except DriverError`` or
``except psycopg.Error`` catches them:

* :class:`InterfaceError`: bad input or misuse by the caller (a malformed DSN,
  an unknown parameter, an unreadable certificate, a NUL byte in a query, a
  second cursor in the same task); nothing was sent.  Also a ``ValueError``;
* :class:`ProtocolViolation`: the server sent bytes that are not protocol v3;
* :class:`ConnectionLost` (and :class:`TLSRefused`): the connection is gone;
* :class:`QueryTimeout`: a query ran past its timeout;
* :class:`AuthenticationUnsupported`: an authentication the client cannot do.
"""
from __future__ import annotations

import psycopg
from psycopg import errors as pe

from .. import errors as de

# Field codes of ErrorResponse/NoticeResponse, as psycopg's DiagnosticField.
_FIELDS = {
    "severity": ord("V"),  # non-localised; falls back to 'S' below
    "message": ord("M"),
    "detail": ord("D"),
    "hint": ord("H"),
    "position": ord("P"),
    "internal_position": ord("p"),
    "internal_query": ord("q"),
    "context": ord("W"),
    "schema_name": ord("s"),
    "table_name": ord("t"),
    "column_name": ord("c"),
    "datatype_name": ord("d"),
    "constraint_name": ord("n"),
    "source_file": ord("F"),
    "source_line": ord("L"),
    "source_function": ord("R"),
}


class PostgresDriverError(de.DriverError):
    """Base of the client-side errors of this driver."""


class InterfaceError(PostgresDriverError, de.InterfaceError, psycopg.InterfaceError):
    """Bad input or misuse by the caller: a malformed DSN or parameter, an
    unreadable certificate file, a value the protocol cannot carry, a cursor
    used the wrong way.  Nothing reached the server.  Also a ``ValueError``
    (what these raised before) and a ``psycopg.InterfaceError``."""


class ProtocolViolation(PostgresDriverError, de.ProtocolError, psycopg.InterfaceError):
    """The server sent bytes that are not valid protocol v3; the connection
    that received them is closed and must not be reused."""


class ConnectionLost(PostgresDriverError, de.ConnectionError, psycopg.OperationalError):
    """The connection closed (or was closed) while a query was in flight, or
    a query was sent on a closed connection."""


class TLSRefused(ConnectionLost):
    """The server does not accept TLS and the sslmode requires it."""


class AuthenticationUnsupported(PostgresDriverError, psycopg.OperationalError):
    """The server asked for an authentication method this client lacks, or a
    SCRAM exchange failed its checks on the client side."""


class WrongLoop(PostgresDriverError, de.WrongLoop, psycopg.InterfaceError):
    """The connection was used from a loop that does not drive it (a plain
    thread, or the worker it migrated away from); nothing was sent."""


class QueryTimeout(PostgresDriverError, de.TimeoutError, psycopg.OperationalError):
    """A query ran past its timeout; a CancelRequest was sent for it."""


def server_error(fields: dict[int, bytes], encoding: str = "utf-8") -> psycopg.Error:
    """The psycopg exception for an ErrorResponse's fields."""
    state = fields.get(ord("C"), b"").decode("ascii", "replace")
    cls = pe._class_for_state(state) if state else psycopg.DatabaseError
    msg = fields.get(ord("M"), b"").decode(encoding, "replace")
    err = cls(msg, info=fields, encoding=encoding)
    if not err.sqlstate and state:
        err.sqlstate = state
    _set_field_attrs(err, fields, encoding)
    return err


def _set_field_attrs(obj, fields: dict[int, bytes], encoding: str) -> None:
    for name, code in _FIELDS.items():
        v = fields.get(code)
        if v is None and name == "severity":
            v = fields.get(ord("S"))
        setattr(obj, name, v.decode(encoding, "replace") if v is not None else None)


class Notice:
    """A NoticeResponse: the same fields as an error, as attributes and as a
    psycopg ``Diagnostic`` in ``diag``."""

    def __init__(self, fields: dict[int, bytes], encoding: str = "utf-8"):
        self.diag = pe.Diagnostic(fields, encoding=encoding)
        self.sqlstate = self.diag.sqlstate
        _set_field_attrs(self, fields, encoding)

    def __repr__(self) -> str:
        return f"<Notice {self.severity} {self.sqlstate}: {self.message}>"


def stale_plan(e: BaseException) -> bool:
    """The server says a cached prepared statement no longer fits (dropped, or
    its result type changed): drop it from the cache and retry once."""
    state = getattr(e, "sqlstate", None)
    return state == "26000" or (
        state == "0A000" and "cached plan must not change result type" in str(e))
