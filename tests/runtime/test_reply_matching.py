"""Runtime tier: a ring transport matching replies to their futures in C
(runtime/loopcore/replies.c, declared as runtime.contract.ReplyMatchingTransport).

A line protocol stands in for Redis: the reader yields one reply per
b"\\n"-terminated line, b"!"-lines are "pushes" (their own type, sent aside),
a b"?" makes the reader raise.  The peer is a plain socket the test writes to
in chosen pieces, so replies split across receives and several replies in one
receive are both exercised.
"""
import asyncio
import collections
import socket

import pytest

import ringleader

pytestmark = pytest.mark.ring_only("the ring transport's compiled reply matching")

MORE = object()


class Push(bytes):
    pass


class LineReader:
    def __init__(self):
        self.buf = b""

    def feed(self, data):
        self.buf += bytes(data)

    def gets(self):
        line, sep, rest = self.buf.partition(b"\n")
        if not sep:
            return MORE
        self.buf = rest
        if line.startswith(b"?"):
            raise ValueError(f"bad line {line!r}")
        return Push(line[1:]) if line.startswith(b"!") else line


class Client(asyncio.Protocol):
    def __init__(self):
        self.reader = LineReader()
        self.waiters = collections.deque()
        self.other = []
        self.data = []
        self.lost = asyncio.get_running_loop().create_future()

    def connection_made(self, transport):
        self.transport = transport

    def match(self, other=None):
        self.transport.match_replies(self.reader, MORE, self.waiters, other or self.other.append,
                                     Push)

    def request(self):
        fut = asyncio.get_running_loop().create_future()
        self.waiters.append(fut)
        return fut

    def data_received(self, data):
        self.data.append(data)

    def connection_lost(self, exc):
        self.lost.set_result(exc)


async def _pair():
    loop = asyncio.get_running_loop()
    lsock = socket.create_server(("127.0.0.1", 0))
    client_sock = socket.create_connection(lsock.getsockname())
    peer, _ = lsock.accept()
    lsock.close()
    _, proto = await loop.create_connection(Client, sock=client_sock)
    return peer, proto


async def _until(cond):
    for _ in range(2000):
        if cond():
            return
        await asyncio.sleep(0.001)
    raise AssertionError("condition not reached")


def _run(body):
    """body(peer, proto) on a ring loop; then the peer hangs up; returns
    what connection_lost got."""
    async def session():
        peer, proto = await _pair()
        try:
            await body(peer, proto)
        finally:
            peer.close()
        return await proto.lost
    with asyncio.Runner(loop_factory=ringleader.new_event_loop) as r:
        return r.run(asyncio.wait_for(session(), 30))


def test_replies_reach_the_oldest_waiter_across_and_within_receives():
    async def main(peer, proto):
        proto.match()
        futs = [proto.request() for _ in range(6)]
        wire = b"one\ntwo\nthree\nfour\nfive\nsix\n"
        # a reply split over receives, and several replies in one receive
        for piece in (wire[:2], wire[2:5], wire[5:20], wire[20:]):
            peer.sendall(piece)
            await asyncio.sleep(0.01)
        assert await asyncio.gather(*futs) == [b"one", b"two", b"three", b"four", b"five", b"six"]
        assert proto.data == [] and proto.other == []
    assert _run(main) is None


def test_a_cancelled_waiter_loses_its_reply_and_pushes_go_aside():
    async def main(peer, proto):
        proto.match()
        gone, mine = proto.request(), proto.request()
        gone.cancel()
        peer.sendall(b"!pushed\nfirst\nsecond\nstray\n")
        assert await mine == b"second"
        await _until(lambda: len(proto.other) == 2)
        # the push (its own type) and the reply nobody waited for
        assert proto.other == [b"pushed", b"stray"] and type(proto.other[0]) is Push
    _run(main)


def test_a_reader_error_goes_to_other_and_stops_the_matching():
    async def main(peer, proto):

        def other(item):
            proto.other.append(item)
            if isinstance(item, Exception):
                proto.transport.match_replies(None, None, None, None)
        proto.match(other)
        fut = proto.request()
        peer.sendall(b"ok\n?x\nafter\n")
        assert await fut == b"ok"
        await _until(lambda: proto.other)
        assert isinstance(proto.other[0], ValueError) and len(proto.other) == 1
        # matching is off: later bytes reach data_received
        peer.sendall(b"late\n")
        await _until(lambda: proto.data)
        assert b"".join(proto.data) == b"late\n"
    _run(main)


def test_turning_it_off_hands_the_reader_state_to_data_received():
    async def main(peer, proto):
        proto.match()
        fut = proto.request()
        peer.sendall(b"whole\npar")
        assert await fut == b"whole"
        await asyncio.sleep(0.01)
        proto.transport.match_replies(None, None, None, None)
        peer.sendall(b"tial\n")
        await _until(lambda: proto.data)
        # the reader keeps what it had; data_received gets only the new bytes
        assert proto.reader.buf == b"par" and proto.data == [b"tial\n"]
    _run(main)


def test_an_error_in_other_is_fatal_like_a_data_received_error(caplog):
    async def main(peer, proto):

        def other(item):
            raise RuntimeError("boom")
        proto.match(other)
        peer.sendall(b"nobody waits\n")
        await proto.lost
    exc = _run(main)
    assert isinstance(exc, RuntimeError) and str(exc) == "boom"
    assert "data_received() call failed" in caplog.text


def test_set_fifo_refuses_a_malformed_handover():
    async def main(peer, proto):
        with pytest.raises(TypeError):
            proto.transport.match_replies(proto.reader, MORE, proto.waiters, "not callable")
        with pytest.raises(TypeError):
            proto.transport.match_replies(proto.reader, MORE, proto.waiters, print, aside=3)
    _run(main)
