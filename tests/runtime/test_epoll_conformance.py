"""asyncio conformance of the epoll fallback: CPython's own test_asyncio suites
run against :class:`~ringleader.runtime.epoll.EpollEventLoop`.

The fallback is asyncio's selector loop with the runtime's additions
(telemetry, its own socket transport for counters and migration, signal
dispatch as on the ring loop); these suites check that the additions left
asyncio's semantics alone: the generic event-loop tests (streams, servers,
UDP, pipes, ptys, signals, TLS), the sock_* coroutines and the subprocess API.
Runs in the main pass and in the epoll tier alike (``backend="epoll"`` needs no
io_uring).
"""
from __future__ import annotations

import unittest

import pytest

from ringleader.runtime import EpollEventLoop

try:
    from test.test_asyncio import test_events, test_sock_lowlevel, test_subprocess
    from test.test_asyncio import utils as test_utils
except ImportError as exc:  # e.g. a distro Python without the test package
    pytest.skip(f"CPython's test.test_asyncio is not importable ({exc})", allow_module_level=True)


def _skip(reason: str):
    def test(self):
        raise unittest.SkipTest(reason)
    return test


class EpollEventLoopTests(test_events.EventLoopTestsMixin, test_utils.TestCase):
    """CPython's generic event-loop tests (as its SelectEventLoopTests runs them)."""

    def create_event_loop(self):
        return EpollEventLoop()

    def setUp(self):
        super().setUp()
        assert isinstance(self.loop, EpollEventLoop)


class EpollSockTests(test_sock_lowlevel.BaseSockTestsMixin, test_utils.TestCase):
    """loop.sock_* coroutines."""

    def create_event_loop(self):
        return EpollEventLoop()


class EpollSubprocessTests(test_subprocess.SubprocessMixin, test_utils.TestCase):
    """The asyncio.subprocess API (asyncio's child watcher, as on its own loop)."""

    def setUp(self):
        super().setUp()
        self.loop = EpollEventLoop()
        self.set_event_loop(self.loop)
