"""Read and write pipe transports on the ring (pipes, ptys, character devices, sockets).

``connect_read_pipe`` / ``connect_write_pipe`` give asyncio's
``ReadTransport`` / ``WriteTransport`` semantics (``pause_reading``,
``resume_reading``, write-buffer flow control, ``write_eof``, EOF and
``EIO`` from a pty whose other side closed ending the connection) with the
I/O as ring operations: one ``read`` in flight while reading; ``write``
first tries the pipe directly, as asyncio does (the bytes are in the pipe
when it returns if they fit), and what does not fit goes out as one ring
``write`` in flight with everything written meanwhile queued behind it.  A file that
answers ``EAGAIN`` (a tty without non-blocking support in io_uring) is
polled on the ring and the operation retried.  A write pipe also watches
for its reader going away (``POLLERR`` on the write end), as asyncio does.

The loop-facing half is :class:`PipeOpsMixin` (``_make_read_pipe_transport``
and ``_make_write_pipe_transport``, which asyncio's ``connect_*_pipe`` call).
Subprocess pipes are these same transports (:mod:`ringleader.runtime.subprocess`).
"""
from __future__ import annotations

import contextvars
import enum
import errno
import logging
import os
import stat
from asyncio import constants, transports

from ..uring import consts
from .contract import UD_IGNORE
from .endpoint import FileEndpoint, set_result_unless_cancelled
from .errors import builtin_error

logger = logging.getLogger("ringleader.runtime")


class PipeState(enum.IntEnum):
    """``OPEN -> CLOSING`` (a write pipe flushing before it ends) ``-> CLOSED``
    (connection_lost scheduled; no more I/O is started)."""

    OPEN = 0
    CLOSING = 1
    CLOSED = 2


class _PipeBase(FileEndpoint):
    """What both directions share: the file, the state, the end of the connection.
    Each direction defines ``_post_connect`` (start its I/O after connection_made)."""

    def _setup(self, loop, pipe, protocol, waiter, allowed: str) -> None:
        self._file = pipe
        self._fileno = pipe.fileno()
        self._protocol = protocol
        self._state = PipeState.OPEN
        self._context = contextvars.copy_context()
        self._op_ud = 0       # the read or write in flight
        self._poll_ud = 0     # an EAGAIN retry (or the reader-gone watch) waiting
        mode = os.fstat(self._fileno).st_mode
        self._mode = mode
        if not (stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)):
            self._file = None
            self._fileno = -1
            self._protocol = None
            raise ValueError(allowed)
        os.set_blocking(self._fileno, False)
        loop.call_soon(protocol.connection_made, self, context=self._context)
        self._post_connect()
        if waiter is not None:
            loop.call_soon(set_result_unless_cancelled, waiter, None)

    def is_closing(self) -> bool:
        return self._state != PipeState.OPEN

    def _cancel(self, ud: int) -> None:
        if ud and not self._loop.is_closed():
            self._loop.ring.cancel(ud, UD_IGNORE)

    def _poll_then(self, mask: int, then) -> None:
        def ready(res: int, flags: int) -> None:
            self._poll_ud = 0
            if self._state != PipeState.CLOSED and res >= 0:
                then()

        self._poll_ud = self._loop.oneshot(ready)
        self._loop.ring.poll(self._fileno, mask, self._poll_ud)

    def _fatal_error(self, exc, message="Fatal error on pipe transport") -> None:
        # asyncio: OSErrors (EPIPE, EIO from a closed pty ...) end the
        # connection quietly; anything else is reported.
        if isinstance(exc, OSError):
            if self._loop.get_debug():
                logger.debug("%r: %s", self, message, exc_info=True)
        else:
            self._loop.call_exception_handler({"message": message, "exception": exc,
                                               "transport": self, "protocol": self._protocol})
        self._close(exc)

    def _close(self, exc=None) -> None:
        if self._state == PipeState.CLOSED:
            return
        self._state = PipeState.CLOSED
        self._cancel(self._op_ud)
        self._cancel(self._poll_ud)
        self._loop.call_soon(self._call_connection_lost, exc, context=self._context)

    def __repr__(self) -> str:
        state = getattr(self, "_state", None)
        return (f"<{type(self).__name__} fd={getattr(self, '_fileno', -1)} "
                f"{state.name.lower() if state is not None else 'new'}>")


class RingReadPipeTransport(_PipeBase, transports.ReadTransport):
    max_size = 256 * 1024

    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        super().__init__(extra)
        self._extra["pipe"] = pipe
        self._loop = loop
        self._paused = False
        self._held: list[bytes] = []   # read after pause_reading, before its cancel
        self._eof_held = False
        self._buf = bytearray(self.max_size)
        self._setup(loop, pipe, protocol, waiter,
                    "Pipe transport is for pipes/sockets only.")

    def _post_connect(self) -> None:
        self._loop.call_soon(self._arm)

    def _arm(self) -> None:
        if self._state != PipeState.OPEN or self._paused or self._op_ud or self._poll_ud:
            return
        self._op_ud = self._loop.oneshot(self._on_read)
        self._loop.ring.read(self._fileno, self._buf, self._op_ud)

    def _on_read(self, res: int, flags: int) -> None:
        self._op_ud = 0
        if self._state != PipeState.OPEN:
            return
        if res == -errno.EAGAIN:
            self._poll_then(consts.POLLIN, self._arm)
        elif res == -errno.ECANCELED:
            pass  # pause_reading
        elif res < 0:
            self._fatal_error(builtin_error(res), "Fatal read error on pipe transport")
        elif res == 0:
            if self._paused:
                self._eof_held = True
            else:
                self._eof()
        else:
            data = bytes(memoryview(self._buf)[:res])
            if self._paused:
                self._held.append(data)
                return
            self._deliver(data)
            self._arm()

    def _deliver(self, data: bytes) -> None:
        try:
            self._context.run(self._protocol.data_received, data)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, "Fatal error: protocol.data_received() call failed.")

    def _eof(self) -> None:
        if self._loop.get_debug():
            logger.info("%r was closed by peer", self)
        self._state = PipeState.CLOSED
        self._loop.call_soon(self._protocol.eof_received, context=self._context)
        self._loop.call_soon(self._call_connection_lost, None, context=self._context)

    def is_reading(self) -> bool:
        return not self._paused and self._state == PipeState.OPEN

    def pause_reading(self) -> None:
        if not self.is_reading():
            return
        self._paused = True
        self._cancel(self._op_ud)
        self._cancel(self._poll_ud)
        if self._loop.get_debug():
            logger.debug("%r pauses reading", self)

    def resume_reading(self) -> None:
        if self._state != PipeState.OPEN or not self._paused:
            return
        self._paused = False
        self._loop.call_soon(self._release_held)
        if self._loop.get_debug():
            logger.debug("%r resumes reading", self)

    def _release_held(self) -> None:
        while self._held and not self._paused and self._state == PipeState.OPEN:
            self._deliver(self._held.pop(0))
        if self._paused or self._state != PipeState.OPEN:
            return
        if self._eof_held:
            self._eof_held = False
            self._eof()
        else:
            self._arm()

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    def close(self) -> None:
        if self._state == PipeState.OPEN:
            self._close(None)

    def abort(self) -> None:
        self._close(None)


class RingWritePipeTransport(_PipeBase, transports._FlowControlMixin, transports.WriteTransport):
    def __init__(self, loop, pipe, protocol, waiter=None, extra=None):
        super().__init__(extra, loop)
        self._extra["pipe"] = pipe
        self._buffer = bytearray()
        self._inflight: bytes | None = None
        self._conn_lost = 0
        self._watch_ud = 0
        self._setup(loop, pipe, protocol, waiter,
                    "Pipe transport is only for pipes, sockets and character devices")

    def _post_connect(self) -> None:
        # A pipe's write end reports POLLERR once every reader is gone; a
        # socket's reports POLLIN/POLLHUP at the peer's close.  (A character
        # device is always "readable": nothing to learn there.)
        if stat.S_ISFIFO(self._mode) or stat.S_ISSOCK(self._mode):
            self._loop.call_soon(self._watch_reader)

    def _watch_reader(self) -> None:
        if self._state == PipeState.CLOSED:
            return

        def gone(res: int, flags: int) -> None:
            self._watch_ud = 0
            if self._state == PipeState.CLOSED or res < 0:
                return
            if self._loop.get_debug():
                logger.info("%r was closed by peer", self)
            self._close(BrokenPipeError() if self.get_write_buffer_size() else None)

        self._watch_ud = self._loop.oneshot(gone)
        self._loop.ring.poll(self._fileno, consts.POLLIN, self._watch_ud)

    def get_write_buffer_size(self) -> int:
        return len(self._buffer) + (len(self._inflight) if self._inflight else 0)

    def write(self, data) -> None:
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if isinstance(data, bytearray):
            data = memoryview(data)
        if not data:
            return
        if self._conn_lost or self._state != PipeState.OPEN:
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("pipe closed by peer or os.write(pipe, data) raised exception.")
            self._conn_lost += 1
            return
        if self._inflight is None and not self._buffer:
            # As asyncio: try the write now, so the bytes are in the pipe when
            # write() returns if there is room (callers may block on the other
            # end right away); only what does not fit goes through the ring.
            try:
                n = os.write(self._fileno, data)
            except (BlockingIOError, InterruptedError):
                n = 0
            except (SystemExit, KeyboardInterrupt):
                raise
            except BaseException as exc:
                self._conn_lost += 1
                self._fatal_error(exc, "Fatal write error on pipe transport")
                return
            if n == len(data):
                return
            data = data[n:]
        self._buffer += data
        self._maybe_pause_protocol()
        self._flush()

    def _flush(self) -> None:
        if self._inflight is not None or not self._buffer or self._state == PipeState.CLOSED:
            return
        data = bytes(self._buffer)
        self._buffer.clear()
        self._send(data)

    def _send(self, data: bytes) -> None:
        self._inflight = data
        self._op_ud = self._loop.oneshot(self._on_written)
        self._loop.ring.write(self._fileno, data, self._op_ud)

    def _on_written(self, res: int, flags: int) -> None:
        self._op_ud = 0
        data, self._inflight = self._inflight, None
        if self._state == PipeState.CLOSED:
            return
        if res == -errno.EAGAIN:
            self._inflight = data
            self._poll_then(consts.POLLOUT, lambda: self._send(data))
            return
        if res < 0:
            self._conn_lost += 1
            self._buffer.clear()
            self._fatal_error(builtin_error(res), "Fatal write error on pipe transport")
            return
        if res < len(data):
            self._inflight = None
            self._send(data[res:])
            return
        self._maybe_resume_protocol()
        if self._buffer:
            self._flush()
        elif self._state == PipeState.CLOSING:
            self._close(None)

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        if self._state != PipeState.OPEN:
            return
        self._state = PipeState.CLOSING
        if self._inflight is None and not self._buffer:
            self._close(None)

    def _close(self, exc=None) -> None:
        if self._state != PipeState.CLOSED:
            self._cancel(self._watch_ud)
        super()._close(exc)

    def set_protocol(self, protocol) -> None:
        self._protocol = protocol

    def get_protocol(self):
        return self._protocol

    def close(self) -> None:
        if self._file is not None and self._state == PipeState.OPEN:
            self.write_eof()

    def abort(self) -> None:
        self._buffer.clear()
        self._close(None)


class PipeOpsMixin:
    """The loop's pipe transport factories (asyncio's connect_*_pipe call these)."""

    def _make_read_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        t = RingReadPipeTransport(self, pipe, protocol, waiter, extra)
        self._transports[t._fileno] = t
        return t

    def _make_write_pipe_transport(self, pipe, protocol, waiter=None, extra=None):
        t = RingWritePipeTransport(self, pipe, protocol, waiter, extra)
        self._transports[t._fileno] = t
        return t
