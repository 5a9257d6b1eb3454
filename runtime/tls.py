"""TLS on our loops: asyncio's ``SSLProtocol`` over the loop's own raw transport.

What it does: :class:`OwnRawTransportTLS` is the ``_make_ssl_transport`` both
loops use (asyncio calls it for ``ssl=`` connections and servers): asyncio's
recipe, an SSL protocol over a raw socket transport, but the raw transport is
the one the loop's ``_make_socket_transport`` makes (a
:class:`~.transport.RingTransport` on the ring, an
:class:`~.epoll_transport.EpollTransport` on the fallback), so the runtime's
drain, connection table and counters see TLS connections like any other.  The
SSL protocol class is the loop's ``_ssl_protocol_class``.

:class:`RingSSLProtocol` (the ring loop's class) is asyncio's ``SSLProtocol``
with the application's flow control in the connection's context.  asyncio's
calls the application protocol's ``pause_writing``/``resume_writing`` from
inside ``transport.write`` — in whatever context the writer runs, where every
other callback of the connection runs in the context of the code that opened
it (asyncio's own transports have the same quirk; uvloop runs them in the
connection's context, and so does the ring loop's plain transport).  This
subclass enters the context captured when the connection was made for those
two calls and changes nothing else.  ``start_tls`` builds asyncio's class
directly and keeps asyncio's behaviour; the epoll fallback keeps asyncio's
class, as its plain transport keeps asyncio's behaviour.

What it does not do: TLS itself (asyncio's SSLProtocol does), or move a TLS
connection between workers (its state lives in the SSL object: it stays put).
"""
from __future__ import annotations

import contextvars
from asyncio import sslproto

__all__ = ["OwnRawTransportTLS", "RingSSLProtocol"]


class RingSSLProtocol(sslproto.SSLProtocol):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._context = contextvars.copy_context()

    def _control_app_writing(self):
        try:
            self._context.run(super()._control_app_writing)
        except RuntimeError as exc:
            # Context.run refuses a context that is already entered: we are in
            # one of this connection's own callbacks, the right context already.
            # (_control_app_writing reports the protocol's own errors to the
            # loop, so any other RuntimeError cannot come from it.)
            if "already entered" not in str(exc):
                raise
            super()._control_app_writing()


class OwnRawTransportTLS:
    """Mixin for a loop with ``_make_socket_transport``; list it before asyncio's base."""

    _ssl_protocol_class = sslproto.SSLProtocol

    def _make_ssl_transport(self, rawsock, protocol, sslcontext, waiter=None, *,
                            server_side=False, server_hostname=None, extra=None, server=None,
                            ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        ssl_protocol = self._ssl_protocol_class(
            self, protocol, sslcontext, waiter, server_side, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout,
            ssl_shutdown_timeout=ssl_shutdown_timeout)
        # The waiter is the SSL protocol's (it fires after the handshake), not the raw transport's.
        self._make_socket_transport(rawsock, ssl_protocol, extra=extra, server=server)
        return ssl_protocol._app_transport
