"""The asyncio-compatible event loop that runs on one io_uring ring.

``RingEventLoop`` is an :class:`asyncio.BaseEventLoop`: tasks, futures, timers,
executors, ``call_soon_threadsafe``, async generator shutdown and the high-level
``create_connection`` / ``create_server`` / streams all come from asyncio itself.
What this module replaces is the I/O underneath:

* one iteration = flush every queued SQE (sends batched from all transports)
  and harvest all completions in a single ``io_uring_enter``; timers bound the
  wait through the kernel's timeout argument.  The per-event work (the wait,
  the harvest, routing each completion to its handler, and the stream
  transports' receive/write/send) runs in the compiled core
  (:mod:`ringleader.runtime._loopcore`); this module keeps the iteration's
  scheduling (asyncio's ready queue and timer heap) and the cold paths;
* sockets behind transports are registered (fixed) files of this ring;
  receives are multishot into the loop's provided-buffer ring
  (see :mod:`ringleader.runtime.transport`);
* ``sock_*`` coroutines and ``add_reader``/``add_writer`` are ring operations
  on ordinary fds (one-shot polls re-armed after each callback, which gives
  asyncio's level-triggered semantics), so libraries such as psycopg's
  ``AsyncConnection`` work unchanged;
* other threads wake the loop through an eventfd the ring watches with a
  multishot poll, written only when the loop is (about to be) asleep.

The loop belongs to the thread that runs it: the ring is created with
SINGLE_ISSUER|DEFER_TASKRUN when the kernel offers it, so only that thread may
touch it.  Signal handlers (:mod:`.signals`), datagram endpoints
(:mod:`.datagram`), pipe transports (:mod:`.pipes`) and subprocesses
(:mod:`.subprocess`) are mixins, each in its own module, all on the ring.
"""
from __future__ import annotations

import contextvars
import errno
import logging
import os
import socket
import threading
import time
import weakref
from asyncio import base_events, events, format_helpers, futures, tasks
from asyncio.log import logger as asyncio_logger

from ..runningloop import publish as _publish
from ..uring import Ring, RingStats, consts, error_from_result
from . import _loopcore
from .conntable import ConnectionTable
from .stats import LoopStats
from .contract import UD_IGNORE
from .datagram import DatagramOpsMixin
from .fdops import FdOpsMixin
from .pipes import PipeOpsMixin
from .signals import SignalMixin
from .subprocess import SubprocessMixin
from .tls import OwnRawTransportTLS, RingSSLProtocol
from .transport import AcceptedSocket, RingTransport, accept_failed, accept_handler

logger = logging.getLogger("ringleader.runtime")

_F_MORE = consts.CQE_F_MORE
# user_data at or above this carry a message from another ring (MSG_RING):
# the top byte is the kind, the rest a payload.
TAG_BASE = 1 << 56
TAG_NEWFD = 1 << 56        # res = a plain fd accepted on another worker; payload = listener id
TAG_MIGRATE = 2 << 56      # res = our new fixed slot; payload = migration token
TAG_WAKE = 3 << 56         # a bare wake-up
TAG_SLOT_FREED = 4 << 56   # our own close of fixed slot <payload> completed (release_slot)
_PAYLOAD = (1 << 48) - 1
_FD_WATCH = ("add_reader", "add_writer", "remove_reader", "remove_writer")
# The core's timers: asyncio.TimerHandle with cancel() in C (runtime/loopcore/timers.c).
_TimerHandle = _loopcore.timer_handle_type(events.TimerHandle)
_UD_WAKE = 1               # the eventfd read


class RingEventLoop(ConnectionTable, SignalMixin, SubprocessMixin, PipeOpsMixin, DatagramOpsMixin,
                    FdOpsMixin, OwnRawTransportTLS, base_events.BaseEventLoop):
    """asyncio event loop on one io_uring ring (see module docstring)."""

    _ssl_protocol_class = RingSSLProtocol   # flow control in the connection's context (tls.py)

    def __init__(self, *, worker_id: int = 0, runtime=None, entries: int = 256,
                 files: int = 16384, buffers: int = 512, buffer_size: int = 16384,
                 sqpoll: bool = False, telemetry: bool = True):
        super().__init__()
        self.worker_id = worker_id
        self.runtime = runtime
        self._ring_args = dict(entries=entries, files=files, sqpoll=sqpoll)
        self._buf_args = (buffers, buffer_size)
        self._ring: Ring | None = None
        self._bufring = None
        self._owner: int | None = None
        self._handlers: dict[int, object] = {}
        self._next_ud = 256
        self._core: _loopcore.Core | None = None
        self._conns: dict[int, RingTransport] = {}
        # fd -> the stream transport bound to it (what _ensure_fd_no_transport
        # checks besides _transports; a plain dict kept by bind/unbind_stream)
        self._stream_fds: dict[int, RingTransport] = {}
        self._readers: dict[int, list] = {}
        self._writers: dict[int, list] = {}
        self._serving: dict[int, tuple] = {}
        self._idle_hi = 0.0        # stats(): the largest idle/busy reported so far
        self._busy_hi = 0.0
        self._efd = -1
        # telemetry: telemetry=False skips the loop's counters (iterations,
        # timer lag, per-connection bytes/ops/last activity) so their cost can
        # be measured (scripts/bench http); the ring's C counters stay.
        self._telemetry = telemetry
        self._started_at: float | None = None
        self._wall0 = 0.0
        self.migrations_in = 0
        self.migrations_out = 0
        self._msg_handlers: dict[int, object] = {}
        # sock_recv* bytes that arrived for a cancelled call (see FdOpsMixin._recv_op)
        self._leftovers = weakref.WeakKeyDictionary()
        # socket -> (future, settled) of its receives in the kernel (FdOpsMixin._op_future)
        self._recv_inflight = weakref.WeakKeyDictionary()
        self._signal_handlers: dict[int, events.Handle] = {}
        # fd -> transport using it (as asyncio's selector loop): add_reader and
        # friends refuse those fds.
        self._transports = weakref.WeakValueDictionary()
        self._children: dict[int, object] = {}   # pidfd -> exit watch (runtime/subprocess.py)
        try:
            self._open_ring()
        except BaseException:
            # A half-built loop must leave nothing that complains later:
            # BaseEventLoop.__del__ would otherwise call close(), which reaps
            # a ring that was never created.
            self._close_ring()
            base_events.BaseEventLoop.close(self)
            raise
        self._take_over_scheduling()

    def _take_over_scheduling(self) -> None:
        """Hand asyncio's ready queue and timer heap to the compiled core.

        The queue and heap stay asyncio's objects (``_ready``, ``_scheduled``)
        holding asyncio's own Handle and TimerHandle objects; the core fills
        them (call_soon/call_at/call_later build the handles in C) and runs the
        iteration (:meth:`_run_once`).  Methods a subclass replaced stay its
        own, and a subclass's own ``time()`` becomes the core's clock."""
        cls, base = type(self), base_events.BaseEventLoop
        own_time = None if cls.time is base.time else self.time
        self._core.set_scheduling(self, self._ready, self._scheduled, events.Handle,
                                  _TimerHandle, base.call_soon.__get__(self),
                                  _handle_failed, self._clock_resolution, self._debug, own_time)
        self._core.set_future_types(futures.Future, tasks.Task)
        for name in ("call_soon", "call_at", "call_later", "create_future", "create_task",
                     "get_debug"):
            if getattr(cls, name) is getattr(base, name):
                setattr(self, name, getattr(self._core, name))
        # add_reader & co.: the core's, with the mixin's methods as its fallback
        slow = tuple(getattr(FdOpsMixin, name).__get__(self) for name in _FD_WATCH)
        self._core.set_fd_watch(self._readers, self._writers, self._stream_fds,
                                self._transports.data, slow)
        for name in _FD_WATCH:
            if getattr(cls, name) is getattr(FdOpsMixin, name):
                setattr(self, name, getattr(self._core, name))
        if own_time is None:
            self.time = self._core.time
        if cls._timer_handle_cancelled is RingEventLoop._timer_handle_cancelled:
            self._timer_handle_cancelled = self._core.timer_handle_cancelled
            self._core.own_cancel_count = True  # (the compiled TimerHandle.cancel counts directly)

    # Debug mode (or odd arguments): the compiled call_at/call_later hand over to asyncio's.
    def _slow_call_at(self, *args, **kwargs):
        return _caller_traceback(base_events.BaseEventLoop.call_at(self, *args, **kwargs))

    def _slow_call_later(self, delay, callback, *args, context=None):
        # asyncio's call_later, calling asyncio's call_at directly (not ours,
        # which would trim the traceback a second time)
        if delay is None:
            raise TypeError("delay must not be None")
        return _caller_traceback(base_events.BaseEventLoop.call_at(
            self, self.time() + delay, callback, *args, context=context))

    def _slow_create_task(self, *args, **kwargs):
        return base_events.BaseEventLoop.create_task(self, *args, **kwargs)

    def _timer_handle_cancelled(self, handle) -> None:
        if handle._scheduled:
            self._core.timer_cancelled += 1

    @property
    def _timer_cancelled_count(self) -> int:
        core = getattr(self, "_core", None)
        return core.timer_cancelled if core is not None else 0

    @_timer_cancelled_count.setter
    def _timer_cancelled_count(self, value: int) -> None:
        core = getattr(self, "_core", None)  # BaseEventLoop.__init__ sets it before the core exists
        if core is not None:
            core.timer_cancelled = value

    # ------------------------------------------------------------------ ring
    def _open_ring(self) -> None:
        # The ring is created by the thread that constructs the loop; with
        # SINGLE_ISSUER that thread must also run it (asyncio.Runner and our
        # workers both construct and run in one thread).
        self._ring = Ring(**self._ring_args)
        self._owner = threading.get_ident()
        self._bufring = self._ring.buffer_ring(*self._buf_args, bgid=0)
        ring_addr, ring_owner = self._ring.c_struct()
        buf_addr, buf_owner = self._bufring.c_struct()
        self._core = _loopcore.Core(ring_addr, buf_addr, (self._ring, ring_owner, buf_owner),
                                    self._handlers, self._ring.keep_table, self._on_message,
                                    self._on_handler_error, self._telemetry)
        self._core.file_table(self._ring.files.user_slots)
        self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._handlers[_UD_WAKE] = self._on_wake
        # A multishot poll rather than a read: it holds no buffer, so the ring's
        # table of buffers to keep alive stays empty and the harvest skips it.
        self._ring.poll(self._efd, consts.POLLIN, _UD_WAKE, multishot=True)

    @property
    def ring_fd(self) -> int:
        return self._ring.fd

    # ------------------------------------------- the transport contract
    # (runtime/contract.py, TransportLoop: what a transport may use of its loop)
    @property
    def ring(self) -> Ring:
        return self._ring

    def bind_stream(self, transport: RingTransport, slot: int, fd: int = -1) -> None:
        ud_recv = self._next_ud
        ud_send = ud_recv + 1
        self._next_ud = ud_recv + 2
        transport._rebind(self._core, slot, ud_recv, ud_send)
        # The compiled dispatcher sees a Stream (the transport's base) here and
        # handles both of its user_data in C (receive or send, told apart by the value).
        self._handlers[ud_recv] = transport
        self._handlers[ud_send] = transport
        self._conns[transport.conn_id] = transport
        if fd >= 0:
            self._stream_fds[fd] = transport

    def unbind_stream(self, transport: RingTransport, fd: int = -1) -> None:
        self._handlers.pop(transport.ud_recv, None)
        self._handlers.pop(transport.ud_send, None)
        self._conns.pop(transport.conn_id, None)
        if self._stream_fds.get(fd) is transport:
            del self._stream_fds[fd]

    def install_file(self, fd: int) -> int:
        """A fixed-file slot holding ``fd`` for the ring's operations queued from now
        on: filled by an SQE riding the next enter (no io_uring_register(2) per
        connection), or by the register syscall where the core's table ends."""
        files = self._ring.files
        slot = files.reserve()
        try:
            if not self._core.install_file(slot, fd, UD_IGNORE):
                files.update(slot, fd)
        except BaseException:
            files.forget(slot)
            raise
        return slot

    def finish_stream(self, transport: RingTransport, fd: int = -1) -> None:
        """The ring half of a transport's end: cancel what it has in flight, empty
        its slot (reused once that completed), forget its user_data."""
        # (_release_ring also drops both user_data from the handler table)
        transport._release_ring(TAG_SLOT_FREED)
        self._conns.pop(transport.conn_id, None)
        if self._stream_fds.get(fd) is transport:
            del self._stream_fds[fd]

    def release_slot(self, slot: int) -> None:
        self._ring.close_fixed(slot, TAG_SLOT_FREED | slot)

    def oneshot(self, handler) -> int:
        """Register a handler that is dropped after its first final completion."""
        return self._oneshot(handler)

    def handler_ud(self, handler) -> int:
        """A user_data whose completions all go to ``handler`` until :meth:`release_ud`."""
        return self._alloc_ud(handler)

    def release_ud(self, ud: int) -> None:
        self._free_ud(ud)

    def _alloc_ud(self, handler) -> int:
        ud = self._next_ud
        self._next_ud = ud + 1
        self._handlers[ud] = handler
        return ud

    def _free_ud(self, ud: int) -> None:
        self._handlers.pop(ud, None)

    def _oneshot(self, handler) -> int:
        handlers = self._handlers

        def once(res, flags, _ud=[0]):
            if not flags & _F_MORE:
                handlers.pop(_ud[0], None)
            handler(res, flags)

        ud = self._alloc_ud(once)
        once.__defaults__[0][0] = ud
        return ud

    def _on_wake(self, res: int, flags: int) -> None:
        if self._efd < 0:
            return
        try:
            os.eventfd_read(self._efd)  # reset the counter so the poll can fire again
        except OSError:
            pass
        if not flags & _F_MORE and not self.is_closed():
            self._ring.poll(self._efd, consts.POLLIN, _UD_WAKE, multishot=True)

    def _write_to_self(self) -> None:
        # Only a sleeping (or about to sleep) loop needs the syscall; the core
        # publishes "asleep" before its last look at _ready (Core.poll), so
        # this cannot lose a wake-up.
        if self._core.sleeping and self._efd >= 0:
            try:
                os.eventfd_write(self._efd, 1)
            except OSError:
                pass

    # ------------------------------------------------------------- iteration
    def _run_once(self) -> None:
        # One asyncio iteration in C: prune cancelled timers, flush the
        # transports' writes, wait in the kernel (until the first timer),
        # dispatch completions, move due timers to the ready queue and run the
        # ready handles.  In debug mode the core leaves the running to us.
        ntodo = self._core.run_once(self._stopping, True)
        if ntodo:
            self._run_handles_debug(ntodo)

    def _run_handles_debug(self, ntodo: int) -> None:
        """asyncio's debug-mode handle loop: slow callbacks are logged."""
        ready = self._ready
        for _ in range(ntodo):
            h = ready.popleft()
            if h._cancelled:
                continue
            try:
                self._current_handle = h
                t0 = self.time()
                h._run()
                dt = self.time() - t0
                if dt >= self.slow_callback_duration:
                    # asyncio's logger, as asyncio's own loop warns there
                    asyncio_logger.warning("Executing %s took %.3f seconds",
                                           base_events._format_handle(h), dt)
            finally:
                self._current_handle = None
        h = None

    def _poll(self, timeout: float | None) -> None:
        """One flush + wait + harvest outside an iteration (close() reaps with it)."""
        self._core.poll(timeout)

    def _on_handler_error(self, exc: BaseException) -> None:
        # The compiled dispatcher's report of an exception a handler raised
        # (SystemExit and KeyboardInterrupt propagate instead).
        self.call_exception_handler({
            "message": "unhandled error in an io_uring completion handler",
            "exception": exc,
        })

    # -------------------------------------------------------- cross-ring msgs
    def register_message_handler(self, kind: int, handler) -> None:
        """``handler(payload, res)`` for MSG_RING messages whose user_data is ``kind | payload``."""
        self._msg_handlers[kind] = handler

    def _on_message(self, ud: int, res: int) -> None:
        kind = ud & ~_PAYLOAD
        if kind == TAG_SLOT_FREED:  # one per closed connection: no handler lookup
            self._ring.files.forget(ud & _PAYLOAD)
            return
        handler = self._msg_handlers.get(kind)
        if handler is not None:
            handler(ud & _PAYLOAD, res)
        elif kind != TAG_WAKE:
            logger.warning("worker %d: unexpected ring message %#x res=%d", self.worker_id, ud, res)

    def send_message(self, target_ring_fd: int, kind: int, payload: int, value: int) -> None:
        """Post ``{user_data: kind|payload, res: value}`` on another ring (from our thread)."""
        ud = self._oneshot(self._on_msg_sent)
        self._ring.msg_ring(target_ring_fd, value, kind | (payload & _PAYLOAD), ud)
        self._kick()

    def _on_msg_sent(self, res: int, flags: int) -> None:
        if res < 0:
            logger.error("worker %d: msg_ring failed: %s", self.worker_id,
                         error_from_result(res, "msg_ring"))

    def _kick(self) -> None:
        """Make sure queued SQEs go out soon even if nothing else is ready."""
        if not self._ready:
            self._ready.append(events.Handle(_noop, (), self, None))

    # ------------------------------------------- the migration contract
    # (runtime/contract.py, RingMigrationLoop: what a move uses of its loops)
    def kick(self) -> None:
        """Make sure queued SQEs go out soon even if nothing else is ready."""
        self._kick()

    def send_file(self, target_ring_fd: int, slot: int, target_ud: int, handler) -> None:
        """MSG_RING SEND_FD our fixed file ``slot`` into a kernel-chosen slot of
        the ring ``target_ring_fd``, which sees a CQE {user_data: ``target_ud``,
        res: its slot}; ``handler(res, flags)`` gets our completion."""
        ud = self._oneshot(handler)
        self._ring.msg_ring_send_fd(target_ring_fd, slot, consts.FILE_INDEX_ALLOC, target_ud, ud)
        self._kick()

    def release_sent_file(self, slot: int) -> None:
        """Our copy of a file :meth:`send_file` delivered: empty ``slot`` now."""
        self._ring.files.release(slot)

    def adopt_file(self, slot: int) -> None:
        """Account for ``slot``, filled by the kernel with a file another ring sent."""
        self._ring.files.adopt(slot)

    # The debug flag lives in the core (its call_soon/call_at/get_debug read it);
    # asyncio's code sets and reads self._debug.
    @property
    def _debug(self) -> bool:
        core = self.__dict__.get("_core")
        return bool(core.debug) if core is not None else self.__dict__.get("_debug0", False)

    @_debug.setter
    def _debug(self, value: bool) -> None:
        core = self.__dict__.get("_core")  # BaseEventLoop.__init__ sets it before the core exists
        if core is not None:
            core.debug = bool(value)
        else:
            self.__dict__["_debug0"] = bool(value)

    # --------------------------------------------------------------- running
    def run_forever(self):
        if self._owner != threading.get_ident():
            raise RuntimeError(
                "a RingEventLoop must run on the thread that created it "
                "(its io_uring ring is SINGLE_ISSUER); create the loop inside the thread")
        if self._started_at is None:
            self._started_at = self.time()
            self._wall0 = time.perf_counter()
        # Published for the drivers' per-request loop lookups (running_loop() skips
        # the getpid(2) of asyncio.get_running_loop(); see ringleader.runningloop).
        with _publish(self):
            try:
                return super().run_forever()
            finally:
                self._flush_on_stop()

    def _flush_on_stop(self) -> None:
        """Hand the last iteration's writes and closes to the kernel as the loop stops.

        asyncio's transports make their syscalls on the spot (a write sends, the
        connection_lost callback closes the socket), so their effect is visible
        as soon as run_until_complete() returns; ours queue SQEs that the next
        iteration submits, and a stopped loop may never have one before its
        owner waits on the peer (CPython's test_sslproto joins a server thread
        that waits for the client's EOF after a cancelled TLS handshake).  3.11
        hid this: its wait_for() runs the awaited coroutine in a task of its
        own, whose cancellation adds iterations before the loop stops; 3.12's
        awaits it in the caller's task.  One contract on every version, so no
        probe in asyncio_compat."""
        core, ring = self._core, self._ring
        if core is not None and ring is not None and not self.is_closed():
            core.flush_dirty()
            ring.flush()

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if self.is_closed():
            return
        core = self._core
        if core is not None:  # None: the ring could not be made (__init__ raised)
            self._close_signals()
        # (A closed ring: a loop never closed whose Ring was freed first, at exit.)
        if core is not None and not self._ring.closed:
            for t in list(self._conns.values()):
                t.abort()
            for sock, ud, server in list(self._serving.values()):
                self._stop_serving(sock)
            # Reap what is already complete: late accepts carry fds to close.
            self._poll(0.0)
            self._readers.clear()
            self._writers.clear()
            # Run the connection_lost callbacks those closes scheduled (what they
            # schedule in turn is dropped with the rest of the queue, as asyncio does).
            core.run_ready(len(self._ready))
            self._close_children()
            # Those callbacks queued the sockets' close(2) as SQEs: submit them.
            self._poll(0.0)
        super().close()
        if core is not None:
            core.closed = True
        self._close_ring()

    def _close_ring(self) -> None:
        if self._ring is not None:
            self._ring.close()
        if self._efd >= 0:
            os.close(self._efd)
            self._efd = -1

    # ----------------------------------------------------------- telemetry
    def stats(self) -> LoopStats:
        # Read from other threads (debug socket, supervisor) while the loop may
        # be blocked in the kernel: the wait in progress counts as idle.  The
        # wait may end (and be added to wait_ns) between the reads below; the
        # clamps keep busy and idle counters from ever going down.
        core = self._core
        sleeping0, since0 = core.sleeping, core.now
        ring_stats: RingStats = self._ring.stats()
        sleeping1, since1 = core.sleeping, core.now
        now = time.monotonic()
        wall = time.perf_counter() - self._wall0 if self._started_at is not None else 0.0
        idle = ring_stats.wait_ns / 1e9
        if sleeping0 and sleeping1 and since0 == since1:
            # The core slept through both reads (core.now, the end of the
            # last wait, did not move): the wait in progress is not in
            # wait_ns yet.  It began after since0; counting from there adds
            # the last iteration's work, which the clamps absorb when the
            # wait ends and wait_ns catches up.
            idle += max(0.0, now - since0)
        idle = min(idle, wall) if wall > 0 else idle
        idle = self._idle_hi = max(self._idle_hi, idle)
        busy = self._busy_hi = max(self._busy_hi, wall - idle)
        return LoopStats(
            worker=self.worker_id, time=self.time(),
            uptime=wall, iterations=core.iterations, handles_run=core.handles_run,
            busy_s=busy, idle_s=idle, lag_max_s=core.lag_max,
            lag_ewma_s=core.lag_ewma, connections=len(self._conns),
            migrations_in=self.migrations_in, migrations_out=self.migrations_out,
            enobufs=self._bufring.enobufs + core.enobufs, ring=ring_stats)


    # ------------------------------------------------------------ transports
    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        fd = sock.fileno()
        t = self._transports[fd] = RingTransport(self, sock, protocol, waiter, extra, server)
        return t

    def _start_serving(self, protocol_factory, sock, sslcontext=None, server=None, backlog=100,
                       ssl_handshake_timeout=None, ssl_shutdown_timeout=None):
        fd = sock.fileno()
        if fd in self._serving:
            return
        state = {"ud": 0}
        # Accepted sockets share the listener's family/type/protocol; passing them
        # saves socket.socket(fileno=) three getsockopt calls per connection.
        kind = (int(sock.family), int(sock.type), sock.proto)
        # TCP_NODELAY on the listener is inherited by every accepted socket.
        nodelay = False
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                nodelay = True
            except OSError:
                pass

        # asyncio calls the protocol factory (and so every callback of the
        # connections it makes) in a copy of the context that started serving.
        context = contextvars.copy_context()

        def on_accept(res: int, flags: int) -> None:
            if res >= 0:
                ctx = context.copy()
                ctx.run(self._accepted, res, protocol_factory, sslcontext, server,
                        ssl_handshake_timeout, ssl_shutdown_timeout, kind, nodelay, ctx)
            elif res in (-errno.EINVAL, -errno.EBADF, -errno.ENOTSOCK):
                # The listener was closed or shut down under us (uvicorn's
                # workers close theirs at shutdown): stop serving it quietly,
                # re-arming would only fail the same way again.
                entry = self._serving.get(fd)
                if entry is not None and entry[1] == state["ud"]:
                    del self._serving[fd]
                if not flags & _F_MORE:
                    self._free_ud(state["ud"])
                return
            elif res not in (-errno.ECANCELED,):
                err = error_from_result(res, "accept", fd)
                if res in (-errno.EMFILE, -errno.ENFILE, -errno.ENOBUFS, -errno.ENOMEM):
                    # Out of descriptors: back off like asyncio does, keep serving.
                    self.call_exception_handler({"message": "socket.accept() out of system resource",
                                                 "exception": err, "socket": sock})
                    if not flags & _F_MORE and fd in self._serving:
                        self.call_later(1.0, rearm)
                    return
                self.call_exception_handler({"message": "accept failed", "exception": err})
            if not flags & _F_MORE and fd in self._serving:
                rearm()

        def rearm() -> None:
            if fd in self._serving:
                self._ring.accept(fd, state["ud"], multishot=True)

        handler = on_accept  # (each connection set up in C when nothing is per socket)
        if not sslcontext and (nodelay or sock.family not in (socket.AF_INET, socket.AF_INET6)):
            handler = accept_handler(self, self._core, protocol_factory, context, server, kind,
                                     on_accept)
        state["ud"] = self._alloc_ud(handler)
        self._serving[fd] = (sock, state["ud"], server)
        rearm()
        self._kick()

    def _accepted(self, newfd, protocol_factory, sslcontext, server, hs_timeout, sd_timeout,
                  kind=(-1, -1, -1), nodelay=False, context=None):
        # Without TLS the socket object is made only if asked for (AcceptedSocket:
        # most servers never ask); peername likewise (RingTransport.get_extra_info).
        conn = AcceptedSocket(newfd, kind)
        try:
            protocol = protocol_factory()
            if sslcontext:
                self._make_ssl_transport(conn.socket(), protocol, sslcontext, server_side=True,
                                         server=server, ssl_handshake_timeout=hs_timeout,
                                         ssl_shutdown_timeout=sd_timeout)
            else:
                # (not through _make_socket_transport: nodelay_inherited saves a
                # setsockopt; no weak _transports entry: bind_stream's fd map does)
                RingTransport(self, conn, protocol, server=server, nodelay_inherited=nodelay,
                              context=context)
        except BaseException as exc:
            accept_failed(self, conn, exc)

    def adopt_socket(self, conn: socket.socket, protocol_factory, server=None) -> RingTransport:
        """Wrap an already-connected socket (e.g. handed over by another worker)."""
        return self._make_socket_transport(conn, protocol_factory(), server=server)

    def _stop_serving(self, sock) -> None:
        entry = self._serving.pop(sock.fileno(), None)
        if entry is not None:
            # Cancel before closing: the ring holds its own reference to the
            # listening socket, and a live multishot accept would keep accepting.
            self.retire_accept(entry[1])
        # The ring keeps its own reference to the listener until the cancelled
        # accept's completion is reaped, so close() alone would leave the port
        # accepting (asyncio's Server.close() refuses new connections at once).
        # shutdown() takes a listening socket out of LISTEN state right now.
        _shutdown_listener(sock)
        sock.close()

    def retire_accept(self, ud: int) -> None:
        """Cancel the multishot accept ``ud``.  Connections it accepted whose
        completions are not reaped yet are fds we own: close them as they come
        (their clients see the connection end, as with a listener closed while
        connections wait in its backlog) instead of leaking them."""
        handlers = self._handlers

        def late(res: int, flags: int) -> None:
            if res >= 0:
                os.close(res)
            if not flags & _F_MORE:
                handlers.pop(ud, None)

        handlers[ud] = late
        self._ring.cancel(ud, UD_IGNORE)
        self._ring.flush()

def _shutdown_listener(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


def _noop() -> None:
    pass


def _handle_failed(handle: events.Handle, exc: BaseException) -> None:
    """What Handle._run does when its callback raises (the core runs handles itself)."""
    cb = format_helpers._format_callback_source(handle._callback, handle._args)
    context = {"message": f"Exception in callback {cb}", "exception": exc, "handle": handle}
    if handle._source_traceback:
        context["source_traceback"] = handle._source_traceback
    handle._loop.call_exception_handler(context)



_OWN_FILES = frozenset((base_events.__file__, __file__))


def _caller_traceback(handle):
    """A debug-mode handle's creation traceback ends at the caller, as on asyncio's
    loop: the frames of the compiled core's Python fallbacks are dropped."""
    tb = handle._source_traceback
    while tb and tb[-1].filename in _OWN_FILES:
        del tb[-1]
    return handle


def new_event_loop(**kwargs) -> RingEventLoop:
    """A single-ring loop: ``asyncio.Runner(loop_factory=ringleader.new_event_loop)``."""
    return RingEventLoop(**kwargs)
