"""Runtime tier: the migration state machine's failure paths (runtime/migration.py).

A protocol that refuses to move is told before anything is detached and keeps
working where it was; a protocol whose ``connection_migrated`` hook raises no
longer hangs ``migrate()`` (directly or through ``remove_last_worker()``): the
caller gets MigrationError and the protocol sees connection_lost; the hooks run
on the right threads in the right order.
"""
from __future__ import annotations

import asyncio
import threading

import pytest

import ringleader
from ringleader.runtime.errors import MigrationError, MigrationRefused
from ringleader.runtime.migration import Migration, MigrationAware, MigrationState

GUARD = 20.0  # bounds every wait; far above what any step takes


class Echo(asyncio.Protocol):
    """Echoes; may refuse to move (``busy``) or fail on arrival (``explode``);
    records which thread ran each hook."""

    def __init__(self):
        self.busy: str | None = None
        self.explode = False
        self.events: list[tuple[str, int | None]] = []
        self.lost = threading.Event()
        self.lost_exc: BaseException | None = None

    def connection_made(self, t):
        self.t = t

    def data_received(self, d):
        self.t.write(d)

    def connection_lost(self, exc):
        self.lost_exc = exc
        self.lost.set()

    def migration_blocker(self):
        return self.busy

    def connection_moving(self, loop):
        self.events.append(("moving", ringleader.Runtime.current_worker()))

    def connection_migrated(self, t, loop):
        self.events.append(("migrated", ringleader.Runtime.current_worker()))
        if self.explode:
            raise RuntimeError("this protocol cannot run on another loop")


async def _served(rt):
    loop = asyncio.get_running_loop()
    protos: list[Echo] = []
    srv = await loop.create_server(lambda: protos.append(Echo()) or protos[-1], "127.0.0.1", 0)
    r, w = await asyncio.open_connection(*srv.sockets[0].getsockname())
    w.write(b"ping")
    assert await asyncio.wait_for(r.readexactly(4), GUARD) == b"ping"
    return srv, protos[0], r, w


async def _roundtrip(r, w, data: bytes) -> bytes:
    w.write(data)
    return await asyncio.wait_for(r.readexactly(len(data)), GUARD)


async def _close(srv, w):
    w.close()
    await w.wait_closed()
    srv.close()


def test_a_protocol_that_cannot_move_now_is_refused_and_keeps_working(fd_guard):
    async def main(rt):
        srv, p, r, w = await _served(rt)
        assert isinstance(p, MigrationAware)
        p.busy = "a request is half done"
        assert p.t.migratable is False and p.t.conn_stats().migratable is False
        with pytest.raises(MigrationRefused, match="a request is half done") as info:
            await asyncio.wait_for(rt.migrate(p.t, 1), GUARD)
        assert info.value.where == "source" and not info.value.permanent
        assert p.events == [] and not p.t.migrating
        assert await _roundtrip(r, w, b"still here") == b"still here"
        p.busy = None
        await asyncio.wait_for(rt.migrate(p.t, 1), GUARD)
        assert p.events == [("moving", 0), ("migrated", 1)]
        assert await _roundtrip(r, w, b"moved") == b"moved"
        await _close(srv, w)

    ringleader.run(main, workers=2, debug_socket=False)


def test_a_hook_that_raises_fails_the_move_and_the_connection_without_hanging(fd_guard):
    async def main(rt):
        srv, p, r, w = await _served(rt)
        p.explode = True
        with pytest.raises(MigrationError, match="cannot run on another loop") as info:
            await asyncio.wait_for(rt.migrate(p.t, 1), GUARD)
        assert info.value.where == "closed"
        assert await asyncio.get_running_loop().run_in_executor(None, p.lost.wait, GUARD)
        assert isinstance(p.lost_exc, RuntimeError)
        assert await asyncio.wait_for(r.read(), GUARD) == b""  # the peer sees the close
        assert not rt._migrations
        await _close(srv, w)

    ringleader.run(main, workers=2, debug_socket=False)


def test_remove_last_worker_with_a_raising_hook_and_a_busy_protocol_returns(fd_guard):
    """Evacuation never hangs: the raising hook fails that connection; the one
    that stays busy is closed at the drain deadline."""
    async def main(rt):
        protos: list[Echo] = []
        g = await rt.serve(lambda: protos.append(Echo()) or protos[-1], "127.0.0.1", 0)
        peers = []
        # The kernel's reuseport hash picks the worker of each connection, so
        # connect until worker 1 holds three (one to explode, one to stay busy,
        # one to move): six fixed connections all landed on worker 0 in a CI run.
        on_1: list[Echo] = []
        while len(on_1) < 3 and len(peers) < 200:
            r, w = await asyncio.open_connection("127.0.0.1", g.port)
            w.write(b"x")
            await asyncio.wait_for(r.readexactly(1), GUARD)
            peers.append((r, w))
            on_1 = [p for p in protos if p.t._loop.worker_id == 1]
        assert len(on_1) >= 3, f"reuseport put {len(on_1)} of {len(peers)} connections on worker 1"
        on_1[0].explode = True
        on_1[1].busy = "never idle"
        removed = await asyncio.wait_for(rt.remove_last_worker(drain_timeout=1.0), GUARD)
        assert removed == 1
        loop = asyncio.get_running_loop()
        for p in on_1[:2]:
            assert await loop.run_in_executor(None, p.lost.wait, GUARD)
        for p in on_1[2:]:
            assert p.events == [("moving", 1), ("migrated", 0)]
        for r, w in peers:
            w.close()
        g.close()

    ringleader.run(main, workers=2, debug_socket=False)


def test_migrate_from_the_wrong_thread_or_to_a_draining_worker_is_refused(fd_guard):
    async def main(rt):
        srv, p, r, w = await _served(rt)

        async def elsewhere():
            await rt.migrate(p.t, 0)

        with pytest.raises(MigrationRefused, match="connection's worker"):
            await rt.run_on(1, elsewhere())
        rt.workers[1].draining = True
        with pytest.raises(MigrationRefused, match="being removed"):
            await rt.migrate(p.t, 1)
        rt.workers[1].draining = False
        assert await _roundtrip(r, w, b"ok") == b"ok"
        await _close(srv, w)

    ringleader.run(main, workers=2, debug_socket=False)


def test_the_state_machine_allows_only_its_transitions():
    m = Migration(t=None, src=None, dst=None, token=1, pending={})
    m._to(MigrationState.PREPARING)
    with pytest.raises(AssertionError):
        m._to(MigrationState.ARRIVED)  # not without handing over
    m._to(MigrationState.HANDING_OVER)
    m._to(MigrationState.RETURNED)
    with pytest.raises(AssertionError):
        m._to(MigrationState.HANDING_OVER)  # final
