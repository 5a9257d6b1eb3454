"""Ring tier: the registered-file table: user slots, kernel-allocated slots (accept
direct), and what happens when either is full."""
import errno
import socket

import pytest

from ringleader.uring import Ring, RingFullError, UringError


def test_install_beyond_capacity_raises_ring_full(sockpair):
    a, b = sockpair
    with Ring(8, files=4, kernel_slots=1) as r:
        assert r.files.user_slots == 3
        slots = [r.files.install(a.fileno()) for _ in range(3)]
        assert sorted(slots) == [0, 1, 2]
        with pytest.raises(RingFullError) as ei:
            r.files.install(b.fileno())
        e = ei.value
        assert isinstance(e, UringError) and e.errno == errno.ENFILE
        assert "all 3 user slots of 4 in use" in str(e) and "fixed_files.reserve" in str(e)
        assert r.stats().fixed_in_use == 3
        r.files.release(slots[1])
        assert r.files.install(b.fileno()) == slots[1]  # a released slot is reused


def test_install_bad_fd_names_the_fd(ring):
    with pytest.raises(UringError) as ei:
        ring.files.install(999_999)
    assert ei.value.errno == errno.EBADF and "files_update on fd 999999" in str(ei.value)
    assert ring.stats().fixed_in_use == 0  # the slot went back


def _direct_accept(r, listener, ud, collect):
    r.accept(listener.fileno(), ud, direct=True)
    r.flush()
    client = socket.create_connection(listener.getsockname())
    (c,) = collect(r, final=[ud])
    return client, c


def test_accept_direct_puts_the_socket_in_a_kernel_slot(listener, collect, require):
    require("file_alloc_range", "a kernel slot range for direct accepts")
    with Ring(8, files=8, kernel_slots=2) as r:
        client, c = _direct_accept(r, listener, 1, collect)
        with client:
            slot = c.check("accept", listener.fileno())
            assert r.files.user_slots <= slot < r.files.capacity
            r.files.adopt(slot)
            assert r.stats().fixed_in_use == 1
            client.sendall(b"via slot")
            buf = bytearray(16)
            r.recv(slot, buf, 2, fixed=True)
            (c,) = collect(r, final=[2])
            assert c.res == 8 and bytes(buf[:8]) == b"via slot"
            r.send(slot, b"back", 3, fixed=True)
            collect(r, final=[3])
            assert client.recv(8) == b"back"


def test_accept_direct_with_full_kernel_range_is_enfile(listener, collect, require):
    require("file_alloc_range", "a kernel slot range for direct accepts")
    with Ring(8, files=8, kernel_slots=2) as r:
        clients = []
        try:
            for ud in (1, 2):
                client, c = _direct_accept(r, listener, ud, collect)
                clients.append(client)
                r.files.adopt(c.check("accept", listener.fileno()))
            client, c = _direct_accept(r, listener, 3, collect)
            clients.append(client)
            assert c.res == -errno.ENFILE
            with pytest.raises(UringError) as ei:
                c.check("accept", listener.fileno())
            assert f"accept on fd {listener.fileno()}" in str(ei.value)
            assert client.recv(1) == b""  # the kernel accepted, had nowhere to put it, closed
            assert r.stats().fixed_in_use == 2
        finally:
            for cl in clients:
                cl.close()


def test_multishot_accept_direct(listener, collect, require):
    require("multishot_accept", "multishot accept")
    require("file_alloc_range", "a kernel slot range for direct accepts")
    with Ring(8, files=8, kernel_slots=4) as r:
        r.accept(listener.fileno(), 1, multishot=True, direct=True)
        r.flush()
        clients = [socket.create_connection(listener.getsockname()) for _ in range(3)]
        try:
            cs = collect(r, 3)
            slots = [c.res for c in cs]
            assert all(c.more for c in cs)
            assert len(set(slots)) == 3 and all(4 <= s < 8 for s in slots)
        finally:
            for cl in clients:
                cl.close()


def test_failed_table_registration_closes_the_ring(fd_guard):
    with pytest.raises(ValueError):
        Ring(8, files=4, kernel_slots=5)
    with pytest.raises(UringError) as ei:
        Ring(8, files=1 << 30)  # far beyond RLIMIT_NOFILE: the kernel refuses the table
    assert "register_files_sparse" in str(ei.value)
    # fd_guard: neither attempt left its ring fd open
