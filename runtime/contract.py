"""The loop <-> transport contract, declared once.

Three parties meet on the per-event path: the event loop
(:class:`~ringleader.runtime.loop.RingEventLoop`), the stream transport
(:class:`~ringleader.runtime.transport.RingTransport`) and the compiled half
of each transport (``_loopcore.Stream``, driven by the loop's compiled
``_loopcore.Core``).  This module names what each may call on the other, so
neither reaches into the other's private members (uvloop's ``loop.pxd`` plays
the same role there).  It holds declarations only: no behaviour.

* :class:`TransportLoop` — what a transport may use of its loop, beyond the
  public asyncio loop API (``time``, ``call_soon``, ``call_exception_handler``,
  ``get_debug``, ``is_closed``).
* :class:`TransportCallbacks` — what the compiled stream calls on its
  transport (cold paths only: EOF, errors, flow control, close, migration);
  the loop itself uses only the transport's public API (``abort``,
  ``conn_stats``, ``conn_id``, ``is_closing``).
* :class:`StreamState` — the transport's lifecycle, kept in the compiled
  stream's ``state`` field; :class:`WriteState` — its write side (half-close).

Other kinds of endpoints (pipes, datagrams, subprocess pipes) plug into the
same dispatcher: any callable registered with :meth:`TransportLoop.oneshot`
or the loop's handler table receives its completions as
``handler(res, flags)`` (``handler(res, flags, data)`` when a provided buffer
was used).
"""
from __future__ import annotations

import enum
from asyncio import sslproto
from typing import Any, Callable, Protocol

from . import _loopcore

TLS_BLOCKER = ("it carries TLS (asyncio's SSLProtocol is bound to its loop); "
               "TLS connections cannot migrate")


def protocol_blocker(protocol) -> str | None:
    """Why ``protocol`` keeps its connection from moving now, or None: TLS
    (asyncio's SSLProtocol keeps its loop -- callbacks, timers -- and has no
    hand-over hook, so a TLS connection stays on its worker), else what its
    own ``migration_blocker()`` says (both backends' transports ask this)."""
    if isinstance(protocol, sslproto.SSLProtocol):
        return TLS_BLOCKER
    check = getattr(protocol, "migration_blocker", None)
    return check() if check is not None else None


# user_data for operations whose completion nobody needs (cancels, shutdowns,
# closes): no handler is ever registered under it, so the dispatcher drops them.
UD_IGNORE = 0


class StreamState(enum.IntEnum):
    """Lifecycle of a stream transport; it only ever moves forward.

    ``OPEN -> CLOSING``: ``close()`` (or a fatal error) with writes still queued
    or in flight; reads have stopped, queued writes still go out.
    ``OPEN|CLOSING -> LOST``: ``_finish`` released the fixed slot and the
    user_data, cancelled what was in flight and scheduled ``connection_lost``;
    writes from now on are counted and dropped.
    ``LOST -> DONE``: ``connection_lost`` ran and the socket is closed.
    """

    OPEN = _loopcore.OPEN
    CLOSING = _loopcore.CLOSING
    LOST = _loopcore.LOST
    DONE = _loopcore.DONE


class WriteState(enum.IntEnum):
    """The write side of a stream transport (the compiled stream's ``write_state``).

    ``OPEN -> EOF_PENDING``: ``write_eof()``; further writes raise, the
    shutdown waits until the queued and in-flight bytes are sent.
    ``EOF_PENDING -> SHUT``: the SHUT_WR went to the ring.
    """

    OPEN = _loopcore.W_OPEN
    EOF_PENDING = _loopcore.W_EOF_PENDING
    SHUT = _loopcore.W_SHUT


class TransportLoop(Protocol):
    """What a stream transport may use of its event loop (besides asyncio's API)."""

    worker_id: int

    @property
    def ring(self) -> Any:
        """The loop's :class:`~ringleader.uring.Ring` (cancel, shutdown, files, hold)."""

    def bind_stream(self, transport: Any, slot: int, high_water: int, stream: Any = None,
                    fd: int = -1) -> Any:
        """Register ``transport`` (fixed file ``slot``) with the dispatcher.

        Allocates its receive and send user_data and returns its compiled
        ``_loopcore.Stream`` (``stream`` when given: a migrating transport keeps
        its stream and only changes loop, slot and user_data).  The loop reads
        only ``transport.conn_id``; ``fd`` (the transport's descriptor) makes
        add_reader/add_writer refuse it while the transport is open."""

    def unbind_stream(self, transport: Any, stream: Any, fd: int = -1) -> None:
        """Forget ``stream``'s user_data (and ``fd``); late completions find no handler."""

    def oneshot(self, handler: Callable[[int, int], None]) -> int:
        """A user_data whose handler is dropped after its final completion
        (:data:`UD_IGNORE` when the result does not matter)."""

    def install_file(self, fd: int) -> int:
        """A fixed-file slot holding ``fd`` for every ring operation queued after this call."""

    def finish_stream(self, transport: Any, stream: Any, fd: int = -1) -> None:
        """The transport's end on the ring: cancel its receive and send by user_data,
        keep in-flight bytes alive for the kernel, empty its slot, then as
        :meth:`unbind_stream`."""

    def release_slot(self, slot: int) -> None:
        """Empty fixed file ``slot`` with an SQE; it is reused only once that completed."""

    def handler_ud(self, handler: Callable[[int, int], None]) -> int:
        """A user_data for repeated operations (one in flight at a time): its
        completions go to ``handler`` until :meth:`release_ud`."""

    def release_ud(self, ud: int) -> None:
        """Forget ``ud``'s handler; later completions find none."""


class TransportCallbacks(Protocol):
    """What the compiled stream calls on its transport (never per event)."""

    def _on_eof(self) -> None: ...
    def _recv_failed(self, res: int) -> None: ...
    def _send_failed(self, res: int) -> None: ...
    def _fatal_error(self, exc: BaseException, message: str) -> None: ...
    def _deliver(self, data: bytes) -> None:
        """Feed a BufferedProtocol (plain protocols get data_received from C)."""
    def _maybe_pause_protocol(self) -> None: ...
    def _maybe_resume_protocol(self) -> None: ...
    def _migration_progress(self) -> None: ...
    def _finish(self, exc: BaseException | None) -> None: ...
    def _do_shutdown(self) -> None: ...
