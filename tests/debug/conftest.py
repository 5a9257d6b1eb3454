"""Fixtures for the debug-socket tier: a real runtime serving echo traffic under
load, a blocking protocol client, and helpers to run the ``ringleader`` CLI."""
import asyncio
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from ringleader.drivers.pool import Pool
from ringleader.runtime import Runtime
from ringleader.runtime.debug_cli import DebugClient
from ..tutil import Echo


class Service:
    """A 2-worker runtime with an echo server and clients looping on worker 0.

    ``trips`` counts completed echo round trips, so a test can check that
    traffic kept flowing while it abused the debug socket.
    """

    def __init__(self, *, debug_socket=None, control=False, conns=4, workers=2,
                 mode="reuseport", backend="auto"):
        self.dir = tempfile.mkdtemp(prefix="rl-dbg-")
        if debug_socket is None:
            debug_socket = os.path.join(self.dir, "debug.sock")
        self.rt = Runtime(workers, debug_socket=debug_socket, control=control,
                          backend=backend).start()
        self.trips = 0
        self.errors: list[BaseException] = []
        self._stop = False
        # mode="acceptor" deals connections round-robin: every worker gets some
        # (SO_REUSEPORT's hash may put all of them on one worker).
        self.group = self.rt.spawn(self.rt.serve(Echo, "127.0.0.1", 0, mode=mode)).result(10)
        self.port = self.group.port
        self._clients = [self.rt.spawn(self._client(k), worker=0) for k in range(conns)]
        self.pool = None
        self.supervisor = None

    @property
    def path(self) -> Path:
        return self.rt.debug_server.path

    async def _client(self, k: int) -> None:
        r, w = await asyncio.open_connection("127.0.0.1", self.port)
        msg = bytes([65 + k]) * (64 * (k + 1))
        try:
            while not self._stop:
                w.write(msg)
                await w.drain()
                got = await r.readexactly(len(msg))
                if got != msg:
                    raise AssertionError(f"echo corrupted on client {k}")
                self.trips += 1
                if k % 2:
                    await asyncio.sleep(0.002)
        except BaseException as exc:
            if not self._stop:
                self.errors.append(exc)
            raise
        finally:
            w.close()

    def wait_trips(self, n: int, timeout: float = 10.0) -> None:
        start = self.trips
        deadline = time.monotonic() + timeout
        while self.trips < start + n:
            assert not self.errors, self.errors
            assert time.monotonic() < deadline, f"traffic stalled at {self.trips - start} trips"
            time.sleep(0.01)

    def add_pool(self, name: str = "echo", min_size: int = 1, max_size: int = 4) -> Pool:
        """A real pool of TCP connections to the echo server, opened on worker 0."""
        port = self.port

        async def connect():
            _, w = await asyncio.open_connection("127.0.0.1", port)
            return w

        async def make():
            pool = Pool(connect, min_size=min_size, max_size=max_size, name=name)
            await pool.open()
            for _ in range(3):
                async with pool.acquire() as w:
                    w.write(b"x")
            self.rt.register_pool(name, pool)
            return pool

        self.pool = self.rt.spawn(make()).result(10)
        return self.pool

    def add_supervisor(self):
        """The real supervisor, watching the pool (which must exist)."""
        from ringleader.supervisor import PoolAutoscale, Supervisor, SupervisorConfig

        async def make():
            # down_window 2 s (default 30): the supervisor shrinks only after a
            # full down window of history, and the tests wait for its decisions.
            cfg = SupervisorConfig(period=0.1, pools={"echo": PoolAutoscale(min=1, max=8,
                                                                           down_window=2.0)})
            return Supervisor(self.rt, cfg, pools={"echo": self.pool}).start()

        self.supervisor = self.rt.spawn(make()).result(10)
        return self.supervisor

    def client(self, **kw) -> DebugClient:
        return DebugClient(self.path, **kw)

    def close(self) -> None:
        self._stop = True
        if self.supervisor is not None:
            self.rt.spawn(self.supervisor.stop()).result(10)
        if self.pool is not None:
            self.rt.spawn(self.pool.close()).result(10)
        for f in self._clients:
            try:
                f.result(10)
            except BaseException:
                pass
        self.group.close()
        self.rt.stop(drain_timeout=2.0)
        shutil.rmtree(self.dir, ignore_errors=True)


@pytest.fixture
def service():
    made = []

    def make(**kw) -> Service:
        s = Service(**kw)
        made.append(s)
        return s
    yield make
    for s in made:
        s.close()


def cli_path() -> str:
    return str(Path(sys.executable).with_name("ringleader"))


@pytest.fixture
def no_thread_leak():
    # Compared as sets, not counts: a thread of an earlier test that ends
    # meanwhile must neither fail this test nor hide a leak of its own.
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5
    while set(threading.enumerate()) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not set(threading.enumerate()) - before
