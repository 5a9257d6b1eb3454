"""The runtime: N workers, each a thread running one event loop, and what spans them.

``Runtime`` starts N workers (:mod:`.worker`), lets any thread call into a
given worker, serves TCP with connections spread across workers
(:mod:`.serving`), moves live connections between workers
(:meth:`Runtime.migrate`, steps in :mod:`.migration`), adds and removes
workers, and shuts down gracefully.  ``run(main, workers=N)`` (:mod:`.entry`)
is the ``asyncio.run`` of ringleader.

Backends (:mod:`.backend`): every worker runs on io_uring (a
:class:`RingEventLoop` per worker; migration hands the *fixed file* from ring
to ring with MSG_RING SEND_FD) or, where io_uring is denied, on the epoll
fallback (an :class:`~.epoll.EpollEventLoop` per worker; migration hands the
fd to the other loop's thread).  The choice is made once per runtime
(``backend="auto"`` probes) and is the same for all its workers.

The GIL: workers are threads of one interpreter, so Python code on different
workers does not run in parallel; what overlaps is time spent in the kernel
(waiting in io_uring_enter or epoll_wait, the network stack).  The supervisor
measures what an extra worker buys instead of assuming it.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import logging
import os
import socket
import threading
import time
from typing import Any, Awaitable, Callable

from . import serving
from .backend import Choice, choose
from .epoll_transport import EpollTransport
from .errors import MigrationError, MigrationRefused, WorkerError
from .migration import Migration
from .registry import Registry
from .serving import ServerGroup
from .stats import LoopStats
from .transport import RingTransport
from .worker import Worker, raise_nofile_limit

logger = logging.getLogger("ringleader.runtime")

__all__ = ["Runtime", "ServerGroup", "Worker"]


class Runtime:
    """N workers, each a thread owning one ring and one asyncio-compatible loop."""

    def __init__(self, workers: int = 1, *, loop_options: dict | None = None,
                 debug_socket: bool | str | os.PathLike = True, control: bool = False,
                 supervisor=None, backend: str = "auto"):
        """``debug_socket``: serve the debug socket (:mod:`ringleader.runtime.debug`)
        at its default path (True), at a given path, or not at all (False);
        ``control=True`` enables its commands that change the runtime.
        ``supervisor``: a :class:`ringleader.supervisor.SupervisorConfig` to run the
        supervisor on worker 0 (it adopts registered pools that carry an
        ``autoscale`` setting or are named in the config); None runs none.
        ``backend``: ``"auto"`` (io_uring where this process may use it, else
        the epoll fallback, with one log line saying why), ``"uring"`` (no
        fallback: RingUnavailableError) or ``"epoll"``."""
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if supervisor is not None:
            from ..supervisor.config import ConfigError, SupervisorConfig
            if not isinstance(supervisor, SupervisorConfig):
                raise ConfigError(f"supervisor must be a ringleader.supervisor.SupervisorConfig "
                                  f"(or None for no supervisor), got {supervisor!r}")
        self.choice: Choice = choose(backend)
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
        raise_nofile_limit()

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
                srv = self.spawn(serving.listen_reuseport(g, w.loop), w.id).result()
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

    def loop(self, wid: int):
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
    @property
    def backend(self) -> str:
        """``"uring"`` or ``"epoll"``: what every worker runs on (``choice.reason`` says why)."""
        return self.choice.name

    async def serve(self, protocol_factory: Callable[[], asyncio.BaseProtocol], host: str = "127.0.0.1",
                    port: int = 0, *, mode: str = "reuseport", backlog: int = 1024) -> ServerGroup:
        """Serve TCP on ``host:port`` with connections spread across all workers
        (``mode``: ``"reuseport"`` or ``"acceptor"``, see :mod:`.serving`)."""
        return await serving.serve(self, protocol_factory, host, port, mode, backlog)

    def listen_each(self, host: str = "127.0.0.1", port: int = 0, *,
                    backlog: int = 1024) -> list[socket.socket]:
        """One listening TCP socket per worker, all bound to ``host:port`` with
        SO_REUSEPORT (port 0: the first picks one, the rest share it), so the
        kernel spreads connections over the workers.  For frameworks that
        serve on sockets they are given (``uvicorn.Server.serve(sockets=)``,
        aiohttp's ``SockSite``); see :mod:`ringleader.runtime.asgi`.
        Blocking name resolution: call it before serving."""
        return serving.listen_each(len(self.workers), host, port, backlog)

    async def run_everywhere(self, fn: Callable[[int], Awaitable]) -> list:
        """Run ``fn(worker_id)`` on every worker at once; their results in worker
        order.  The first failure is raised once all have finished."""
        futs = [self.spawn(fn(w.id), w.id) for w in self.workers]
        return await asyncio.gather(*(asyncio.wrap_future(f) for f in futs))

    def _on_new_fd(self, lid: int, fd: int) -> None:
        serving.on_new_fd(self, lid, fd)

    # ----------------------------------------------------------- migration
    async def migrate(self, conn, worker: int) -> None:
        """Move a live connection to ``worker``; call it on the connection's worker.

        ``conn`` is a :class:`RingTransport` or anything with one at
        ``.transport`` (a protocol, a StreamWriter).  The steps and what each
        failure leaves behind are :mod:`ringleader.runtime.migration`'s: bytes
        that arrive while moving are delivered on the new worker first, bytes
        written meanwhile are sent from there; the fixed file moves with
        MSG_RING SEND_FD (on epoll, the fd goes to the other loop's thread); afterwards the new worker's thread drives the
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
            if not any(w.loop is not None and not w.loop.is_closed() and w.loop.connections()
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
            if not any(w.loop is not None and not w.loop.is_closed() and w.loop.connections()
                       for w in self.workers):
                break
            await asyncio.sleep(0.01)
        await asyncio.get_running_loop().run_in_executor(None, self.stop, 0.0)


async def _evacuate(rt: Runtime, loop, others: list[int], drain_timeout: float) -> int:
    """On a worker being removed: move its connections to ``others``.  A
    connection busy right now is retried until ``drain_timeout``; one that can
    never move (TLS), or is still busy then, is closed, so its protocol sees
    connection_lost rather than a dead ring.  Returns how many moved."""
    deadline = loop.time() + drain_timeout
    moved = 0
    pending = loop.connections()
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


def _abort_all(loop) -> None:
    for t in loop.connections():
        t.abort()


_OURS = (RingTransport, EpollTransport)


def _as_transport(conn) -> RingTransport | EpollTransport:
    if isinstance(conn, _OURS):
        return conn
    t = getattr(conn, "transport", None) or getattr(conn, "_transport", None)
    if isinstance(t, _OURS):
        return t
    # asyncio's TLS transport over one of ours: the transport below it
    # decides (it refuses, see RingTransport.migratable).
    t = getattr(getattr(conn, "_ssl_protocol", None), "_transport", None)
    if isinstance(t, _OURS):
        return t
    raise TypeError(f"cannot migrate {conn!r}: it is not (and does not hold) a ringleader transport")
