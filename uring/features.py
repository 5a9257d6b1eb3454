"""What the running kernel supports, found by asking it.

:func:`probe` builds a throw-away ring, reads the kernel's opcode table
(IORING_REGISTER_PROBE) and tries each optional set-up flag and resource
registration we rely on.  Sub-commands the opcode table cannot show (multishot
accept, multishot recv and recvmsg with a buffer ring, MSG_RING SEND_FD) are tried for real
on that ring with a socketpair and an autobound AF_UNIX listener, so every
field is measured, not inferred.  The result is a frozen :class:`Features`,
computed once per process (about 1 ms).  Nothing here guesses from the kernel
version string.

It does not decide policy: :class:`~ringleader.uring.ring.Ring` reads it to
pick its flags, and tests read it to skip with a reason.
"""
from __future__ import annotations

import dataclasses
import errno
import os
import socket
import threading
import time

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
    # Sub-commands that the opcode table cannot show: tried on the probe ring.
    multishot_accept: bool
    multishot_recv: bool
    msg_ring: bool
    send_zc: bool
    msg_ring_send_fd: bool = False
    multishot_recvmsg: bool = False   # recvmsg with IORING_RECV_MULTISHOT and a buffer ring

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


def _seccomp_mode() -> int | None:
    """0 none, 1 strict, 2 filter (the ``Seccomp:`` line of /proc/self/status)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Seccomp:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


_ALLOW = ("allow io_uring_setup, io_uring_enter and io_uring_register in the seccomp profile "
          "(Docker/Podman: --security-opt seccomp=<a profile allowing them>; Kubernetes: "
          "securityContext.seccompProfile of type Localhost with such a profile, or Unconfined)")


def unavailable(res: int, what: str = "io_uring_setup") -> RingUnavailableError:
    """Explain why a ring could not be created, with the fix.

    The cause is looked up, not guessed, where the system tells: the sysctl's
    value, whether this process runs under a seccomp filter (both answers
    EPERM or ENOSYS alike), and whether the kernel has io_uring at all (the
    io_uring_disabled sysctl exists only on kernels built with it, >= 6.6).
    """
    err = -res
    sysctl = _disabled_sysctl()
    filtered = _seccomp_mode() == 2
    seccomp = ("this process runs under a seccomp filter (Seccomp: 2 in /proc/self/status) "
               "that blocks io_uring_setup")
    if err == errno.ENOSYS:
        if filtered and sysctl is not None:
            detail = (f"this kernel has io_uring, but {seccomp} (a profile such as Docker's or "
                      f"Kubernetes' RuntimeDefault); {_ALLOW}")
        elif filtered:
            detail = (f"either the kernel has no io_uring, or {seccomp}; {_ALLOW}, or use "
                      f"Linux >= 6.1 built with CONFIG_IO_URING=y")
        else:
            detail = ("the kernel has no io_uring: use Linux >= 6.1 built with "
                      "CONFIG_IO_URING=y")
    elif err in (errno.EPERM, errno.EACCES):
        if sysctl == 2:
            detail = ("io_uring is disabled by sysctl kernel.io_uring_disabled=2; "
                      "set it to 0 (sysctl -w kernel.io_uring_disabled=0)")
        elif sysctl == 1:
            detail = ("kernel.io_uring_disabled=1 limits io_uring to the group in "
                      "kernel.io_uring_group; add this user to it or set the sysctl to 0")
        elif filtered:
            detail = (f"{seccomp} (Docker's and Kubernetes' RuntimeDefault profiles refuse it "
                      f"with EPERM); {_ALLOW}")
        else:
            detail = ("io_uring_setup was refused with no seccomp filter and "
                      "kernel.io_uring_disabled=0: a security module (SELinux, AppArmor) or a "
                      "seccomp profile applied outside this process denies it; allow "
                      "io_uring_setup, io_uring_enter and io_uring_register there")
    elif err == errno.ENOMEM:
        detail = "not enough locked memory for the ring; raise RLIMIT_MEMLOCK or use fewer entries"
    elif err == errno.EMFILE or err == errno.ENFILE:
        detail = "out of file descriptors; raise RLIMIT_NOFILE"
    else:
        detail = "io_uring is not usable here"
    return RingUnavailableError(err, what, None, False, detail)


def _try_ring(flags: int, entries: int = 8):
    """A ring for probing, or (ring, -errno).  The caller exits it."""
    r = ffi.new("struct rl_ring *")
    res = lib.rl_ring_init(r, entries, 0, flags, 0)
    return r, res


class _Scratch:
    """Result arrays for harvesting CQEs on a probe ring."""

    def __init__(self, n: int = 16):
        self.n = n
        self.ud = ffi.new("uint64_t[]", n)
        self.res = ffi.new("int32_t[]", n)
        self.fl = ffi.new("uint32_t[]", n)

    def until(self, r, ud: int, timeout: float = 1.0) -> tuple[int, int] | None:
        """Submit, then harvest until a completion for ``ud`` arrives: (res, flags), or
        None once ``timeout`` has passed.  (Everything the probe tries completes during
        the submit itself; the timeout only bounds a kernel that misbehaves.)"""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            n = lib.rl_enter(r, 1, int(left * 1e9), self.ud, self.res, self.fl, self.n)
            if n < 0:
                return None
            for i in range(n):
                if self.ud[i] == ud:
                    return self.res[i], self.fl[i]


def _try_msg_ring_send_fd(r, a: socket.socket, b: socket.socket, sc: _Scratch) -> bool:
    """Hand fixed file ``a`` from probe ring ``r`` (slot 0) to a second ring and read
    through it there.  ``r`` has a sparse file table."""
    t, res = _try_ring(0, 4)
    if res < 0:
        return False
    try:
        if lib.rl_files_sparse(t, 4) < 0 or lib.rl_files_update(r, 0, a.fileno()) < 0:
            return False
        lib.rl_prep_msg_ring_fd(r, lib.rl_ring_fd(t), 0, 1, 11, 0, 12, 0)
        if sc.until(r, 12) != (0, 0) or sc.until(t, 11) != (0, 0):
            return False
        b.send(b"z")
        buf = ffi.new("char[]", 4)
        lib.rl_prep_recv(t, 1, buf, 4, 0, 13, lib.IOSQE_FIXED_FILE)
        got = sc.until(t, 13)
        return got is not None and got[0] == 1 and buf[0] == b"z"
    finally:
        lib.rl_files_update(r, 0, -1)
        lib.rl_ring_exit(t)


def _try_multishot_recv(r, a: socket.socket, b: socket.socket, sc: _Scratch) -> bool:
    """One byte through a multishot recv with buffer selection (group 0), then cancel."""
    b.send(b"x")
    lib.rl_prep_recv_bufsel(r, a.fileno(), 0, 1, 21, 0)
    got = sc.until(r, 21)
    ok = (got is not None and got[0] == 1 and bool(got[1] & lib.IORING_CQE_F_MORE)
          and bool(got[1] & lib.IORING_CQE_F_BUFFER))
    if got is not None and got[1] & lib.IORING_CQE_F_MORE:
        lib.rl_prep_cancel(r, 21, 0, 22, 0)
        sc.until(r, 22)
    return ok


def _try_multishot_accept(r, sc: _Scratch) -> bool:
    """Accept one pending connection on an autobound (abstract) AF_UNIX listener with a
    multishot accept; cancel it.  AF_UNIX: works without a loopback interface or a port."""
    lst = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    cli = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        lst.bind("")  # autobind to a unique abstract address
        lst.listen(1)
        cli.connect(lst.getsockname())  # completes at once: the backlog has room
        lib.rl_prep_accept(r, lst.fileno(), 1, 0, 31, 0)
        got = sc.until(r, 31)
        if got is None:
            return False
        if got[0] >= 0:
            os.close(got[0])
        ok = got[0] >= 0 and bool(got[1] & lib.IORING_CQE_F_MORE)
        if got[1] & lib.IORING_CQE_F_MORE:
            lib.rl_prep_cancel(r, 31, 0, 32, 0)
            sc.until(r, 32)
        return ok
    except OSError:
        return False
    finally:
        cli.close()
        lst.close()


def _attempt(fn, *args) -> bool:
    # A failed try means "not supported", never a failed probe: sockets can fail too
    # (fd limits, a seccomp profile), and the caller only wants a yes or no.
    try:
        return bool(fn(*args))
    except OSError:
        return False


def _try_multishot_recv_with_ring(r, a, b, sc: _Scratch) -> bool:
    bufs = ffi.new("struct rl_bufring *")
    if lib.rl_bufring_setup(r, bufs, 2, 64, 0) != 0:
        return False
    try:
        return _try_multishot_recv(r, a, b, sc)
    finally:
        lib.rl_bufring_free(r, bufs)


def _try_multishot_recvmsg(r, sc: _Scratch) -> bool:
    """One datagram through a multishot recvmsg with buffer selection (group 0), then
    cancel: the buffer must hold the io_uring_recvmsg_out header, the sender's
    address and the payload."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    bufs = ffi.new("struct rl_bufring *")
    if lib.rl_bufring_setup(r, bufs, 2, 256, 0) != 0:
        a.close()
        b.close()
        return False
    msg = ffi.new("struct rl_msg *")
    try:
        b.send(b"y")
        lib.rl_prep_recvmsg_multi(r, a.fileno(), msg, 110, 0, 41, 0)
        got = sc.until(r, 41)
        ok = (got is not None and got[0] == lib.rl_recvmsg_out_size() + 110 + 1
              and bool(got[1] & lib.IORING_CQE_F_MORE) and bool(got[1] & lib.IORING_CQE_F_BUFFER))
        if got is not None and got[1] & lib.IORING_CQE_F_MORE:
            lib.rl_prep_cancel(r, 41, 0, 42, 0)
            sc.until(r, 42)
        return ok
    finally:
        lib.rl_bufring_free(r, bufs)
        a.close()
        b.close()


def _functional(r, opcodes: frozenset, sparse: bool, buf_ring: bool) -> tuple[bool, bool, bool]:
    """(multishot_accept, multishot_recv, msg_ring_send_fd), each tried on ring ``r``."""
    sc = _Scratch()
    accept = "ACCEPT" in opcodes and _attempt(_try_multishot_accept, r, sc)
    try:
        a, b = socket.socketpair()
    except OSError:
        return accept, False, False
    try:
        # SEND_FD first: its check reads the one byte it sends, leaving the socket empty
        send_fd = (sparse and "MSG_RING" in opcodes and "RECV" in opcodes
                   and _attempt(_try_msg_ring_send_fd, r, a, b, sc))
        recv = (buf_ring and "RECV" in opcodes
                and _attempt(_try_multishot_recv_with_ring, r, a, b, sc))
        return accept, recv, send_fd
    finally:
        a.close()
        b.close()


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
        ms_accept, ms_recv, send_fd = _functional(r, opcodes, sparse, buf_ring)
        ms_recvmsg = (buf_ring and "RECVMSG" in opcodes
                      and _attempt(_try_multishot_recvmsg, r, _Scratch()))
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
        multishot_accept=ms_accept,
        multishot_recv=ms_recv,
        msg_ring="MSG_RING" in opcodes,
        send_zc="SEND_ZC" in opcodes,
        msg_ring_send_fd=send_fd,
        multishot_recvmsg=ms_recvmsg,
    )


def probe() -> Features:
    """The running kernel's io_uring features (probed once per process)."""
    global _cached
    if _cached is None:
        with _lock:
            if _cached is None:
                _cached = _probe()
    return _cached
