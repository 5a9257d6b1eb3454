"""ringleader.drivers.postgres: a PostgreSQL client on the calling worker's ring.

``connect(dsn)`` gives a :class:`Connection` (execute/fetch/fetchrow/fetchval/
executemany, pipelined; cursors, COPY, LISTEN, transactions) and
:class:`Pool` a pool of them.  Values are converted by psycopg's adapters and
server errors are psycopg's error classes.  Module map: ``messages`` (wire
format, sans-I/O), ``auth`` (SCRAM/MD5), ``startup`` (start-up state
machine), ``ops`` (in-flight answer collection), ``session`` (the wire and its
lifecycle), ``connection`` (statements, the query API), ``channel`` (the narrow
interface ``streams`` and ``transaction`` use), ``connect``,
``cancel``, ``streams``, ``transaction``, ``types`` (psycopg glue), ``dsn``, ``tls``,
``pool``.  Needs the ``postgres`` extra (psycopg): ``pip install 'ringleader[postgres]'``.
"""
from ...extras import require

require("psycopg", "postgres", "ringleader.drivers.postgres")
from .connect import connect  # noqa: E402
from .connection import Connection
from .errors import (AuthenticationUnsupported, ConnectionLost, InterfaceError, Notice,
                     PostgresDriverError, ProtocolViolation, QueryTimeout, TLSRefused)
from .pool import Pool

__all__ = ["connect", "Connection", "Pool", "PostgresDriverError", "InterfaceError", "ProtocolViolation",
           "ConnectionLost", "QueryTimeout", "AuthenticationUnsupported", "TLSRefused", "Notice"]
