"""Runtime tier: the loop serves streams; run() spreads work; migration keeps bytes exact."""
import asyncio
import os
import threading

import pytest

import ringleader
from ringleader.runtime import RingEventLoop
from ..tutil import Echo


async def _echo(r, w):
    while data := await r.read(65536):
        w.write(data)
        await w.drain()
    w.close()


@pytest.mark.ring_only("the ring loop's own type")
def test_loop_is_ring_loop_and_streams_echo(ring_run, fd_guard):
    async def main():
        loop = asyncio.get_running_loop()
        assert isinstance(loop, RingEventLoop)
        srv = await asyncio.start_server(_echo, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        payload = os.urandom(1 << 20)
        w.write(payload)
        await w.drain()
        got = await r.readexactly(len(payload))
        assert got == payload
        w.close()
        await w.wait_closed()
        srv.close()
        await srv.wait_closed()
        st = loop.stats()
        assert st.ring.cqes_reaped > 0 and st.iterations > 0
        assert st.ring.bytes_flushed >= 2 * len(payload)
    ring_run(main())


def test_run_serves_on_all_workers_and_migrates(fd_guard):
    before_threads = set(threading.enumerate())

    async def main(rt):
        for mode in ("reuseport", "acceptor"):
            g = await rt.serve(Echo, "127.0.0.1", 0, mode=mode)
            conns = [await asyncio.open_connection("127.0.0.1", g.port) for _ in range(8)]
            for r, w in conns:
                w.write(b"ping")
                await w.drain()
                assert await r.readexactly(4) == b"ping"
            per_worker = [s.connections for s in rt.stats()]
            # 8 client ends live on worker 0; the 8 server ends are spread out.
            assert sum(per_worker) == 16
            if mode == "acceptor":
                assert per_worker[1] == 4
            r, w = conns[0]
            for k in range(300):
                await rt.migrate(w.transport, 1)
                await rt.run_on(1, rt.migrate(w.transport, 0))
                msg = b"m%d;" % k
                w.write(msg)
                await w.drain()
                assert await r.readexactly(len(msg)) == msg
            for _, w in conns:
                w.close()
                await w.wait_closed()
            g.close()
        return "done"

    assert ringleader.run(main, workers=2) == "done"
    # none left behind (compared as sets: a thread of an earlier test that
    # ends meanwhile is not a leak of this one)
    assert set(threading.enumerate()) <= before_threads


@pytest.mark.ring_only("the ring loop's accept path (AcceptedSocket)")
def test_accepted_socket_object_is_made_only_when_asked(ring_run, fd_guard):
    """A server transport's socket.socket object is made on the first
    get_extra_info("socket"/"sockname"/"peername"); unasked, the fd is still
    closed when the connection ends (fd_guard)."""
    from ringleader.runtime.transport import AcceptedSocket

    async def main():
        transports = []
        lost = asyncio.Event()

        class P(asyncio.Protocol):
            def connection_made(self, t):
                self.t = t
                transports.append(t)

            def data_received(self, data):
                self.t.write(data)

            def connection_lost(self, exc):
                lost.set()

        srv = await asyncio.get_running_loop().create_server(P, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        for ask in (False, True):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"x")
            assert await r.readexactly(1) == b"x"
            t = transports[-1]
            holder = t._sock
            assert isinstance(holder, AcceptedSocket)
            if not ask:
                assert holder._sock is None  # no socket object was made
            else:
                s = t.get_extra_info("socket")
                assert s.fileno() == holder.fileno()
                assert t.get_extra_info("peername") == w.get_extra_info("sockname")
                assert t.get_extra_info("sockname") == ("127.0.0.1", port)
            lost.clear()
            w.close()
            await w.wait_closed()
            await lost.wait()
            assert holder.fd == -1  # handed to the ring's close (or closed)
        srv.close()
        await srv.wait_closed()
    ring_run(main())
