"""Real frameworks on the ring loop (issue 14): what the README's Frameworks
section claims, each tried.

Servers run in child processes (signals are process-wide) started from
``apps.py``; the test waits for a readiness line, talks HTTP to them, sends
SIGINT/SIGTERM and checks the shutdown hooks ran, the pools closed and no
traceback was printed.  The clients (httpx, aiohttp) run in this process on a
ring loop against a server on the same loop, with fds counted.
"""
from __future__ import annotations

import asyncio
import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

import ringleader

from ...conftest import URING_DENIED

# The loop frameworks get from ringleader: the ring's, or the epoll fallback's
# where io_uring is denied (the epoll tier, scripts/deny-uring).
OUR_LOOP = "EpollEventLoop" if URING_DENIED else "RingEventLoop"

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
pytest.importorskip("aiohttp")
pytest.importorskip("httpx")

HERE = os.path.dirname(os.path.abspath(__file__))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Child:
    """A server process whose merged output is collected line by line."""

    def __init__(self, args: list[str], env: dict | None = None):
        self.proc = subprocess.Popen(args, cwd=HERE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True,
                                     env={**os.environ, **(env or {})})
        self.lines: list[str] = []
        self._q: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        for line in self.proc.stdout:
            self._q.put(line.rstrip("\n"))
        self._q.put(None)

    def wait_for(self, text: str, timeout: float = 60.0) -> str:
        deadline = time.monotonic() + timeout
        for line in self.lines:
            if text in line:
                return line
        while True:
            line = self._next(text, max(0.01, deadline - time.monotonic()))
            if text in line:
                return line

    def wait_for_count(self, text: str, n: int, timeout: float = 60.0) -> None:
        while sum(text in line for line in self.lines) < n:
            self._next(text, timeout)

    def _next(self, text: str, timeout: float) -> str:
        try:
            line = self._q.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no {text!r} within {timeout}s; output:\n" + self.output())
        if line is None:
            raise AssertionError(f"exited before {text!r}; output:\n" + self.output())
        self.lines.append(line)
        return line

    def stop(self, sig: int, timeout: float = 60.0) -> int:
        self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError(f"did not exit on {sig!r}; output:\n" + self.output())
        self.wait_for_eof()
        return rc

    def wait_for_eof(self) -> None:
        while True:
            line = self._q.get(timeout=30)
            if line is None:
                return
            self.lines.append(line)

    def output(self) -> str:
        return "\n".join(self.lines)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


def get(port: int, path: str = "/", body: bytes | None = None) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        c.request("POST" if body is not None else "GET", path, body=body)
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


# how apps.run_and_say reports ringleader.run's end after each signal
_RUN_ENDED = {signal.SIGINT: "RUN-INTERRUPTED", signal.SIGTERM: "RUN-RETURNED"}


def stop_cleanly(c: Child, sig: int, *markers: str, shutdowns: int = 0,
                 codes: tuple = (0,)) -> None:
    """Stop ``c`` with ``sig``; it must exit with one of ``codes``, print every
    marker line, run ``shutdowns`` lifespan shutdowns and no traceback."""
    assert c.stop(sig) in codes, c.output()
    for marker in markers:
        assert marker in c.lines, c.output()
    # Counted per occurrence: two worker processes can write their markers
    # onto one line of the shared output (seen: "LIFESPAN-SHUTDOWNLIFESPAN-SHUTDOWN").
    assert sum(line.count("LIFESPAN-SHUTDOWN") for line in c.lines) == shutdowns, c.output()
    out = c.output()
    assert "Traceback" not in out and "CancelledError" not in out, out
    assert "accept failed" not in out, out


@pytest.fixture
def child():
    made = []

    def start(*args, env=None):
        c = Child(list(args), env)
        made.append(c)
        return c
    yield start
    for c in made:
        c.kill()


# ------------------------------------------------------------------ uvicorn

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_uvicorn_cli_loop_option(child, sig):
    port = free_port()
    c = child(sys.executable, "-m", "uvicorn", "--loop", "ringleader:new_event_loop",
              "--port", str(port), "apps:app", env={"RL_TEST_APP": "starlette"})
    # uvicorn logs "startup complete" after the lifespan startup, before it
    # listens; "running on" comes once the socket is bound.
    c.wait_for("Uvicorn running on")
    status, body = get(port)
    assert status == 200 and json.loads(body)["loop"] == OUR_LOOP
    payload = os.urandom(1 << 20)
    assert get(port, "/echo", payload) == (200, payload)
    # uvicorn re-raises the signal after its graceful shutdown (on every loop):
    # SIGTERM then ends the process with that signal.
    stop_cleanly(c, sig, shutdowns=1, codes=(0, -sig))


def test_uvicorn_workers_shut_down_without_accept_errors(child):
    port = free_port()
    c = child(sys.executable, "-m", "uvicorn", "--loop", "ringleader:new_event_loop",
              "--workers", "2", "--port", str(port), "apps:app", env={"RL_TEST_APP": "starlette"})
    c.wait_for_count("Application startup complete", 2)
    for _ in range(10):
        assert get(port)[0] == 200
    stop_cleanly(c, signal.SIGTERM, shutdowns=2)


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_serve_uvicorn_over_the_runtimes_workers(child, sig):
    port = free_port()
    c = child(sys.executable, "apps.py", "serve_uvicorn_everywhere", str(port))
    c.wait_for("READY")
    threads = set()
    for _ in range(60):  # new connections: SO_REUSEPORT hashes each to a worker
        status, body = get(port)
        assert status == 200
        threads.add(json.loads(body)["thread"])
        if len(threads) == 2:
            break
    assert threads == {"MainThread", "ringleader-worker-1"}
    # Both workers' servers shut down gracefully, whichever got the signal;
    # then run() ends as asyncio.run does (KeyboardInterrupt for SIGINT).
    stop_cleanly(c, sig, _RUN_ENDED[sig], shutdowns=2)


def test_uvicorn_server_inside_run_survives_its_reraised_sigint(child):
    port = free_port()
    c = child(sys.executable, "apps.py", "uvicorn_server_in_run", str(port))
    c.wait_for("READY")
    assert get(port)[0] == 200
    # uvicorn's re-raised SIGINT neither cuts the drain short nor goes
    # unnoticed: run() raises KeyboardInterrupt after it, as asyncio.run would.
    stop_cleanly(c, signal.SIGINT, "RUN-INTERRUPTED", shutdowns=1)


def test_gunicorn_with_ringleaders_uvicorn_worker(child):
    pytest.importorskip("gunicorn")
    port = free_port()
    c = child(sys.executable, "-m", "gunicorn", "-w", "2", "-b", f"127.0.0.1:{port}",
              "-k", "ringleader.runtime.gunicorn_worker.UvicornWorker", "apps:app",
              env={"RL_TEST_APP": "starlette"})
    c.wait_for_count("Application startup complete", 2)
    status, body = get(port)
    assert status == 200 and json.loads(body)["loop"] == OUR_LOOP
    stop_cleanly(c, signal.SIGTERM, shutdowns=2)


# ------------------------------------------------------------------ aiohttp

@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_aiohttp_run_app_cleans_up_on_signal(child, sig):
    port = free_port()
    c = child(sys.executable, "apps.py", "aiohttp_run_app", str(port))
    c.wait_for("READY")
    status, body = get(port)
    assert status == 200 and json.loads(body)["loop"] == OUR_LOOP
    stop_cleanly(c, sig, "ON-CLEANUP", "POOL-CLOSED True", "RUN-APP-RETURNED")


def test_aiohttp_app_runner_inside_run(child):
    port = free_port()
    c = child(sys.executable, "apps.py", "aiohttp_app_runner", str(port))
    c.wait_for("READY")
    assert get(port)[0] == 200
    stop_cleanly(c, signal.SIGTERM, "RUNNER-CLEANED", "POOL-CLOSED True", "RUN-RETURNED")


# ------------------------------------------------------------------ clients

def test_httpx_and_aiohttp_clients_on_the_ring_loop(fd_guard):
    import aiohttp
    import httpx
    from aiohttp import web

    payload = os.urandom(256 * 1024)

    async def echo(request):
        return web.Response(body=await request.read())

    async def main():
        app = web.Application()
        app.router.add_post("/echo", echo)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        url = f"http://127.0.0.1:{port}/echo"
        try:
            async with httpx.AsyncClient() as client:
                rs = await asyncio.gather(*(client.post(url, content=payload) for _ in range(8)))
                assert all(r.status_code == 200 and r.content == payload for r in rs)
            async with aiohttp.ClientSession() as session:
                async def one():
                    async with session.post(url, data=payload) as r:
                        return r.status, await r.read()
                rs = await asyncio.gather(*(one() for _ in range(8)))
                assert all(r == (200, payload) for r in rs)
        finally:
            await runner.cleanup()

    with asyncio.Runner(loop_factory=ringleader.new_event_loop) as r:
        assert type(r.get_loop()).__name__ == OUR_LOOP
        r.run(main())
