"""The loop <-> transport contract, declared once.

Three parties meet on the per-event path: the event loop
(:class:`~ringleader.runtime.loop.RingEventLoop`), the stream transport
(:class:`~ringleader.runtime.transport.RingTransport`) and the compiled half
of each transport (``_loopcore.Stream``, its base class, driven by the loop's
compiled ``_loopcore.Core``).  This module names what each may call on the other, so
neither reaches into the other's private members (uvloop's ``loop.pxd`` plays
the same role there).  It holds declarations only: no behaviour.

* :class:`TransportLoop` — what a transport may use of its loop, beyond the
  public asyncio loop API (``time``, ``call_soon``, ``call_exception_handler``,
  ``get_debug``, ``is_closed``).
* :class:`TransportCallbacks` — what the compiled stream calls on its
  transport (cold paths only: EOF, errors, flow control, close, migration);
  the loop itself uses only the transport's public API (``abort``,
  ``conn_stats``, ``conn_id``, ``is_closing``).
* :class:`MovableTransport`, :class:`MigrationLoop`, :class:`RingMigrationLoop`,
  :class:`CarryingLoop` — what :mod:`~ringleader.runtime.migration` may use of
  a transport it moves and of the two loops (source and target).
* :class:`CoalescingTransport` — what a driver may rely on of a transport
  whose writes of one loop iteration leave as one send (the ring's stream):
  it need not batch commands itself (drivers/redis/connection.py).
* :class:`ReplyMatchingTransport` — a transport that parses received bytes
  with the protocol's reader and resolves the protocol's waiting futures in
  order, in C (runtime/loopcore/replies.c), for pipelined request/reply
  protocols (drivers/redis/connection.py).
* :class:`WorkerLoop` — what the runtime, the supervisor and the debug socket
  use of a worker's loop (either backend) to find and count its connections;
  :class:`AcceptingLoop` — what the ring acceptor (runtime/serving.py) uses of
  worker 0's ring loop for its multishot accept.
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


class CoalescingTransport(Protocol):
    """A transport whose ``write`` only queues: every write made during one loop
    iteration goes out as one send when the iteration ends (at most one send in
    flight; writes made meanwhile form the next one).  The ring's stream
    transport is one (``writes_coalesced`` is True on its class); asyncio's and
    uvloop's transports are not (their ``write`` tries a send(2) at once), nor
    is a TLS transport on top of either.

    A driver that batches one iteration's commands itself (a ``call_soon``'d
    flush, one join) may, on such a transport, write each command as it is
    issued: the same single send, without the handle, the join and the extra
    loop iteration.  Drivers check with ``drivers.contract.writes_coalesced``
    (they do not import the runtime: they run on any loop)."""

    writes_coalesced: bool

    @property
    def sends(self) -> int:
        """Sends begun so far (one per loop iteration in which it was written
        to, plus one per iteration a send was still in flight)."""


class ReplyMatchingTransport(Protocol):
    """A transport that can match replies to their callers itself.

    ``match_replies(reader, need_more, waiters, other, aside)``: from now on
    each received chunk is passed to ``reader.feed(chunk)`` and every complete
    reply ``reader.gets()`` returns (until it returns ``need_more``) resolves
    the oldest future in ``waiters`` (a ``collections.deque`` the protocol
    appends to as it sends): ``set_result(reply)``, or nothing when that future
    is already done (its caller gave up; the reply is dropped).  ``other(item)``
    (in the transport's context) gets what is not such a reply: one whose type
    is ``aside`` (out-of-band data), one with no waiter, or the exception the
    reader raised (the protocol then closes the connection; an exception
    ``other`` raises is reported as a ``data_received`` failure).  ``reader``
    and ``waiters`` stay the protocol's: with ``reader=None`` the bytes go to
    ``data_received`` again and the protocol's own Python path carries on from
    the reader's state.  ``eof_received``/``connection_lost`` are unchanged.

    The ring's stream transport offers it (a receive of eight Redis replies
    then runs no Python frame); drivers look for the method and use their
    Python path where it is absent (asyncio, uvloop, the epoll fallback, TLS)."""

    def match_replies(self, reader: Any, need_more: Any, waiters: Any,
                      other: Callable[[Any], None], aside: type | None = None) -> None: ...


class TransportLoop(Protocol):
    """What a stream transport may use of its event loop (besides asyncio's API)."""

    worker_id: int

    @property
    def ring(self) -> Any:
        """The loop's :class:`~ringleader.uring.Ring` (cancel, shutdown, files, hold)."""

    def bind_stream(self, transport: Any, slot: int, fd: int = -1) -> None:
        """Register ``transport`` (fixed file ``slot``) with the dispatcher.

        Allocates its receive and send user_data and binds the transport's
        compiled base (``_loopcore.Stream``) to this loop's core (a migrating
        transport is bound again on the new loop: new core, slot and
        user_data).  The loop reads only ``transport.conn_id``; ``fd`` (the
        transport's descriptor) makes add_reader/add_writer refuse it while
        the transport is open."""

    def unbind_stream(self, transport: Any, fd: int = -1) -> None:
        """Forget ``transport``'s user_data (and ``fd``); late completions find no handler."""

    def install_file(self, fd: int) -> int:
        """A fixed-file slot holding ``fd`` for every ring operation queued after this call."""

    def finish_stream(self, transport: Any, fd: int = -1) -> None:
        """The transport's end on the ring: cancel its receive and send by user_data,
        keep in-flight bytes alive for the kernel, empty its slot, then as
        :meth:`unbind_stream`."""

    def release_slot(self, slot: int) -> None:
        """Empty fixed file ``slot`` with an SQE; it is reused only once that completed."""

    def oneshot(self, handler: Callable[[int, int], None]) -> int:
        """A user_data whose handler is dropped after its final completion
        (:data:`UD_IGNORE` when the result does not matter)."""

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


# ------------------------------------------------------------------ migration
# runtime/migration.py drives a move in named steps through these names only
# (tests/unit/test_seams.py checks it reaches no private member); both
# backends' transports and loops implement them.

class MovableTransport(Protocol):
    """The steps a stream transport offers the migration state machine.

    Order: ``begin_migration`` (source thread), then ``abort_migration`` (the
    move stops) or ``detach_for_move`` (it leaves the source loop), then
    ``attach_moved`` on the target loop (or on the source again, ``moved=False``,
    when the hand-over failed)."""

    def get_protocol(self) -> Any: ...

    def migration_blocker(self, moving: bool = False) -> str | None:
        """Why it cannot move now, or None (reads state only: any thread may ask).
        ``moving``: asked by the move already under way, whose own flag is no reason."""

    def begin_migration(self, waiter: Any) -> None:
        """Stop receiving here; resolve ``waiter`` (a future of the source loop) once
        nothing is in flight, or fail it with ConnectionError if the connection dies."""

    def abort_migration(self) -> None:
        """The move stops before :meth:`detach_for_move`: carry on as if it never began."""

    def detach_for_move(self) -> int:
        """Leave the current loop (quiescent); returns the handle to hand over
        (a fixed-file slot on the ring, the fd on epoll)."""

    def attach_moved(self, loop: Any, handle: int, moved: bool = True) -> None:
        """Join ``loop`` (on its thread) with the file at ``handle``; the protocol's
        ``connection_migrated`` runs first and, if it raises, the connection is
        failed here and the error propagates."""


class MigrationLoop(Protocol):
    """What a move uses of either loop, whatever the backend."""

    worker_id: int
    migrations_in: int
    migrations_out: int

    def create_future(self) -> Any: ...

    def kick(self) -> None:
        """Make what was queued go out soon even if nothing else is ready."""


class RingMigrationLoop(MigrationLoop, Protocol):
    """A ring loop: the file travels between rings with MSG_RING SEND_FD."""

    @property
    def ring_fd(self) -> int: ...

    def send_file(self, target_ring_fd: int, slot: int, target_ud: int,
                  handler: Callable[[int, int], None]) -> None:
        """Send fixed file ``slot`` into a kernel-chosen slot of ring ``target_ring_fd``
        (whose CQE carries ``target_ud``); ``handler`` gets our completion."""

    def release_sent_file(self, slot: int) -> None:
        """Empty our ``slot`` once :meth:`send_file` delivered its file."""

    def adopt_file(self, slot: int) -> None:
        """Account for ``slot``, filled by the kernel with a file sent to us."""


class CarryingLoop(MigrationLoop, Protocol):
    """An epoll loop: its threads share the fd table, so the fd is handed over
    with a call on the target loop's thread."""

    def carry(self, dst: Any, fd: int, arrive: Callable[[int], None]) -> bool:
        """``arrive(fd)`` on ``dst``'s thread; False when ``dst`` no longer runs."""


class WorkerLoop(Protocol):
    """What the runtime, the supervisor and the debug socket use of a worker's
    loop, whatever the backend, besides ``stats()`` and ``hot_connections()``."""

    worker_id: int

    def connections(self) -> list[Any]:
        """The loop's open stream transports (a copy: safe to iterate while
        they close)."""

    def connection(self, conn_id: int) -> Any | None:
        """The open stream transport with this ``conn_id`` on this loop, or None."""

    def in_owner_thread(self) -> bool:
        """Whether the caller runs on the thread that runs this loop."""


class AcceptingLoop(WorkerLoop, Protocol):
    """What the ring acceptor uses of the ring loop it accepts on."""

    @property
    def ring(self) -> Any: ...

    def handler_ud(self, handler: Callable[[int, int], None]) -> int:
        """A user_data whose completions all go to ``handler``."""

    def kick(self) -> None:
        """Make what was queued go out soon even if nothing else is ready."""

    def retire_accept(self, ud: int) -> None:
        """Cancel multishot accept ``ud``; fds it still delivers are closed."""
