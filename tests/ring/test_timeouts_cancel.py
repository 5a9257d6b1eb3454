"""Ring tier: timeouts, linked timeouts, cancellation by user_data and by fd."""
import errno
import time

import pytest

from ringleader.uring import UringError


def test_timeout_expires_with_etime(ring, collect):
    t0 = time.monotonic()
    ring.timeout(0.02, 1)
    (c,) = collect(ring, final=[1])
    assert c.res == -errno.ETIME
    assert time.monotonic() - t0 >= 0.019
    with pytest.raises(TimeoutError):
        c.check("timeout")


def test_timeout_with_count_completes_after_other_cqes(ring, collect):
    t0 = time.monotonic()
    ring.timeout(30.0, 1, count=2)
    ring.nop(2)
    ring.nop(3)
    cs = {c.user_data: c.res for c in collect(ring, final=[1, 2, 3])}
    assert cs == {1: 0, 2: 0, 3: 0}
    assert time.monotonic() - t0 < 5  # ended by the count, not the 30 s


def test_timeout_remove(ring, collect):
    ring.timeout(30.0, 1)
    ring.flush()
    ring.timeout_remove(1, 2)
    cs = {c.user_data: c.res for c in collect(ring, final=[1, 2])}
    assert cs == {1: -errno.ECANCELED, 2: 0}


def test_linked_timeout_cancels_a_recv_that_gets_nothing(ring, sockpair, collect):
    a, _ = sockpair
    ring.recv(a.fileno(), bytearray(16), 1, link=True)
    ring.link_timeout(0.02, 2)
    cs = {c.user_data: c.res for c in collect(ring, final=[1, 2])}
    assert cs == {1: -errno.ECANCELED, 2: -errno.ETIME}


def test_linked_timeout_is_cancelled_when_the_recv_wins(ring, sockpair, collect):
    a, b = sockpair
    b.send(b"quick")
    buf = bytearray(16)
    ring.recv(a.fileno(), buf, 1, link=True)
    ring.link_timeout(5.0, 2)
    cs = {c.user_data: c.res for c in collect(ring, final=[1, 2])}
    assert cs == {1: 5, 2: -errno.ECANCELED} and bytes(buf[:5]) == b"quick"


def test_link_orders_a_chain(ring, sockpair, collect):
    a, b = sockpair
    ring.send(a.fileno(), b"first", 1, link=True)
    ring.send(a.fileno(), b"second", 2, link=True)
    ring.nop(3)
    cs = collect(ring, final=[1, 2, 3])
    assert [c.user_data for c in cs] == [1, 2, 3]
    assert b.recv(64) == b"firstsecond"


def test_cancelled_recv_raises_uring_error_naming_op_and_fd(ring, sockpair, collect):
    a, b = sockpair
    ring.recv(a.fileno(), bytearray(16), 1)
    ring.flush()
    ring.cancel(1, 2)
    cs = {c.user_data: c for c in collect(ring, final=[1, 2])}
    assert cs[2].res == 0
    assert cs[1].res == -errno.ECANCELED
    with pytest.raises(UringError) as ei:
        cs[1].check("recv", a.fileno())
    e = ei.value
    assert e.errno == errno.ECANCELED and e.op == "recv" and e.fd == a.fileno()
    assert str(e) == f"[Errno {errno.ECANCELED}] recv on fd {a.fileno()}: Operation canceled"
    b.send(b"not lost")  # the cancelled recv took nothing
    assert a.recv(16) == b"not lost"


def test_cancel_unknown_user_data_is_enoent(ring, collect):
    ring.cancel(12345, 1)
    (c,) = collect(ring, final=[1])
    assert c.res == -errno.ENOENT


@pytest.mark.parametrize("fixed", [False, True])
def test_cancel_fd_cancels_everything_on_it(ring, sockpair, collect, fixed):
    a, b = sockpair
    fd = ring.files.install(a.fileno()) if fixed else a.fileno()
    ring.recv(fd, bytearray(8), 1, fixed=fixed)
    ring.recv(fd, bytearray(8), 2, fixed=fixed)
    ring.flush()
    ring.cancel_fd(fd, 3, fixed=fixed)
    cs = {c.user_data: c.res for c in collect(ring, final=[1, 2, 3])}
    assert cs == {1: -errno.ECANCELED, 2: -errno.ECANCELED, 3: 2}
