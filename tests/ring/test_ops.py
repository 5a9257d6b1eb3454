"""Ring tier: each single-shot operation of the binding on real sockets and fds."""
import errno
import os
import socket
import sys
import time

import pytest

from ringleader.uring import Ring, UringError, consts


def test_nop_returns_user_data(ring, collect):
    ring.nop(2**64 - 1)
    ring.nop(7)
    cs = collect(ring, 2)
    assert sorted((c.user_data, c.res) for c in cs) == [(7, 0), (2**64 - 1, 0)]


def test_accept_single_gives_connected_fd(ring, listener, collect):
    ring.accept(listener.fileno(), 1)
    ring.flush()
    client = socket.create_connection(listener.getsockname())
    try:
        (c,) = collect(ring, final=[1])
        assert c.res >= 0 and not c.more
        with socket.socket(fileno=c.res) as srv:
            assert srv.getpeername() == client.getsockname()
            client.sendall(b"over the accepted fd")
            assert srv.recv(100) == b"over the accepted fd"
    finally:
        client.close()


def test_connect_then_listener_sees_it(ring, listener, collect):
    with socket.socket() as s:
        ring.connect(s.fileno(), listener.getsockname(), 1)
        (c,) = collect(ring, final=[1])
        assert c.res == 0
        conn, addr = listener.accept()
        with conn:
            assert addr == s.getsockname()


def test_connect_refused_is_connection_refused_error(ring, collect):
    with socket.socket() as closed_port, socket.socket() as s:
        closed_port.bind(("127.0.0.1", 0))  # bound, not listening: the kernel answers RST
        ring.connect(s.fileno(), closed_port.getsockname(), 1)
        (c,) = collect(ring, final=[1])
        assert c.res == -errno.ECONNREFUSED
        with pytest.raises(ConnectionRefusedError) as ei:
            c.check("connect", s.fileno())
        assert isinstance(ei.value, UringError)
        assert f"connect on fd {s.fileno()}" in str(ei.value)


@pytest.mark.parametrize("fixed, sqpoll", [(False, False), (True, False), (True, True)],
                         ids=["fd", "fixed", "fixed-sqpoll"])
def test_recv_into_buffer(sockpair, collect, require, fixed, sqpoll):
    if sqpoll:
        require("sqpoll", "IORING_SETUP_SQPOLL")
    a, b = sockpair
    with Ring(16, files=8, sqpoll=sqpoll) as ring:
        assert bool(ring.flags & consts.SETUP_SQPOLL) == sqpoll
        fd = ring.files.install(a.fileno()) if fixed else a.fileno()
        buf = bytearray(64)
        ring.recv(fd, buf, 1, fixed=fixed)
        ring.flush()
        b.send(b"hello ring")
        (c,) = collect(ring, final=[1])
        assert c.res == 10 and bytes(buf[:10]) == b"hello ring"
        assert ring._keep == {}  # the buffer is let go once the op completed


def test_recv_select_single_uses_a_provided_buffer(ring, sockpair, collect, require):
    require("buf_ring", "provided-buffer rings")
    a, b = sockpair
    br = ring.buffer_ring(4, 256)
    b.send(b"picked by the kernel")
    ring.recv_select(a.fileno(), br, 1)
    (c,) = collect(ring, final=[1])
    assert c.res == 20 and c.buffer_id is not None and 0 <= c.buffer_id < 4
    assert br.take(c.buffer_id, c.res) == b"picked by the kernel"


def test_two_groups_have_disjoint_buffer_ids(ring, sockpair, collect, require):
    # A completion names a buffer's id, not its group: the loop tells its
    # groups apart by id ranges (bid_base), and a recycled buffer keeps its id.
    require("buf_ring", "provided-buffer rings")
    a, b = sockpair
    ring.buffer_ring(4, 256, bgid=0)
    high = ring.buffer_ring(2, 512, bgid=1, bid_base=32768)
    for i in range(3):   # more receives than buffers: recycled ones come back
        b.send(b"round %d" % i)
        ring.recv_select(a.fileno(), high, 10 + i)
        (c,) = collect(ring, final=[10 + i])
        assert c.buffer_id in (32768, 32769)
        assert high.take(c.buffer_id, c.res) == b"round %d" % i
    with pytest.raises(UringError):   # ids must be a multiple of count and fit 16 bits
        ring.buffer_ring(4, 256, bgid=2, bid_base=65534)


@pytest.mark.parametrize("fixed", [False, True])
def test_send(ring, sockpair, collect, fixed):
    a, b = sockpair
    fd = ring.files.install(a.fileno()) if fixed else a.fileno()
    payload = bytes(range(256)) * 8
    ring.send(fd, payload, 1, fixed=fixed)
    (c,) = collect(ring, final=[1])
    assert c.res == len(payload)
    got = b""
    while len(got) < len(payload):
        got += b.recv(65536)
    assert got == payload


def test_send_zc_gives_result_then_notification(ring, tcp_pair, collect, require):
    require("send_zc", "IORING_OP_SEND_ZC")
    client, server = tcp_pair
    payload = os.urandom(100_000)
    ring.send_zc(client.fileno(), payload, 1)
    cs = collect(ring, final=[1])
    assert len(cs) == 2
    first, notif = cs
    assert 0 < first.res <= len(payload) and first.more and not first.notif
    assert notif.notif and not notif.more and notif.res == 0
    got = b""
    while len(got) < first.res:
        got += server.recv(1 << 20)
    assert got == payload[:first.res]


def test_close_normal_fd(ring, sockpair, collect):
    a, _ = sockpair
    fd = os.dup(a.fileno())
    ring.close_fd(fd, 1)
    (c,) = collect(ring, final=[1])
    assert c.res == 0
    with pytest.raises(OSError) as ei:
        os.fstat(fd)
    assert ei.value.errno == errno.EBADF


def test_close_fixed_empties_the_slot(ring, sockpair, collect):
    a, b = sockpair
    slot = ring.files.install(a.fileno())
    in_use = ring.stats().fixed_in_use
    ring.close_fixed(slot, 1)
    (c,) = collect(ring, final=[1])
    assert c.res == 0
    ring.files.forget(slot)
    assert ring.stats().fixed_in_use == in_use - 1
    b.send(b"x")
    ring.recv(slot, bytearray(8), 2, fixed=True)
    (c,) = collect(ring, final=[2])
    assert c.res == -errno.EBADF
    a.send(b"still open")  # the Python socket was never the slot's: it is untouched
    assert b.recv(16) == b"still open"


def test_poll_single(ring, sockpair, collect):
    a, b = sockpair
    ring.poll(a.fileno(), consts.POLLIN, 1)
    assert ring.wait(0) == []  # nothing readable yet
    b.send(b"x")
    (c,) = collect(ring, final=[1])
    assert c.res & consts.POLLIN and not c.more


def test_read_eventfd(ring, collect):
    efd = os.eventfd(0, os.EFD_CLOEXEC)
    try:
        buf = bytearray(8)
        ring.read(efd, buf, 1)
        ring.flush()
        os.eventfd_write(efd, 41)
        (c,) = collect(ring, final=[1])
        assert c.res == 8 and int.from_bytes(buf, sys.byteorder) == 41
    finally:
        os.close(efd)


def test_write_then_read_at_offset(ring, tmp_path, collect):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    fd = os.open(path, os.O_RDWR)
    try:
        ring.write(fd, b"ab", 1, offset=4)
        collect(ring, final=[1])
        buf = bytearray(6)
        ring.read(fd, buf, 2, offset=2)
        (c,) = collect(ring, final=[2])
        assert c.res == 6 and bytes(buf) == b"23ab67"
    finally:
        os.close(fd)


def test_shutdown_gives_peer_eof(ring, sockpair, collect):
    a, b = sockpair
    ring.shutdown(a.fileno(), socket.SHUT_WR, 1)
    (c,) = collect(ring, final=[1])
    assert c.res == 0 and b.recv(10) == b""


def test_ring_without_fixed_table(collect):
    with Ring(8, files=0) as r:
        assert r.files is None and r.stats().fixed_capacity == 0
        r.nop(1)
        assert collect(r, 1)[0].res == 0


def test_wait_with_timeout_returns_nothing_at_the_deadline(ring):
    t0 = time.monotonic()
    assert ring.wait(1, 0.05) == []
    assert 0.045 <= time.monotonic() - t0 < 2
    st = ring.stats()
    assert st.waits == 1 and 45_000_000 <= st.wait_ns < 2_000_000_000
    assert st.batch_hist[0] == 1  # one harvest, of nothing

