"""Multishot datagram receive: addresses of every family, empty and long datagrams, a dry buffer group.

The loop receives UDP datagrams with one multishot recvmsg into the datagram
endpoints' own provided-buffer group where the kernel has it
(``Features.multishot_recvmsg``); unix datagram sockets receive one-shot.
These tests hold that path to what ``socket.recvfrom`` would have given: the
longest UDP datagrams arrive whole, and a burst that empties the group
(``ENOBUFS``) re-arms, loses nothing and leaves the streams' ring alone.  The
two ways it ends other than close are checked too: a datagram cut anyway
(``MSG_TRUNC``, reported as EMSGSIZE, then one-shot; forced here with a
smaller buffer size) and ``ENOBUFS``.  The 10k echo in test_loop_udp runs
both receive modes.
"""
from __future__ import annotations

import asyncio
import errno
import socket

import pytest

import ringleader
from ringleader.runtime import RingEventLoop
from ringleader.uring import RingUnavailableError, probe


def _multishot_recvmsg() -> bool:
    try:
        return probe().multishot_recvmsg
    except RingUnavailableError:    # the epoll fallback tier: ring_only skips these
        return False


pytestmark = [
    pytest.mark.ring_only("the ring's multishot datagram receive"),
    pytest.mark.skipif(not _multishot_recvmsg(),
                       reason="the kernel has no multishot recvmsg with a buffer ring"),
]


class Collect(asyncio.DatagramProtocol):
    """Every datagram and error, with an event per arrival (no sleeps in the tests)."""

    def __init__(self):
        self.got: list[tuple[bytes, object]] = []
        self.errors: list[OSError] = []
        self.changed = asyncio.Event()

    def datagram_received(self, data, addr):
        self.got.append((data, addr))
        self.changed.set()

    def error_received(self, exc):
        self.errors.append(exc)
        self.changed.set()

    async def until(self, pred, timeout=30.0):
        async def wait():
            while not pred():
                self.changed.clear()
                await self.changed.wait()
        await asyncio.wait_for(wait(), timeout)


def _run(coro, **loop_kw):
    with asyncio.Runner(loop_factory=lambda: ringleader.new_event_loop(**loop_kw)) as r:
        return r.run(coro)


@pytest.mark.parametrize("family", ["ipv4", "ipv6", "unix", "unix-abstract"])
def test_sender_addresses_as_recvfrom_gives_them(family, tmp_path, fd_guard):
    async def main():
        loop = asyncio.get_running_loop()
        if family.startswith("unix"):
            where = "\0rl-ms-srv-%d" % id(tmp_path) if family == "unix-abstract" else str(tmp_path / "s")
            tr, proto = await loop.create_datagram_endpoint(Collect, local_addr=where,
                                                            family=socket.AF_UNIX)
            peer = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            peer.bind("\0rl-ms-cli-%d" % id(tmp_path) if family == "unix-abstract"
                      else str(tmp_path / "c"))
        else:
            host = "127.0.0.1" if family == "ipv4" else "::1"
            tr, proto = await loop.create_datagram_endpoint(Collect, local_addr=(host, 0))
            peer = socket.socket(socket.AF_INET if family == "ipv4" else socket.AF_INET6,
                                 socket.SOCK_DGRAM)
            peer.bind((host, 0))
        # unix datagrams can be longer than any buffer of a group: one-shot
        assert tr.multishot == (not family.startswith("unix"))
        with peer:
            dest = tr.get_extra_info("sockname")
            for payload in (b"one", b"", b"x" * 8000):
                peer.sendto(payload, dest)
            await proto.until(lambda: len(proto.got) == 3)
            # What a plain socket sees from the same peer is the reference.
            ref = socket.socket(peer.family, socket.SOCK_DGRAM)
            with ref:
                if family.startswith("unix"):
                    ref.bind(str(tmp_path / "r") if family == "unix" else "\0rl-ms-ref-%d" % id(tmp_path))
                else:
                    ref.bind((dest[0], 0))
                peer.sendto(b"ref", ref.getsockname())
                _, want = ref.recvfrom(16)
        assert [d for d, _ in proto.got] == [b"one", b"", b"x" * 8000]
        assert {a for _, a in proto.got} == {want}
        assert proto.errors == []
        tr.close()
        await asyncio.sleep(0)
    _run(main())


def _payload(n: int, seed: int) -> bytes:
    """n bytes that differ along the datagram (a cut or shifted copy cannot match)."""
    return bytes((i * 7 + seed) & 0xFF for i in range(n))


async def _sent_arrive_whole(proto: Collect, family: int, dest, want: list[bytes]) -> None:
    """Send ``want`` to ``dest`` from a fresh socket; every datagram arrives whole, in order."""
    with socket.socket(family, socket.SOCK_DGRAM) as peer:
        # (room to send the longest datagrams; a unix datagram is bounded by it)
        peer.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        for p in want:
            peer.sendto(p, dest)
        await proto.until(lambda: len(proto.got) == len(want) or proto.errors)
    assert proto.errors == []
    assert [d for d, _ in proto.got] == want


@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_long_udp_datagrams_arrive_whole_under_multishot(host, fd_guard):
    sizes = [20 * 1024, 60 * 1024, 65507, 1, 20 * 1024]   # 65,507: IPv4's largest payload

    async def main():
        loop = asyncio.get_running_loop()
        tr, proto = await loop.create_datagram_endpoint(Collect, local_addr=(host, 0))
        assert tr.multishot
        dest = tr.get_extra_info("sockname")
        fam = socket.AF_INET if host == "127.0.0.1" else socket.AF_INET6
        await _sent_arrive_whole(proto, fam, dest, [_payload(n, i) for i, n in enumerate(sizes)])
        assert tr.multishot and tr.truncated == 0
        tr.close()
        await asyncio.sleep(0)
    _run(main())


def test_long_unix_datagram_arrives_whole(tmp_path, fd_guard):
    async def main():
        loop = asyncio.get_running_loop()
        tr, proto = await loop.create_datagram_endpoint(Collect, local_addr=str(tmp_path / "s"),
                                                        family=socket.AF_UNIX)
        await _sent_arrive_whole(proto, socket.AF_UNIX, str(tmp_path / "s"),
                                 [_payload(150 * 1024, 3), b"", _payload(70 * 1024, 5)])
        tr.close()
        await asyncio.sleep(0)
    _run(main())


def test_datagram_cut_anyway_is_reported_then_one_shot(fd_guard, monkeypatch):
    # Buffers too small for the datagram (the real size fits every UDP datagram;
    # a cut can still come from, e.g., UDP GRO set on the socket by its owner).
    from ringleader.runtime import datagram
    monkeypatch.setattr(datagram, "_DGRAM_BUF_SIZE", 4096)

    async def main():
        loop = asyncio.get_running_loop()
        tr, proto = await loop.create_datagram_endpoint(Collect, local_addr=("127.0.0.1", 0))
        dest = tr.get_extra_info("sockname")
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            peer.sendto(b"a", dest)
            await proto.until(lambda: len(proto.got) == 1)
            peer.sendto(b"b" * 40000, dest)          # > one 4-KiB buffer: cut
            await proto.until(lambda: proto.errors)
            assert proto.errors[0].errno == errno.EMSGSIZE
            assert tr.truncated == 1
            peer.sendto(b"c" * 40000, dest)          # one-shot now: arrives whole
            peer.sendto(b"d", dest)
            await proto.until(lambda: len(proto.got) == 3)
        assert [d for d, _ in proto.got] == [b"a", b"c" * 40000, b"d"]
        assert not tr.multishot
        tr.close()
        await asyncio.sleep(0)
    _run(main())


def test_dry_buffer_ring_rearms_and_loses_nothing(fd_guard):
    n = 64

    async def main():
        loop = asyncio.get_running_loop()
        loop.datagram_buffers = 4
        tr, proto = await loop.create_datagram_endpoint(Collect, local_addr=("127.0.0.1", 0))
        dest = tr.get_extra_info("sockname")
        await asyncio.sleep(0)   # the receive is armed
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as peer:
            # Sent while the loop is not harvesting: 4 buffers fill, the
            # multishot ends with ENOBUFS, the rest waits in the socket.
            for i in range(n):
                peer.sendto(b"%d" % i, dest)
            await proto.until(lambda: len(proto.got) == n)
        assert sorted(int(d) for d, _ in proto.got) == list(range(n))
        # The datagram group ran dry although the streams' ring (512 buffers) did
        # not: a UDP burst takes only the datagram endpoints' own buffers.
        assert tr.enobufs >= 1
        tr.close()
        await asyncio.sleep(0)
    _run(main(), buffers=512)

