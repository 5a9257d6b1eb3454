"""Runtime tier: the compiled loop core (runtime/_loopcore.c) keeps asyncio's semantics.

asyncio's own conformance suites run in test_asyncio_conformance.py; these
tests pin what the core does on its own: the timer heap it keeps for
asyncio, a subclass's clock, debug mode handing back to asyncio's code, the
handle error report, and the stream half of a transport (write checks,
lifecycle states, counters).
"""
import asyncio
import logging
import socket

import pytest

import ringleader
from ringleader.runtime import RingEventLoop
from ringleader.runtime.contract import StreamState, WriteState

pytestmark = pytest.mark.ring_only("the ring loop's compiled core")


def _loop_run(coro, loop_factory=ringleader.new_event_loop, debug=None):
    with asyncio.Runner(loop_factory=loop_factory, debug=debug) as r:
        return r.run(coro)


def test_timers_fire_in_time_order_and_fifo_for_equal_times():
    async def main():
        loop = asyncio.get_running_loop()
        order = []
        now = loop.time()
        # int and float deadlines, equal deadlines, out-of-order insertion
        for i, dt in enumerate([0.03, 0.01, 0.02, 0.01, 0.0, 0.02]):
            loop.call_at(now + dt, order.append, i)
        loop.call_at(int(now), order.append, "int")  # in the past: due at once
        done = loop.create_future()
        loop.call_later(0.05, done.set_result, None)
        await done
        return order
    order = _loop_run(main())
    assert order[0] == "int"
    # by deadline; heapq's order among equal deadlines is what asyncio gives too
    assert sorted(order[1:], key=lambda i: [0.03, 0.01, 0.02, 0.01, 0.0, 0.02][i]) == order[1:]
    assert order[1] == 4


def test_timer_handles_are_asyncios_and_cancel_counts():
    async def main():
        loop = asyncio.get_running_loop()
        hs = [loop.call_later(10 + i, lambda: None) for i in range(300)]
        # asyncio's TimerHandle, of a subclass whose cancel() is compiled
        assert all(isinstance(h, asyncio.TimerHandle) and h._scheduled for h in hs)
        assert type(hs[0]).__name__ == "TimerHandle" and repr(hs[0]).startswith("<TimerHandle when=")
        assert hs[0].when() == pytest.approx(loop.time() + 10, abs=0.5)
        for h in hs[:250]:
            h.cancel()
        assert loop._timer_cancelled_count == 250
        await asyncio.sleep(0)  # the iteration drops cancelled timers from the heap
        assert loop._timer_cancelled_count == 0
        assert len(loop._scheduled) == 50
        assert not any(h._scheduled for h in hs[:250])
        assert all(not h.cancelled() for h in loop._scheduled)
        for h in hs[250:]:
            h.cancel()
        # what asyncio's cancel() leaves behind, and a second cancel counts nothing
        assert hs[260].cancelled() and hs[260]._callback is None and hs[260]._args is None
        assert loop._timer_cancelled_count == 50
        hs[260].cancel()
        assert loop._timer_cancelled_count == 50
        assert loop.call_soon(lambda: None).__class__ is asyncio.Handle
    _loop_run(main())


class CountsCancels(RingEventLoop):
    """Its own _timer_handle_cancelled: the compiled cancel() must call it."""

    def __init__(self):
        self.reported = []
        super().__init__()

    def _timer_handle_cancelled(self, handle):
        self.reported.append(handle)
        super()._timer_handle_cancelled(handle)


def test_compiled_timer_cancel_reports_to_an_overriding_loop_and_keeps_debug_reprs():
    async def main():
        loop = asyncio.get_running_loop()
        h = loop.call_later(10, print, "x")
        h.cancel()
        h.cancel()
        assert loop.reported == [h] and h.cancelled()
        loop.set_debug(True)
        t = loop.call_later(10, print, "y")
        loop.set_debug(False)
        t2 = loop.call_later(10, print, "z")   # made outside debug mode...
        loop.set_debug(True)
        t2.cancel()                            # ...cancelled in it: asyncio keeps its repr
        assert "print" in t2._repr and t2._callback is None
        t.cancel()
    _loop_run(main(), loop_factory=CountsCancels)


class VirtualClockLoop(RingEventLoop):
    """A subclass with its own clock: the core must read it, not CLOCK_MONOTONIC."""

    def __init__(self):
        self.vt = 5000.0
        super().__init__()

    def time(self):
        return self.vt


def test_a_subclass_clock_drives_timers():
    async def main():
        loop = asyncio.get_running_loop()
        fired = []
        h = loop.call_later(3600, fired.append, "late")
        assert h.when() == 5000.0 + 3600
        loop.call_at(5001.0, fired.append, "soon")
        await asyncio.sleep(0)
        assert fired == []
        loop.vt = 5002.0  # the clock jumps: the first timer is due, the hour one not
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        assert fired == ["soon"]
        h.cancel()
    _loop_run(main(), loop_factory=VirtualClockLoop)


def test_debug_mode_takes_asyncios_paths(caplog):
    async def main():
        loop = asyncio.get_running_loop()
        assert loop.get_debug()
        h = loop.call_soon(lambda: None)
        assert h._source_traceback  # only asyncio's debug path records one
        t = loop.call_later(10, lambda: None)
        assert t._source_traceback
        t.cancel()
        with pytest.raises(TypeError, match="coroutines cannot be used"):
            loop.call_soon(main)
        loop.slow_callback_duration = 0.0
        import time
        loop.call_soon(time.sleep, 0.001)
        await asyncio.sleep(0)
    with caplog.at_level(logging.WARNING, logger="asyncio"):
        _loop_run(main(), debug=True)
    assert any("Executing" in r.getMessage() for r in caplog.records)


def test_callback_error_reaches_the_exception_handler_as_asyncio_words_it():
    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))

        def boom(x):
            raise ValueError(x)
        loop.call_soon(boom, 7)
        loop.call_later(0, boom, 8)
        await asyncio.sleep(0.01)
        return seen
    seen = _loop_run(main())
    assert [type(c["exception"]) for c in seen] == [ValueError, ValueError]
    assert all(c["message"].startswith("Exception in callback") and "boom" in c["message"]
               for c in seen)
    assert isinstance(seen[0]["handle"], asyncio.Handle)


def test_call_soon_keeps_the_context_and_refuses_a_closed_loop():
    import contextvars
    var = contextvars.ContextVar("var", default="outer")

    async def main():
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        ctx = contextvars.copy_context()
        ctx.run(var.set, "inner")
        loop.call_soon(lambda: got.set_result(var.get()), context=ctx)
        return await got
    assert _loop_run(main()) == "inner"
    loop = ringleader.new_event_loop()
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_soon(lambda: None)
    with pytest.raises(RuntimeError, match="closed"):
        loop.call_later(1, lambda: None)


class Sink(asyncio.Protocol):
    def __init__(self):
        self.data = []
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, t):
        self.t = t

    def data_received(self, data):
        self.data.append(data)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


def test_stream_write_checks_states_and_counters(caplog):
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        b.setblocking(False)
        t, p = await loop.connect_accepted_socket(Sink, a)
        c = t
        assert c.state == StreamState.OPEN and not t.is_closing()
        with pytest.raises(TypeError, match="bytes-like"):
            t.write("text")
        buf = bytearray(b"abc")
        t.write(buf)
        buf[:] = b"xyz"  # the transport copied it
        t.write(memoryview(b"def"))
        t.write(b"")
        assert t.get_write_buffer_size() == 6
        got = b""
        while len(got) < 6:
            got += await loop.sock_recv(b, 100)
        assert got == b"abcdef"
        assert t.get_write_buffer_size() == 0 and t.bytes_out == 6
        await loop.sock_sendall(b, b"hello")
        while not p.data:
            await asyncio.sleep(0.001)
        assert b"".join(p.data) == b"hello" and t.bytes_in == 5 and t.ops >= 2
        t.write_eof()
        with pytest.raises(RuntimeError, match="write_eof"):
            t.write(b"more")
        assert await loop.sock_recv(b, 100) == b""  # the peer sees our EOF
        assert c.write_state == WriteState.SHUT
        t.close()
        assert t.is_closing() and c.state == StreamState.LOST
        await p.lost
        assert c.state == StreamState.DONE
        b.close()
        a2, b2 = socket.socketpair()
        t2, p2 = await loop.connect_accepted_socket(Sink, a2)
        t2.abort()
        assert await p2.lost is None
        for _ in range(6):
            t2.write(b"late")  # counted and dropped; asyncio warns from the 5th on
        assert t2.lost_writes == 6
        b2.close()
    with caplog.at_level(logging.WARNING, logger="ringleader.runtime"):
        _loop_run(main())
    assert any("socket.send() raised exception" in r.getMessage() for r in caplog.records)


def test_flow_control_pauses_and_resumes_the_protocol():
    class Writer(Sink):
        def __init__(self):
            super().__init__()
            self.events = []

        def pause_writing(self):
            self.events.append("pause")

        def resume_writing(self):
            self.events.append("resume")

    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        b.setblocking(False)
        t, p = await loop.connect_accepted_socket(Writer, a)
        t.set_write_buffer_limits(high=1000, low=100)
        t.write(b"x" * 5000)
        assert p.events == ["pause"]
        got = 0
        while got < 5000:
            got += len(await loop.sock_recv(b, 65536))
        while p.events != ["pause", "resume"]:
            await asyncio.sleep(0.001)
        t.close()
        await p.lost
        b.close()
    _loop_run(main())


def test_accepted_tcp_connections_have_nodelay_and_lazy_extra_info():
    async def main():
        loop = asyncio.get_running_loop()
        got = loop.create_future()

        class Srv(asyncio.Protocol):
            def connection_made(self, t):
                got.set_result(t)

        srv = await loop.create_server(Srv, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        r, w = await asyncio.open_connection("127.0.0.1", port)
        t = await got
        assert not t._extra  # peername and the rest are looked up only when asked
        assert t.get_extra_info("peername") == w.get_extra_info("sockname")
        assert t.get_extra_info("sockname") == ("127.0.0.1", port)
        sock = t.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1  # from the listener
        assert t.get_extra_info("nonesuch", 42) == 42
        t.close()
        w.close()
        await w.wait_closed()
        srv.close()
        await srv.wait_closed()
    _loop_run(main())


def test_data_received_error_is_fatal_with_asyncios_message():
    class Bad(Sink):
        def data_received(self, data):
            raise ValueError("bad bytes")

    async def main():
        loop = asyncio.get_running_loop()
        seen = []
        loop.set_exception_handler(lambda lp, ctx: seen.append(ctx))
        a, b = socket.socketpair()
        t, p = await loop.connect_accepted_socket(Bad, a)
        b.send(b"x")
        assert await p.lost is not None  # connection_lost(the exception)
        assert t.is_closing() and t.state == StreamState.DONE
        b.close()
        return seen
    seen = _loop_run(main())
    assert seen[0]["message"] == "Fatal error: protocol.data_received() call failed."
    assert isinstance(seen[0]["exception"], ValueError)


def test_paused_reading_holds_bytes_and_eof_until_resumed():
    class Rec(Sink):
        def eof_received(self):
            self.data.append(b"<eof>")
            return True

    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        t, p = await loop.connect_accepted_socket(Rec, a)
        t.pause_reading()
        assert not t.is_reading()
        b.sendall(b"one")
        b.shutdown(socket.SHUT_WR)
        for _ in range(20):
            await asyncio.sleep(0.005)
        assert p.data == []  # nothing reaches a paused protocol
        t.resume_reading()
        while b"<eof>" not in p.data:
            await asyncio.sleep(0.001)
        assert b"".join(x for x in p.data if x != b"<eof>") == b"one" and p.data[-1] == b"<eof>"
        t.close()
        await p.lost
        b.close()
    _loop_run(main())


def test_buffered_protocol_gets_the_bytes_through_get_buffer():
    class Buf(asyncio.BufferedProtocol):
        def __init__(self):
            self.buf = bytearray(4)
            self.got = bytearray()
            self.lost = asyncio.get_running_loop().create_future()

        def get_buffer(self, hint):
            return self.buf

        def buffer_updated(self, n):
            self.got += self.buf[:n]

        def connection_lost(self, exc):
            self.lost.set_result(exc)

    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        t, p = await loop.connect_accepted_socket(Buf, a)
        assert t.buffered
        b.sendall(b"0123456789")  # more than one small buffer's worth
        while len(p.got) < 10:
            await asyncio.sleep(0.001)
        assert bytes(p.got) == b"0123456789"
        t.close()
        await p.lost
        b.close()
    _loop_run(main())


def test_writelines_joins_and_checks_like_asyncio():
    async def main():
        loop = asyncio.get_running_loop()
        a, b = socket.socketpair()
        b.setblocking(False)
        t, p = await loop.connect_accepted_socket(Sink, a)
        t.writelines([b"ab", bytearray(b"cd"), memoryview(b"ef")])
        t.writelines(iter([]))
        with pytest.raises(TypeError):
            t.writelines(["text"])
        got = b""
        while len(got) < 6:
            got += await loop.sock_recv(b, 100)
        assert got == b"abcdef"
        t.close()
        await p.lost
        b.close()
    _loop_run(main())


def test_create_task_names_contexts_and_task_factories():
    import contextvars
    var = contextvars.ContextVar("v", default=0)

    async def get():
        return var.get()

    async def main():
        loop = asyncio.get_running_loop()
        t = loop.create_task(get(), name="named")
        assert type(t) is asyncio.Task and t.get_name() == "named" and await t == 0
        ctx = contextvars.copy_context()
        ctx.run(var.set, 5)
        assert await loop.create_task(get(), context=ctx) == 5
        made = []

        def factory(lp, coro, **kw):
            made.append(coro)
            return asyncio.Task(coro, loop=lp, **kw)
        loop.set_task_factory(factory)
        t = loop.create_task(get(), name="via factory")
        assert made and t.get_name() == "via factory" and await t == 0
        loop.set_task_factory(None)
    _loop_run(main())
    loop = ringleader.new_event_loop()
    loop.close()
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError, match="closed"):
        loop.create_task(coro)
    coro.close()


def test_a_loop_whose_ring_cannot_be_made_closes_quietly():
    import gc
    import sys
    seen = []
    old, sys.unraisablehook = sys.unraisablehook, seen.append
    try:
        with pytest.raises(ValueError):
            RingEventLoop(entries=0)  # refused before any ring exists
        gc.collect()
    finally:
        sys.unraisablehook = old
    assert not [u for u in seen if not isinstance(u.exc_value, ResourceWarning)], seen


def test_accepted_connections_give_back_their_slots_and_guard_their_fds():
    # Accepted transports get their fixed slot by an SQE (install_file) and give
    # it back through Stream.release_ring; add_reader refuses an open one's fd
    # (a plain fd map, not the weak _transports) and accepts it once it is closed.
    made = []

    class Hold(asyncio.Protocol):
        def connection_made(self, transport):
            made.append(transport)

        def data_received(self, data):
            made[-1].write(data)

    async def main():
        loop = asyncio.get_running_loop()
        files = loop.ring.files
        srv = await loop.create_server(Hold, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        before = files.in_use
        for _ in range(20):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"ping")
            assert await asyncio.wait_for(reader.readexactly(4), 10) == b"ping"
            t = made[-1]
            fd = t._fd
            with pytest.raises(RuntimeError, match="used by transport"):
                loop.add_reader(fd, lambda: None)
            t.close()
            assert await asyncio.wait_for(reader.read(), 10) == b""
            writer.close()
            await writer.wait_closed()
            assert fd not in loop._stream_fds
        # every slot comes back once its close SQE completed (the client's
        # own transports come and go the same way)
        for _ in range(100):
            if files.in_use <= before:
                break
            await asyncio.sleep(0)
        assert files.in_use <= before
        srv.close()
        await srv.wait_closed()
    _loop_run(main())


def test_connection_made_comes_before_data_on_every_path():
    # The receive is armed by the same handle that runs connection_made
    # (Stream.start): on a client transport made from a task, with the peer's
    # bytes already waiting, data_received must still come second.
    order = []

    class Greeter(asyncio.Protocol):
        def connection_made(self, transport):
            transport.write(b"hello")

    class Client(asyncio.Protocol):
        def __init__(self):
            self.got = asyncio.get_running_loop().create_future()

        def connection_made(self, transport):
            order.append("made")

        def data_received(self, data):
            order.append("data")
            if not self.got.done():
                self.got.set_result(data)

    async def main():
        loop = asyncio.get_running_loop()
        srv = await loop.create_server(Greeter, "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        for _ in range(20):
            del order[:]
            tr, proto = await loop.create_connection(Client, "127.0.0.1", port)
            await asyncio.wait_for(proto.got, 10)
            assert order[:2] == ["made", "data"], order
            tr.close()
        # the bytes already in the socket when the transport is made
        for _ in range(5):
            del order[:]
            a, b = socket.socketpair()
            b.sendall(b"early")
            tr, proto = await loop.create_connection(Client, sock=a)
            await asyncio.wait_for(proto.got, 10)
            assert order[:2] == ["made", "data"], order
            tr.close()
            b.close()
        srv.close()
        await srv.wait_closed()
    _loop_run(main())
