"""Runtime tier: add_reader/add_writer/remove_* in the compiled core (runtime/loopcore/watch.c).

The level-triggered behaviour itself is pinned by tests/runtime/test_stress.py
and CPython's suites (test_asyncio_conformance.py); these tests pin what the
compiled path adds: it is the loop's own method, it keeps asyncio's rules
(a replaced callback's handle is cancelled, removal reports whether there was
a registration, a closed loop refuses), hands what needs the full checks to
the Python fallback, and frees a removed registration without the garbage
collector.
"""
import asyncio
import gc
import socket

import pytest

import ringleader
from ringleader.runtime import RingEventLoop, _loopcore

pytestmark = pytest.mark.ring_only("the ring loop's compiled add_reader")

GUARD = 30.0  # a hang guard, never a synchronisation point


@pytest.fixture
def pair():
    """A connected, non-blocking socket pair, closed after the test."""
    a, b = socket.socketpair()
    a.setblocking(False)
    b.setblocking(False)
    yield a, b
    a.close()
    b.close()


def test_the_loop_binds_the_compiled_methods_and_a_subclass_keeps_its_own(ring_run, pair):
    a, b = pair
    calls = []

    class Own(RingEventLoop):
        def add_reader(self, fd, callback, *args):
            calls.append(fd)
            return super().add_reader(fd, callback, *args)

    async def main():
        loop = asyncio.get_running_loop()
        return type(loop.add_reader).__name__, loop.add_reader.__self__

    name, owner = ring_run(main())
    assert name == "builtin_function_or_method" and type(owner) is _loopcore.Core

    async def sub():
        loop = asyncio.get_running_loop()
        got = loop.create_future()
        loop.add_reader(a.fileno(), got.set_result, "r")  # through Own's override
        b.send(b"x")
        assert await asyncio.wait_for(got, GUARD) == "r"
        assert loop.remove_reader(a.fileno())

    with asyncio.Runner(loop_factory=Own) as r:
        r.run(sub())
    assert len(calls) == 1


def test_replacing_a_callback_cancels_the_old_handle_and_removal_reports(ring_run, pair):
    a, b = pair

    async def main():
        loop = asyncio.get_running_loop()
        fd = a.fileno()
        got = loop.create_future()
        loop.add_reader(fd, got.set_result, "first")
        old = loop._readers[fd].handle
        loop.add_reader(fd, got.set_result, "second")
        assert old.cancelled() and not loop._readers[fd].handle.cancelled()
        b.send(b"x")
        assert await asyncio.wait_for(got, GUARD) == "second"
        handle = loop._readers[fd].handle
        assert loop.remove_reader(fd) is True
        assert handle.cancelled()
        assert loop.remove_reader(fd) is False
        assert loop.remove_writer(fd) is False
        assert fd not in loop._readers
    ring_run(main())


def test_a_callback_that_removes_itself_is_not_called_again(ring_run, pair):
    a, b = pair

    async def main():
        loop = asyncio.get_running_loop()
        calls = []
        fd = a.fileno()

        def once():
            calls.append(1)
            loop.remove_reader(fd)  # data stays unread: level-triggered would call again

        loop.add_reader(fd, once)
        b.send(b"unread")
        for _ in range(50):
            await asyncio.sleep(0)
        assert calls == [1]
        # registered again, the unread bytes make it fire at once
        again = loop.create_future()
        loop.add_reader(fd, again.set_result, None)
        await asyncio.wait_for(again, GUARD)
        loop.remove_reader(fd)
    ring_run(main())


def test_file_objects_and_writers_take_the_fallback_with_asyncios_checks(ring_run, pair):
    a, b = pair

    async def main():
        loop = asyncio.get_running_loop()
        writable = loop.create_future()
        loop.add_writer(a, writable.set_result, "w")   # a socket object, not an int
        assert await asyncio.wait_for(writable, GUARD) == "w"
        assert loop.remove_writer(a) is True
        with pytest.raises(ValueError, match="Invalid file descriptor"):
            loop.add_reader(-1, lambda: None)
        with pytest.raises(ValueError, match="Invalid file object"):
            loop.add_reader("nope", lambda: None)
        with pytest.raises(TypeError):
            loop.add_reader(a.fileno())
    ring_run(main())


def test_debug_mode_handles_are_asyncios_with_their_traceback(ring_run, pair):
    a, b = pair

    async def main():
        loop = asyncio.get_running_loop()
        loop.add_reader(a.fileno(), lambda: None)
        h = loop._readers[a.fileno()].handle
        assert type(h) is asyncio.Handle and h._source_traceback
        assert loop.remove_reader(a.fileno())
    ring_run(main(), debug=True)


def test_a_closed_loop_refuses_and_removal_reports_false(pair):
    a, b = pair
    loop = ringleader.new_event_loop()
    loop.add_reader(a.fileno(), lambda: None)
    loop.close()
    with pytest.raises(RuntimeError, match="closed"):
        loop.add_reader(a.fileno(), lambda: None)
    assert loop.remove_reader(a.fileno()) is False


def test_removed_registrations_are_freed_without_the_garbage_collector(ring_run, pair):
    # psycopg adds and removes a reader around every query: a registration
    # that lived on in a reference cycle would feed the collector per query.
    a, b = pair

    async def main():
        loop = asyncio.get_running_loop()
        fd = a.fileno()
        for _ in range(50):
            fired = loop.create_future()
            loop.add_reader(fd, fired.set_result, None)
            b.send(b"x")
            await asyncio.wait_for(fired, GUARD)
            loop.remove_reader(fd)
            a.recv(16)

    gc.collect()
    gc.disable()
    try:
        ring_run(main())
        alive = [o for o in gc.get_objects() if type(o) is _loopcore.Watch]
    finally:
        gc.enable()
    assert alive == []
