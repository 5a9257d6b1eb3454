"""TLS for Postgres connections: libpq's ``sslmode`` semantics as an
``ssl.SSLContext`` plus the answer to an SSLRequest.

The modes, as libpq defines them: ``disable`` never, ``allow`` plaintext first
and TLS if the server refuses it, ``prefer`` (the default) TLS if the server
offers it and plaintext otherwise, ``require`` TLS without checking the
certificate (unless a root certificate is given or found, then like
``verify-ca``), ``verify-ca`` a certificate chained to the root certificate,
``verify-full`` that and the host name.  Root certificates come from
``sslrootcert`` (a file, or ``system`` for the system store), else from
``~/.postgresql/root.crt``; a client certificate from ``sslcert``/``sslkey``
(else ``~/.postgresql/postgresql.crt``/``.key`` when both exist).  Unix-socket
connections never use TLS (as libpq).

:func:`negotiate` is the SSLRequest exchange on a freshly opened transport,
then the running loop's ``start_tls`` (on ringleader's loop the TLS record
layer runs over the ring transport; a TLS connection cannot migrate between
workers).  The rest reads certificate files and does no I/O.
"""
from __future__ import annotations

import asyncio
import os
import ssl

from ..sslcontext import client_context
from . import messages as m
from .errors import ConnectionLost, InterfaceError, ProtocolViolation, TLSRefused

MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")
# Modes that fail rather than fall back to plaintext.
REQUIRED = ("require", "verify-ca", "verify-full")


def _home_file(name: str) -> str:
    return os.path.join(os.path.expanduser("~"), ".postgresql", name)


def check_mode(mode: str) -> None:
    if mode not in MODES:
        raise InterfaceError(f"invalid sslmode {mode!r} (one of {', '.join(MODES)})")


def make_context(mode: str, rootcert: str | None = None, cert: str | None = None,
                 key: str | None = None, password: str | None = None) -> ssl.SSLContext | None:
    """The client context for ``mode`` (None for ``disable``); InterfaceError names
    a missing or unreadable file."""
    check_mode(mode)
    if mode == "disable":
        return None
    root = rootcert
    if root is None and os.path.exists(_home_file("root.crt")):
        root = _home_file("root.crt")
    verify = mode in ("verify-ca", "verify-full") or (mode == "require" and root is not None)
    if verify and root is None:
        raise InterfaceError(f"sslmode={mode} needs a root certificate: set sslrootcert=<file> "
                         f"(or sslrootcert=system), or put one at {_home_file('root.crt')}")
    if cert is None and key is None:
        if os.path.exists(_home_file("postgresql.crt")) and os.path.exists(_home_file("postgresql.key")):
            cert, key = _home_file("postgresql.crt"), _home_file("postgresql.key")
    return client_context(ssl.CERT_REQUIRED if verify else ssl.CERT_NONE,
                          mode == "verify-full", root if verify else None, cert, key, password,
                          names=("sslrootcert", "sslcert", "sslkey"), error=InterfaceError)


def attempts(sslmode: str, unix: bool) -> list[tuple[bool, bool]]:
    """Connection attempts on one address: (use TLS, may another follow)."""
    if unix or sslmode == "disable":
        return [(False, False)]
    if sslmode == "prefer":
        return [(True, True), (False, False)]
    if sslmode == "allow":
        return [(False, True), (True, False)]
    return [(True, False)]


class _Answer(asyncio.Protocol):
    """The transport's protocol while the one-byte SSLRequest answer is due."""

    def __init__(self, fut: asyncio.Future):
        self.fut = fut

    def data_received(self, data) -> None:
        if self.fut.done():
            return
        data = bytes(data)
        if data in (b"S", b"N"):
            self.fut.set_result(data)
        elif data[:1] == b"S":
            # Bytes after the S arrived before our handshake: whoever sent
            # them is not the TLS peer (CVE-2021-23222); refuse the connection.
            self.fut.set_exception(ProtocolViolation(
                "server sent unencrypted data after accepting the SSLRequest"))
        else:
            self.fut.set_exception(ProtocolViolation(
                f"unexpected answer to SSLRequest: {data[:16]!r}"))

    def eof_received(self):
        return False

    def migration_blocker(self) -> str:
        # The runtime must not move the connection to another worker while it
        # is half made (drivers.contract).
        return "it is negotiating TLS"

    def connection_lost(self, exc) -> None:
        if not self.fut.done():
            self.fut.set_exception(ConnectionLost(f"connection closed during SSLRequest: {exc}"))


async def negotiate(loop, transport: asyncio.Transport, sslmode: str,
                    ctx: ssl.SSLContext, host: str) -> asyncio.Transport:
    """Asks for TLS on ``transport`` (plaintext, nothing sent yet); returns
    the transport to go on with: a TLS one, or the same one when the server
    said no and ``sslmode`` allows plaintext (else :class:`TLSRefused`)."""
    wire = transport.get_protocol()
    fut = loop.create_future()
    transport.set_protocol(_Answer(fut))
    transport.write(m.ssl_request())
    try:
        answer = await fut
    finally:
        transport.set_protocol(wire)
    if answer == b"N":
        if sslmode in REQUIRED:
            raise TLSRefused(f"the server does not accept TLS, but sslmode={sslmode} requires it")
        return transport
    return await loop.start_tls(transport, wire, ctx, server_hostname=host)
