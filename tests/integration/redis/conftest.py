"""Fixtures for the Redis integration tests: real ``redis-server`` processes on
free ports in temp dirs (no persistence), and a ``run`` fixture parametrised
over the event loops the driver must work on."""
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time

import pytest

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class RedisServer:
    """One redis-server child process; ``restart()`` keeps port and directory."""

    def __init__(self, workdir: str, certs: dict[str, str] | None = None) -> None:
        self.dir = workdir
        self.port = free_port()
        self.socket = os.path.join(workdir, "redis.sock")
        self.proc: subprocess.Popen | None = None
        # With certs: also a TLS port, which wants a client certificate.
        self.certs = certs
        self.tls_port = free_port() if certs else None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def start(self) -> None:
        tls = [] if not self.certs else [
            "--tls-port", str(self.tls_port), "--tls-cert-file", self.certs["server.crt"],
            "--tls-key-file", self.certs["server.key"], "--tls-ca-cert-file", self.certs["ca.crt"],
            "--tls-auth-clients", "yes"]
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.dir, "--unixsocket", self.socket,
             "--enable-debug-command", "local", "--loglevel", "warning", *tls],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()


def _server(tmp_path_factory):
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (scripts/bootstrap installs it)")
    server = RedisServer(str(tmp_path_factory.mktemp("redis")))
    server.start()
    return server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    """A server shared by the tests that do not break it."""
    server = _server(tmp_path_factory)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def redis_tls_server(tmp_path_factory, tls_certs):
    """A server with a TLS port too (certificates from tests/conftest.py's tls_certs)."""
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (scripts/bootstrap installs it)")
    server = RedisServer(str(tmp_path_factory.mktemp("redis-tls")), tls_certs)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def own_redis_server(tmp_path_factory):
    """A server of this test's own, for tests that kill, restart or stall it."""
    server = _server(tmp_path_factory)
    yield server
    server.stop()


_PROBE = """
import asyncio
from ringleader.runtime import new_event_loop
loop = new_event_loop()
loop.run_until_complete(asyncio.sleep(0.01))
loop.close()
"""


@pytest.fixture(scope="session")
def ring_loop_problem():
    """Why ringleader's loop cannot be used here (None if it can).  Making one is
    tried in a child process first, so a runtime that cannot start on this
    machine skips those params instead of hanging the session."""
    try:
        from ringleader import runtime
    except ImportError as exc:
        return f"ringleader.runtime does not import: {exc}"
    if not hasattr(runtime, "new_event_loop"):
        return "ringleader.runtime has no new_event_loop yet"
    try:
        proc = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                              timeout=20)
    except subprocess.TimeoutExpired:
        return "ringleader.runtime.new_event_loop() hung for 20 s in a probe process"
    if proc.returncode != 0:
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return f"ringleader.runtime.new_event_loop() failed in a probe process: {last}"
    return None


def _ring_loop_factory(problem):
    if problem is not None:
        pytest.skip(problem)
    from ringleader.runtime import new_event_loop
    return new_event_loop


@pytest.fixture(params=["asyncio", "ringleader"])
def run(request):
    """``run(coro)`` runs a coroutine to completion on a fresh loop of each kind."""
    if request.param == "asyncio":
        factory = asyncio.new_event_loop
    else:
        factory = _ring_loop_factory(request.getfixturevalue("ring_loop_problem"))

    def runner(coro, timeout: float = 60.0):
        loop = factory()
        try:
            return loop.run_until_complete(asyncio.wait_for(coro, timeout))
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    runner.kind = request.param
    return runner
