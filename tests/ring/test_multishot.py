"""Ring tier: multishot accept, recv (provided buffers) and poll, and how each ends."""
import errno
import socket

import pytest

from ringleader.uring import consts


@pytest.fixture(autouse=True)
def _need_multishot(require, request):
    name = request.node.name
    if "accept" in name:
        require("multishot_accept", "multishot accept")
    if "recv" in name:
        require("multishot_recv", "multishot recv with a buffer ring")


def test_multishot_accept_many_then_cancel(ring, listener, collect):
    ring.accept(listener.fileno(), 1, multishot=True)
    ring.flush()
    clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
    try:
        cs = collect(ring, 3)
        assert all(c.user_data == 1 and c.more and c.res >= 0 for c in cs)
        peers = set()
        for c in cs:
            with socket.socket(fileno=c.res) as s:
                peers.add(s.getpeername())
        assert peers == {cl.getsockname() for cl in clients}
        ring.cancel(1, 2)
        end = {c.user_data: c for c in collect(ring, final=[1, 2])}
        assert end[1].res == -errno.ECANCELED and not end[1].more
        assert end[2].res == 0
    finally:
        for cl in clients:
            cl.close()


def _arm(ring, sock, br, ud=1):
    ring.recv_select(sock.fileno(), br, ud, multishot=True)
    ring.flush()


def test_multishot_recv_ends_with_eof_on_peer_close(ring, sockpair, collect):
    a, b = sockpair
    br = ring.buffer_ring(8, 64)
    _arm(ring, a, br)
    got = b""
    for msg in (b"one", b"two", b"three"):
        b.send(msg)
        (c,) = collect(ring, 1)
        assert c.more and c.res == len(msg)
        got += br.take(c.buffer_id, c.res)
    assert got == b"onetwothree"
    b.close()
    (c,) = collect(ring, 1)
    assert c.res == 0 and not c.more and c.buffer_id is None


def test_multishot_recv_ends_with_ecanceled_on_cancel(ring, sockpair, collect):
    a, b = sockpair
    br = ring.buffer_ring(8, 64)
    _arm(ring, a, br)
    b.send(b"before cancel")
    (c,) = collect(ring, 1)
    assert c.more and br.take(c.buffer_id, c.res) == b"before cancel"
    ring.cancel(1, 2)
    end = {c.user_data: c for c in collect(ring, final=[1, 2])}
    assert end[1].res == -errno.ECANCELED and not end[1].more
    assert end[2].res == 0
    b.send(b"after")  # nobody is reading any more: the bytes stay in the socket
    assert ring.wait(0) == []
    assert a.recv(10) == b"after"


def test_multishot_recv_empty_buffer_ring_then_rearm(ring, sockpair, collect):
    a, b = sockpair
    br = ring.buffer_ring(2, 16)
    payload = bytes(range(48))
    b.send(payload)  # three buffers' worth, but the ring holds two
    _arm(ring, a, br)
    cs = collect(ring, final=[1])
    assert [(c.res, c.more) for c in cs] == [(16, True), (16, True), (-errno.ENOBUFS, False)]
    with pytest.raises(OSError) as ei:
        cs[2].check("recv", a.fileno())
    assert ei.value.errno == errno.ENOBUFS and f"recv on fd {a.fileno()}" in str(ei.value)
    got = b"".join(br.take(c.buffer_id, c.res) for c in cs[:2])  # take() recycles
    _arm(ring, a, br)  # re-arming works once buffers are back
    (c,) = collect(ring, 1)
    assert c.res == 16 and c.more
    got += br.take(c.buffer_id, c.res)
    assert got == payload
    ring.cancel(1, 2)
    collect(ring, final=[1, 2])


def test_multishot_recv_many_messages_in_order(ring, sockpair, collect):
    a, b = sockpair
    br = ring.buffer_ring(16, 4096)
    _arm(ring, a, br)
    expected = b"".join(i.to_bytes(4, "big") for i in range(20_000))
    b.sendall(expected)  # 80 kB: fits a socketpair's buffer, more than the 64 kB ring
    got = bytearray()
    while len(got) < len(expected):
        for c in collect(ring, 1):
            if not c.more:  # ran dry (ENOBUFS): re-arm, the bytes are still queued
                assert c.res == -errno.ENOBUFS
                _arm(ring, a, br)
                continue
            got += br.take(c.buffer_id, c.res)
    assert bytes(got) == expected


def test_multishot_poll_fires_per_event_until_removed(ring, sockpair, collect):
    a, b = sockpair
    ring.poll(a.fileno(), consts.POLLIN, 1, multishot=True)
    ring.flush()
    for msg in (b"x", b"y"):
        b.send(msg)
        (c,) = collect(ring, 1)
        assert c.user_data == 1 and c.res & consts.POLLIN and c.more
        assert a.recv(1) == msg
    ring.poll_remove(1, 2)
    end = {c.user_data: c for c in collect(ring, final=[1, 2])}
    assert end[1].res == -errno.ECANCELED and not end[1].more
    assert end[2].res == 0
