"""Multiplexing: many callers' simple commands sharing a pool's connections.

What it does: for each event loop (worker), a :class:`Mux` borrows connections
from a :class:`ringleader.drivers.pool.Pool` and lets any number of callers
send commands on them at the same time: each command goes on the connection
being filled until that one has ``depth`` commands in flight, then on the
least-loaded one it holds.  A connection that pipelines (Redis auto-pipelining, a
Postgres Sync group per query) then carries all commands of one loop iteration
in one write, instead of one command per round trip as with acquire → run →
release.  Only *stateless* commands may go this way: no WATCH/MULTI, blocking
reads, pub/sub, transactions or session settings; the drivers route those to
an exclusive ``acquire()``.

How it sizes itself: it starts with one connection (waiting for it if there is
none) and borrows another, in the background, whenever the least-loaded one it
holds already has ``depth`` commands in flight and the pool has room; commands
never wait for that.  A connection idle for a whole ``idle_after`` period, or
held longer than the pool's ``max_lifetime``, broken, or moved to another loop
goes back to the pool, which health-checks, ages and reaps it as usual.

What the pool's stats mean for this path: ``requests_num`` counts every
multiplexed command (:meth:`Pool.count_request`) plus the mux's own borrows;
``usage_*`` gets one sample per multiplexed command, its time on the
connection (sent to replied, which includes waiting behind the commands
pipelined ahead of it), and nothing for the mux's hold time;
``requests_queued``/``acquire_wait_*`` count only the mux's borrows (a command
waits for one only when its loop's mux holds no connection yet);
``pool_in_use`` includes the connections the mux holds, ``pool_available``
excludes them.

Deadlines: a caller that has to wait for the first connection waits at most
the pool's ``acquire_timeout`` from the moment it asked, however many callers
wait with it (they share the one borrow under way; when it fails, the next
tries with what is left of its own deadline), then gets PoolTimeout.

Migration: a held connection that the runtime moves to another worker (only
an idle one moves, see :mod:`ringleader.drivers.contract`) is dropped by its
move listener the instant it leaves this loop, before any caller here can
pick it again, and goes back to the pool, which files it under its new worker.

What it does not do: retry, or know any protocol; it uses a connection only
through :class:`~.contract.PooledConnection` (``in_flight``, ``loop``,
``defunct``, the move listeners) and the pool only through
:class:`~.contract.SharedPool`; the drivers use it only through
:class:`~.contract.Multiplexer`.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Generic, TypeVar

from .errors import PoolTimeout
from .contract import SharedPool
from .poolentries import _is_bad

__all__ = ["Mux", "MuxSet"]

log = logging.getLogger(__name__)
C = TypeVar("C")


class Mux(Generic[C]):
    """The multiplexed connections of one loop; see the module docstring."""

    __slots__ = ("pool", "loop", "depth", "idle_after", "conns", "closed", "_growing",
                 "_first", "_used", "_held_since", "_timer", "_draining", "_next_shed", "_cur")

    def __init__(self, pool: SharedPool, loop: asyncio.AbstractEventLoop, depth: int,
                 idle_after: float) -> None:
        self.pool = pool
        self.loop = loop
        self.depth = depth
        self.idle_after = idle_after
        self.conns: list[C] = []
        self.closed = False
        self._growing: asyncio.Task[None] | None = None
        self._first: asyncio.Future[None] | None = None  # set while the first borrow runs
        self._used: set[int] = set()  # id(conn) of those that ended a command since the last tick
        self._held_since: dict[int, float] = {}
        self._timer: asyncio.TimerHandle | None = None
        # Taken out of the rotation, released once their last command ends.
        self._draining: list[C] = []
        self._next_shed = 0.0
        self._cur: C | None = None  # the connection being filled

    # -- picking a connection (the hot path) ---------------------------------------------

    def pick(self) -> C | None:
        """A connection to send on (see the module docstring), or None (then
        ``await get()``).  Starts borrowing one more when even the least-loaded
        one is ``depth`` deep."""
        if self.pool.wanted_back():
            self._shed()
        # Fill-first: stay on the current connection until it is ``depth`` deep
        # (bigger pipelines, fewer writes per loop iteration), then take the
        # least-loaded one.
        cur = self._cur
        if cur is not None and cur.in_flight < self.depth:
            return cur
        best = None
        least = 1 << 30
        for c in self.conns:
            n = c.in_flight
            if n < least:
                best, least = c, n
                if n == 0:
                    break
        self._cur = best
        if best is not None and least >= self.depth and self._growing is None \
                and len(self.conns) < self.pool.max_size and not self.closed:
            self._growing = self.loop.create_task(self._grow())
        return best

    async def get(self, timeout: float | None = None) -> C:
        """A connection to send on, borrowing the first one if none is held, within
        ``timeout`` (default: the pool's ``acquire_timeout``) from now.  Raises
        the pool's errors (PoolTimeout, PoolClosed, the connect error)."""
        loop = self.loop
        deadline = loop.time() + (self.pool.acquire_timeout if timeout is None else timeout)
        while True:
            conn = self.pick()
            if conn is not None:
                if not _is_bad(conn):
                    return conn
                self.drop(conn)
                continue
            if self._first is not None:
                try:
                    async with asyncio.timeout_at(deadline):
                        await asyncio.shield(self._first)
                except TimeoutError:
                    self.pool.record_error("pool_timeout")
                    raise PoolTimeout(f"{self.pool.name}: no connection within the acquire "
                                      f"timeout (waiting for the multiplexer's first "
                                      f"connection)") from None
                continue
            self._first = loop.create_future()
            try:
                conn = await self.pool.acquire(max(0.0, deadline - loop.time()))
                self._adopt(conn)
            finally:
                first, self._first = self._first, None
                first.set_result(None)
            return conn

    async def _grow(self) -> None:
        try:
            conn = await self.pool.acquire()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the pool counted it; the held connections keep serving
            log.info("%s: multiplexer could not add a connection: %r", self.pool.name, exc)
            return
        finally:
            self._growing = None
        self._adopt(conn)

    def _adopt(self, conn: C) -> None:
        if self.closed:
            self.pool.release(conn)
            return
        self.pool.share(conn)
        listen = getattr(conn, "add_move_listener", None)
        if listen is not None:
            listen(self._on_moved)
        self.conns.append(conn)
        self._used.add(id(conn))
        self._held_since[id(conn)] = self.loop.time()
        if self._timer is None:
            self._timer = self.loop.call_later(self.idle_after, self._tick)

    # -- giving connections back ---------------------------------------------------------

    def _shed(self) -> None:
        """Others wait for a connection (an exclusive ``acquire()``), or the pool
        was shrunk below what is open: give one back (the excess, after a
        shrink).  A busy one is drained first — no new commands, released after
        its last reply — so a mux under constant load cannot starve exclusive
        users.  At most one drain at a time and one shed per 5 ms, so a queue
        of waiters costs the mux one connection per waiter served, not all."""
        if self._draining or not self.conns:
            return
        now = self.loop.time()
        if now < self._next_shed:
            return
        self._next_shed = now + 0.005
        n = self.pool.wanted_back()
        for conn in sorted(self.conns, key=lambda c: c.in_flight)[:n]:
            self.conns.remove(conn)
            if self._cur is conn:
                self._cur = None
            if conn.in_flight == 0:
                self._release(conn)
            else:
                self._draining.append(conn)

    def drop(self, conn: C) -> None:
        """Stops using ``conn`` and releases it (broken ones are counted and closed
        by the pool)."""
        if conn in self.conns:
            self.conns.remove(conn)
        elif conn in self._draining:
            self._draining.remove(conn)
        else:
            return
        self._release(conn)

    def _on_moved(self, conn: C) -> None:
        # The move listener: runs on this loop's thread as the connection leaves it.
        if conn.loop is not self.loop:
            self.drop(conn)

    def _release(self, conn: C) -> None:
        unlisten = getattr(conn, "remove_move_listener", None)
        if unlisten is not None:
            unlisten(self._on_moved)
        if self._cur is conn:
            self._cur = None
        self._used.discard(id(conn))
        self._held_since.pop(id(conn), None)
        try:
            self.pool.release(conn)
        except Exception as exc:  # released by a racing path already
            log.debug("%s: multiplexer release: %r", self.pool.name, exc)

    def after(self, conn: C) -> None:
        """Call when a command on ``conn`` ended: hands back broken connections, and
        all of them once the mux is closing and they are idle."""
        self._used.add(id(conn))
        if _is_bad(conn) or ((self.closed or conn in self._draining) and conn.in_flight == 0):
            self.drop(conn)

    def ended(self, conn: C) -> None:
        """A command on ``conn`` ended: the drivers' hot path.  Notes the
        connection used this period; when the mux is closing or draining, or the
        connection is defunct, hands it back as :meth:`after` does."""
        if self.closed or self._draining or conn.defunct:
            self.after(conn)
        else:
            self._used.add(id(conn))

    def _tick(self) -> None:
        self._timer = None
        now = self.loop.time()
        used, self._used = self._used, set()
        for conn in self._draining:
            if conn.in_flight == 0 or _is_bad(conn):
                self.drop(conn)
        for conn in list(self.conns):
            idle = conn.in_flight == 0
            if (_is_bad(conn) or getattr(conn, "loop", self.loop) is not self.loop
                    or (idle and (id(conn) not in used
                                  or now - self._held_since[id(conn)] >= self.pool.max_lifetime))):
                self.drop(conn)
        if (self.conns or self._draining) and not self.closed:
            self._timer = self.loop.call_later(self.idle_after, self._tick)

    def close(self) -> None:
        """Releases idle connections now and busy ones when their last command ends."""
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._growing is not None:
            self._growing.cancel()
        for conn in list(self.conns) + self._draining:
            if conn.in_flight == 0 or _is_bad(conn):
                self.drop(conn)


class MuxSet(Generic[C]):
    """One :class:`Mux` per loop for a pool (each worker multiplexes its own
    connections: they are bound to the worker's ring)."""

    def __init__(self, pool: SharedPool, depth: int = 8, idle_after: float = 1.0) -> None:
        self.pool = pool
        self.depth = depth
        self.idle_after = idle_after
        self.by_loop: dict[asyncio.AbstractEventLoop, Mux[C]] = {}

    def get(self, loop: asyncio.AbstractEventLoop) -> Mux[C]:
        mux = self.by_loop.get(loop)
        if mux is None:
            self.pool.check_loop(loop)
        if mux is None or mux.closed:
            mux = self.by_loop[loop] = Mux(self.pool, loop, self.depth, self.idle_after)
        return mux

    def close(self) -> None:
        """Closes every loop's mux, each on its own loop."""
        muxes, self.by_loop = list(self.by_loop.values()), {}
        for mux in muxes:
            try:
                running = asyncio.get_running_loop()
            except RuntimeError:
                running = None
            if mux.loop is running:
                mux.close()
            elif not mux.loop.is_closed():
                try:
                    mux.loop.call_soon_threadsafe(mux.close)
                except RuntimeError:
                    pass
