"""Demo of the rings: NOP batches, a socketpair ping-pong on fixed files with a
provided-buffer ring, and a fixed file handed to a second ring's thread with
MSG_RING SEND_FD.  Prints each ring's stats.  (The traffic rig replaces this as
the main job once the supervisor lands.)"""
import socket
import threading
import time

from ringleader.uring import Ring, consts, probe


def show(name, st):
    print(f"  {name}: enters={st.enters} sqes={st.sqes_submitted} cqes={st.cqes_reaped} "
          f"mean batch={st.mean_batch():.1f} mean flush depth={st.mean_flush_depth():.1f} "
          f"bytes flushed={st.bytes_flushed} fixed in use={st.fixed_in_use}/{st.fixed_capacity}")


def main():
    f = probe()
    print(f"kernel {f.kernel}: {len(f.opcodes)} opcodes; defer_taskrun={f.defer_taskrun} "
          f"buf_ring={f.buf_ring} msg_ring={f.msg_ring} send_zc={f.send_zc}")
    ring = Ring()
    t0 = time.perf_counter()
    n = 0
    while n < 200_000:
        ring.nops(128, n)
        got = 0
        while got < 128:
            got += len(ring.enter(128 - got)[0])
        n += 128
    dt = time.perf_counter() - t0
    print(f"NOP batches of 128: {n / dt / 1e6:.2f} M ops/s")

    a, b = socket.socketpair()
    slot = ring.files.install(a.fileno())
    br = ring.buffer_ring(64, 4096)
    ring.recv_select(slot, br, 1, multishot=True, fixed=True)
    msgs = 20_000
    t0 = time.perf_counter()
    for i in range(msgs):
        ring.send(slot, b"ping", 2, fixed=True)
        ring.enter(1)  # send completes
        b.recv(16)
        b.send(b"pong")
        data = b""
        while not data:
            uds, res, fl = ring.enter(1)
            for u, r, flg in zip(uds, res, fl):
                if u == 1 and r > 0:
                    data += br.take(flg >> 16, r)
    dt = time.perf_counter() - t0
    print(f"socketpair ping-pong over a fixed file: {msgs / dt:,.0f} round trips/s")
    show("ring 0", ring.stats())

    # Hand the socket to a ring owned by another thread.
    ready, box = threading.Event(), {}

    def other():
        r2 = Ring()
        box["fd"] = r2.fd
        ready.set()
        cs = r2.wait(1, 5.0)
        new_slot = cs[0].res
        r2.files.adopt(new_slot)
        buf = bytearray(64)
        r2.recv(new_slot, buf, 9, fixed=True)
        c = r2.wait(1, 5.0)[0]
        box["got"] = bytes(buf[:c.res])
        box["stats"] = r2.stats()
        r2.close()

    t = threading.Thread(target=other)
    t.start()
    ready.wait()
    ring.cancel_fd(slot, 3, fixed=True)
    ring.wait(2, 1.0)
    ring.msg_ring_send_fd(box["fd"], slot, consts.FILE_INDEX_ALLOC, 77, 4)
    ring.wait(1, 1.0)
    ring.files.release(slot)
    a.close()
    b.send(b"hello from the old owner's peer")
    t.join()
    print(f"moved fixed file to ring 1 with MSG_RING SEND_FD; it read {box['got']!r}")
    show("ring 1", box["stats"])
    ring.close()
    b.close()


if __name__ == "__main__":
    main()
