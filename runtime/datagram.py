"""Datagram endpoints (UDP over IPv4/IPv6, unix datagram sockets) on the ring.

``RingDatagramTransport`` is an :class:`asyncio.DatagramTransport`.  Where
the kernel has it (``Features.multishot_recvmsg``) one multishot ``recvmsg``
stays armed and every datagram arrives in a buffer of the loop's
provided-buffer group of the datagram endpoints (made lazily, its own, so a
UDP burst never takes the streams' buffers), sender's address included: no
syscall per datagram.  Its buffers hold the largest UDP datagram whole; unix
datagram sockets (whose datagrams can be far longer) receive one-shot.
Should a datagram still arrive cut (``MSG_TRUNC``: UDP GRO set on the socket
by its owner ...) the protocol's ``error_received`` gets an ``EMSGSIZE`` error
for it and the endpoint goes on with one-shot receives, which take up to
``max_size`` (256 KiB, as asyncio); ``ENOBUFS`` (the group ran dry) re-arms.
One-shot mode: one ``recvmsg`` is always armed on the ring, re-armed from
its completion; when the completion says more datagrams wait on the socket
(``SOCK_NONEMPTY``) they are taken at once (up to 64) before re-arming.  ``sendto`` sends at
once when nothing is queued (as asyncio does: one syscall, cheaper than a
ring round trip); what the socket would not take goes out as ring
``sendmsg`` operations one at a time in ``sendto`` order, with asyncio's
write-buffer flow control (``pause_writing``/``resume_writing``) over what waits.  Errors of single
datagrams (``ECONNREFUSED`` on a connected socket, ``EMSGSIZE`` ...) go to
``error_received`` and the endpoint keeps working, as in asyncio.

:class:`DatagramOpsMixin` adds ``sock_recvfrom``, ``sock_recvfrom_into`` and
``sock_sendto`` (single ring operations) and the loop's
``_make_datagram_transport``; ``create_datagram_endpoint`` itself is
asyncio's (socket creation, ``reuse_port``, ``allow_broadcast``, connecting).

Not done: sending more than one datagram per completion.
"""
from __future__ import annotations

import collections
import contextvars
import enum
import errno
import logging
import os
import socket
from asyncio import constants, transports

from ..uring import consts, msg_source, parse_recvmsg_out, probe
from ..uring.sockaddr import MSG_TRUNC, RECVMSG_OUT_SIZE, RECVMSG_OUT, sockaddr_source
from .contract import UD_IGNORE
from .endpoint import FileEndpoint, set_result_unless_cancelled, socket_extra
from .errors import builtin_error
from .fdops import check_sock

logger = logging.getLogger("ringleader.runtime")

_F_NONEMPTY = consts.CQE_F_SOCK_NONEMPTY
_F_MORE = consts.CQE_F_MORE
_ECANCELED = errno.ECANCELED
_ENOBUFS = errno.ENOBUFS
# Room for the sender's address in each multishot buffer: the family's sockaddr
# size (sockaddr_in, sockaddr_in6).  Other families receive one-shot: a unix
# datagram may be as long as its sender's SO_SNDBUF allows (hundreds of KiB),
# more than a buffer of a group should be, and it must arrive whole.
_NAMELEN = {socket.AF_INET: 16, socket.AF_INET6: 28}
# A multishot buffer holds the recvmsg_out header, the address and the payload:
# the largest UDP payload (65,507 bytes over IPv4, 65,527 over IPv6) fits whole,
# so no datagram is cut by our choice of buffer.  Rounded up to whole pages.
_DGRAM_BUF_SIZE = -(-(RECVMSG_OUT_SIZE + 28 + 65535) // 4096) * 4096
_DGRAM_BGID = 1          # the shared stream ring is group 0
_DGRAM_BID_BASE = 32768  # its buffer ids, disjoint from group 0's (the core tells them apart)
_unpack_out = RECVMSG_OUT.unpack_from
_DRAIN_MAX = 64   # datagrams taken per completion before the loop's other work runs again


class DatagramState(enum.IntEnum):
    """``OPEN -> CLOSING`` (close() with datagrams still queued) ``-> CLOSED``
    (connection_lost scheduled; nothing is received or sent any more)."""

    OPEN = 0
    CLOSING = 1
    CLOSED = 2


_OPEN = DatagramState.OPEN
_DROP = object()   # sendto: nothing to send


class RingDatagramTransport(FileEndpoint, transports._FlowControlMixin,
                            transports.DatagramTransport):
    max_size = 256 * 1024  # as asyncio: the largest datagram handed to the protocol

    def __init__(self, loop, sock: socket.socket, protocol, address=None, waiter=None,
                 extra=None, bufring=None):
        super().__init__(extra, loop)
        socket_extra(self._extra, sock)
        sock.setblocking(False)
        self._file = sock
        self._fd = sock.fileno()
        self._family = sock.family
        self._address = address
        self._protocol = protocol
        self._context = contextvars.copy_context()
        self._state = DatagramState.OPEN
        self._buffer: collections.deque = collections.deque()
        self._buffer_size = 0
        self._sending = False
        self._conn_lost = 0
        self._recv_buf = bytearray(self.max_size)
        self._recv_armed = False
        # One receive in flight at a time: its user_data and message header
        # are made once and reused.
        self._recv_msg = None
        # Multishot receive into the loop's buffer ring (None: one-shot receives).
        self._namelen = _NAMELEN.get(sock.family, 0)
        self._payload_at = RECVMSG_OUT_SIZE + self._namelen
        self._bufring = bufring if self._namelen else None
        self._recv_ud = loop.handler_ud(self._on_recv_multi if self._bufring else self._on_recv)
        self.truncated = 0   # datagrams cut by a multishot buffer (then one-shot)
        self.enobufs = 0     # multishot receives ended by a dry buffer ring (re-armed)
        loop.call_soon(protocol.connection_made, self, context=self._context)
        loop.call_soon(self._arm_recv)
        if waiter is not None:
            loop.call_soon(set_result_unless_cancelled, waiter, None)

    def __repr__(self) -> str:
        return f"<RingDatagramTransport fd={self._fd} {self._state.name.lower()}>"

    @property
    def multishot(self) -> bool:
        """Whether datagrams arrive through a multishot receive (else one recvmsg each)."""
        return self._bufring is not None

    # ------------------------------------------------------------ receiving
    def _arm_recv(self) -> None:
        if self._state != DatagramState.OPEN or self._recv_armed:
            return
        self._recv_armed = True
        if self._bufring is not None:
            self._recv_msg = self._loop.ring.recvmsg_multishot(
                self._fd, self._bufring, self._namelen, self._recv_ud, msg=self._recv_msg)
        else:
            self._recv_msg = self._loop.ring.recvmsg(self._fd, self._recv_buf, self._recv_ud,
                                                     msg=self._recv_msg)

    def _on_recv_multi(self, res: int, flags: int, data=None) -> None:
        if data is not None and flags & _F_MORE and self._state is _OPEN:
            # The common case inlined (this runs once per datagram): a whole
            # datagram and the receive still armed.
            got_name, _, size, mflags = _unpack_out(data)
            payload = data[self._payload_at:]
            if size == len(payload) and not mflags & MSG_TRUNC and got_name <= self._namelen:
                addr = (sockaddr_source(data[RECVMSG_OUT_SIZE:RECVMSG_OUT_SIZE + got_name])
                        if got_name else None)
                try:
                    self._context.run(self._protocol.datagram_received, payload, addr)
                except (SystemExit, KeyboardInterrupt):
                    raise
                except BaseException as exc:
                    self._fatal_error(exc, "Fatal error: protocol.datagram_received() call failed.")
                return
        self._on_recv_multi_rest(res, flags, data)

    def _on_recv_multi_rest(self, res: int, flags: int, data) -> None:
        if not flags & _F_MORE:
            self._recv_armed = False
        state = self._state
        if state == DatagramState.CLOSED:
            if not self._recv_armed:
                self._loop.release_ud(self._recv_ud)
            return
        if state != DatagramState.OPEN:
            return
        if data is not None:
            payload, addr, cut = parse_recvmsg_out(data, self._namelen)
            if cut:
                self._truncated(len(payload))
            else:
                self._context.run(self._call_protocol, "datagram_received", payload, addr)
        elif res == -_ENOBUFS:
            self.enobufs += 1
        elif res < 0 and res != -_ECANCELED:
            # (a connected socket's ECONNREFUSED ...: the receive ended, re-armed below)
            self._context.run(self._call_protocol, "error_received", builtin_error(res))
        if not self._recv_armed:
            if self._bufring is None:
                # Switched to one-shot after a truncation: from now on, the other handler.
                self._loop.release_ud(self._recv_ud)
                self._recv_ud = self._loop.handler_ud(self._on_recv)
                self._recv_msg = None
            self._arm_recv()

    def _truncated(self, kept: int) -> None:
        """A datagram did not fit a multishot buffer: its tail is gone.  Say so and
        receive one-shot from now on (up to max_size per datagram)."""
        self.truncated += 1
        if self._bufring is not None:
            self._bufring = None
            if self._recv_armed:
                self._loop.ring.cancel(self._recv_ud, UD_IGNORE)
        exc = OSError(errno.EMSGSIZE, f"{os.strerror(errno.EMSGSIZE)}: a datagram longer than "
                                      f"the ring's receive buffer was cut to {kept} bytes and "
                                      f"dropped; receiving one datagram at a time from now on")
        self._context.run(self._call_protocol, "error_received", exc)

    def _on_recv(self, res: int, flags: int) -> None:
        self._recv_armed = False
        msg = self._recv_msg
        if self._state == DatagramState.CLOSED:
            self._loop.release_ud(self._recv_ud)
            return
        if self._state != DatagramState.OPEN or res == -_ECANCELED:
            return
        if res < 0:
            self._context.run(self._call_protocol, "error_received", builtin_error(res))
        else:
            data = bytes(memoryview(self._recv_buf)[:res])
            self._context.run(self._call_protocol, "datagram_received", data, msg_source(msg))
            if flags & _F_NONEMPTY:
                # More datagrams are already queued on the socket (the kernel
                # says so on the completion): take them now, without a ring
                # round trip each, then re-arm.
                self._drain()
        self._arm_recv()

    def _drain(self) -> None:
        sock, buf = self._file, self._recv_buf
        for _ in range(_DRAIN_MAX):
            if self._state != DatagramState.OPEN:
                return
            try:
                n, addr = sock.recvfrom_into(buf)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self._context.run(self._call_protocol, "error_received", exc)
                return
            self._context.run(self._call_protocol, "datagram_received",
                              bytes(memoryview(buf)[:n]), addr)

    def _call_protocol(self, name: str, *args) -> None:
        try:
            getattr(self._protocol, name)(*args)
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException as exc:
            self._fatal_error(exc, f"Fatal error: protocol.{name}() call failed.")

    # -------------------------------------------------------------- sending
    def get_write_buffer_size(self) -> int:
        return self._buffer_size

    def sendto(self, data, addr=None) -> None:
        if not (type(data) is bytes and data and addr is not None and self._state is _OPEN
                and not self._address):
            # (the common case, an unconnected server answering, skips the checks)
            addr = self._checked_destination(data, addr)
            if addr is _DROP:
                return
        if self._buffer:
            self._queue(data, addr)
            return
        # Nothing queued: send now, as asyncio does.  A datagram the socket
        # takes at once costs one syscall this way, less than a ring sendmsg
        # and its completion; what would block goes to the ring.
        try:
            if addr is None:
                self._file.send(data)
            else:
                self._file.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self._queue(data, addr)
        except OSError as exc:
            self._context.run(self._call_protocol, "error_received", exc)

    def _checked_destination(self, data, addr):
        """asyncio's checks of a sendto: the address to send to (None: the connected
        peer), or _DROP for nothing to send (empty data, a closed endpoint)."""
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise TypeError(f"data argument must be a bytes-like object, "
                            f"not {type(data).__name__!r}")
        if not data:
            return _DROP
        if self._address:
            if addr not in (None, self._address):
                raise ValueError(f"Invalid address: must be None or {self._address}")
            addr = None  # connected: the kernel knows the peer
        if self._state != DatagramState.OPEN:
            if self._conn_lost >= constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES:
                logger.warning("socket.send() raised exception.")
            self._conn_lost += 1
            return _DROP
        return addr

    def _queue(self, data, addr) -> None:
        """What the socket would not take now goes out as ring sendmsg operations."""
        if addr is not None:
            addr = _numeric(self._family, addr)  # the ring needs a sockaddr
        self._buffer.append((bytes(data), addr))  # immutable while queued
        self._buffer_size += len(data)
        self._maybe_pause_protocol()
        self._send_next()

    def _send_next(self) -> None:
        if self._sending or not self._buffer or self._state == DatagramState.CLOSED:
            return
        data, addr = self._buffer[0]
        self._sending = True
        self._loop.ring.sendmsg(self._fd, data, addr, self._family,
                                self._loop.oneshot(self._on_sent))

    def _on_sent(self, res: int, flags: int) -> None:
        self._sending = False
        if self._state == DatagramState.CLOSED:
            return
        data, _ = self._buffer.popleft()
        self._buffer_size -= len(data)
        if res < 0 and res != -_ECANCELED:
            self._context.run(self._call_protocol, "error_received", builtin_error(res))
        self._maybe_resume_protocol()
        if self._buffer:
            self._send_next()
        elif self._state == DatagramState.CLOSING:
            self._finish(None)

    # -------------------------------------------------------------- closing
    def is_closing(self) -> bool:
        return self._state != DatagramState.OPEN

    def close(self) -> None:
        if self._state != DatagramState.OPEN:
            return
        self._state = DatagramState.CLOSING
        self._cancel_recv()
        if not self._buffer:
            self._finish(None)

    def abort(self) -> None:
        self._force_close(None)

    def _fatal_error(self, exc, message="Fatal error on datagram transport") -> None:
        if not isinstance(exc, OSError):
            self._loop.call_exception_handler({"message": message, "exception": exc,
                                               "transport": self, "protocol": self._protocol})
        self._force_close(exc)

    def _force_close(self, exc) -> None:
        if self._state == DatagramState.CLOSED:
            return
        self._buffer.clear()
        self._buffer_size = 0
        self._cancel_recv()
        self._finish(exc)

    def _cancel_recv(self) -> None:
        if self._recv_armed and not self._loop.is_closed():
            self._loop.ring.cancel(self._recv_ud, UD_IGNORE)

    def _finish(self, exc) -> None:
        self._state = DatagramState.CLOSED
        if not self._recv_armed:
            # (else the cancelled receive's completion still comes: _on_recv
            # releases the user_data then; the ring keeps buffer and header)
            self._loop.release_ud(self._recv_ud)
        self._loop.call_soon(self._call_connection_lost, exc, context=self._context)



def _numeric(family: int, addr):
    """``addr`` with a numeric host (the ring needs a sockaddr; ``socket.sendto``
    would resolve a name the same blocking way)."""
    if family not in (socket.AF_INET, socket.AF_INET6):
        return addr
    try:
        infos = socket.getaddrinfo(addr[0], addr[1], family, socket.SOCK_DGRAM, 0,
                                   socket.AI_NUMERICHOST)
    except socket.gaierror:
        infos = socket.getaddrinfo(addr[0], addr[1], family, socket.SOCK_DGRAM)
    found = infos[0][4]
    if family == socket.AF_INET6 and len(addr) > 2:
        found = (found[0], found[1]) + tuple(addr[2:])
    return found


class DatagramOpsMixin:
    """The loop's datagram methods (see module docstring)."""

    # Multishot receives for datagram endpoints: None = where the kernel has them
    # (set False on a loop to receive one datagram per ring operation).
    datagram_multishot: bool | None = None
    # Buffers of the datagram endpoints' own group (made with the first endpoint
    # on a ring, shared by the loop's endpoints): a burst that takes them all
    # ends the multishot receives with ENOBUFS (re-armed, the rest waits in the
    # sockets) and never takes a buffer from the streams' ring.
    datagram_buffers: int = 32
    _dgram_bufring = None
    _dgram_ring = None   # the ring the group belongs to (a new ring gets its own)

    def _datagram_bufring(self):
        br = self._dgram_bufring
        if br is None or self._dgram_ring is not self._ring:
            br = self._ring.buffer_ring(self.datagram_buffers, _DGRAM_BUF_SIZE, bgid=_DGRAM_BGID,
                                        bid_base=_DGRAM_BID_BASE)
            self._core.set_bufring2(*br.c_struct())
            self._dgram_bufring, self._dgram_ring = br, self._ring
        return br

    def _make_datagram_transport(self, sock, protocol, address=None, waiter=None, extra=None):
        multi = self.datagram_multishot
        if multi is None:
            multi = probe().multishot_recvmsg
        bufring = self._datagram_bufring() if multi and sock.family in _NAMELEN else None
        t = self._transports[sock.fileno()] = RingDatagramTransport(self, sock, protocol, address,
                                                                    waiter, extra, bufring)
        return t

    async def sock_recvfrom(self, sock, bufsize):
        if sock in self._recv_inflight:
            await self._settle_cancelled_recvs(sock)
        got = self._take_leftover(sock, bufsize, split=False)
        if got is not None:
            return got
        buf = bytearray(bufsize)
        n, addr = await self._recvmsg_op(sock, buf)
        return bytes(buf[:n]), addr

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        view = memoryview(buf).cast("B")
        if nbytes:
            view = view[:nbytes]
        if sock in self._recv_inflight:
            await self._settle_cancelled_recvs(sock)
        got = self._take_leftover(sock, len(view), split=False)
        if got is not None:
            data, addr = got
            view[:len(data)] = data
            return len(data), addr
        return await self._recvmsg_op(sock, view)

    def _recvmsg_op(self, sock, buf):
        check_sock(self, sock)
        fd = sock.fileno()
        cell = []

        def orphan(res: int) -> None:
            self._keep_leftover(sock, bytes(buf[:res]), msg_source(cell[0]))

        def prep(ud: int) -> None:
            cell.append(self._ring.recvmsg(fd, buf, ud))

        return self._op_future(prep, "recvmsg", fd, lambda r: (r, msg_source(cell[0])), orphan,
                               sock)

    async def sock_sendto(self, sock, data, address):
        check_sock(self, sock)
        fd = sock.fileno()
        family = sock.family
        address = _numeric(family, address)
        return await self._op_future(
            lambda ud: self._ring.sendmsg(fd, data, address, family, ud), "sendmsg", fd,
            lambda r: r)


__all__ = ["RingDatagramTransport", "DatagramOpsMixin", "DatagramState"]
