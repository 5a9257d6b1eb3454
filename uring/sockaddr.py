"""Socket addresses between Python and the kernel's ``struct sockaddr``.

What it does: :func:`encode_sockaddr` turns a Python address (AF_INET,
AF_INET6, AF_UNIX, abstract names included) into the bytes ``connect`` and
``sendmsg`` operations point at; :func:`msg_source` and :func:`msg_flags`
read a message received by ``recvmsg`` (the sender's address as
``socket.recvfrom`` gives it, with a small cache: a server sees few peers);
:func:`parse_recvmsg_out` reads one datagram of a multishot recvmsg buffer.

What it does not do: name resolution (the runtime resolves as asyncio does).
"""
from __future__ import annotations

import os
import socket
import struct

from ._liburing import ffi, lib

__all__ = ["encode_sockaddr", "msg_flags", "msg_source", "parse_recvmsg_out", "sockaddr_source"]


def encode_sockaddr(family: int, address) -> bytes:
    """Encode a Python socket address as a C sockaddr (AF_INET, AF_INET6, AF_UNIX)."""
    if family == socket.AF_INET:
        host, port = address[0], address[1]
        return struct.pack("=H", socket.AF_INET) + struct.pack("!H", port) + socket.inet_aton(host) + bytes(8)
    if family == socket.AF_INET6:
        host, port = address[0], address[1]
        flow = address[2] if len(address) > 2 else 0
        scope = address[3] if len(address) > 3 else 0
        return (struct.pack("=H", socket.AF_INET6) + struct.pack("!HI", port, flow)
                + socket.inet_pton(socket.AF_INET6, host) + struct.pack("=I", scope))
    if family == socket.AF_UNIX:
        path = os.fsencode(address) if isinstance(address, str) else bytes(address)
        if len(path) > 107:
            raise ValueError("AF_UNIX path too long")
        if path[:1] == b"\0":
            return struct.pack("=H", socket.AF_UNIX) + path  # abstract: the length is the name
        return struct.pack("=H", socket.AF_UNIX) + path + b"\0"
    raise ValueError(f"unsupported address family {family}")


def msg_flags(msg) -> int:
    """The kernel's flags on a received message (see :meth:`Ring.recvmsg`)."""
    return lib.rl_msg_flags(msg)


_SOURCES: dict[bytes, object] = {}   # raw sockaddr -> address; a server sees few peers


def msg_source(msg):
    """The sender's address of a received message, as ``socket.recvfrom`` gives it."""
    n = lib.rl_msg_namelen(msg)
    if n == 0:
        return None
    return sockaddr_source(ffi.unpack(lib.rl_msg_name(msg), n))


RECVMSG_OUT_SIZE = lib.rl_recvmsg_out_size()
RECVMSG_OUT = struct.Struct("=IIII")   # namelen, controllen, payloadlen, flags
MSG_TRUNC = lib.MSG_TRUNC


def parse_recvmsg_out(data: bytes, namelen: int):
    """One datagram of a multishot recvmsg buffer (see :meth:`Ring.recvmsg_multishot`,
    ``namelen`` as given there): ``(payload, sender address or None, truncated)``.
    ``truncated``: the datagram did not fit the buffer and its tail is lost."""
    got_name, _, payload_len, flags = RECVMSG_OUT.unpack_from(data)
    start = RECVMSG_OUT_SIZE + namelen
    payload = data[start:]
    addr = None
    if got_name:
        addr = sockaddr_source(data[RECVMSG_OUT_SIZE:RECVMSG_OUT_SIZE + min(got_name, namelen)])
    return payload, addr, bool(flags & MSG_TRUNC) or payload_len > len(payload)


def sockaddr_source(raw: bytes):
    """A raw ``struct sockaddr`` as ``socket.recvfrom`` gives the address (cached)."""
    addr = _SOURCES.get(raw)
    if addr is None:
        if len(_SOURCES) >= 4096:
            _SOURCES.clear()
        addr = _SOURCES[raw] = _decode_sockaddr(raw)
    return addr


def _decode_sockaddr(raw: bytes):
    family = struct.unpack("=H", raw[:2])[0]
    if family == socket.AF_INET:
        return socket.inet_ntoa(raw[4:8]), struct.unpack("!H", raw[2:4])[0]
    if family == socket.AF_INET6:
        port, flow = struct.unpack("!HI", raw[2:8])
        scope = struct.unpack("=I", raw[24:28])[0]
        return socket.inet_ntop(socket.AF_INET6, raw[8:24]), port, flow, scope
    if family == socket.AF_UNIX:
        path = raw[2:]
        if path[:1] == b"\0":
            return path  # abstract names are bytes, as in the socket module
        return os.fsdecode(path.split(b"\0", 1)[0])
    return raw
