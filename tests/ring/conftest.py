"""Fixtures for the ring tier: rings and sockets that clean up after themselves, and
``collect``, which harvests completions until a condition holds or a deadline passes
(so no test sleeps to wait for the kernel)."""
import socket
import time

import pytest

from ringleader.uring import Ring, probe


def _collect(ring, n=None, *, final=(), timeout=2.0):
    """Harvest from ``ring`` until ``n`` completions arrived, or until every user_data in
    ``final`` got its last completion (one without F_MORE).  Fails at the deadline."""
    got = []
    want = set(final)
    deadline = time.monotonic() + timeout

    def done():
        if n is not None:
            return len(got) >= n
        return want <= {c.user_data for c in got if not c.more}

    while not done():
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"timed out after {timeout}s waiting; harvested {got}")
        got += ring.wait(1, left)
    return got


@pytest.fixture
def collect():
    return _collect


def by_ud(completions):
    out = {}
    for c in completions:
        out.setdefault(c.user_data, []).append(c)
    return out


@pytest.fixture
def group():
    """Completions grouped by user_data, in arrival order."""
    return by_ud


@pytest.fixture
def feats():
    return probe()


@pytest.fixture
def require(feats):
    """``require("buf_ring", "provided-buffer rings")`` skips unless probe() found it."""
    def need(field: str, what: str) -> None:
        if not getattr(feats, field):
            pytest.skip(f"kernel lacks {what}: probe().{field} is False")
    return need


@pytest.fixture
def ring():
    with Ring(64, files=64, kernel_slots=16) as r:
        yield r


@pytest.fixture
def sockpair():
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


@pytest.fixture
def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen(64)
    yield s
    s.close()


@pytest.fixture
def tcp_pair(listener):
    """A connected loopback TCP pair (client, server)."""
    c = socket.create_connection(listener.getsockname())
    s, _ = listener.accept()
    yield c, s
    c.close()
    s.close()


@pytest.fixture(autouse=True)
def _no_fd_leaks(fd_guard):
    """Every ring test must close what it opened: rings, sockets, accepted fds."""
    yield
