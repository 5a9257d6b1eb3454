"""Worker threads, each owning one ring and running a :class:`RingEventLoop`.

``Runtime`` starts N workers, lets any thread call into a given worker,
serves TCP with connections spread across workers, moves live connections
between workers (:meth:`Runtime.migrate`) and shuts down gracefully.
``run(main, workers=N)`` is the ``asyncio.run`` of ringleader: ``main`` runs on
worker 0, in the calling thread.

Connection spreading has two modes, measured against each other by
``scripts/bench serve-modes``:

* ``"reuseport"``: every worker has its own listening socket on the port
  (SO_REUSEPORT); the kernel hashes each new connection to one of them;
* ``"acceptor"``: worker 0 accepts for everyone (multishot accept) and hands
  each new socket to the next worker with a MSG_RING message; the receiving
  worker registers it in its own fixed-file table.

``"reuseport"`` is the default because it was the cheaper one where the two
differ, on new connections: with ``Connection: close`` (2 workers, one core)
it took 110 us of server CPU per request against 121 us for the acceptor
(medians of 5; 112 vs 137 in a second run), whose extra hop (MSG_RING to the
target worker, a socket object there) is pure overhead per connection.  On
kept-alive connections both run the same code and measured alike (19.1 vs
19.5 us/request, within the run-to-run spread).

Migration hands the *fixed file* itself from ring to ring with MSG_RING
SEND_FD; the transport object (protocol, buffered bytes) follows.

The GIL: workers are threads of one interpreter, so Python code on different
workers does not run in parallel; what overlaps is time spent in the kernel
(waiting in io_uring_enter, the network stack).  The supervisor measures what
an extra worker buys instead of assuming it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import resource
import socket
import threading
import time
from typing import Any, Awaitable, Callable

from ..uring import consts, error_from_result
from .errors import MigrationError, MigrationRefused, WorkerError
from .loop import TAG_MIGRATE, TAG_NEWFD, RingEventLoop, _shutdown_listener
from .migration import Migration
from .registry import Registry
from .stats import LoopStats
from .transport import RingTransport

logger = logging.getLogger("ringleader.runtime")


def _raise_nofile_limit() -> None:
    # Fixed-file tables are bounded by RLIMIT_NOFILE, and a server wants many
    # sockets: lift the soft limit to the hard one, as most servers do.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


class Worker:
    """One thread, one ring, one loop."""

    def __init__(self, runtime: "Runtime", wid: int):
        self.id = wid
        self.runtime = runtime
        self.loop: RingEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.ring_fd = -1
        self.draining = False

    def make_loop(self) -> RingEventLoop:
        loop = RingEventLoop(worker_id=self.id, runtime=self.runtime, **self.runtime.loop_options)
        self.loop = loop
        self.ring_fd = loop.ring_fd
        loop.register_message_handler(TAG_MIGRATE, self.runtime._on_migrate_in)
        loop.register_message_handler(TAG_NEWFD, self.runtime._on_new_fd)
        return loop

    def _thread_main(self) -> None:
        try:
            loop = self.make_loop()
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            return
        asyncio.set_event_loop(loop)
        self.ready.set()
        try:
            loop.run_forever()
        finally:
            try:
                _cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def start_thread(self) -> None:
        self.thread = threading.Thread(target=self._thread_main, name=f"ringleader-worker-{self.id}",
                                       daemon=True)
        self.thread.start()
        self.ready.wait()
        if self.error is not None:
            raise self.error


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


class ServerGroup:
    """The listening side of :meth:`Runtime.serve` across all workers."""

    def __init__(self, runtime: "Runtime", port: int, mode: str):
        self.runtime = runtime
        self.port = port
        self.mode = mode
        self._servers: list[tuple[RingEventLoop, Any]] = []
        self.closed = False

    def close(self) -> None:
        """Stop accepting on every worker (thread-safe; connections stay open)."""
        if self.closed:
            return
        self.closed = True
        for loop, srv in self._servers:
            if loop.is_closed():
                continue
            if threading.get_ident() == loop._owner:
                srv.close()
            else:
                loop.call_soon_threadsafe(srv.close)


class _Acceptor:
    """Worker 0's multishot accept that deals sockets round-robin to workers."""

    def __init__(self, runtime: "Runtime", loop: RingEventLoop, sock: socket.socket,
                 protocol_factory, lid: int):
        self.runtime = runtime
        self.loop = loop
        self.sock = sock
        self.factory = protocol_factory
        self.lid = lid
        self.rr = itertools.count()
        self.ud = loop._alloc_ud(self._on_accept)
        loop._ring.accept(sock.fileno(), self.ud, multishot=True)
        loop._kick()

    def _on_accept(self, res: int, flags: int) -> None:
        if res >= 0:
            # Index modulo the current worker count: workers added later get
            # their share, and a draining worker is skipped.
            live = [w for w in self.runtime.workers if not w.draining]
            target = live[next(self.rr) % len(live)]
            if target.loop is self.loop:
                self.loop.adopt_socket(socket.socket(fileno=res), self.factory)
            else:
                # res is a process-wide fd: the message carries it to the
                # target ring, whose handler registers it in its own table.
                self.loop.send_message(target.ring_fd, TAG_NEWFD, self.lid, res)
        elif res != -125:  # ECANCELED when closing
            logger.warning("acceptor: %s", error_from_result(res, "accept", self.sock.fileno()))
        if not flags & consts.CQE_F_MORE and self.sock.fileno() >= 0:
            self.loop._ring.accept(self.sock.fileno(), self.ud, multishot=True)

    def close(self) -> None:
        if self.sock.fileno() < 0:
            return
        # As the loop's own servers: late accepts are closed, not leaked, and
        # shutdown() stops the listener although the ring still references it.
        self.loop._retire_accept(self.ud)
        _shutdown_listener(self.sock)
        self.sock.close()


class Runtime:
    """N workers, each a thread owning one ring and one asyncio-compatible loop."""

    def __init__(self, workers: int = 1, *, loop_options: dict | None = None,
                 debug_socket: bool | str | os.PathLike = True, control: bool = False,
                 supervisor=None):
        """``debug_socket``: serve the debug socket (:mod:`ringleader.runtime.debug`)
        at its default path (True), at a given path, or not at all (False);
        ``control=True`` enables its commands that change the runtime.
        ``supervisor``: a :class:`ringleader.supervisor.SupervisorConfig` to run the
        supervisor on worker 0 (it adopts registered pools that carry an
        ``autoscale`` setting or are named in the config); None runs none."""
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if supervisor is not None:
            from ..supervisor.config import ConfigError, SupervisorConfig
            if not isinstance(supervisor, SupervisorConfig):
                raise ConfigError(f"supervisor must be a ringleader.supervisor.SupervisorConfig "
                                  f"(or None for no supervisor), got {supervisor!r}")
        self.loop_options = dict(loop_options or {})
        self.debug_socket = debug_socket
        self.control = control
        self.debug_server = None
        self.registry = Registry()
        self.supervisor_config = supervisor
        self.supervisor = None
        self.workers: list[Worker] = [Worker(self, i) for i in range(workers)]
        self._migrations: dict[int, Migration] = {}  # in flight, by MSG_RING token
        self._tokens = itertools.count(1)
        self._listeners: dict[int, tuple] = {}
        self._lids = itertools.count(1)
        self._groups: list[ServerGroup] = []
        self._lock = threading.Lock()
        self.started = False
        self.stopped = False
        _raise_nofile_limit()

    # ------------------------------------------------------------ lifecycle
    def start(self, *, skip: tuple[int, ...] = ()) -> "Runtime":
        """Start worker threads (all but those in ``skip``, which the caller runs)."""
        for w in self.workers:
            if w.id not in skip:
                w.start_thread()
        self.started = True
        if self.debug_socket and self.debug_server is None:
            self._start_debug_server()
        if self.supervisor_config is not None and 0 not in skip:
            self.spawn(self.start_supervisor(), 0).result()
        return self

    async def start_supervisor(self):
        """Start the configured supervisor on this worker (worker 0 by convention)."""
        if self.supervisor is None and self.supervisor_config is not None:
            from ..supervisor import Supervisor
            self.supervisor = Supervisor(self, self.supervisor_config).start()
        return self.supervisor

    async def _stop_supervisor(self) -> None:
        sup, self.supervisor = self.supervisor, None
        if sup is not None:
            await sup.stop()
            self.register_supervisor(None)

    def _start_debug_server(self) -> None:
        from .debug import DebugError, DebugServer
        path = None if self.debug_socket is True else self.debug_socket
        try:
            self.debug_server = DebugServer(self, path, control=self.control).start()
        except DebugError as exc:
            if path is not None:
                raise
            # The default socket is a convenience: a service must not fail to
            # start because /run or /tmp is unusable.
            logger.warning("debug socket disabled: %s", exc)

    # ------------------------------------------------------------ registry
    def register_pool(self, name: str, pool, worker: int | None = None) -> None:
        """Show ``pool`` on the debug socket and in metrics as ``name``; its
        control ``resize`` runs on ``worker`` (default: the calling worker, else 0)."""
        if worker is None:
            worker = self.current_worker() or 0
        self.registry.add_pool(name, pool, worker)

    def unregister_pool(self, name: str) -> None:
        self.registry.remove_pool(name)

    def register_supervisor(self, supervisor) -> None:
        """Show ``supervisor`` (its ``snapshot()``) on the debug socket; None unregisters."""
        self.registry.set_supervisor(supervisor)

    def add_worker(self) -> int:
        """Start one more worker (from any thread but a worker's: it blocks until
        the new loop runs); it joins every reuseport server.  Returns its id."""
        with self._lock:
            w = Worker(self, len(self.workers))
            w.start_thread()
            self.workers.append(w)
        for g in self._groups:
            if g.mode == "reuseport" and not g.closed:
                srv = self.spawn(_listen_reuseport(g, w.loop), w.id).result()
                g._servers.append((w.loop, srv))
        return w.id

    async def remove_last_worker(self, drain_timeout: float = 5.0) -> int:
        """Drain and stop the highest-numbered worker (not worker 0): its servers
        stop accepting, its connections migrate to the other workers (TLS ones,
        which cannot migrate, are closed, so their protocols see
        connection_lost rather than a dead ring), then its loop stops and its
        ring closes.  Call from any worker but that one."""
        with self._lock:
            if len(self.workers) < 2:
                raise WorkerError("cannot remove the last remaining worker")
            w = self.workers[-1]
            w.draining = True
        if self.current_worker() == w.id:
            raise WorkerError("remove_last_worker() cannot run on the worker it removes")
        others = [x.id for x in self.workers[:-1]]

        async def evacuate():
            for g in self._groups:
                for loop, srv in list(g._servers):
                    if loop is w.loop:
                        srv.close()
                        g._servers.remove((loop, srv))
            return await _evacuate(self, w.loop, others, drain_timeout)

        await self.run_on(w.id, evacuate())
        w.loop.call_soon_threadsafe(w.loop.stop)
        await asyncio.get_running_loop().run_in_executor(None, w.thread.join, drain_timeout)
        with self._lock:
            self.workers.remove(w)
        return w.id

    def worker(self, wid: int) -> Worker:
        try:
            return self.workers[wid]
        except IndexError:
            raise WorkerError(f"no worker {wid}: this runtime has {len(self.workers)}") from None

    def loop(self, wid: int) -> RingEventLoop:
        loop = self.worker(wid).loop
        if loop is None or loop.is_closed():
            raise WorkerError(f"worker {wid} is not running")
        return loop

    @staticmethod
    def current_worker() -> int | None:
        """The id of the worker whose loop is running in this thread, if any."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return None
        return getattr(loop, "worker_id", None)

    # ------------------------------------------------------- cross-worker
    def spawn(self, coro: Awaitable, worker: int = 0) -> concurrent.futures.Future:
        """Run ``coro`` as a task on ``worker`` (from any thread)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop(worker))

    def call(self, worker: int, fn: Callable, *args) -> concurrent.futures.Future:
        """Call ``fn(*args)`` on ``worker``'s thread; the future gets its result."""
        loop = self.loop(worker)
        fut: concurrent.futures.Future = concurrent.futures.Future()

        def run() -> None:
            if not fut.set_running_or_notify_cancel():
                return
            try:
                fut.set_result(fn(*args))
            except BaseException as exc:
                fut.set_exception(exc)

        loop.call_soon_threadsafe(run)
        return fut

    async def run_on(self, worker: int, coro: Awaitable) -> Any:
        """From inside a worker: await ``coro`` executed on ``worker``."""
        if self.current_worker() == worker:
            return await coro
        return await asyncio.wrap_future(self.spawn(coro, worker))

    def stats(self) -> list[LoopStats]:
        """A frozen snapshot per running worker (from any thread)."""
        return [w.loop.stats() for w in self.workers if w.loop is not None and not w.loop.is_closed()]

    # ------------------------------------------------------------- serving
    async def serve(self, protocol_factory: Callable[[], asyncio.BaseProtocol], host: str = "127.0.0.1",
                    port: int = 0, *, mode: str = "reuseport", backlog: int = 1024) -> ServerGroup:
        """Serve TCP on ``host:port`` with connections spread across all workers."""
        if mode not in ("reuseport", "acceptor"):
            raise ValueError(f"mode must be 'reuseport' or 'acceptor', got {mode!r}")
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
        family, _, _, _, addr = infos[0]

        def listener(bind_port: int) -> socket.socket:
            s = socket.socket(family, socket.SOCK_STREAM)
            try:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if mode == "reuseport":
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                s.bind((addr[0], bind_port) + tuple(addr[2:]))
                s.listen(backlog)
                s.setblocking(False)
            except BaseException:
                s.close()
                raise
            return s

        first = listener(port)
        port = first.getsockname()[1]
        group = ServerGroup(self, port, mode)
        if mode == "acceptor":
            lid = next(self._lids)
            self._listeners[lid] = (protocol_factory,)
            loop0 = self.loop(0)

            async def start_acceptor():
                return _Acceptor(self, loop0, first, protocol_factory, lid)

            acc = await self.run_on(0, start_acceptor())
            group._servers.append((loop0, acc))
        else:
            group._listen = listener
            group._factory = protocol_factory
            group._backlog = backlog
            socks = [first] + [listener(port) for _ in self.workers[1:]]
            for w, s in zip(self.workers, socks):
                async def start(sock=s):
                    return await asyncio.get_running_loop().create_server(protocol_factory, sock=sock,
                                                                          backlog=backlog)
                srv = await self.run_on(w.id, start())
                group._servers.append((w.loop, srv))
        self._groups.append(group)
        return group

    def _on_new_fd(self, lid: int, fd: int) -> None:
        # Runs on the receiving worker's thread.
        loop = asyncio.get_running_loop()
        entry = self._listeners.get(lid)
        if entry is None or fd < 0:
            if fd >= 0:
                os.close(fd)
            return
        loop.adopt_socket(socket.socket(fileno=fd), entry[0])

    # ----------------------------------------------------------- migration
    async def migrate(self, conn, worker: int) -> None:
        """Move a live connection to ``worker``; call it on the connection's worker.

        ``conn`` is a :class:`RingTransport` or anything with one at
        ``.transport`` (a protocol, a StreamWriter).  The steps and what each
        failure leaves behind are :mod:`ringleader.runtime.migration`'s: bytes
        that arrive while moving are delivered on the new worker first, bytes
        written meanwhile are sent from there; the fixed file moves with
        MSG_RING SEND_FD; afterwards the new worker's thread drives the
        protocol, and code on the old worker must not use the transport.

        Raises :class:`MigrationRefused` (a :class:`MigrationError`) when it
        cannot move now (called off its worker, TLS, closing, already moving,
        a draining target, or its protocol's ``migration_blocker()`` names a
        reason): nothing changed and it keeps working where it was.  Any other
        failure is a :class:`MigrationError` whose ``where`` says whether it is
        still on its worker or was closed.  Never waits forever: every path
        resolves the call.
        """
        t = _as_transport(conn)
        src = t._loop
        if src is None or asyncio.get_running_loop() is not src:
            raise MigrationRefused(f"migrate() must run on the connection's worker "
                                   f"({getattr(src, 'worker_id', '?')})")
        dst = self.loop(worker)
        if dst is src:
            return
        if self.workers[worker].draining:
            raise MigrationRefused(f"worker {worker} is being removed; it takes no connections")
        await Migration(t, src, dst, next(self._tokens), self._migrations).run()

    def _on_migrate_in(self, token: int, slot: int) -> None:
        # Runs on the destination worker's thread.
        m = self._migrations.get(token)
        if m is not None:
            m.arrive(slot)

    def _abandon_migrations(self) -> None:
        for m in list(self._migrations.values()):
            m.abandon("the runtime stopped before the target worker took the connection")

    # ------------------------------------------------------------ shutdown
    def stop(self, drain_timeout: float = 10.0) -> None:
        """Graceful stop from any non-worker thread: stop accepting, let
        connections finish until ``drain_timeout``, then cancel tasks, stop
        the loops, close the rings, join the threads."""
        if self.stopped:
            return
        self.stopped = True
        sup_loop = self.workers[0].loop
        if self.supervisor is not None and sup_loop is not None and self.workers[0].thread is not None:
            asyncio.run_coroutine_threadsafe(self._stop_supervisor(), sup_loop).result()
        if self.debug_server is not None:
            self.debug_server.close()
        for g in self._groups:
            g.close()
        deadline = time.monotonic() + drain_timeout
        while time.monotonic() < deadline:
            if not any(w.loop is not None and not w.loop.is_closed() and w.loop._conns
                       for w in self.workers):
                break
            time.sleep(0.01)
        for w in self.workers:
            if w.loop is not None and not w.loop.is_closed() and w.thread is not None:
                w.loop.call_soon_threadsafe(_abort_all, w.loop)
                w.loop.call_soon_threadsafe(w.loop.stop)
        for w in self.workers:
            if w.thread is not None:
                w.thread.join()
        self._abandon_migrations()

    async def shutdown(self, drain_timeout: float = 10.0) -> None:
        """Graceful stop from inside worker 0 (as ``run`` does when main returns)."""
        await self._stop_supervisor()
        for g in self._groups:
            g.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + drain_timeout
        while loop.time() < deadline:
            if not any(w.loop is not None and not w.loop.is_closed() and w.loop._conns
                       for w in self.workers):
                break
            await asyncio.sleep(0.01)
        await asyncio.get_running_loop().run_in_executor(None, self.stop, 0.0)


async def _listen_reuseport(group: ServerGroup, loop: RingEventLoop):
    sock = group._listen(group.port)
    return await loop.create_server(group._factory, sock=sock, backlog=group._backlog)


async def _evacuate(rt: Runtime, loop: RingEventLoop, others: list[int], drain_timeout: float) -> int:
    """On a worker being removed: move its connections to ``others``.  A
    connection busy right now is retried until ``drain_timeout``; one that can
    never move (TLS), or is still busy then, is closed, so its protocol sees
    connection_lost rather than a dead ring.  Returns how many moved."""
    deadline = loop.time() + drain_timeout
    moved = 0
    pending = list(loop._conns.values())
    k = 0
    while pending:
        retry = []
        for t in pending:
            if t.is_closing() or t._loop is not loop:
                continue
            k += 1
            try:
                await rt.migrate(t, others[k % len(others)])
                moved += 1
            except MigrationRefused as exc:
                if exc.permanent:
                    t.close()
                else:
                    retry.append(t)
            except MigrationError:
                pass  # resolved: it was closed on the way
        pending = retry
        if pending:
            if loop.time() >= deadline:
                for t in pending:
                    logger.warning("closing %r: still busy when its worker was removed", t)
                    t.abort()
                break
            await asyncio.sleep(0.01)
    return moved


def _abort_all(loop: RingEventLoop) -> None:
    for t in list(loop._conns.values()):
        t.abort()


def _as_transport(conn) -> RingTransport:
    if isinstance(conn, RingTransport):
        return conn
    t = getattr(conn, "transport", None) or getattr(conn, "_transport", None)
    if isinstance(t, RingTransport):
        return t
    # asyncio's TLS transport over one of ours: the ring transport below it
    # decides (it refuses, see RingTransport.migratable).
    t = getattr(getattr(conn, "_ssl_protocol", None), "_transport", None)
    if isinstance(t, RingTransport):
        return t
    raise TypeError(f"cannot migrate {conn!r}: it is not (and does not hold) a ringleader transport")


def run(main: Callable[..., Awaitable] | Awaitable, *, workers: int = 1, drain_timeout: float = 10.0,
        debug: bool | None = None, loop_options: dict | None = None,
        debug_socket: bool | str | os.PathLike = True, control: bool = False,
        supervisor=None) -> Any:
    """Like ``asyncio.run``: run ``main`` on worker 0 (this thread) with ``workers`` rings.

    ``main`` is a coroutine, or a coroutine function taking the :class:`Runtime`.
    Returns its result; on return the runtime drains and stops.  ``debug_socket``
    ``control`` and ``supervisor`` are :class:`Runtime`'s.
    """
    rt = Runtime(workers, loop_options=loop_options, debug_socket=debug_socket, control=control,
                 supervisor=supervisor)
    w0 = rt.workers[0]
    runner = asyncio.Runner(debug=debug, loop_factory=w0.make_loop)

    async def entry():
        rt.start(skip=(0,))
        await rt.start_supervisor()
        try:
            coro = main(rt) if callable(main) else main
            return await coro
        finally:
            await rt.shutdown(drain_timeout)

    with runner:
        return runner.run(entry())
