"""What the running kernel supports, found by asking it.

:func:`probe` builds a throw-away ring, reads the kernel's opcode table
(IORING_REGISTER_PROBE) and tries each optional set-up flag and resource
registration we rely on.  The result is a frozen :class:`Features`, computed
once per process.  Nothing here guesses from the kernel version string.

It does not decide policy: :class:`~ringleader.uring.ring.Ring` reads it to
pick its flags, and tests read it to skip with a reason.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import threading

from ._liburing import ffi, lib
from .errors import RingUnavailableError

# Index = IORING_OP_* value (kernel uapi order, stable ABI).
OPCODES = (
    "NOP", "READV", "WRITEV", "FSYNC", "READ_FIXED", "WRITE_FIXED", "POLL_ADD", "POLL_REMOVE",
    "SYNC_FILE_RANGE", "SENDMSG", "RECVMSG", "TIMEOUT", "TIMEOUT_REMOVE", "ACCEPT",
    "ASYNC_CANCEL", "LINK_TIMEOUT", "CONNECT", "FALLOCATE", "OPENAT", "CLOSE", "FILES_UPDATE",
    "STATX", "READ", "WRITE", "FADVISE", "MADVISE", "SEND", "RECV", "OPENAT2", "EPOLL_CTL",
    "SPLICE", "PROVIDE_BUFFERS", "REMOVE_BUFFERS", "TEE", "SHUTDOWN", "RENAMEAT", "UNLINKAT",
    "MKDIRAT", "SYMLINKAT", "LINKAT", "MSG_RING", "FSETXATTR", "SETXATTR", "FGETXATTR",
    "GETXATTR", "SOCKET", "URING_CMD", "SEND_ZC", "SENDMSG_ZC", "READ_MULTISHOT", "WAITID",
    "FUTEX_WAIT", "FUTEX_WAKE", "FUTEX_WAITV", "FIXED_FD_INSTALL", "FTRUNCATE", "BIND",
    "LISTEN", "RECV_ZC", "EPOLL_WAIT", "READV_FIXED", "WRITEV_FIXED", "PIPE",
)


@dataclasses.dataclass(frozen=True)
class Features:
    """Frozen snapshot of the kernel's io_uring support."""

    kernel: str
    opcodes: frozenset[str]
    single_issuer: bool
    defer_taskrun: bool
    coop_taskrun: bool
    submit_all: bool
    sqpoll: bool
    sparse_files: bool
    file_alloc_range: bool
    buf_ring: bool
    ext_arg: bool
    nodrop: bool
    cqe_skip: bool
    # Sub-commands that the opcode table cannot show; their ring tests exercise them.
    multishot_accept: bool
    multishot_recv: bool
    msg_ring: bool
    send_zc: bool

    def supports(self, opcode: str) -> bool:
        return opcode.upper() in self.opcodes

    def as_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["opcodes"] = sorted(self.opcodes)
        return d


_cached: Features | None = None
_lock = threading.Lock()


def _disabled_sysctl() -> int | None:
    try:
        with open("/proc/sys/kernel/io_uring_disabled") as f:
            return int(f.read().strip())
    except (OSError, ValueError):
        return None


def unavailable(res: int, what: str = "io_uring_setup") -> RingUnavailableError:
    """Explain why a ring could not be created, with the fix."""
    err = -res
    sysctl = _disabled_sysctl()
    if err == errno.ENOSYS:
        detail = ("the kernel has no io_uring (needs Linux >= 6.1 built with CONFIG_IO_URING), "
                  "or a seccomp profile blocks io_uring_setup; use a newer kernel or allow the "
                  "io_uring_* syscalls in the container's seccomp profile")
    elif err in (errno.EPERM, errno.EACCES):
        if sysctl == 2:
            detail = ("io_uring is disabled by sysctl kernel.io_uring_disabled=2; "
                      "set it to 0 (sysctl -w kernel.io_uring_disabled=0)")
        elif sysctl == 1:
            detail = ("kernel.io_uring_disabled=1 limits io_uring to the group in "
                      "kernel.io_uring_group; add this user to it or set the sysctl to 0")
        else:
            detail = ("io_uring_setup was refused (a seccomp profile such as Docker's or "
                      "Kubernetes' RuntimeDefault blocks it); allow io_uring_setup, "
                      "io_uring_enter and io_uring_register")
    elif err == errno.ENOMEM:
        detail = "not enough locked memory for the ring; raise RLIMIT_MEMLOCK or use fewer entries"
    elif err == errno.EMFILE or err == errno.ENFILE:
        detail = "out of file descriptors; raise RLIMIT_NOFILE"
    else:
        detail = "io_uring is not usable here"
    return RingUnavailableError(err, what, None, False, detail)


def _try_ring(flags: int, entries: int = 8):
    r = ffi.new("struct rl_ring *")
    res = lib.rl_ring_init(r, entries, 0, flags, 0)
    return r, res


def _probe() -> Features:
    r, res = _try_ring(0)
    if res < 0:
        raise unavailable(res)
    try:
        ops = ffi.new("unsigned char[]", 256)
        n = lib.rl_probe_ops(r, ops, 256)
        opcodes = frozenset(OPCODES[i] for i in range(min(max(n, 0), len(OPCODES))) if ops[i])
        sparse = lib.rl_files_sparse(r, 16) == 0
        alloc_range = sparse and lib.rl_files_alloc_range(r, 8, 8) == 0
        b = ffi.new("struct rl_bufring *")
        buf_ring = lib.rl_bufring_setup(r, b, 8, 64, 0) == 0
        if buf_ring:
            lib.rl_bufring_free(r, b)
        feats = r.features
    finally:
        lib.rl_ring_exit(r)

    def accepts(flags: int) -> bool:
        t, res = _try_ring(flags)
        if res == 0:
            lib.rl_ring_exit(t)
            return True
        return False

    single = accepts(lib.IORING_SETUP_SINGLE_ISSUER)
    defer = single and accepts(lib.IORING_SETUP_SINGLE_ISSUER | lib.IORING_SETUP_DEFER_TASKRUN)
    coop = accepts(lib.IORING_SETUP_COOP_TASKRUN | lib.IORING_SETUP_TASKRUN_FLAG)
    submit_all = accepts(lib.IORING_SETUP_SUBMIT_ALL)
    sqpoll = accepts(lib.IORING_SETUP_SQPOLL)
    uname = os.uname()
    return Features(
        kernel=uname.release,
        opcodes=opcodes,
        single_issuer=single,
        defer_taskrun=defer,
        coop_taskrun=coop,
        submit_all=submit_all,
        sqpoll=sqpoll,
        sparse_files=sparse,
        file_alloc_range=alloc_range,
        buf_ring=buf_ring,
        ext_arg=bool(feats & lib.IORING_FEAT_EXT_ARG),
        nodrop=bool(feats & lib.IORING_FEAT_NODROP),
        cqe_skip=bool(feats & lib.IORING_FEAT_CQE_SKIP),
        # Multishot accept/recv arrived with SEND_ZC's generation (6.0); SEND_ZC in the
        # opcode table is the nearest thing the probe interface offers.  The ring tests
        # check each one for real and fail loudly if this inference is ever wrong.
        multishot_accept="SEND_ZC" in opcodes and "ACCEPT" in opcodes,
        multishot_recv="SEND_ZC" in opcodes and buf_ring,
        msg_ring="MSG_RING" in opcodes,
        send_zc="SEND_ZC" in opcodes,
    )


def probe() -> Features:
    """The running kernel's io_uring features (probed once per process)."""
    global _cached
    if _cached is None:
        with _lock:
            if _cached is None:
                _cached = _probe()
    return _cached
