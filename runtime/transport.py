"""Stream transport over a fixed file of a worker's ring.

``RingTransport`` is a standard :class:`asyncio.Transport` (flow control,
half-close, ``BufferedProtocol`` support), so asyncio streams, SSL and any
protocol written for asyncio run on it.  Underneath:

* the socket is registered into the ring's fixed-file table; every ring
  operation on it uses the slot (no fd lookup per operation);
* reading is one multishot receive that the kernel fills from the loop's
  provided-buffer ring; ``pause_reading`` cancels it and holds anything
  already received until ``resume_reading`` (the protocol never sees data
  while paused);
* writes are appended to a buffer and handed to the ring once per loop
  iteration, joined into one send; at most one send is in flight per
  connection, which is what keeps bytes in order;
* per-connection counters (bytes in/out, operations, last activity) feed the
  hot-connection ranking.

The per-event half (receive completions, ``write``/``writelines``, the
flush, send completions, the counters, ``is_closing``) and the lifecycle state
are the compiled ``_loopcore.Stream``, which is this class's base (the
transport IS the stream: one object per connection, its fields in C, no
``__dict__``); the loop's compiled dispatcher routes this connection's
completions straight to it, and it calls the protocol's ``data_received``
itself.  This module keeps everything that happens once per connection or
less: construction, pause/resume, EOF, errors, close, TLS hand-off and
migration.  What the two halves and the loop may call on each
other is declared once in :mod:`ringleader.runtime.contract`.

The transport also knows how to leave its ring and join another's
(:meth:`RingTransport.detach_for_move` / :meth:`RingTransport.attach_moved`, the
:class:`~ringleader.runtime.contract.MovableTransport` seam); the runtime's
migration drives those.  What it does not do: datagrams, or sendfile beyond
asyncio's read-and-send fallback.
"""
from __future__ import annotations

import contextvars
import errno
import logging
import os
import socket
from asyncio import constants, protocols, sslproto, transports, trsock

from . import _loopcore
from .asyncio_compat import server_attach, server_detach
from .contract import TLS_BLOCKER, UD_IGNORE, StreamState, WriteState, protocol_blocker
from .errors import builtin_error
from .stats import ConnStats

logger = logging.getLogger("ringleader.runtime")

_FLOW = transports._FlowControlMixin
_SOCK_NONBLOCK = getattr(socket, "SOCK_NONBLOCK", 0)


def _log_lost_write() -> None:
    # asyncio's words for a write to a lost connection (from the 5th one on)
    logger.warning("socket.send() raised exception.")


_loopcore.set_lost_write_hook(_log_lost_write)
_OPEN, _CLOSING, _LOST, _DONE = (StreamState.OPEN, StreamState.CLOSING, StreamState.LOST,
                                 StreamState.DONE)


class AcceptedSocket:
    """An accepted connection's descriptor whose ``socket.socket`` object is made
    only when someone asks for it (``get_extra_info("socket")``, ``"sockname"``,
    ``"peername"``).  Most connection-per-request servers never ask; making the
    object eagerly cost CPython's getsockname(2) check inside
    ``socket.socket(fileno=)`` plus the object, per connection.

    It owns ``fd`` until :meth:`detach` or :meth:`close`; it is not a socket
    (only what RingTransport needs: fileno, detach, close, socket)."""
    __slots__ = ("fd", "kind", "_sock")

    def __init__(self, fd: int, kind: tuple[int, int, int]) -> None:
        self.fd = fd
        self.kind = kind  # (family, type, proto) of the listener: the accepted socket's
        self._sock: socket.socket | None = None

    def fileno(self) -> int:
        return self.fd

    def socket(self) -> socket.socket:
        """The socket object, made on the first call.  The ring accepted with
        SOCK_NONBLOCK; saying so in the type gives it a zero timeout without a
        syscall."""
        sock = self._sock
        if sock is None:
            if self.fd < 0:
                raise OSError(f"{self!r} is closed")
            family, type_, proto = self.kind
            sock = self._sock = socket.socket(family, type_ | _SOCK_NONBLOCK, proto,
                                              fileno=self.fd)
        return sock

    def detach(self) -> int:
        """Gives up the descriptor (the caller closes it)."""
        fd, self.fd = self.fd, -1
        if self._sock is not None:
            self._sock.detach()
        return fd

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        elif self.fd >= 0:
            os.close(self.fd)
        self.fd = -1

    def __repr__(self) -> str:
        return f"<AcceptedSocket fd={self.fd}>"


class RingTransport(_loopcore.Stream):
    # The compiled base derives from asyncio's _FlowControlMixin (so this is an
    # asyncio.Transport) and holds the protocol (_protocol), context (_context),
    # descriptor (_fd), socket (_sock), server (_server), conn_id, migrations,
    # _migrate_waiter and the stream state.  __dict__ stays for code that sets
    # its own attributes on a transport; nothing here puts anything in it.
    __slots__ = ("__dict__", "__weakref__")
    _start_tls_compatible = True
    # asyncio's default write-buffer limits (_FlowControlMixin._set_write_buffer_limits()
    # with no arguments), shared until set_write_buffer_limits sets this instance's.
    _high_water = 64 * 1024
    _low_water = _high_water // 4
    # loop.sendfile() works through asyncio's read-and-send fallback (the
    # default, UNSUPPORTED, made it raise RuntimeError even with fallback=True).
    _sendfile_compatible = constants._SendfileMode.FALLBACK
    # contract.CoalescingTransport: one iteration's writes leave as one send.
    writes_coalesced = True

    def __init__(self, loop, sock: socket.socket | AcceptedSocket, protocol, waiter=None,
                 extra=None, server=None, nodelay_inherited: bool = False, context=None):
        # _FlowControlMixin.__init__ without its calls: the default limits are
        # the class's (_high_water/_low_water below), set per instance only by
        # set_write_buffer_limits.
        self._extra = extra  # None until get_extra_info stores something
        self._loop = loop
        self._protocol_paused = False
        # "socket", "sockname" and "peername" are looked up when first asked
        # for (get_extra_info): two syscalls per connection saved when nobody asks.
        # An AcceptedSocket arrives non-blocking (the ring accepted it so).
        if type(sock) is AcceptedSocket:
            # Made here only to set TCP_NODELAY the listener did not pass on.
            inet = sock.kind[0] in (socket.AF_INET, socket.AF_INET6)
            real = sock.socket() if inet and not nodelay_inherited else None
        else:
            real = sock
            if sock.gettimeout() != 0:
                sock.setblocking(False)
        # nodelay_inherited: accepted from a listener that has TCP_NODELAY, which
        # Linux copies to the accepted socket (one setsockopt per connection saved).
        if real is not None and not nodelay_inherited and \
                real.family in (socket.AF_INET, socket.AF_INET6):
            try:
                real.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        # (conn_id, migrations 0 and no migration waiter: set by the compiled base)
        self._sock = sock
        self._server = server
        self._fd = fd = sock.fileno()
        self.high_water = self._high_water
        loop.bind_stream(self, loop.install_file(fd), fd)
        # asyncio runs a transport's protocol callbacks in a copy of the
        # context that created it (the caller of create_connection, or the
        # server's accept): request-scoped contextvars must not leak between
        # connections or vanish.
        # (context: the copy the server's accept already made for this connection)
        if context is None:
            context = contextvars.copy_context()
        # (set_protocol's TLS case cannot arise yet: not paused)
        self._bind_protocol(protocol, isinstance(protocol, protocols.BufferedProtocol), context)
        self.last_active = loop.time()
        if server is not None:
            server_attach(server, self)
        # One handle: connection_made, then the receive armed (Stream._start), so
        # no data reaches the protocol before connection_made ran.
        loop.call_soon(self._start, protocol, context=context)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    # ------------------------------------------------------------ ring glue
    def _bind(self, loop, slot: int) -> None:
        self._loop = loop
        loop.bind_stream(self, slot, self._fd)

    def _unbind(self) -> None:
        self._loop.unbind_stream(self, self._fd)

    def _cancel_recv(self) -> None:
        if self.recv_armed:
            self._loop.ring.cancel(self.ud_recv, UD_IGNORE)

    # Called by the compiled stream (see runtime/contract.py, TransportCallbacks).
    def _recv_failed(self, res: int) -> None:
        self._fatal_error(builtin_error(res), "Fatal read error on socket transport")

    def _send_failed(self, res: int) -> None:
        self._fatal_error(builtin_error(res), "Fatal write error on socket transport")

    def _deliver(self, data: bytes) -> None:
        try:
            if self.buffered:
                self._context.run(protocols._feed_data_to_buffered_proto, self._protocol, data)
            else:
                self._context.run(self._protocol.data_received, data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _on_eof(self) -> None:
        if self.state >= _LOST:
            return
        try:
            keep_open = self._context.run(self._protocol.eof_received)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    # -------------------------------------------------------------- reading
    def is_reading(self) -> bool:
        c = self
        return c.reading and c.state == _OPEN

    # asyncio's selector transports keep these two flags; code written against
    # them reads them, so they are offered read-only.
    @property
    def _paused(self) -> bool:
        """True after pause_reading()."""
        return not self.reading

    @property
    def _closing(self) -> bool:
        """True once close() or abort() was called (or the connection was lost)."""
        return self.state != _OPEN

    def pause_reading(self) -> None:
        c = self
        if not c.reading or c.state != _OPEN:
            return
        c.reading = False
        self._cancel_recv()

    def resume_reading(self) -> None:
        c = self
        if c.reading or c.state != _OPEN:
            return
        c.reading = True
        if c.held or c.eof_held:
            self._loop.call_soon(self._release_held)
        c._arm_recv()

    def _release_held(self) -> None:
        c = self
        held = c.held
        while held and c.reading and c.state < _LOST:
            self._deliver(held.pop(0))
        if c.eof_held and c.reading and not held and c.state < _LOST:
            c.eof_held = False
            self._on_eof()

    def set_protocol(self, protocol) -> None:
        self._set_protocol(protocol, self._context)

    def _set_protocol(self, protocol, context) -> None:
        buffered = isinstance(protocol, protocols.BufferedProtocol)
        # The compiled stream calls the protocol's data_received itself, inside
        # this transport's context (see __init__; entered in C, no Context.run
        # frame per call).  A BufferedProtocol is fed through _deliver, which
        # enters it too.
        self._bind_protocol(protocol, buffered, context)
        if self._protocol_paused and isinstance(protocol, sslproto.SSLProtocol):
            # start_tls() while above the high-water mark (writes wait for the
            # next iteration here, so one large write gets there): the paused
            # state carries over to the new protocol, as asyncio's transports
            # do, but SSLProtocol asserts that each resume_writing follows its
            # own pause_writing, so it is paused too.
            protocol.pause_writing()

    def get_protocol(self):
        return self._protocol

    def get_extra_info(self, name, default=None):
        extra = self._extra
        if extra is None:
            extra = self._extra = {}
        if name in extra:
            return extra[name]
        fetch = _LAZY_EXTRA.get(name)
        if fetch is None:
            return default
        sock = self._sock
        try:
            if type(sock) is AcceptedSocket:
                sock = sock.socket()
            value = fetch(sock) if sock is not None else None
        except OSError:
            value = None
        extra[name] = value
        return value

    # -------------------------------------------------------------- writing
    # pause_writing/resume_writing run in the transport's context like its
    # other callbacks (uvloop does; asyncio's own transports run them in the
    # writer's).  The mixin's methods report the protocol's own errors to the
    # loop, so a RuntimeError here can only be Context.run refusing a context
    # that is already entered: a write from one of this transport's callbacks,
    # which is in the right context already.
    def _maybe_pause_protocol(self) -> None:
        try:
            self._context.run(_FLOW._maybe_pause_protocol, self)
        except RuntimeError:
            _FLOW._maybe_pause_protocol(self)

    def _maybe_resume_protocol(self) -> None:
        try:
            self._context.run(_FLOW._maybe_resume_protocol, self)
        except RuntimeError:
            _FLOW._maybe_resume_protocol(self)

    # write, writelines, get_write_buffer_size and _flush are the compiled base's.

    def match_replies(self, reader, need_more, waiters, other, aside=None) -> None:
        """contract.ReplyMatchingTransport: received bytes go to ``reader`` and
        each reply to the oldest future of ``waiters``, in C; ``reader=None``
        gives them back to ``data_received``."""
        self._set_fifo(None if reader is None else (
            reader.feed, reader.gets, need_more, waiters, waiters.popleft, other, aside))

    def set_write_buffer_limits(self, high=None, low=None) -> None:
        _FLOW.set_write_buffer_limits(self, high, low)
        c = self
        c.high_water = self._high_water
        c.may_be_paused = True  # the compiled send path asks _maybe_resume_protocol next time

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        c = self
        if c.state != _OPEN or c.write_state != WriteState.OPEN:
            return
        c.write_state = WriteState.EOF_PENDING
        if c.inflight is None and not c.wbuf:
            self._do_shutdown()

    def _do_shutdown(self) -> None:
        c = self
        c.write_state = WriteState.SHUT
        self._loop.ring.shutdown(c.slot, socket.SHUT_WR, UD_IGNORE, fixed=True)

    # -------------------------------------------------------------- closing
    # close() and _finish() are the compiled base's (streamobj.c).

    def abort(self) -> None:
        self._force_close(None)

    def _fatal_error(self, exc, message="Fatal error on transport") -> None:
        if isinstance(exc, OSError) and exc.errno in (errno.ECONNRESET, errno.EPIPE,
                                                      errno.ECONNABORTED, errno.ETIMEDOUT):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler({
                "message": message, "exception": exc, "transport": self, "protocol": self._protocol})
        self._force_close(exc)

    def _force_close(self, exc) -> None:
        c = self
        if c.state >= _LOST:
            return
        c.wbuf.clear()
        c.wsize = 0
        if c.held:
            c.held.clear()
        c.state = _CLOSING
        c.reading = False
        self._finish(exc)

    def _call_connection_lost(self, exc) -> None:
        c = self
        if c.state == _DONE:
            return
        c.state = _DONE
        try:
            self._protocol.connection_lost(exc)
        finally:
            sock, self._sock = self._sock, None
            loop = self._loop
            if loop.is_closed():
                sock.close()
            else:
                # The close(2) rides with the next batch of SQEs: no syscall of its
                # own (queued in C: no cffi call, which drops and retakes the GIL).
                c._close_fd(sock.detach())
            # _protocol becomes None and the stream no longer calls back into us
            c._detach_objects()
            server = self._server
            if server is not None:
                self._server = None
                # asyncio's Server is not thread-safe: a connection that migrated
                # away from the server's worker reports its end on that worker.
                home = server._loop
                if home is self._loop or home.is_closed():
                    server_detach(server, self)
                else:
                    try:
                        home.call_soon_threadsafe(server_detach, server, self)
                    except RuntimeError:  # the home loop closed meanwhile
                        pass

    # (An unclosed transport's ResourceWarning is the compiled base's
    # finalizer: no Python frame when a transport is freed.)

    def __repr__(self) -> str:
        state = StreamState(self.state).name.lower()
        return (f"<RingTransport #{getattr(self, 'conn_id', '?')} "
                f"worker={getattr(self._loop, 'worker_id', '?')} slot={self.slot} {state}>")

    # ------------------------------------------------------------ telemetry
    # bytes_in, bytes_out, ops, last_active and migrating are the compiled
    # base's fields (updated per completion there).

    @property
    def migratable(self) -> bool:
        """Whether it could move to another worker right now (what the
        rebalancer filters its candidates by): not closing or moving, no TLS,
        and its protocol, if it has a ``migration_blocker()``, names no reason."""
        return self.migration_blocker() is None

    def conn_stats(self) -> ConnStats:
        c = self
        peer = self.get_extra_info("peername")
        return ConnStats(conn_id=self.conn_id, worker=self._loop.worker_id, slot=c.slot,
                         peer=str(peer), bytes_in=c.bytes_in, bytes_out=c.bytes_out,
                         ops=c.ops, last_active=c.last_active, migrations=self.migrations,
                         migratable=self.migratable)

    # ----------------------------------------------------------- migration
    # The steps a move is made of; the order, the checks and every failure path
    # live in one place, runtime/migration.py (the seam: contract.MovableTransport).
    # begin_migration (old worker: stop receiving, let the in-flight send
    # finish), then either abort_migration (stay) or detach_for_move (leave the
    # old loop, keep the slot number for the hand-over), then attach_moved on the
    # new worker (or on the old one again when the hand-over failed).
    def migration_blocker(self, moving: bool = False) -> str | None:
        """Why this transport cannot move now, or None.  ``moving``: asked by
        the move already under way (its own ``migrating`` flag is no reason).
        Reads state only, so any thread may ask."""
        c = self
        if c.state >= _LOST:
            return "it is closed"
        if c.state == _CLOSING and not moving:
            # (Closed while the move prepares: the new worker sends what is
            # buffered, then closes.)
            return "it is closing"
        if c.migrating and not moving:
            return "it is already migrating"
        return protocol_blocker(self._protocol)

    def begin_migration(self, waiter) -> None:
        """Stop receiving and wait (``waiter``) until no send is in flight."""
        self.migrating = True
        self._migrate_waiter = waiter
        self._cancel_recv()
        self._migration_progress()

    def _migration_progress(self) -> None:
        waiter = self._migrate_waiter
        if waiter is None or waiter.done():
            return
        c = self
        if c.state >= _LOST:
            waiter.set_exception(ConnectionError("connection lost while migrating"))
        elif not c.recv_armed and c.inflight is None:
            waiter.set_result(None)

    def detach_for_move(self) -> int:
        """Leave the current loop (quiescent); returns the slot to hand over.
        Until attach_moved no ring operation may be made for it (slot -1)."""
        c = self
        slot = c.slot
        self._unbind()
        c.slot = -1
        self._migrate_waiter = None
        return slot

    def abort_migration(self) -> None:
        """The move stops before detach_for_move: carry on here as if it never began
        (writes made meanwhile go out, bytes held meanwhile are delivered)."""
        self.migrating = False
        self._migrate_waiter = None
        if self.state < _LOST:
            self._resume_here(self._loop)

    def attach_moved(self, loop, slot: int, moved: bool = True) -> None:
        """Join ``loop`` (running on this thread) with our file in ``slot``:
        the new worker's, or (``moved=False``) the old one's after a failed
        hand-over.  The protocol's ``connection_migrated(transport, loop)``
        runs first; if it raises, the protocol cannot run here, so the
        connection is failed on this loop (its protocol sees connection_lost)
        and the error propagates to the move."""
        self._bind(loop, slot)
        self.migrating = False
        if moved:
            self.migrations += 1
        hook = getattr(self._protocol, "connection_migrated", None)
        if hook is not None:
            try:
                hook(self, loop)
            except BaseException as exc:
                self._force_close(exc)
                raise
        self._resume_here(loop)

    def _resume_here(self, loop) -> None:
        c = self
        if c.held or c.eof_held:
            loop.call_soon(self._release_held)
        if c.state == _CLOSING and not c.wbuf and c.inflight is None:
            self._finish(None)
            return
        if c.wbuf:
            c._mark_dirty()
        c._arm_recv()


def accept_handler(loop, core, protocol_factory, context, server, kind, slow):
    """A listener's accept handler that sets up each accepted connection in C
    (``_loopcore.Acceptor``, runtime/loopcore/accept.c): what
    ``RingTransport.__init__`` does for an accepted socket, without its
    Python frames.  ``slow(res, flags)`` handles errors, the multishot
    accept's last completion (re-arming) and debug mode.  Only for listeners
    whose accepted sockets need nothing set per socket (no TLS; TCP_NODELAY
    inherited from the listener or not TCP)."""
    return _loopcore.Acceptor(
        core=core, loop=loop, cls=RingTransport, factory=protocol_factory, context=context,
        server=server, make_sock=AcceptedSocket, install_file=loop.install_file,
        bind_stream=loop.bind_stream, attach=server_attach,
        buffered_cls=protocols.BufferedProtocol, slow=slow,
        on_error=lambda sock, exc: accept_failed(loop, sock, exc), kind=kind,
        high_water=RingTransport._high_water)


def accept_failed(loop, sock, exc) -> None:
    """An accepted connection could not be set up: close it (a socket, an
    AcceptedSocket or a bare fd) and report ``exc`` to the loop."""
    if isinstance(sock, int):
        os.close(sock)
    else:
        sock.close()
    loop.call_exception_handler({"message": "error creating a transport for an accepted "
                                            "connection", "exception": exc})


_LAZY_EXTRA = {"socket": trsock.TransportSocket, "sockname": socket.socket.getsockname,
               "peername": socket.socket.getpeername}


def _set_result_unless_cancelled(fut, result) -> None:
    if not fut.cancelled():
        fut.set_result(result)
