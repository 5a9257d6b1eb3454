"""TLS over a loop's own raw transport: one ``_make_ssl_transport`` for both loops.

What it does: :class:`OwnRawTransportTLS` is the loop method asyncio calls
for ``ssl=`` connections and servers.  It is asyncio's own recipe (an
:class:`asyncio.sslproto.SSLProtocol` over a raw socket transport), but the
raw transport is the one the loop's ``_make_socket_transport`` makes: a
:class:`~.transport.RingTransport` on the ring, an
:class:`~.epoll_transport.EpollTransport` on the fallback.  So the runtime's
drain, connection table and counters see TLS connections like any other.

What it does not do: TLS itself (asyncio's SSLProtocol does), or move a TLS
connection between workers (its state lives in the SSL object: it stays put).
"""
from __future__ import annotations

from asyncio import sslproto

__all__ = ["OwnRawTransportTLS"]


class OwnRawTransportTLS:
    """Mixin for a loop with ``_make_socket_transport``; list it before asyncio's base."""

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *,
                            server_side=False, server_hostname=None, extra=None, server=None,
                            ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        ssl_protocol = sslproto.SSLProtocol(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        # The waiter is the SSL protocol's (it fires after the handshake), not the raw transport's.
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport
