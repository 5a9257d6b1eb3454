"""``connect()``: opens a :class:`~.connection.Connection` from a DSN.

Hosts are tried in order; on each, TLS is tried (or not) as ``sslmode`` says,
with libpq's fall-backs (``prefer``: a failed handshake or a pg_hba rejection
of the TLS connection is retried in plaintext; ``allow``: a rejection of the
plaintext one is retried with TLS).  Server errors other than those
rejections (a wrong password, a missing database) are raised at once;
connection failures move on to the next host and are all named in the final
``ConnectionLost``.
"""
from __future__ import annotations

import asyncio
import ssl

import psycopg

from . import tls
from .connection import Connection
from .dsn import parse_dsn
from .errors import ConnectionLost, TLSRefused


async def connect(dsn: str | None = None, *, statement_cache_size: int = 100,
                  command_timeout: float | None = None, adapters=None,
                  **kwargs) -> Connection:
    """Opens a connection from a libpq-style DSN (URL or key=value) and/or
    keywords (host, port, user, password, dbname, application_name,
    connect_timeout, sslmode and the ssl* files, ssl_context=SSLContext,
    server_settings={...}).  Hosts are tried in order; on each, TLS as
    ``sslmode`` says (see :mod:`.tls`)."""
    params = parse_dsn(dsn, **kwargs)
    errors = []
    for address in params.addresses:
        for use_tls, fallback in tls.attempts(params.sslmode, address[0].startswith("/")):
            conn = Connection(params, address, statement_cache_size=statement_cache_size,
                              command_timeout=command_timeout, adapters=adapters)
            try:
                # start() closes the connection itself when it fails.
                if params.connect_timeout is None:
                    await conn.start(use_tls)
                else:
                    async with asyncio.timeout(params.connect_timeout):
                        await conn.start(use_tls)
                return conn
            except (OSError, ConnectionLost, TimeoutError,
                    psycopg.errors.InvalidAuthorizationSpecification) as e:
                # prefer: a failed handshake or a pg_hba rejection of the TLS
                # connection is retried in plaintext; allow: a rejection of
                # the plaintext one is retried with TLS (as libpq does).
                if fallback and isinstance(e, (ssl.SSLError, TLSRefused,
                                               psycopg.errors.InvalidAuthorizationSpecification)):
                    continue
                if isinstance(e, psycopg.Error) and not isinstance(e, ConnectionLost):
                    raise
                errors.append(f"{address[0]}:{address[1]}: {e!r}")
                break
    raise ConnectionLost("could not connect: " + "; ".join(errors))
