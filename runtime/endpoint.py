"""What the ring loop's non-stream transports share (datagram, pipes).

:class:`FileEndpoint` ends a transport the same way for each: the protocol's
``connection_lost`` runs, then the file (``self._file``: a socket or a pipe)
is closed; an endpoint collected while still open warns (``ResourceWarning``)
and closes its file.  Closing our descriptor while the kernel still holds the
file for an operation whose cancel is not reaped yet is safe: the ring keeps
its own reference and the late completion finds the endpoint closed.

Also here: :func:`socket_extra` (asyncio's ``get_extra_info`` keys for a
socket), and the one tiny callback every transport module needs
(completions nobody needs use :data:`.contract.UD_IGNORE`).
"""
from __future__ import annotations

import warnings

from asyncio import trsock


class FileEndpoint:
    _file = None
    _protocol = None

    def _call_connection_lost(self, exc) -> None:
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._file.close()
            self._file = None
            self._protocol = None

    def __del__(self, _warn=warnings.warn):
        if self._file is not None:
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)
            self._file.close()


def socket_extra(extra: dict, sock) -> None:
    """Fill asyncio's extra-info keys for ``sock`` (socket, sockname, peername)."""
    extra["socket"] = trsock.TransportSocket(sock)
    try:
        extra["sockname"] = sock.getsockname()
    except OSError:
        extra["sockname"] = None
    if "peername" not in extra:
        try:
            extra["peername"] = sock.getpeername()
        except OSError:
            extra["peername"] = None


def set_result_unless_cancelled(fut, result) -> None:
    if not fut.cancelled():
        fut.set_result(result)
