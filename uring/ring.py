"""One io_uring instance: prepare operations, flush, harvest completions.

A :class:`Ring` belongs to the thread that creates it.  With
``IORING_SETUP_SINGLE_ISSUER | DEFER_TASKRUN`` (chosen when the kernel offers
them) only that thread may submit, register resources or wait; other threads
reach it with ``msg_ring`` from their own ring or an eventfd the ring reads.

Operations are prepared with one C call each and stay queued in the SQ until
:meth:`Ring.enter` (or :meth:`Ring.flush`) hands the batch to the kernel in one
``io_uring_enter``.  Each operation carries a caller-chosen ``user_data`` (an
int < 2**64) which comes back in its completion.  The ring keeps any Python
buffer an operation points at alive until that operation's last completion.

Not here: callbacks, futures, scheduling.  The runtime's event loop owns that.
"""
from __future__ import annotations

import dataclasses
import socket
import threading

from . import consts
from ._liburing import ffi, lib
from .errors import RingFullError, UringError, check, error_from_result
from .features import Features, probe, unavailable
from .resources import BufferRing, FixedFiles
from .sockaddr import encode_sockaddr, msg_flags, msg_source

# FixedFiles, BufferRing, msg_flags and msg_source live in .resources and
# .sockaddr; they stay importable from here.
__all__ = ["Ring", "RingStats", "FixedFiles", "BufferRing", "Completion", "msg_flags", "msg_source"]

_EBUSY = -16
_EEXIST = -17
_FIXED = consts.SQE_FIXED_FILE
_F_MORE = consts.CQE_F_MORE


@dataclasses.dataclass(frozen=True, slots=True)
class Completion:
    user_data: int
    res: int
    flags: int

    @property
    def more(self) -> bool:
        return bool(self.flags & _F_MORE)

    @property
    def buffer_id(self) -> int | None:
        return self.flags >> 16 if self.flags & consts.CQE_F_BUFFER else None

    @property
    def notif(self) -> bool:
        """The second completion of a zero-copy send: the kernel is done with the buffer."""
        return bool(self.flags & consts.CQE_F_NOTIF)

    def check(self, op: str, fd: int | None = None, fixed: bool = False) -> int:
        """Return ``res``, or raise the :class:`UringError` naming ``op`` and ``fd``/slot."""
        if self.res < 0:
            raise error_from_result(self.res, op, fd, fixed)
        return self.res


@dataclasses.dataclass(frozen=True)
class RingStats:
    """Counters of one ring, read without stopping it (values may lag by one batch).

    Histogram bucket 0 counts zeros; bucket k >= 1 counts values in [2**(k-1), 2**k).
    """

    enters: int
    waits: int
    sqes_submitted: int
    cqes_reaped: int
    flushes: int
    bytes_flushed: int
    cq_overflow: int
    sq_full: int
    wait_ns: int
    batch_hist: tuple[int, ...]
    flush_hist: tuple[int, ...]
    flush_bytes_hist: tuple[int, ...]
    fixed_in_use: int
    fixed_capacity: int
    sq_entries: int
    setup_flags: int
    # Harvests that found completions parked in the kernel's overflow list because the CQ
    # ring was full.  With FEAT_NODROP they are delivered later; cq_overflow counts loss.
    cq_backlog: int = 0

    HIST_BUCKETS = 16

    @staticmethod
    def bucket_bounds(k: int) -> tuple[int, int]:
        """Inclusive (low, high) of histogram bucket k (the last bucket is open-ended)."""
        if k == 0:
            return (0, 0)
        if k == RingStats.HIST_BUCKETS - 1:
            return (1 << (k - 1), 2**64 - 1)
        return (1 << (k - 1), (1 << k) - 1)

    def mean_batch(self) -> float:
        """CQEs per harvest, averaged over all enters."""
        n = sum(self.batch_hist)
        return self.cqes_reaped / n if n else 0.0

    def mean_flush_depth(self) -> float:
        return self.sqes_submitted / self.flushes if self.flushes else 0.0

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def _pick_flags(feats: Features, sqpoll: bool) -> list[int]:
    """Flag sets to try, best first."""
    base = consts.SETUP_SUBMIT_ALL if feats.submit_all else 0
    choices = []
    if sqpoll and feats.sqpoll:
        choices.append(base | consts.SETUP_SQPOLL | (consts.SETUP_SINGLE_ISSUER if feats.single_issuer else 0))
    if feats.defer_taskrun:
        choices.append(base | consts.SETUP_SINGLE_ISSUER | consts.SETUP_DEFER_TASKRUN)
    if feats.coop_taskrun:
        choices.append(base | consts.SETUP_COOP_TASKRUN | consts.SETUP_TASKRUN_FLAG)
    choices.append(base)
    choices.append(0)
    return choices



class Ring:
    """One io_uring instance owned by the creating thread."""

    def __init__(self, entries: int = 256, *, cq_entries: int | None = None, files: int = 1024,
                 kernel_slots: int | None = None, sqpoll: bool = False, sq_idle_ms: int = 50,
                 flags: int | None = None):
        if entries < 1 or entries > 32768:
            raise ValueError(f"entries must be in 1..32768, got {entries}")
        if files < 0:
            raise ValueError(f"files must be >= 0, got {files}")
        # Set first, so close() and __del__ work whatever step below fails.
        self.closed = True
        self._bufrings: list[BufferRing] = []
        self._keep: dict[int, object] = {}
        self.files: FixedFiles | None = None
        self._features = probe()
        self._r = ffi.new("struct rl_ring *")
        cq = cq_entries if cq_entries is not None else entries * 8
        tries = [flags] if flags is not None else _pick_flags(self._features, sqpoll)
        res = -22
        for f in tries:
            res = lib.rl_ring_init(self._r, entries, cq, f, sq_idle_ms)
            if res != -22:  # EINVAL: flag combination refused, try the next
                break
        if res < 0:
            raise unavailable(res)
        self.closed = False
        self.owner = threading.get_ident()
        self.fd = lib.rl_ring_fd(self._r)
        self.flags = self._r.setup_flags
        self._max = 4 * max(entries, 64)
        self._ud = ffi.new("uint64_t[]", self._max)
        self._res = ffi.new("int32_t[]", self._max)
        self._fl = ffi.new("uint32_t[]", self._max)
        self._arena = None  # enter_bufs' copy-out area, made on first use
        self._arena_size = 0
        if files:
            try:
                self.files = self._register_files(files, kernel_slots)
            except BaseException:
                self.close()
                raise

    def _register_files(self, files: int, kernel_slots: int | None) -> FixedFiles:
        if not self._features.sparse_files:
            raise unavailable(-38, "register_files_sparse")
        ks = kernel_slots if kernel_slots is not None else files // 4
        if not 0 <= ks <= files:
            raise ValueError(f"kernel_slots must be in 0..{files}, got {ks}")
        check(lib.rl_files_sparse(self._r, files), "register_files_sparse")
        if ks and self._features.file_alloc_range:
            check(lib.rl_files_alloc_range(self._r, files - ks, ks), "register_file_alloc_range")
        else:
            ks = 0
        return FixedFiles(self._r, self._error, files, ks)

    def _error(self, res: int, op: str, fd: int | None = None, fixed: bool = False,
               detail: str = "") -> UringError:
        """The exception for ``res``; says so when a SINGLE_ISSUER ring is used off-thread."""
        if res == _EEXIST and threading.get_ident() != self.owner:
            detail = (f"ring {self.fd} belongs to thread {self.owner}, used from thread "
                      f"{threading.get_ident()}; a SINGLE_ISSUER ring is driven only by its "
                      f"owner (reach it with msg_ring or an eventfd)")
        return error_from_result(res, op, fd, fixed, detail)

    # ---- introspection ----
    def features(self) -> Features:
        return self._features

    @property
    def defer_taskrun(self) -> bool:
        return bool(self.flags & consts.SETUP_DEFER_TASKRUN)

    def stats(self) -> RingStats:
        st = self._r.st
        return RingStats(
            enters=st.enters, waits=st.waits, sqes_submitted=st.sqes_submitted,
            cqes_reaped=st.cqes_reaped, flushes=st.flushes, bytes_flushed=st.bytes_flushed,
            cq_overflow=st.cq_overflow, cq_backlog=st.cq_backlog, sq_full=st.sq_full,
            wait_ns=st.wait_ns,
            batch_hist=tuple(st.batch_hist), flush_hist=tuple(st.flush_hist),
            flush_bytes_hist=tuple(st.flush_bytes_hist),
            fixed_in_use=self.files.in_use if self.files else 0,
            fixed_capacity=self.files.capacity if self.files else 0,
            sq_entries=self._r.sq_entries, setup_flags=self.flags,
        )

    def sq_ready(self) -> int:
        return lib.rl_sq_ready(self._r)

    def c_struct(self) -> tuple[int, object]:
        """(address of the C ``struct rl_ring``, the object owning it): see
        :meth:`BufferRing.c_struct`.  Compiled code that harvests this ring must
        also drop :attr:`keep_table` entries at each operation's last CQE."""
        return int(ffi.cast("uintptr_t", self._r)), self._r

    @property
    def keep_table(self) -> dict:
        """user_data -> objects kept alive until that operation's last completion."""
        return self._keep

    def hold(self, ud: int, obj) -> None:
        """Keep ``obj`` (a buffer the kernel may still read) alive until the last
        completion of operation ``ud`` is harvested."""
        self._keep[ud] = obj

    def pending_bytes(self) -> int:
        return self._r.pending_bytes

    def buffer_ring(self, count: int = 256, size: int = 16384, bgid: int | None = None,
                    bid_base: int = 0) -> BufferRing:
        if bgid is None:
            bgid = len(self._bufrings)
        br = BufferRing(self._r, self._error, count, size, bgid, bid_base)
        self._bufrings.append(br)
        return br

    # ---- submission / completion ----
    def flush(self) -> int:
        """Submit queued SQEs without waiting; returns how many."""
        res = lib.rl_flush(self._r)
        if res < 0:
            raise self._error(res, "io_uring_enter(submit)", self.fd)
        return res

    def enter(self, wait_nr: int = 0, timeout: float | None = None) -> tuple[list, list, list]:
        """Submit, wait for ``wait_nr`` completions (at most ``timeout`` s), harvest.

        Returns three parallel lists: user_data, res, flags.  ``timeout=None`` waits
        without a deadline.  A timeout or signal returns what is there (maybe nothing).
        """
        ns = -1 if timeout is None else max(0, int(timeout * 1e9))
        n = lib.rl_enter(self._r, wait_nr, ns, self._ud, self._res, self._fl, self._max)
        if n <= 0:
            if n < 0:
                raise self._error(n, "io_uring_enter", self.fd)
            return [], [], []
        uds = ffi.unpack(self._ud, n)
        fls = ffi.unpack(self._fl, n)
        if self._keep:
            self._drop_kept(uds, fls)
        return uds, ffi.unpack(self._res, n), fls

    def _drop_kept(self, uds: list, fls: list) -> None:
        """Let go of the buffers of operations that just completed for the last time."""
        keep = self._keep
        for ud, fl in zip(uds, fls):
            if not fl & _F_MORE:
                keep.pop(ud, None)

    def wait(self, wait_nr: int = 1, timeout: float | None = None) -> list[Completion]:
        """Like :meth:`enter` but returns :class:`Completion` objects (tests, tools)."""
        uds, res, fls = self.enter(wait_nr, timeout)
        return [Completion(u, r, f) for u, r, f in zip(uds, res, fls)]

    def enter_bufs(self, bufring: BufferRing, wait_nr: int = 0, timeout: float | None = None):
        """:meth:`enter` for a ring whose only provided buffers are ``bufring``.

        Each completion that took a buffer has its bytes copied out and the buffer
        recycled within the same C call.  Returns ``(uds, res, flags, offs, data)``:
        completion i with ``CQE_F_BUFFER`` and ``res > 0`` received
        ``data[offs[i]:offs[i] + res[i]]`` (slicing gives bytes); its buffer is
        already back in the ring, so never call :meth:`BufferRing.take` for it.
        """
        if self._arena is None or self._arena_size < bufring.size:
            # Room for a full harvest of typical small messages; a completion that
            # does not fit waits for the next call (the C side guarantees progress).
            self._arena_size = max(256 * 1024, bufring.size)
            self._arena = ffi.new("char[]", self._arena_size)
            self._offs = ffi.new("uint32_t[]", self._max)
            self._used = ffi.new("unsigned *")
        ns = -1 if timeout is None else max(0, int(timeout * 1e9))
        n = lib.rl_enter_bufs(self._r, wait_nr, ns, self._ud, self._res, self._fl, self._offs,
                              self._max, bufring._b, self._arena, self._arena_size, self._used)
        if n <= 0:
            if n < 0:
                raise self._error(n, "io_uring_enter", self.fd)
            return [], [], [], [], b""
        uds = ffi.unpack(self._ud, n)
        fls = ffi.unpack(self._fl, n)
        if self._keep:
            self._drop_kept(uds, fls)
        used = self._used[0]
        return (uds, ffi.unpack(self._res, n), fls, ffi.unpack(self._offs, n),
                ffi.buffer(self._arena, used) if used else b"")

    def send_fixed(self, slot: int, data, ud: int) -> None:
        """Send ``data`` on fixed file ``slot`` (MSG_NOSIGNAL) without recording it in
        the ring: the caller keeps ``data`` alive until the completion.  The runtime's
        transports do (it is their in-flight buffer); this saves the bookkeeping."""
        res = lib.rl_prep_send_fixed(self._r, slot,
                                     data if type(data) is bytes else ffi.from_buffer(data),
                                     len(data), ud)
        if res:
            self._check_sqe(res, "send", slot, True)

    def _check_sqe(self, res: int, op: str, fd=None, fixed=False) -> None:
        if res == _EBUSY:
            raise RingFullError(16, op, fd, fixed, "submission queue full")
        check(res, op, fd, fixed)

    # ---- operations (each prepares one SQE; nothing is submitted until enter/flush) ----
    # The prep helpers return 0, or -EBUSY when the SQ stayed full even after an early
    # flush; testing ``if res:`` inline keeps the common path to one C call per operation.
    def nop(self, ud: int, *, link: bool = False) -> None:
        res = lib.rl_prep_nop(self._r, ud, consts.SQE_IO_LINK if link else 0)
        if res:
            self._check_sqe(res, "nop")

    def nops(self, n: int, ud0: int = 0) -> None:
        """Queue ``n`` NOPs with user_data ud0, ud0+1, ... in one call."""
        res = lib.rl_prep_nops(self._r, n, ud0)
        if res:
            self._check_sqe(res, "nop")

    # ``link=True`` sets IOSQE_IO_LINK: the next SQE (e.g. :meth:`link_timeout`) starts only
    # after this one, or bounds it.  Buffers are recorded in ``_keep`` only once the SQE is
    # prepared, so a refused SQE (RingFullError) keeps nothing alive by mistake.
    def accept(self, fd: int, ud: int, *, multishot: bool = False, direct: bool = False,
               fixed: bool = False, link: bool = False) -> None:
        """Accept on listening socket ``fd``; the new fd (res) is non-blocking and
        close-on-exec.  ``direct``: the new socket goes into a kernel-chosen fixed slot
        (returned as res; call ``files.adopt(res)``) instead of a normal fd; -ENFILE when
        the kernel's slot range is full."""
        res = lib.rl_prep_accept(self._r, fd, int(multishot), int(direct), ud,
                                 _sf(fixed, link))
        if res:
            self._check_sqe(res, "accept", fd, fixed)

    def connect(self, fd: int, address, ud: int, *, family: int = socket.AF_INET,
                fixed: bool = False, link: bool = False) -> None:
        raw = encode_sockaddr(family, address)
        buf = ffi.from_buffer(raw)
        res = lib.rl_prep_connect(self._r, fd, buf, len(raw), ud, _sf(fixed, link))
        if res:
            self._check_sqe(res, "connect", fd, fixed)
        self._keep[ud] = (raw, buf)

    def recv(self, fd: int, buf, ud: int, *, fixed: bool = False, flags: int = 0,
             link: bool = False) -> None:
        """Receive into a caller buffer (kept alive until the completion)."""
        cbuf = ffi.from_buffer(buf, require_writable=True)
        res = lib.rl_prep_recv(self._r, fd, cbuf, len(cbuf), flags, ud, _sf(fixed, link))
        if res:
            self._check_sqe(res, "recv", fd, fixed)
        self._keep[ud] = cbuf

    def recv_select(self, fd: int, bufring: BufferRing, ud: int, *, multishot: bool = False,
                    fixed: bool = False, link: bool = False) -> None:
        """Receive into a buffer the kernel picks from ``bufring`` (CQE flags carry its id).

        A multishot receive ends (a CQE without F_MORE) at EOF (res 0), on cancel
        (-ECANCELED), on error, or with -ENOBUFS when ``bufring`` ran dry: recycle, re-arm."""
        res = lib.rl_prep_recv_bufsel(self._r, fd, bufring.bgid, int(multishot), ud,
                                      _sf(fixed, link))
        if res:
            self._check_sqe(res, "recv", fd, fixed)

    def send(self, fd: int, data, ud: int, *, fixed: bool = False, flags: int = 0,
             link: bool = False) -> None:
        cbuf = ffi.from_buffer(data)
        res = lib.rl_prep_send(self._r, fd, cbuf, len(cbuf), flags | _MSG_NOSIGNAL, ud,
                               _sf(fixed, link))
        if res:
            self._check_sqe(res, "send", fd, fixed)
        self._keep[ud] = (data, cbuf)

    def recvmsg(self, fd: int, buf, ud: int, *, flags: int = 0, msg=None):
        """Receive one datagram into ``buf`` (kept alive until the completion).
        Returns the message header (``msg``, reused when given: one receive
        at a time per header); after the completion, :func:`msg_source`
        gives the sender's address and :func:`msg_flags` the kernel's flags
        (``MSG_TRUNC`` when the datagram did not fit)."""
        cbuf = ffi.from_buffer(buf, require_writable=True)
        if msg is None:
            msg = ffi.new("struct rl_msg *")
        res = lib.rl_prep_recvmsg(self._r, fd, msg, cbuf, len(cbuf), flags, ud, 0)
        if res:
            self._check_sqe(res, "recvmsg", fd)
        self._keep[ud] = (cbuf, msg)
        return msg

    def recvmsg_multishot(self, fd: int, bufring: BufferRing, namelen: int, ud: int, *,
                          msg=None):
        """Keep receiving datagrams, each into a buffer of ``bufring`` (CQE flags carry its
        id).  A buffer holds :data:`RECVMSG_OUT_SIZE` bytes of header (namelen,
        controllen, payloadlen, flags: four native u32), ``namelen`` bytes of room for
        the sender's address, then the payload (see :func:`parse_recvmsg_out`).  Ends
        (a CQE without F_MORE) on cancel, on error and with -ENOBUFS when ``bufring``
        ran dry: re-arm.  Returns the template header (``msg``, reused when given)."""
        if msg is None:
            msg = ffi.new("struct rl_msg *")
        res = lib.rl_prep_recvmsg_multi(self._r, fd, msg, namelen, bufring.bgid, ud, 0)
        if res:
            self._check_sqe(res, "recvmsg", fd)
        self._keep[ud] = msg
        return msg

    def sendmsg(self, fd: int, data, address, family: int, ud: int, *, flags: int = 0) -> None:
        """Send ``data`` as one datagram to ``address`` (None: the connected peer)."""
        cbuf = ffi.from_buffer(data)
        msg = ffi.new("struct rl_msg *")
        if address is None:
            raw, addr = b"", ffi.NULL
        else:
            raw = encode_sockaddr(family, address)
            addr = ffi.from_buffer(raw)
        res = lib.rl_prep_sendmsg(self._r, fd, msg, cbuf, len(cbuf), addr, len(raw),
                                  flags | _MSG_NOSIGNAL, ud, 0)
        if res:
            self._check_sqe(res, "sendmsg", fd)
        self._keep[ud] = (data, cbuf, msg, raw, addr)

    def send_zc(self, fd: int, data, ud: int, *, fixed: bool = False, link: bool = False) -> None:
        """Zero-copy send: two completions (result with F_MORE, then F_NOTIF).  Needs a
        socket that supports zero copy (TCP/UDP; AF_UNIX gives -EOPNOTSUPP)."""
        cbuf = ffi.from_buffer(data)
        res = lib.rl_prep_send_zc(self._r, fd, cbuf, len(cbuf), _MSG_NOSIGNAL, ud,
                                  _sf(fixed, link))
        if res:
            self._check_sqe(res, "send_zc", fd, fixed)
        self._keep[ud] = (data, cbuf)

    def read(self, fd: int, buf, ud: int, *, offset: int = -1, fixed: bool = False,
             link: bool = False) -> None:
        cbuf = ffi.from_buffer(buf, require_writable=True)
        res = lib.rl_prep_read(self._r, fd, cbuf, len(cbuf), offset & (2**64 - 1), ud,
                               _sf(fixed, link))
        if res:
            self._check_sqe(res, "read", fd, fixed)
        self._keep[ud] = cbuf

    def write(self, fd: int, data, ud: int, *, offset: int = -1, fixed: bool = False,
              link: bool = False) -> None:
        cbuf = ffi.from_buffer(data)
        res = lib.rl_prep_write(self._r, fd, cbuf, len(cbuf), offset & (2**64 - 1), ud,
                                _sf(fixed, link))
        if res:
            self._check_sqe(res, "write", fd, fixed)
        self._keep[ud] = (data, cbuf)

    def close_fd(self, fd: int, ud: int) -> None:
        res = lib.rl_prep_close(self._r, fd, ud, 0)
        if res:
            self._check_sqe(res, "close", fd)

    def close_fixed(self, slot: int, ud: int) -> None:
        """Close a fixed slot through the ring (the slot is empty once this completes)."""
        res = lib.rl_prep_close_direct(self._r, slot, ud, 0)
        if res:
            self._check_sqe(res, "close", slot, True)

    def shutdown(self, fd: int, how: int, ud: int, *, fixed: bool = False) -> None:
        res = lib.rl_prep_shutdown(self._r, fd, how, ud, _FIXED if fixed else 0)
        if res:
            self._check_sqe(res, "shutdown", fd, fixed)

    def timeout(self, seconds: float, ud: int, *, count: int = 0) -> None:
        """Completes with -ETIME after ``seconds`` (or 0 after ``count`` other CQEs)."""
        res = lib.rl_prep_timeout(self._r, int(seconds * 1e9), count, 0, ud, 0)
        if res:
            self._check_sqe(res, "timeout")

    def link_timeout(self, seconds: float, ud: int) -> None:
        """Bound the previous SQE (which must have been prepared with ``link=True``)."""
        res = lib.rl_prep_link_timeout(self._r, int(seconds * 1e9), ud, 0)
        if res:
            self._check_sqe(res, "link_timeout")

    def timeout_remove(self, target_ud: int, ud: int) -> None:
        res = lib.rl_prep_timeout_remove(self._r, target_ud, ud, 0)
        if res:
            self._check_sqe(res, "timeout_remove")

    def cancel(self, target_ud: int, ud: int, *, all: bool = False) -> None:
        res = lib.rl_prep_cancel(self._r, target_ud, consts.ASYNC_CANCEL_ALL if all else 0,
                                 ud, 0)
        if res:
            self._check_sqe(res, "async_cancel")

    def cancel_fd(self, fd: int, ud: int, *, fixed: bool = False) -> None:
        """Cancel every pending operation on ``fd`` (or fixed slot)."""
        res = lib.rl_prep_cancel_fd(self._r, fd, int(fixed), ud, 0)
        if res:
            self._check_sqe(res, "async_cancel", fd, fixed)

    def poll(self, fd: int, mask: int, ud: int, *, multishot: bool = False, fixed: bool = False,
             link: bool = False) -> None:
        res = lib.rl_prep_poll(self._r, fd, mask, int(multishot), ud, _sf(fixed, link))
        if res:
            self._check_sqe(res, "poll_add", fd, fixed)

    def poll_remove(self, target_ud: int, ud: int) -> None:
        res = lib.rl_prep_poll_remove(self._r, target_ud, ud, 0)
        if res:
            self._check_sqe(res, "poll_remove")

    def msg_ring(self, target: "Ring | int", value: int, target_ud: int, ud: int, *,
                 skip_cqe: bool = False) -> None:
        """Post a CQE ``{user_data=target_ud, res=value}`` on another ring."""
        tfd = target if isinstance(target, int) else target.fd
        res = lib.rl_prep_msg_ring(self._r, tfd, value, target_ud, ud,
                                   consts.SQE_CQE_SKIP_SUCCESS if skip_cqe else 0)
        if res:
            self._check_sqe(res, "msg_ring", tfd)

    def msg_ring_send_fd(self, target: "Ring | int", src_slot: int, dst_slot: int, target_ud: int,
                         ud: int) -> None:
        """Install our fixed file ``src_slot`` into the target ring's ``dst_slot``
        (``consts.FILE_INDEX_ALLOC`` lets the kernel choose; both CQEs' res are then the
        target's slot, else 0).  Our slot stays filled: release it once our CQE says
        res >= 0.  Don't send into a slot the target still uses: the file there is replaced."""
        tfd = target if isinstance(target, int) else target.fd
        res = lib.rl_prep_msg_ring_fd(self._r, tfd, src_slot, dst_slot, target_ud, 0, ud, 0)
        if res:
            self._check_sqe(res, "msg_ring(send_fd)", src_slot, True)

    # ---- teardown ----
    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        # Exit the ring before unmapping its buffers: the kernel cancels pending receives
        # at exit, so none can land in memory we already gave back.  (Unregistering the
        # buffer rings first would also fail from a thread other than the owner.)
        lib.rl_ring_exit(self._r)
        for br in self._bufrings:
            br.close()
        self._bufrings.clear()
        self._keep.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        # Only reached if the owner forgot close(); the kernel frees the ring either way.
        try:
            if not self.closed:
                self.close()
        except Exception:
            pass


# A plain int: socket.MSG_NOSIGNAL is an IntFlag, and `flags | IntFlag` runs the
# enum machinery (about 1.5 us per send in a py-spy profile of the HTTP bench).
_MSG_NOSIGNAL = int(socket.MSG_NOSIGNAL)
_LINK = consts.SQE_IO_LINK


def _sf(fixed: bool, link: bool) -> int:
    """SQE flags for the common keyword arguments."""
    return (_FIXED if fixed else 0) | (_LINK if link else 0)
