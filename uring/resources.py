"""A ring's registered resources: the fixed-file table and provided-buffer rings.

What it does: :class:`FixedFiles` allocates slots of the ring's sparse
registered-file table (user slots; the rest are left to the kernel for
direct accepts and ``msg_ring`` file passing) and :class:`BufferRing` is one
provided-buffer group.  Both are made by :class:`~.ring.Ring` and given only
what they need of it: the C ring (``struct rl_ring *``) and its error
factory (which names a SINGLE_ISSUER ring used off its thread).

What it does not do: submit operations or read completions (``ring``).
"""
from __future__ import annotations

from typing import Callable

from ._liburing import ffi, lib
from .errors import RingFullError, UringError

__all__ = ["FixedFiles", "BufferRing", "ErrorFactory"]

_ENFILE = 23

#: ``error(res, op, fd=None, fixed=False, detail="")``: the exception for a
#: negative result (``Ring._error``).
ErrorFactory = Callable[..., UringError]


class FixedFiles:
    """The ring's sparse registered-file table and a slot allocator.

    Slots ``[0, user_slots)`` are handed out by :meth:`install`; the rest are left
    to the kernel for ``accept(direct=True)`` and ``msg_ring_send_fd(slot=ALLOC)``.
    """

    def __init__(self, r, error: ErrorFactory, capacity: int, kernel_slots: int):
        self._r = r
        self._error = error
        self.capacity = capacity
        self.user_slots = capacity - kernel_slots
        self._free = list(range(self.user_slots - 1, -1, -1))
        self._used: set[int] = set()
        self.kernel_in_use = 0

    @property
    def in_use(self) -> int:
        return len(self._used) + self.kernel_in_use

    def reserve(self) -> int:
        """Take a free slot without installing anything (a msg_ring target)."""
        if not self._free:
            raise RingFullError(_ENFILE, "fixed_files.reserve", None, False,
                                f"all {self.user_slots} user slots of {self.capacity} in use")
        slot = self._free.pop()
        self._used.add(slot)
        return slot

    def install(self, fd: int) -> int:
        """Register ``fd`` into a free slot; returns the slot.  ``fd`` stays open."""
        slot = self.reserve()
        res = lib.rl_files_update(self._r, slot, fd)
        if res < 0:
            self._free.append(slot)
            self._used.discard(slot)
            raise self._error(res, "files_update", fd)
        return slot

    def update(self, slot: int, fd: int) -> None:
        res = lib.rl_files_update(self._r, slot, fd)
        if res < 0:
            raise self._error(res, "files_update", slot, True)

    def release(self, slot: int) -> None:
        """Empty ``slot`` (drops the ring's reference to the file) and free it."""
        res = lib.rl_files_update(self._r, slot, -1)
        if slot in self._used:
            self._used.discard(slot)
            self._free.append(slot)
        else:
            # a kernel-allocated slot (accept direct / msg_ring alloc)
            self.kernel_in_use = max(0, self.kernel_in_use - 1)
        if res < 0:
            raise self._error(res, "files_update(release)", slot, True)

    def forget(self, slot: int) -> None:
        """Mark ``slot`` free after the kernel emptied it (close_direct completed)."""
        if slot in self._used:
            self._used.discard(slot)
            self._free.append(slot)
        else:
            self.kernel_in_use = max(0, self.kernel_in_use - 1)

    def adopt(self, slot: int) -> None:
        """Account for a slot the kernel filled (accept direct, msg_ring alloc)."""
        if slot >= self.user_slots:
            self.kernel_in_use += 1


class BufferRing:
    """A provided-buffer ring: ``count`` buffers of ``size`` bytes in group ``bgid``.

    Receives with buffer selection take a buffer; :meth:`take` copies the bytes
    out and gives the buffer straight back, so a buffer is never held by Python.
    """

    def __init__(self, r, error: ErrorFactory, count: int, size: int, bgid: int,
                 bid_base: int = 0):
        self._r = r
        self._b = ffi.new("struct rl_bufring *")
        # bid_base: the buffers' ids start there (a completion names a buffer's id,
        # not its group: two groups that one harvest serves need disjoint ids).
        res = lib.rl_bufring_setup_at(r, self._b, count, size, bgid, bid_base)
        if res < 0:
            self._b = None
            raise error(res, "register_buf_ring", detail=f"group {bgid}, {count} x {size} B")
        self.count = count
        self.size = size
        self.bgid = bgid
        self.enobufs = 0  # multishot receives ended because the ring ran dry

    def take(self, bid: int, n: int) -> bytes:
        data = ffi.unpack(lib.rl_buf_addr(self._b, bid), n)
        lib.rl_bufring_recycle(self._b, bid)
        return data

    def recycle(self, bid: int) -> None:
        lib.rl_bufring_recycle(self._b, bid)

    def c_struct(self) -> tuple[int, object]:
        """(address of the C ``struct rl_bufring``, the object owning it) for
        compiled code that drives this ring (the event loop's core); hold the
        owner as long as the address is used."""
        return int(ffi.cast("uintptr_t", self._b)), self._b

    def close(self) -> None:
        if self._b is not None:
            lib.rl_bufring_free(self._r, self._b)
            self._b = None
