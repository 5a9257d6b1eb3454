"""What RingEventLoop deliberately does not do raises NotImplementedError with a message.

One test per feature the conformance module skips (UDP, pipes, subprocesses,
signal handlers): the call must fail loudly and say what to do instead, and
must not leave a half-made socket or a child process behind.
"""
from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys

import pytest

import ringleader


def _expect_unsupported(excinfo, what: str) -> None:
    msg = str(excinfo.value)
    assert "does not support" in msg and what in msg, msg
    # ... and the message says what to do instead.
    assert "default loop" in msg or "signal.signal" in msg, msg


class _Datagram(asyncio.DatagramProtocol):
    pass


def test_create_datagram_endpoint(ring_run, fd_guard):
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(NotImplementedError) as ei:
            await loop.create_datagram_endpoint(_Datagram, local_addr=("127.0.0.1", 0))
        _expect_unsupported(ei, "datagram")
    ring_run(main())


@pytest.mark.parametrize("op", ["sock_recvfrom", "sock_recvfrom_into", "sock_sendto"])
def test_datagram_sock_ops(ring_run, fd_guard, op):
    async def main():
        loop = asyncio.get_running_loop()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.setblocking(False)
            s.bind(("127.0.0.1", 0))
            args = {"sock_recvfrom": (s, 16), "sock_recvfrom_into": (s, bytearray(16)),
                    "sock_sendto": (s, b"x", s.getsockname())}[op]
            with pytest.raises(NotImplementedError) as ei:
                await getattr(loop, op)(*args)
            _expect_unsupported(ei, op)
    ring_run(main())


@pytest.mark.parametrize("direction", ["read", "write"])
def test_pipes(ring_run, fd_guard, direction):
    async def main():
        loop = asyncio.get_running_loop()
        r, w = os.pipe()
        with open(r, "rb", 0) as rf, open(w, "wb", 0) as wf:
            with pytest.raises(NotImplementedError) as ei:
                if direction == "read":
                    await loop.connect_read_pipe(asyncio.Protocol, rf)
                else:
                    await loop.connect_write_pipe(asyncio.Protocol, wf)
            _expect_unsupported(ei, "pipe")
    ring_run(main())


@pytest.mark.parametrize("how", ["exec", "shell"])
def test_subprocess(ring_run, fd_guard, how, tmp_path):
    marker = tmp_path / "ran"
    code = f"open({str(marker)!r}, 'w').close()"

    async def main():
        with pytest.raises(NotImplementedError) as ei:
            if how == "exec":
                await asyncio.create_subprocess_exec(sys.executable, "-c", code)
            else:
                await asyncio.create_subprocess_shell(f"{sys.executable} -c \"{code}\"")
        _expect_unsupported(ei, "subprocess")
    ring_run(main())
    # Refused before spawning: nothing ran.
    assert not marker.exists()


def test_signal_handlers(ring_run):
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(NotImplementedError) as ei:
            loop.add_signal_handler(signal.SIGUSR1, lambda: None)
        _expect_unsupported(ei, "add_signal_handler")
        with pytest.raises(NotImplementedError) as ei:
            loop.remove_signal_handler(signal.SIGUSR1)
        assert "remove_signal_handler" in str(ei.value)
    ring_run(main())
    assert signal.getsignal(signal.SIGUSR1) == signal.SIG_DFL


def test_unsupported_inside_a_worker(fd_guard):
    """The same refusal on a Runtime worker, where users will actually meet it."""
    async def main(rt):
        async def on_worker_1():
            with pytest.raises(NotImplementedError) as ei:
                await asyncio.create_subprocess_exec(sys.executable, "-c", "pass",
                                                     stdout=subprocess.DEVNULL)
            return str(ei.value)
        return await rt.run_on(1, on_worker_1())

    msg = ringleader.run(main, workers=2)
    assert "does not support subprocesses" in msg
