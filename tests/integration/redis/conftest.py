"""Fixtures for the Redis integration tests: real ``redis-server`` processes on
free ports in temp dirs (no persistence), started by the rig's own server
module, and a ``run`` fixture parametrised over the event loops the driver
must work on."""
import asyncio
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "..", "scripts"))
from riglib import servers  # noqa: E402
from riglib.servers import free_port  # noqa: E402

from ringleader.drivers.redis.protocol import Parser  # noqa: E402

REDIS_SERVER = shutil.which("redis-server")


class RedisServer(servers.Redis):
    """The rig's redis-server (scripts/riglib/servers.py), unpinned, with a unix
    socket and DEBUG commands; with ``certs`` also a TLS port that wants a
    client certificate."""

    def __init__(self, certs: dict[str, str] | None = None) -> None:
        self.certs = certs
        self.tls_port = free_port() if certs else None
        tls = [] if not certs else [
            "--tls-port", str(self.tls_port), "--tls-cert-file", certs["server.crt"],
            "--tls-key-file", certs["server.key"], "--tls-ca-cert-file", certs["ca.crt"],
            "--tls-auth-clients", "yes"]
        super().__init__(core=None, unixsocket=True,
                         extra_args=["--enable-debug-command", "local", *tls])


def _server(certs=None):
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed (scripts/bootstrap installs it)")
    server = RedisServer(certs)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_server():
    """A server shared by the tests that do not break it."""
    yield from _server()


@pytest.fixture(scope="session")
def redis_tls_server(tls_certs):
    """A server with a TLS port too (certificates from tests/conftest.py's tls_certs)."""
    yield from _server(tls_certs)


@pytest.fixture
def own_redis_server():
    """A server of this test's own, for tests that kill, restart or stall it."""
    yield from _server()


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


class FakeRedis:
    """An asyncio server speaking just enough RESP: ``script(n, command)`` gives
    the raw bytes to answer command ``command`` on the n-th connection, a list
    of byte strings to send as separate pieces (a short pause after each, so
    they reach the client in separate receives), or None to hang up."""

    def __init__(self, script):
        self.script = script
        self.connections = 0
        self.server = None
        self.handlers: set[asyncio.Task] = set()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.url = f"redis://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        await self.server.wait_closed()
        for task in self.handlers:  # (one may still be pausing between pieces)
            task.cancel()
        await asyncio.gather(*self.handlers, return_exceptions=True)

    async def handle(self, reader, writer):
        n = self.connections
        self.connections += 1
        self.handlers.add(asyncio.current_task())
        parser = Parser()  # a request is a RESP array, which the reply parser reads
        try:
            while data := await reader.read(65536):
                for command in parser.feed(data):
                    answer = self.script(n, [c.decode() for c in command])
                    if answer is None:
                        writer.close()
                        return
                    for piece in answer if isinstance(answer, list) else [answer]:
                        writer.write(piece)
                        if isinstance(answer, list):
                            await writer.drain()
                            await asyncio.sleep(0.005)
        finally:
            writer.close()
