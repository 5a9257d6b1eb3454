"""The epoll fallback's stream transport: asyncio's socket transport, counted and movable.

What it does: :class:`EpollTransport` is asyncio's selector socket transport
(so reads, writes, flow control, half-close, BufferedProtocol, TLS underneath
``SSLProtocol`` and sendfile behave exactly as asyncio's) plus

* per-connection counters for :class:`~.stats.ConnStats` (bytes in and out,
  operations, last activity), kept in plain attributes and read from any
  thread;
* the steps :class:`~.migration.Migration` drives to move it to another
  worker's loop, with the guarantees the ring's transport gives: receiving
  stops on the old loop (bytes arriving meanwhile wait in the kernel's socket
  buffer and are read first on the new loop), writes made while it moves are
  held and sent from the new loop in order, a close or ``write_eof`` made
  meanwhile is carried out there, and a move that stops early leaves it
  working where it was.

What it does not do: fixed files, slots or MSG_RING (``slot`` is reported as
-1); a TLS connection is refused a move, as on the ring (asyncio's SSLProtocol
keeps its loop).
"""
from __future__ import annotations

import itertools
from asyncio import protocols, selector_events

from .asyncio_compat import server_detach
from .stats import ConnStats
from .contract import protocol_blocker

__all__ = ["EpollTransport"]

_ids = itertools.count(1)


_Base = selector_events._SelectorSocketTransport


class EpollTransport(_Base):
    """asyncio's socket transport with counters and migration steps (module docstring)."""

    # asyncio reads up to 256 KiB per recv(): glibc serves a bytes object that
    # size with mmap, then mremap to shrink it and munmap to free it, three
    # syscalls per read (strace, echo under load).  64 KiB comes from the heap.
    max_size = 64 * 1024

    def __init__(self, loop, sock, protocol, waiter=None, extra=None, server=None):
        self.conn_id = next(_ids)
        self.bytes_in = 0
        self.bytes_out = 0
        self.ops = 0
        self.last_active = 0.0
        self.migrations = 0
        self.migrating = False
        self._migrate_waiter = None
        self._held: list[bytes] = []      # writes made while moving, in order
        self._held_size = 0
        self._eof_held = False            # write_eof() while moving
        self._close_held = False          # close() while moving
        self._abort_held: tuple | None = None   # (exc,): abort() while moving
        self._eof_received = False
        super().__init__(loop, sock, protocol, waiter, extra, server)
        self._home = loop                 # the loop whose Server counts this connection
        loop._conns[self.conn_id] = self

    def __repr__(self) -> str:
        state = "closed" if self._sock is None else "closing" if self._closing else "open"
        return (f"<EpollTransport #{self.conn_id} worker="
                f"{getattr(self._loop, 'worker_id', '?')} fd={self._sock_fd} {state}>")

    # ------------------------------------------------------------ counting
    def set_protocol(self, protocol) -> None:
        self._buffered = isinstance(protocol, protocols.BufferedProtocol)
        super().set_protocol(protocol)

    def _read_ready(self) -> None:
        # asyncio's two reads (plain and BufferedProtocol) in one, with the counters.
        if self._conn_lost:
            return
        protocol = self._protocol
        data = None
        try:
            if self._buffered:
                buf = protocol.get_buffer(-1)
                if not len(buf):
                    raise RuntimeError("get_buffer() returned an empty buffer")
                n = self._sock.recv_into(buf)
            else:
                data = self._sock.recv(self.max_size)
                n = len(data)
        except (BlockingIOError, InterruptedError):
            return
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal read error on socket transport")
            return
        if not n:
            self._read_ready__on_eof()
            return
        loop = self._loop
        if loop._telemetry:
            self.bytes_in += n
            self.ops += 1
            self.last_active = loop._sel.woke   # the loop's clock when this wake-up began
        try:
            if data is None:
                protocol.buffer_updated(n)
            else:
                protocol.data_received(data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: the protocol's data_received() or "
                                   "buffer_updated() failed.")

    def _read_ready__on_eof(self) -> None:
        self._eof_received = True   # a kept-open connection must not read EOF again after a move
        super()._read_ready__on_eof()

    def _add_reader(self, fd, callback, *args) -> None:
        # (asyncio arms the first read with call_soon: not while moving)
        if not self.migrating:
            super()._add_reader(fd, callback, *args)

    def write(self, data) -> None:
        if self.migrating:
            self._hold(data)
            return
        if data and not self._conn_lost:
            loop = self._loop
            if loop._telemetry:
                self.bytes_out += len(data)
                self.ops += 1
                # as on the ring (a send completion counts): idle means neither way
                self.last_active = loop._sel.woke
        _Base.write(self, data)

    def writelines(self, list_of_data) -> None:
        self.write(b"".join(list_of_data))

    def _hold(self, data) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, not {type(data).__name__!r}")
        if self._eof or self._eof_held:
            raise RuntimeError("Cannot call write() after write_eof()")
        if not data or self._conn_lost:
            return
        self._held.append(bytes(data))
        self._held_size += len(data)
        self._maybe_pause_protocol()

    def get_write_buffer_size(self) -> int:
        return super().get_write_buffer_size() + self._held_size

    def write_eof(self) -> None:
        if self.migrating:
            if not self._closing:
                self._eof_held = True
            return
        super().write_eof()

    def close(self) -> None:
        if self.migrating:
            # Carried out where the connection lands (after the held writes).
            self._close_held = True
            return
        super().close()

    def _force_close(self, exc) -> None:
        if self.migrating and not self._conn_lost:
            # abort() while moving: done where the move ends (the new loop
            # owns the socket from the hand-over on); the move then fails.
            if self._abort_held is None:
                self._abort_held = (exc,)
            return
        super()._force_close(exc)

    def pause_reading(self) -> None:
        if self.migrating:
            self._paused = True   # the reader is re-armed (or not) where it lands
            return
        super().pause_reading()

    def resume_reading(self) -> None:
        if self.migrating:
            self._paused = False
            return
        super().resume_reading()

    def _call_connection_lost(self, exc) -> None:
        loop = self._loop
        loop._conns.pop(self.conn_id, None)
        server, home = self._server, self._home
        if server is not None and home is not loop:
            # The listening Server lives on the loop that accepted us: tell it there.
            self._server = None
            try:
                home.call_soon_threadsafe(server_detach, server, self)
            except RuntimeError:   # that loop closed meanwhile
                pass
        super()._call_connection_lost(exc)

    # ----------------------------------------------------------- telemetry
    @property
    def migratable(self) -> bool:
        """Whether it could move to another worker right now (see RingTransport.migratable)."""
        return self.migration_blocker() is None

    def conn_stats(self) -> ConnStats:
        peer = self.get_extra_info("peername")
        return ConnStats(conn_id=self.conn_id, worker=self._loop.worker_id, slot=-1,
                         peer=str(peer), bytes_in=self.bytes_in, bytes_out=self.bytes_out,
                         ops=self.ops, last_active=self.last_active, migrations=self.migrations,
                         migratable=self.migratable)

    # ----------------------------------------------------------- migration
    # The steps of runtime/migration.py (declared in contract.MovableTransport);
    # the order and every failure path are there.
    def migration_blocker(self, moving: bool = False) -> str | None:
        if self._sock is None or self._conn_lost:
            return "it is closed"
        if self._abort_held is not None:
            return "it was aborted"
        if (self._closing or self._close_held) and not moving:
            return "it is closing"
        if self.migrating and not moving:
            return "it is already migrating"
        return protocol_blocker(self._protocol)

    def begin_migration(self, waiter) -> None:
        """Stop reading and writing on this loop.  A send on epoll is a plain
        syscall that already returned, so nothing is in flight: quiescent now."""
        self.migrating = True
        loop = self._loop
        loop._remove_reader(self._sock_fd)
        loop._remove_writer(self._sock_fd)
        self._migrate_waiter = waiter
        if not waiter.done():
            waiter.set_result(None)

    def _migration_progress(self) -> None:
        """Nothing to wait for on epoll (see begin_migration)."""

    def detach_for_move(self) -> int:
        """Leave the current loop; returns the fd to hand over."""
        loop = self._loop
        loop._conns.pop(self.conn_id, None)
        if loop._transports.get(self._sock_fd) is self:
            del loop._transports[self._sock_fd]
        self._migrate_waiter = None
        return self._sock_fd

    def abort_migration(self) -> None:
        """The move stops before detach_for_move: carry on here as if it never began."""
        self._migrate_waiter = None
        self._resume_here(self._loop)

    def attach_moved(self, loop, fd: int, moved: bool = True) -> None:
        """Join ``loop`` (running on this thread) with our socket ``fd``: the
        new worker's, or (``moved=False``) the old one's after a failed
        hand-over.  ``connection_migrated(transport, loop)`` runs first; if it
        raises, the connection fails here and the error propagates."""
        self._loop = loop
        loop._transports[fd] = self
        loop._conns[self.conn_id] = self
        if self._abort_held is not None:
            # aborted while moving: closed here, and the move reports it
            self._resume_here(loop)
            raise ConnectionAbortedError("the connection was aborted while it moved")
        if moved:
            self.migrations += 1
        hook = getattr(self._protocol, "connection_migrated", None)
        if hook is not None:
            try:
                hook(self, loop)
            except BaseException as exc:
                self.migrating = False
                self._force_close(exc)
                raise
        self._resume_here(loop)

    def _resume_here(self, loop) -> None:
        self.migrating = False
        if self._abort_held is not None:
            (exc,), self._abort_held = self._abort_held, None
            self._held, self._held_size = [], 0
            self._force_close(exc)
            return
        if self._conn_lost:
            return
        held, self._held, self._held_size = self._held, [], 0
        for data in held:
            self.write(data)   # in order, behind what asyncio's buffer already holds
        if self._buffer:
            loop._add_writer(self._sock_fd, self._write_ready)
        if self._eof_held:
            self._eof_held = False
            self.write_eof()
        if self._close_held:
            self._close_held = False
            self.close()
        elif not self._closing and not self._paused and not self._eof_received:
            loop._add_reader(self._sock_fd, self._read_ready)

