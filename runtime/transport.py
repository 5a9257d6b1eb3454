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

The transport also knows how to leave its ring and join another's
(:meth:`RingTransport._detach` / :meth:`RingTransport._attach`); the runtime's
migration drives those.  What it does not do: datagrams, or sendfile beyond
asyncio's read-and-send fallback.
"""
from __future__ import annotations

import errno
import itertools
import logging
import socket
import warnings
from asyncio import constants, protocols, sslproto, transports, trsock

from ..uring import consts, error_from_result
from .stats import ConnStats

logger = logging.getLogger("ringleader.runtime")

_F_MORE = consts.CQE_F_MORE
_F_BUFFER = consts.CQE_F_BUFFER
_ids = itertools.count(1)


class RingTransport(transports._FlowControlMixin, transports.Transport):
    # Slots for everything the hot path touches: a plain instance dict with
    # this many keys loses CPython's fast attribute path, and each completion
    # reads a dozen attributes (about 2x faster per call in a microbenchmark).
    # __dict__ stays, so code that hangs extra attributes on a transport works.
    __slots__ = ("conn_id", "_sock", "_server", "_protocol", "_buffered", "_closing",
                 "_conn_lost", "_reading", "_recv_armed", "_held", "_eof_held", "_wbuf",
                 "_wsize", "_inflight", "_dirty", "_write_eof", "_shut_wr", "_lost_called",
                 "bytes_in", "bytes_out", "ops", "migrations", "migrating", "last_active",
                 "_ring", "_bufring", "_slot", "_telemetry", "_ud_recv", "_ud_send",
                 "_migrate_waiter", "__dict__", "__weakref__")
    _start_tls_compatible = True
    # loop.sendfile() works through asyncio's read-and-send fallback (the
    # default, UNSUPPORTED, made it raise RuntimeError even with fallback=True).
    _sendfile_compatible = constants._SendfileMode.FALLBACK

    def __init__(self, loop, sock: socket.socket, protocol, waiter=None, extra=None, server=None):
        super().__init__(extra, loop)
        self._extra["socket"] = trsock.TransportSocket(sock)
        try:
            self._extra["sockname"] = sock.getsockname()
        except OSError:
            self._extra["sockname"] = None
        if "peername" not in self._extra:
            try:
                self._extra["peername"] = sock.getpeername()
            except OSError:
                self._extra["peername"] = None
        sock.setblocking(False)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self.conn_id = next(_ids)
        self._sock = sock
        self._server = server
        self._protocol = None
        self._buffered = False
        self.set_protocol(protocol)
        self._closing = False
        self._conn_lost = 0
        self._reading = True
        self._recv_armed = False
        self._held: list[bytes] = []      # received while paused
        self._eof_held = False
        self._wbuf: list[bytes] = []
        self._wsize = 0
        self._inflight = None             # the bytes (or view) the kernel is sending
        self._dirty = False
        self._write_eof = False
        self._shut_wr = False
        self._lost_called = False
        self.bytes_in = 0
        self.bytes_out = 0
        self.ops = 0
        self.migrations = 0
        self.migrating = False
        self._bind(loop, loop._ring.files.install(sock.fileno()))
        self.last_active = loop.time()
        if server is not None:
            server._attach()
        loop.call_soon(self._protocol.connection_made, self)
        loop.call_soon(self._arm_recv)
        if waiter is not None:
            loop.call_soon(_set_result_unless_cancelled, waiter, None)

    # ------------------------------------------------------------ ring glue
    def _bind(self, loop, slot: int) -> None:
        self._loop = loop
        self._ring = loop._ring
        self._bufring = loop._bufring
        self._slot = slot
        self._telemetry = loop._telemetry
        self._ud_recv = loop._alloc_ud(self._on_recv)
        self._ud_send = loop._alloc_ud(self._on_send)
        loop._conns[self.conn_id] = self

    def _unbind(self) -> None:
        loop = self._loop
        loop._free_ud(self._ud_recv)
        loop._free_ud(self._ud_send)
        loop._conns.pop(self.conn_id, None)

    def _arm_recv(self) -> None:
        if self._reading and not self._recv_armed and not self._closing and not self.migrating:
            self._ring.recv_select(self._slot, self._bufring, self._ud_recv, multishot=True, fixed=True)
            self._recv_armed = True

    def _cancel_recv(self) -> None:
        if self._recv_armed:
            self._ring.cancel(self._ud_recv, self._loop._oneshot(_ignore))

    def _on_recv(self, res: int, flags: int, data: bytes | None = None) -> None:
        # The loop's harvest has already copied the bytes out of the provided
        # buffer and recycled it (Ring.enter_bufs); ``data`` is ours to keep.
        if not flags & _F_MORE:
            self._recv_armed = False
        if res > 0:
            if self._telemetry:
                self.bytes_in += res
                self.ops += 1
                self.last_active = self._loop._now
            if self._conn_lost:
                return
            if not self._reading or self.migrating or self._held:
                # Paused, moving, or older bytes still queued: keep the order.
                self._held.append(data)
            elif self._buffered:
                self._deliver(data)
            else:
                # _deliver inlined for the common (non-buffered) protocol: this
                # runs once per received chunk.
                try:
                    self._protocol.data_received(data)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")
        elif res == 0:
            if self._reading and not self.migrating:
                self._on_eof()
            else:
                self._eof_held = True
                if self.migrating and not self._recv_armed:
                    self._migration_progress()  # the move waits for this receive to end
            return
        elif res == -errno.ENOBUFS:
            self._bufring.enobufs += 1
        elif res == -errno.ECANCELED:
            pass
        else:
            self._fatal_error(error_from_result(res, "recv", self._slot, True),
                              "Fatal read error on socket transport")
            return
        if not self._recv_armed:
            if self.migrating:
                self._migration_progress()
            else:
                self._arm_recv()

    def _deliver(self, data: bytes) -> None:
        try:
            if self._buffered:
                protocols._feed_data_to_buffered_proto(self._protocol, data)
            else:
                self._protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _on_eof(self) -> None:
        if self._conn_lost:
            return
        try:
            keep_open = self._protocol.eof_received()
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.eof_received() call failed.")
            return
        if not keep_open:
            self.close()

    # -------------------------------------------------------------- reading
    def is_reading(self) -> bool:
        return self._reading and not self._closing

    def pause_reading(self) -> None:
        if not self._reading or self._closing:
            return
        self._reading = False
        self._cancel_recv()

    def resume_reading(self) -> None:
        if self._reading or self._closing:
            return
        self._reading = True
        if self._held or self._eof_held:
            self._loop.call_soon(self._release_held)
        self._arm_recv()

    def _release_held(self) -> None:
        while self._held and self._reading and not self._conn_lost:
            self._deliver(self._held.pop(0))
        if self._eof_held and self._reading and not self._held and not self._conn_lost:
            self._eof_held = False
            self._on_eof()

    def set_protocol(self, protocol) -> None:
        self._buffered = isinstance(protocol, protocols.BufferedProtocol)
        self._protocol = protocol
        if self._protocol_paused and isinstance(protocol, sslproto.SSLProtocol):
            # start_tls() while above the high-water mark (writes wait for the
            # next iteration here, so one large write gets there): the paused
            # state carries over to the new protocol, as asyncio's transports
            # do, but SSLProtocol asserts that each resume_writing follows its
            # own pause_writing, so it is paused too.
            protocol.pause_writing()

    def get_protocol(self):
        return self._protocol

    # -------------------------------------------------------------- writing
    def write(self, data) -> None:
        if type(data) is not bytes:
            if not isinstance(data, (bytes, bytearray, memoryview)):
                raise TypeError(f"data argument must be a bytes-like object, "
                                f"not {type(data).__name__!r}")
            # Copy mutable buffers: the caller may reuse them before the kernel reads.
            data = bytes(data)
        if self._write_eof:
            raise RuntimeError("Cannot call write() after write_eof()")
        if self._conn_lost:
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return
        if not data:
            return
        self._wbuf.append(data)
        self._wsize += len(data)
        if not self._dirty and self._inflight is None and not self.migrating:
            self._dirty = True
            self._loop._dirty.append(self)
        if self._wsize > self._high_water:  # the test _maybe_pause_protocol starts with
            self._maybe_pause_protocol()

    def _flush(self) -> None:
        """Called by the loop once per iteration, just before it enters the kernel."""
        self._dirty = False
        if self._inflight is not None or not self._wbuf or self._conn_lost or self.migrating:
            return
        buf = self._wbuf
        data = buf[0] if len(buf) == 1 else b"".join(buf)
        buf.clear()
        # _inflight keeps the bytes alive for the kernel until _on_send (or, if
        # the transport dies first, _finish hands them to the ring).
        self._inflight = data
        self._ring.send_fixed(self._slot, data, self._ud_send)

    def _on_send(self, res: int, flags: int) -> None:
        if res < 0:
            self._inflight = None
            if self._conn_lost:
                return
            self._fatal_error(error_from_result(res, "send", self._slot, True),
                              "Fatal write error on socket transport")
            return
        if self._telemetry:
            self.bytes_out += res
            self.ops += 1
            self.last_active = self._loop._now
        self._wsize -= res
        data = self._inflight
        if res < len(data):
            # Short send: resend the rest before anything queued after it.
            rest = memoryview(data)[res:]
            self._inflight = rest
            # (Also while a move prepares: it waits for this send to finish.)
            if not self._conn_lost:
                self._ring.send_fixed(self._slot, rest, self._ud_send)
            return
        self._inflight = None
        if self._conn_lost:
            return
        if self._protocol_paused:  # the test _maybe_resume_protocol starts with
            self._maybe_resume_protocol()
        if self._wbuf:
            if not self._dirty and not self.migrating:
                self._dirty = True
                self._loop._dirty.append(self)
        elif self.migrating:
            self._migration_progress()
        elif self._closing:
            self._finish(None)
        elif self._write_eof and not self._shut_wr:
            self._do_shutdown()

    def get_write_buffer_size(self) -> int:
        return self._wsize

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._closing or self._write_eof:
            return
        self._write_eof = True
        if self._inflight is None and not self._wbuf:
            self._do_shutdown()

    def _do_shutdown(self) -> None:
        self._shut_wr = True
        self._ring.shutdown(self._slot, socket.SHUT_WR, self._loop._oneshot(_ignore), fixed=True)

    # -------------------------------------------------------------- closing
    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        if self._closing:
            return
        self._closing = True
        self._reading = False
        if self.migrating:
            return  # the new worker finishes the close once the file arrives
        if self._inflight is None and not self._wbuf:
            self._conn_lost += 1
            self._finish(None)

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
        if self._conn_lost:
            return
        self._wbuf.clear()
        self._wsize = 0
        self._held.clear()
        self._closing = True
        self._reading = False
        self._conn_lost += 1
        self._finish(exc)

    def _finish(self, exc) -> None:
        """Release the ring resources now; tell the protocol on the next iteration."""
        if self._slot < 0:
            return
        loop = self._loop
        if not loop.is_closed():
            # Cancel whatever is still in flight (recv, a send to a dead peer)
            # by user_data, not by slot: the slot is emptied right now and may
            # be reused before the cancel reaches the kernel.  The kernel keeps
            # its own file references until those operations complete; their
            # late completions find no handler (the loop recycles buffers).
            if self._recv_armed:
                self._ring.cancel(self._ud_recv, loop._oneshot(_ignore))
            if self._inflight is not None:
                self._ring.cancel(self._ud_send, loop._oneshot(_ignore))
                # send_fixed left the bytes' lifetime to us: let the ring hold
                # them until that send's last completion is reaped.
                self._ring._keep[self._ud_send] = self._inflight
            try:
                self._ring.files.release(self._slot)
            except OSError as e:  # pragma: no cover - the table is ours; log, don't mask exc
                logger.error("releasing fixed slot %d failed: %s", self._slot, e)
        self._slot = -1
        self._unbind()
        if not self._conn_lost:
            self._conn_lost += 1
        loop.call_soon(self._call_connection_lost, exc)
        if self.migrating:
            # A move in progress waits for this transport to go quiet; it never
            # will now (e.g. the peer reset it): fail the move instead of hanging.
            self._migration_progress()

    def _call_connection_lost(self, exc) -> None:
        if self._lost_called:
            return
        self._lost_called = True
        try:
            self._protocol.connection_lost(exc)
        finally:
            self._sock.close()
            self._sock = None
            self._protocol = None
            server = self._server
            if server is not None:
                self._server = None
                # asyncio's Server is not thread-safe: a connection that migrated
                # away from the server's worker reports its end on that worker.
                home = server._loop
                if home is self._loop or home.is_closed():
                    server._detach()
                else:
                    try:
                        home.call_soon_threadsafe(server._detach)
                    except RuntimeError:  # the home loop closed meanwhile
                        pass

    def __del__(self, _warn=warnings.warn):
        if getattr(self, "_sock", None) is not None and not getattr(self, "_lost_called", True):
            _warn(f"unclosed transport {self!r}", ResourceWarning, source=self)

    def __repr__(self) -> str:
        state = "closing" if self._closing else "open"
        return (f"<RingTransport #{self.conn_id} worker={getattr(self._loop, 'worker_id', '?')} "
                f"slot={self._slot} {state}>")

    # ------------------------------------------------------------ telemetry
    @property
    def migratable(self) -> bool:
        """Whether it could move to another worker right now (what the
        rebalancer filters its candidates by): not closing or moving, no TLS,
        and its protocol, if it has a ``migration_blocker()``, names no reason."""
        return self._migration_blocker() is None

    def conn_stats(self) -> ConnStats:
        peer = self._extra.get("peername")
        return ConnStats(conn_id=self.conn_id, worker=self._loop.worker_id, slot=self._slot,
                         peer=str(peer), bytes_in=self.bytes_in, bytes_out=self.bytes_out,
                         ops=self.ops, last_active=self.last_active, migrations=self.migrations,
                         migratable=self.migratable)

    # ----------------------------------------------------------- migration
    # The steps a move is made of; the order, the checks and every failure path
    # live in one place, runtime/migration.py.  _begin_migration (old worker:
    # stop receiving, let the in-flight send finish), then either
    # _abort_migration (stay) or _detach (leave the old loop, keep the slot
    # number for the hand-over), then _attach on the new worker (or on the old
    # one again when the hand-over failed).
    def _migration_blocker(self, moving: bool = False) -> str | None:
        """Why this transport cannot move now, or None.  ``moving``: asked by
        the move already under way (its own ``migrating`` flag is no reason).
        Reads state only, so any thread may ask."""
        if self._conn_lost:
            return "it is closed"
        if self._closing and not moving:
            # (Closed while the move prepares: the new worker sends what is
            # buffered, then closes.)
            return "it is closing"
        if self.migrating and not moving:
            return "it is already migrating"
        protocol = self._protocol
        if isinstance(protocol, sslproto.SSLProtocol):
            # asyncio's SSLProtocol keeps its loop (callbacks, timers) and has
            # no hand-over hook: a TLS connection stays on its worker.
            return TLS_BLOCKER
        check = getattr(protocol, "migration_blocker", None)
        return check() if check is not None else None

    def _begin_migration(self, waiter) -> None:
        """Stop receiving and wait (``waiter``) until no send is in flight."""
        self.migrating = True
        self._migrate_waiter = waiter
        if self._recv_armed:
            self._ring.cancel(self._ud_recv, self._loop._oneshot(_ignore))
        self._migration_progress()

    def _migration_progress(self) -> None:
        waiter = getattr(self, "_migrate_waiter", None)
        if waiter is None or waiter.done():
            return
        if self._conn_lost:
            waiter.set_exception(ConnectionError("connection lost while migrating"))
        elif not self._recv_armed and self._inflight is None:
            waiter.set_result(None)

    def _detach(self) -> int:
        """Leave the current loop (quiescent); returns the slot to hand over.
        Until _attach no ring operation may be made for it (slot -1)."""
        slot = self._slot
        self._unbind()
        self._slot = -1
        self._migrate_waiter = None
        return slot

    def _abort_migration(self) -> None:
        """The move stops before _detach: carry on here as if it never began
        (writes made meanwhile go out, bytes held meanwhile are delivered)."""
        self.migrating = False
        self._migrate_waiter = None
        if not self._conn_lost:
            self._resume_here(self._loop)

    def _attach(self, loop, slot: int, moved: bool = True) -> None:
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
        if self._held or self._eof_held:
            loop.call_soon(self._release_held)
        if self._closing and not self._wbuf and self._inflight is None:
            self._conn_lost += 1
            self._finish(None)
            return
        if self._wbuf and not self._dirty and self._inflight is None:
            self._dirty = True
            loop._dirty.append(self)
        self._arm_recv()


TLS_BLOCKER = ("it carries TLS (asyncio's SSLProtocol is bound to its loop); "
               "TLS connections cannot migrate")


def _ignore(res: int, flags: int) -> None:
    pass


def _set_result_unless_cancelled(fut, result) -> None:
    if not fut.cancelled():
        fut.set_result(result)
