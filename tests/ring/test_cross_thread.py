"""Ring tier: rings owned by different threads talking through MSG_RING: data messages,
an eventfd wake-up from a thread without a ring, and a fixed file handed back and forth
hundreds of times (MSG_RING SEND_FD) while a writer keeps streaming into its peer.

Each ring is created, submitted to, registered on and waited on only by its own
thread (SINGLE_ISSUER | DEFER_TASKRUN)."""
import errno
import os
import random
import socket
import struct
import sys
import threading

import pytest

from ringleader.uring import Ring, consts


class RingThread(threading.Thread):
    """Runs ``body(ring)`` on a ring that this thread creates; records any failure."""

    def __init__(self, body, **ring_kw):
        super().__init__(daemon=True)
        self.body, self.ring_kw = body, ring_kw
        self.ring_fd = None
        self.ready = threading.Event()
        self.error = None
        self.result = None

    def run(self):
        try:
            with Ring(**self.ring_kw) as r:
                self.ring_fd = r.fd
                self.result = self.body(r, self.ready)
        except BaseException as e:  # reported by finish()
            self.error = e
        finally:
            self.ready.set()

    def finish(self, timeout=20.0):
        self.join(timeout)
        assert not self.is_alive(), "ring thread hung"
        if self.error:
            raise self.error
        return self.result


def _expect(r, ud, timeout=10.0, inbox=None):
    """Wait on our own ring for the completion with user_data ``ud``; any other
    completion goes to ``inbox`` (a list), or fails the test when there is none."""
    while True:
        cs = r.wait(1, timeout)
        assert cs, f"no completion {ud} within {timeout}s"
        found = None
        for c in cs:
            if c.user_data == ud and found is None:
                found = c
            else:
                assert inbox is not None, f"unexpected {c} while waiting for {ud}"
                inbox.append(c)
        if found:
            return found


def test_msg_ring_data_between_threads(require, collect):
    require("msg_ring", "IORING_OP_MSG_RING")
    n = 100

    def receiver(r, ready):
        ready.set()
        values = {}
        while len(values) < n:
            for c in r.wait(1, 10.0) or pytest.fail("receiver got nothing in 10 s"):
                values[c.user_data] = c.res
        assert values == {1000 + i: 3 * i for i in range(n)}
        r.msg_ring(main_fd, sum(values.values()), 7, 8)  # reply to the main thread's ring
        assert _expect(r, 8).res == 0

    with Ring(64, files=0) as mine:
        main_fd = mine.fd
        t = RingThread(receiver, entries=64, files=0)
        t.start()
        t.ready.wait(10)
        for i in range(n):
            # half of them ask for no completion on our side
            mine.msg_ring(t.ring_fd, 3 * i, 1000 + i, i, skip_cqe=bool(i % 2))
        mine.flush()
        cs = collect(mine, final=[7], timeout=10.0)
        t.finish()
    ours = [c for c in cs if c.user_data != 7]
    assert sorted(c.user_data for c in ours) == list(range(0, n, 2))
    assert all(c.res == 0 for c in ours)
    assert [c.res for c in cs if c.user_data == 7] == [sum(3 * i for i in range(n))]


def test_eventfd_wakes_a_ring_from_a_thread_without_one():
    efd = os.eventfd(0, os.EFD_CLOEXEC)

    def sleeper(r, ready):
        buf = bytearray(8)
        r.read(efd, buf, 1)
        r.flush()
        ready.set()
        c = _expect(r, 1)
        return c.res, int.from_bytes(buf, sys.byteorder)

    try:
        t = RingThread(sleeper, entries=8, files=0)
        t.start()
        t.ready.wait(10)
        os.eventfd_write(efd, 3)
        assert t.finish() == (8, 3)
    finally:
        os.close(efd)


def test_send_fd_into_a_reserved_slot(require, sockpair):
    require("msg_ring_send_fd", "MSG_RING SEND_FD")
    a, b = sockpair
    box = {}

    def target(r, ready):
        box["slot"] = r.files.reserve()
        ready.set()
        c = _expect(r, 77)
        assert c.res == 0  # an explicit slot: res 0, the file is in box["slot"]
        buf = bytearray(32)
        r.recv(box["slot"], buf, 2, fixed=True)
        c = _expect(r, 2)
        return bytes(buf[:c.res])

    t = RingThread(target, entries=8, files=8, kernel_slots=2)
    t.start()
    t.ready.wait(10)
    with Ring(8, files=8) as src:
        slot = src.files.install(a.fileno())
        src.msg_ring_send_fd(t.ring_fd, slot, box["slot"], 77, 1)
        assert _expect(src, 1).res == 0
        src.files.release(slot)
        a.close()  # only the target ring holds the socket now
        b.send(b"to the new owner")
        assert t.finish() == b"to the new owner"


# user_data on the two rings of the hand-over test
MOVED, STOP, RECV, CANCEL, SENDFD, STOPPED = 1, 2, 3, 4, 5, 6


def _hold(r, br, slot, n_data, chunks):
    """Read from ``slot`` with a multishot recv until ``n_data`` data completions, then
    cancel and drain it.  Returns True at EOF.  When this returns False no receive is in
    flight on the slot any more, so the bytes still in the socket belong to the next owner."""
    r.recv_select(slot, br, RECV, multishot=True, fixed=True)
    seen = 0
    recv_live = True
    cancelling = False
    cancel_done = False
    while recv_live or (cancelling and not cancel_done):
        cs = r.wait(1, 10.0)
        assert cs, "holder got no completion in 10 s"
        for c in cs:
            if c.user_data == CANCEL:
                # 0, or -ENOENT / -EALREADY when the recv had just ended on its own
                assert c.res in (0, -errno.ENOENT, -errno.EALREADY), c
                cancel_done = True
                continue
            assert c.user_data == RECV, c
            if c.res > 0:
                chunks.append(br.take(c.buffer_id, c.res))
                seen += 1
            if c.more:
                continue
            recv_live = False
            if c.res == 0:
                return True  # EOF: the writer is done
            if c.res == -errno.ENOBUFS and seen < n_data and not cancelling:
                r.recv_select(slot, br, RECV, multishot=True, fixed=True)  # ran dry: re-arm
                recv_live = True
            elif c.res < 0 and c.res not in (-errno.ECANCELED, -errno.ENOBUFS):
                c.check("recv", slot, fixed=True)
        if recv_live and seen >= n_data and not cancelling:
            r.cancel(RECV, CANCEL)
            cancelling = True
    return False


def test_fixed_file_moves_between_ring_threads_without_losing_a_byte(require):
    require("msg_ring_send_fd", "MSG_RING SEND_FD")
    require("multishot_recv", "multishot recv with a buffer ring")
    target_moves = 400
    a, b = socket.socketpair()
    b.settimeout(20)  # a writer stuck on a dead reader fails instead of hanging
    chunks: list[bytes] = []  # appended only by the ring that holds the socket
    moves = [0]
    reads = [0, 0]
    workers = []
    start = threading.Barrier(3, timeout=10)

    def worker(idx):
        def body(r, ready):
            br = r.buffer_ring(64, 4096)
            slot = None
            if idx == 0:
                slot = r.files.install(a.fileno())
                a.close()  # from now on only the fixed tables hold the socket
            ready.set()
            start.wait()
            other = workers[1 - idx].ring_fd
            rng = random.Random(idx)
            inbox = []  # completions that came while we waited for another one
            while True:
                if slot is None:  # idle: wait for the socket, or the end
                    if not inbox:
                        inbox += r.wait(1, 10.0)
                    assert inbox, f"ring {idx} idle for 10 s"
                    c = inbox.pop(0)
                    if c.user_data == STOP:
                        return
                    assert c.user_data == MOVED and c.res >= 0, c
                    slot = c.res  # FILE_INDEX_ALLOC: the kernel says where it put it
                    r.files.adopt(slot)
                    continue
                before = len(chunks)
                eof = _hold(r, br, slot, rng.randint(1, 3), chunks)
                reads[idx] += len(chunks) - before
                if eof:
                    r.msg_ring(other, 0, STOP, STOPPED)
                    assert _expect(r, STOPPED).res == 0
                    r.files.release(slot)
                    return
                r.msg_ring_send_fd(other, slot, consts.FILE_INDEX_ALLOC, MOVED, SENDFD)
                # With FILE_INDEX_ALLOC our completion carries the slot it went to.  It can
                # come after the other ring has already read and sent the socket back to
                # us (its MOVED lands in the inbox): the kernel posts the target's CQE first.
                assert _expect(r, SENDFD, inbox=inbox).res >= r.files.user_slots
                r.files.release(slot)  # the other ring has its own reference now
                slot = None
                moves[0] += 1
        return body

    for idx in (0, 1):
        workers.append(RingThread(worker(idx), entries=64, files=16, kernel_slots=8))
        workers[-1].start()
    for w in workers:
        w.ready.wait(10)
    start.wait()

    # The writer: a stream of 4-byte big-endian counters, in chunks of random length
    # that ignore the counter boundaries, until enough moves have happened.
    rng = random.Random(42)
    sent = counter = 0
    pending = b""
    try:
        while moves[0] < target_moves and not any(w.error for w in workers):
            if len(pending) < 8192:
                pending += b"".join(struct.pack(">I", counter + i) for i in range(2048))
                counter += 2048
            n = rng.randint(1, 6000)
            b.sendall(pending[:n])
            pending = pending[n:]
            sent += n
    finally:
        b.close()  # EOF ends the last holder's multishot recv
    for w in workers:
        w.finish()

    stream = b"".join(chunks)
    expected = b"".join(struct.pack(">I", i) for i in range(counter))[:sent]
    assert moves[0] >= target_moves
    assert len(stream) == sent
    assert stream == expected
    assert min(reads) >= target_moves // 2 - 1  # both rings really read
