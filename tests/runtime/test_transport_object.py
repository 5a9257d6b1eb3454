"""Runtime tier: the transport object itself is compiled (``_loopcore.Stream``
is RingTransport's base class).

What these pin: the type is still an asyncio transport with asyncio's
slot-based attributes; a connection's objects are freed by reference counting
when it ends (no cycle left for the collector, so a loop serving many
connections keeps a flat object count with the collector off); the order of
the protocol's callbacks across close/abort; errors raised by
``connection_made``/``connection_lost`` reach the loop's exception handler as
with asyncio; and the unclosed-transport ResourceWarning (now the type's C
finalizer).
"""
import asyncio
import gc
import socket
import warnings
import weakref

import pytest

import ringleader
from ringleader.runtime import _loopcore
from ringleader.runtime.contract import StreamState
from ringleader.runtime.transport import RingTransport

pytestmark = pytest.mark.ring_only("the ring loop's compiled transport type")

REQUEST = b"ping\n"


def _run(coro):
    with asyncio.Runner(loop_factory=ringleader.new_event_loop) as r:
        return r.run(coro)


class Answer(asyncio.Protocol):
    """Answers one line and closes: connection-per-request."""

    made = lost = 0
    alive = weakref.WeakSet()

    def connection_made(self, transport):
        Answer.made += 1
        Answer.alive.add(transport)
        self.transport = transport  # a transport <-> protocol cycle until connection_lost

    def data_received(self, data):
        self.transport.write(b"pong\n")
        self.transport.close()

    def connection_lost(self, exc):
        Answer.lost += 1


async def _one_request(port: int) -> bytes:
    r, w = await asyncio.open_connection("127.0.0.1", port)
    w.write(REQUEST)
    got = await r.read()
    w.close()
    await w.wait_closed()
    return got


def test_the_transport_is_the_compiled_stream_and_an_asyncio_transport():
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with b:
            t, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
            assert isinstance(t, _loopcore.Stream) and isinstance(t, asyncio.Transport)
            assert type(t).write is _loopcore.Stream.write  # no per-instance binding
            assert "write" not in getattr(t, "__dict__", {})
            # asyncio's slot attributes live where its own code looks for them
            assert t._loop is loop and t._protocol_paused is False
            assert t.get_write_buffer_limits() == (16 * 1024, 64 * 1024)
            t.set_write_buffer_limits(high=100)
            assert t.get_write_buffer_limits() == (25, 100) and t.high_water == 100
            t.my_attribute = 1  # user code may still hang its own attributes on it
            assert t.conn_id > 0 and t.migrations == 0 and t._migrate_waiter is None
            t.close()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            assert t.state == StreamState.DONE and t._protocol is None
    _run(main())


def test_connections_are_freed_without_the_collector_and_the_count_stays_flat():
    """Thousands of connection-per-request exchanges with the collector off:
    every transport is freed by reference counting once connection_lost ran,
    and the number of tracked objects does not grow with the connections."""
    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(Answer, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]

        async def batch(n):
            for _ in range(n // 20):
                got = await asyncio.gather(*[_one_request(port) for _ in range(20)])
                assert got == [b"pong\n"] * 20

        await batch(200)  # warm caches, free lists, the fixed-file table
        gc.collect()
        gc.disable()
        try:
            before = len(gc.get_objects())
            made0 = Answer.made
            await batch(2000)
            for _ in range(3):
                await asyncio.sleep(0)
            after = len(gc.get_objects())
            assert Answer.made - made0 == 2000
            # the server's transports (and the clients') are gone already
            assert len(Answer.alive) == 0
            assert not [o for o in gc.get_objects() if isinstance(o, RingTransport)]
            # a few objects of slack for caches, nothing per connection
            assert after - before < 200, (before, after)
        finally:
            gc.enable()
        srv.close()
        await srv.wait_closed()
    _run(main())


def test_close_abort_and_connection_lost_order():
    events = []

    class Rec(asyncio.Protocol):
        def connection_made(self, t):
            events.append("made")
            self.t = t

        def data_received(self, data):
            events.append(("data", data))

        def eof_received(self):
            events.append("eof")

        def connection_lost(self, exc):
            events.append(("lost", exc))

    async def main():
        loop = asyncio.get_running_loop()
        for how in ("close", "abort"):
            events.clear()
            a, b = socket.socketpair()
            b.setblocking(False)
            t, p = await loop.connect_accepted_socket(Rec, a)
            await loop.sock_sendall(b, b"hi")
            while ("data", b"hi") not in events:
                await asyncio.sleep(0.001)
            t.write(b"queued")
            getattr(t, how)()
            assert t.is_closing()
            getattr(t, how)()  # twice: nothing more happens
            # as asyncio's transports: after close() a write still joins the
            # queue that goes out before the end; after abort() it is dropped
            t.write(b"after")
            assert events[-1] == ("data", b"hi")  # connection_lost comes in a later iteration
            while events[-1][0] != "lost":
                await asyncio.sleep(0.001)
            assert events == ["made", ("data", b"hi"), ("lost", None)]
            tail = b""
            while True:
                chunk = await loop.sock_recv(b, 100)
                if not chunk:
                    break
                tail += chunk
            assert tail == (b"queuedafter" if how == "close" else b"")
            assert t.state == StreamState.DONE and t.get_protocol() is None
            b.close()
    _run(main())


@pytest.mark.parametrize("where", ["connection_made", "connection_lost"])
def test_protocol_errors_reach_the_exception_handler(where):
    class Boom(asyncio.Protocol):
        def connection_made(self, t):
            self.t = t
            if where == "connection_made":
                raise ValueError(where)
            t.close()

        def connection_lost(self, exc):
            if where == "connection_lost":
                raise ValueError(where)

    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
        a, b = socket.socketpair()
        with b:
            t, _ = await loop.connect_accepted_socket(Boom, a)
            for _ in range(50):
                if seen:
                    break
                await asyncio.sleep(0.01)
            if where == "connection_made":
                t.close()
            for _ in range(5):
                await asyncio.sleep(0)
        assert len(seen) == 1
        assert isinstance(seen[0]["exception"], ValueError)
        assert str(seen[0]["exception"]) == where
        assert t.state == StreamState.DONE  # the connection still ended
    _run(main())


def test_unclosed_transport_warns_once_freed():
    """Freed while its connection never ended: a ResourceWarning naming it,
    from the type's C finalizer, as asyncio's transports warn.  (A loop keeps
    its open transports and aborts them when it closes, so the state is made
    directly: bound to a core, never reaching DONE.)"""
    async def main():
        loop = asyncio.get_running_loop()
        with warnings.catch_warnings(record=True) as w:
            warnings.simplefilter("always")
            t = RingTransport.__new__(RingTransport)
            del t  # never bound to a loop: nothing to warn about
            t = RingTransport.__new__(RingTransport)
            t._loop = loop
            t._rebind(loop._core, -1, 1, 2)
            name = repr(t)
            del t
        return name, [str(x.message) for x in w if issubclass(x.category, ResourceWarning)]

    name, msgs = _run(main())
    assert msgs == [f"unclosed transport {name}"]


def test_a_closed_transport_does_not_warn():
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        with b:
            t, _ = await loop.connect_accepted_socket(asyncio.Protocol, a)
            t.close()
            await asyncio.sleep(0)
            await asyncio.sleep(0)
            return weakref.ref(t)

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ref = _run(main())
        gc.collect()
    assert ref() is None
    assert not [x for x in w if "unclosed transport" in str(x.message)]

