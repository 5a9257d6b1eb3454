"""Errors raised by the io_uring binding.

Every negative CQE result or failing liburing call becomes a :class:`UringError`:
an ``OSError`` whose ``errno`` is the kernel's, whose message names the operation
and the fd or fixed slot it ran on.  The concrete class also derives from the
matching builtin (``ConnectionResetError``, ``TimeoutError`` ...), so callers can
catch either the ring-specific or the usual Python exception.

:class:`RingUnavailableError` is raised when io_uring cannot be used at all; its
message says why and how to fix it.
"""
from __future__ import annotations

import errno as _errno
import os

__all__ = ["UringError", "RingUnavailableError", "RingFullError", "error_from_result", "check"]


class UringError(OSError):
    """A failed io_uring operation (``errno``, ``op``, ``fd``)."""

    op: str = ""
    fd: int | None = None
    fixed: bool = False

    def __init__(self, err: int, op: str, fd: int | None = None, fixed: bool = False, detail: str = ""):
        where = ""
        if fd is not None:
            where = f" on {'fixed slot' if fixed else 'fd'} {fd}"
        msg = f"{op}{where}: {os.strerror(err)}"
        if detail:
            msg += f" ({detail})"
        super().__init__(err, msg)
        self.op = op
        self.fd = fd
        self.fixed = fixed
        self.detail = detail

    def __reduce__(self):
        # RingUnavailableError / RingFullError are not picked by errno: keep the class.
        if type(self) in (RingUnavailableError, RingFullError):
            return (type(self), (self.errno, self.op, self.fd, self.fixed, self.detail))
        return (error_from_result, (-self.errno, self.op, self.fd, self.fixed, self.detail))


class RingUnavailableError(UringError):
    """io_uring cannot be used in this process: the message names cause and fix."""


class RingFullError(UringError):
    """No free SQE even after flushing, or no free fixed-file slot."""


_BUILTIN_FOR_ERRNO: dict[int, type[OSError]] = {
    # the same errno -> class table as Python's own OSError constructor
    _errno.ECONNRESET: ConnectionResetError,
    _errno.EPIPE: BrokenPipeError,
    _errno.ESHUTDOWN: BrokenPipeError,
    _errno.ECONNREFUSED: ConnectionRefusedError,
    _errno.ECONNABORTED: ConnectionAbortedError,
    _errno.ETIMEDOUT: TimeoutError,
    _errno.ETIME: TimeoutError,
    _errno.EAGAIN: BlockingIOError,
    _errno.EALREADY: BlockingIOError,
    _errno.EINPROGRESS: BlockingIOError,
    _errno.EEXIST: FileExistsError,
    _errno.EISDIR: IsADirectoryError,
    _errno.ENOTDIR: NotADirectoryError,
    _errno.ECHILD: ChildProcessError,
    _errno.ESRCH: ProcessLookupError,
    _errno.EINTR: InterruptedError,
    _errno.ENOENT: FileNotFoundError,
    _errno.EPERM: PermissionError,
    _errno.EACCES: PermissionError,
}
_CLASSES: dict[int, type[UringError]] = {}


def _class_for(err: int) -> type[UringError]:
    cls = _CLASSES.get(err)
    if cls is None:
        base = _BUILTIN_FOR_ERRNO.get(err)
        if base is None:
            cls = UringError
        else:
            cls = type(f"Uring{base.__name__}", (UringError, base), {"__module__": __name__})
        _CLASSES[err] = cls
    return cls


def error_from_result(res: int, op: str, fd: int | None = None, fixed: bool = False,
                      detail: str = "") -> UringError:
    """Build the exception for a negative result ``res`` (``-errno``)."""
    err = -res if res < 0 else res
    return _class_for(err)(err, op, fd, fixed, detail)


def check(res: int, op: str, fd: int | None = None, fixed: bool = False) -> int:
    """Return ``res`` if it is >= 0, else raise the matching :class:`UringError`."""
    if res < 0:
        raise error_from_result(res, op, fd, fixed)
    return res
