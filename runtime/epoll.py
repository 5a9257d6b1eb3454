"""The epoll fallback: a worker loop for processes where io_uring is denied.

What it does: :class:`EpollEventLoop` is asyncio's own Unix selector loop
(epoll through :mod:`selectors`) with what the runtime needs of a worker loop
added on top: a ``worker_id`` and ``runtime``, the connection table the
runtime drains and migrates from (``_conns``, of :class:`EpollTransport`),
frozen :class:`~.stats.LoopStats` snapshots readable from other threads
(busy/idle from the time spent in ``epoll_wait``, iterations, handles run,
timer lag), per-connection :class:`~.stats.ConnStats`, and the in-process
hand-over of a live connection to another worker's loop (the threads share
the fd table, so no MSG_RING is needed; :mod:`.migration` drives the steps).
Every public loop API is asyncio's own, so it all works: signals, UDP,
pipes, subprocesses, TLS, sendfile, ``sock_*``, ``add_reader``
(tests/runtime/test_epoll_conformance.py runs CPython's suites on it).  One
deliberate difference from asyncio's loop, shared with the ring loop: a signal
whose handler was replaced with ``signal.signal`` is left to that handler.

Why asyncio's selector loop and not a loop of our own on epoll, or uvloop:
measured with ``scripts/bench fallback`` and argued in docs/operations.md
("The epoll fallback"); in short, uvloop's transports cannot be detached from
their loop with their buffered bytes (no migration, no per-connection
counters), and a loop of our own on epoll would be a second compiled hot path
for a path that runs only where io_uring is blocked.

What it does not do: anything a ring does.  Ring-only telemetry (batch sizes,
flush depths, fixed files, buffer-ring ENOBUFS) is reported as absent
(``LoopStats.ring is None``, ``enobufs is None``), never as zeros.
"""
from __future__ import annotations

import collections
import errno
import itertools
import selectors
import signal
import socket
import threading
import time
from asyncio import unix_events

from ..runningloop import publish as _publish
from .backend import Backend, Choice
from .epoll_transport import EpollTransport
from .conntable import ConnectionTable
from .stats import LoopStats
from .tls import OwnRawTransportTLS

__all__ = ["EpollEventLoop"]

_EWMA = 0.1   # weight of the newest timer lag in lag_ewma_s
_monotonic = time.monotonic   # the loop's clock (BaseEventLoop.time)


class _TimedSelector(selectors.EpollSelector):
    """epoll, timed: the wait is the loop's idle time (read by other threads),
    and the moment it ends gives the timer lag and connections' last activity
    without another clock read."""

    def __init__(self) -> None:
        super().__init__()
        self.wait_s = 0.0
        self.waits = 0
        self.asleep_since = 0.0    # monotonic() when the wait in progress began; 0 if none
        self.woke = 0.0            # monotonic() when the last wait ended (the loop's clock)
        self.lag_max = 0.0
        self.lag_ewma = 0.0
        self.timers: list | None = None   # the loop's timer heap, when lag is measured

    def select(self, timeout=None):
        t0 = _monotonic()
        self.asleep_since = t0
        try:
            return super().select(timeout)
        finally:
            self.asleep_since = 0.0
            self.woke = t1 = _monotonic()
            self.wait_s += t1 - t0
            self.waits += 1
            timers = self.timers
            if timers:
                # How late is the earliest timer, now that the wait is over?
                lag = t1 - timers[0]._when
                if lag > 0:
                    if lag > self.lag_max:
                        self.lag_max = lag
                    self.lag_ewma += _EWMA * (lag - self.lag_ewma)


class _CountingDeque(collections.deque):
    """asyncio's ready queue, counting the handles taken off it (handles_run)."""

    popped = 0

    def popleft(self):
        self.popped += 1
        return collections.deque.popleft(self)


class EpollEventLoop(ConnectionTable, OwnRawTransportTLS, unix_events.SelectorEventLoop):
    """A worker loop on epoll (see module docstring)."""

    backend = Backend.EPOLL.value

    def __init__(self, *, worker_id: int = 0, runtime=None, telemetry: bool = True,
                 choice: Choice | None = None, **ring_options):
        # ring_options (entries, files, buffers, buffer_size, sqpoll) size a
        # ring; there is none here, so they are accepted and have no effect.
        self._sel = _TimedSelector()
        super().__init__(self._sel)
        self.worker_id = worker_id
        self.runtime = runtime
        self.choice = choice or Choice(Backend.EPOLL, "backend='epoll' was asked for")
        self._telemetry = telemetry
        if telemetry:
            self._ready = _CountingDeque()
            self._sel.timers = self._scheduled
        self._conns: dict[int, EpollTransport] = {}
        self._owner: int | None = threading.get_ident()
        self._started_at: float | None = None
        self._wall0 = 0.0
        self._idle_hi = 0.0
        self._busy_hi = 0.0
        self.migrations_in = 0
        self.migrations_out = 0

    def __repr__(self) -> str:
        return (f"<EpollEventLoop worker={self.worker_id} running={self.is_running()} "
                f"closed={self.is_closed()}>")

    # --------------------------------------------------------------- running
    def run_forever(self):
        self._owner = threading.get_ident()
        if self._started_at is None:
            self._started_at = self.time()
            self._wall0 = _monotonic()
        with _publish(self):
            return super().run_forever()

    def _handle_signal(self, sig: int) -> None:
        # As the ring loop (runtime/signals.py): a signal whose handler was
        # replaced with signal.signal() after add_signal_handler() is left to
        # that handler until it is put back (asyncio's own loop would run
        # both).  uvicorn inside ringleader.run relies on it: it takes over
        # SIGINT for its graceful shutdown, then re-raises it.
        if signal.getsignal(sig) is not unix_events._sighandler_noop:
            return
        super()._handle_signal(sig)

    def _kick(self) -> None:
        """The ring loop's "flush soon"; epoll has nothing queued to flush."""

    def kick(self) -> None:
        """The migration contract's "flush soon" (contract.MigrationLoop): nothing to do."""

    def close(self) -> None:
        if self.is_running():
            raise RuntimeError("Cannot close a running event loop")
        if not self.is_closed():
            for t in list(self._conns.values()):
                t.abort()
            # Run the connection_lost callbacks those aborts scheduled.
            for _ in range(len(self._ready)):
                h = self._ready.popleft()
                if not h._cancelled:
                    h._run()
        super().close()

    # ------------------------------------------------------------ transports
    def _make_socket_transport(self, sock, protocol, waiter=None, *, extra=None, server=None):
        return EpollTransport(self, sock, protocol, waiter, extra, server)

    def adopt_socket(self, conn: socket.socket, protocol_factory, server=None) -> EpollTransport:
        """Wrap an already-connected socket (e.g. accepted by another worker)."""
        conn.setblocking(False)
        return self._make_socket_transport(conn, protocol_factory(), server=server)

    def carry(self, dst: "EpollEventLoop", fd: int, arrive) -> bool:
        """Hand a detached connection's ``fd`` to ``dst`` (another worker's loop
        in this process): ``arrive(fd)`` runs on ``dst``'s thread.  False when
        ``dst`` no longer runs (the caller takes the connection back)."""
        if dst.is_closed():
            return False
        try:
            dst.call_soon_threadsafe(arrive, fd)
        except RuntimeError:  # closed between the check and the call
            return False
        self.migrations_out += 1
        return True

    # ----------------------------------------------------------- telemetry
    def stats(self) -> LoopStats:
        # Read from other threads: the wait in progress counts as idle, and the
        # clamps keep busy and idle from going down when it ends meanwhile.
        sel = self._sel
        since, waited = sel.asleep_since, sel.wait_s
        now = _monotonic()
        wall = now - self._wall0 if self._started_at is not None else 0.0
        idle = waited + (now - since if since else 0.0)
        idle = min(idle, wall) if wall > 0 else idle
        idle = self._idle_hi = max(self._idle_hi, idle)
        busy = self._busy_hi = max(self._busy_hi, wall - idle)
        ready = self._ready
        return LoopStats(
            worker=self.worker_id, time=self.time(), uptime=wall, iterations=sel.waits,
            handles_run=ready.popped if isinstance(ready, _CountingDeque) else 0,
            busy_s=busy, idle_s=idle, lag_max_s=sel.lag_max, lag_ewma_s=sel.lag_ewma,
            connections=len(self._conns), migrations_in=self.migrations_in,
            migrations_out=self.migrations_out, enobufs=None, ring=None, backend=self.backend)



class EpollAcceptor:
    """``serve(mode="acceptor")`` on epoll: worker 0 accepts for everyone and
    hands each new socket to the next live worker's loop (the fd is the
    process's, so the hand-over is a call on that loop's thread)."""

    def __init__(self, runtime, loop: EpollEventLoop, sock: socket.socket, protocol_factory):
        self.runtime = runtime
        self.loop = loop
        self.sock = sock
        self.factory = protocol_factory
        self.rr = itertools.count()
        loop._add_reader(sock.fileno(), self._on_readable)

    def _on_readable(self) -> None:
        for _ in range(64):   # a bounded batch per wake-up, as asyncio's own accept
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError, ConnectionAbortedError):
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    # Out of descriptors: back off like asyncio does, keep serving.
                    self.loop.call_exception_handler({"message": "socket.accept() out of system "
                                                      "resource", "exception": exc})
                    self.loop._remove_reader(self.sock.fileno())
                    self.loop.call_later(1.0, self._rearm)
                    return
                raise
            live = [w for w in self.runtime.workers if not w.draining and w.loop is not None]
            target = live[next(self.rr) % len(live)].loop
            if target is self.loop:
                self.loop.adopt_socket(conn, self.factory)
                continue
            try:
                target.call_soon_threadsafe(target.adopt_socket, conn, self.factory)
            except RuntimeError:   # that worker stopped meanwhile
                self.loop.adopt_socket(conn, self.factory)

    def _rearm(self) -> None:
        if self.sock.fileno() >= 0:
            self.loop._add_reader(self.sock.fileno(), self._on_readable)

    def close(self) -> None:
        if self.sock.fileno() < 0:
            return
        if not self.loop.is_closed():
            self.loop._remove_reader(self.sock.fileno())
        self.sock.close()

