"""Ring tier: basic operations on a real ring."""
import socket

import pytest

from ringleader.uring import Ring, UringError, consts, probe


def test_probe_is_frozen_and_sane():
    f = probe()
    assert "NOP" in f.opcodes
    with pytest.raises(Exception):
        f.kernel = "x"


def test_nop_batch_and_stats(fd_guard):
    with Ring(64) as r:
        r.nops(50, 1000)
        got = []
        while len(got) < 50:
            got += r.wait(50 - len(got), 1.0)
        assert sorted(c.user_data for c in got) == list(range(1000, 1050))
        st = r.stats()
        assert st.sqes_submitted == 50 and st.cqes_reaped == 50


def test_recv_error_carries_op_and_fd():
    with Ring() as r:
        a, b = socket.socketpair()
        slot = r.files.install(a.fileno())
        b.close()
        r.send(slot, b"x" * 10, 5, fixed=True)
        c = r.wait(1, 1.0)[0]
        assert c.res < 0
        from ringleader.uring import error_from_result
        e = error_from_result(c.res, "send", slot, True)
        assert isinstance(e, UringError) and isinstance(e, OSError)
        assert isinstance(e, BrokenPipeError) or isinstance(e, ConnectionResetError)
        assert "send on fixed slot" in str(e)
        r.files.release(slot)
        a.close()
