"""Unit tier: the io_uring error hierarchy (no ring needed)."""
import errno
import pickle

import pytest

from ringleader.uring import RingFullError, RingUnavailableError, UringError, check, error_from_result


@pytest.mark.parametrize("err, builtin", [
    (errno.ECONNRESET, ConnectionResetError), (errno.EPIPE, BrokenPipeError),
    (errno.ESHUTDOWN, BrokenPipeError), (errno.ECONNREFUSED, ConnectionRefusedError),
    (errno.ECONNABORTED, ConnectionAbortedError), (errno.ETIME, TimeoutError),
    (errno.ETIMEDOUT, TimeoutError), (errno.EAGAIN, BlockingIOError),
    (errno.EINPROGRESS, BlockingIOError), (errno.ENOENT, FileNotFoundError),
    (errno.EEXIST, FileExistsError), (errno.EPERM, PermissionError),
])
def test_errno_maps_to_builtin_and_uring_error(err, builtin):
    e = error_from_result(-err, "recv", 7, True)
    assert isinstance(e, builtin) and isinstance(e, UringError)
    assert e.errno == err and e.op == "recv" and e.fd == 7 and e.fixed


def test_unmapped_errno_is_plain_uring_error():
    e = error_from_result(-errno.ECANCELED, "accept", 3)
    assert type(e) is UringError and e.strerror == "accept on fd 3: Operation canceled"


def test_detail_is_in_the_message_and_survives_pickling():
    e = error_from_result(-errno.ENOMEM, "register_buf_ring", None, False, "group 2")
    assert e.strerror.endswith("(group 2)")
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is type(e) and str(e2) == str(e)


@pytest.mark.parametrize("cls", [RingFullError, RingUnavailableError])
def test_special_classes_survive_pickling(cls):
    e = cls(errno.ENFILE, "fixed_files.reserve", None, False, "all 3 user slots of 4 in use")
    e2 = pickle.loads(pickle.dumps(e))
    assert type(e2) is cls and str(e2) == str(e)


def test_check_passes_results_through():
    assert check(5, "send") == 5
    with pytest.raises(ConnectionResetError):
        check(-errno.ECONNRESET, "send", 4)
