"""asyncio's ``SSLProtocol`` with the application's flow control in the connection's context.

The ring loop uses asyncio's own TLS state machine (``asyncio.sslproto``).  It
calls the application protocol's ``pause_writing``/``resume_writing`` from
inside ``transport.write`` — in whatever context the writer runs, where every
other callback of the connection runs in the context of the code that opened
it (asyncio's own transports have the same quirk; uvloop runs them in the
connection's context, and so does the ring loop's plain transport).  This
subclass enters the context captured when the connection was made for those
two calls and changes nothing else.  ``start_tls`` builds asyncio's class
directly and keeps asyncio's behaviour.
"""
from __future__ import annotations

import contextvars
from asyncio import sslproto


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
