"""Ring tier: failures become UringError subclasses that name the operation and the fd
or slot, and a ring used from the wrong thread says so."""
import errno
import socket
import struct
import threading

import pytest

from ringleader.uring import Ring, UringError, consts


def test_connection_reset_on_fixed_slot(ring, tcp_pair, collect):
    client, server = tcp_pair
    slot = ring.files.install(server.fileno())
    ring.recv(slot, bytearray(16), 1, fixed=True)
    ring.flush()
    # SO_LINGER 0: close sends RST instead of FIN
    client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    client.close()
    (c,) = collect(ring, final=[1])
    assert c.res == -errno.ECONNRESET
    with pytest.raises(ConnectionResetError) as ei:
        c.check("recv", slot, fixed=True)
    e = ei.value
    assert isinstance(e, UringError) and e.fixed and e.fd == slot
    assert f"recv on fixed slot {slot}: Connection reset by peer" in str(e)


def test_send_to_closed_peer_is_broken_pipe(ring, sockpair, collect):
    a, b = sockpair
    b.close()
    ring.send(a.fileno(), b"x" * 10, 1)
    (c,) = collect(ring, final=[1])
    with pytest.raises(BrokenPipeError) as ei:
        c.check("send", a.fileno())
    assert isinstance(ei.value, UringError) and "send on fd" in str(ei.value)


def test_bad_fd_is_ebadf(ring, collect):
    ring.recv(999_999, bytearray(4), 1)
    (c,) = collect(ring, final=[1])
    assert c.res == -errno.EBADF


def test_ring_used_from_another_thread_says_so(collect):
    with Ring(8, files=0) as r:
        if not r.flags & consts.SETUP_SINGLE_ISSUER:
            pytest.skip("ring was created without SINGLE_ISSUER; any thread may submit")
        box = {}

        def intruder():
            r.nop(1)
            try:
                r.enter(0)
            except UringError as e:
                box["e"] = e

        t = threading.Thread(target=intruder)
        t.start()
        t.join(5)
        e = box.get("e")
        assert e is not None and e.errno == errno.EEXIST
        assert f"belongs to thread {r.owner}" in str(e) and "io_uring_enter" in str(e)
        # the refused SQE is still queued; the owner submits it
        (c,) = collect(r, final=[1])
        assert c.res == 0
