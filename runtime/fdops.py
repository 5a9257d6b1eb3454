"""The loop's operations on ordinary file descriptors (a mixin of RingEventLoop).

``sock_*`` coroutines are single ring operations on the socket's own fd (not a
fixed slot: the caller keeps the socket); ``add_reader``/``add_writer`` are
one-shot polls re-armed after each callback, which gives asyncio's
level-triggered semantics; unix-socket connections and servers reuse the
stream transport.  Features the loop does not implement (datagrams, pipes,
subprocesses, signal handlers) raise ``NotImplementedError`` saying what to
do instead.  The ring, handler table and transports are the loop's
(:mod:`ringleader.runtime.loop`); this module only adds methods.
"""
from __future__ import annotations

import asyncio
import os
import socket
from asyncio import base_events, events

from ..uring import consts, error_from_result
from . import _loopcore
from .contract import UD_IGNORE


class FdOpsMixin:
    # ---------------------------------------------------------- sock_* ops
    def _op_future(self, prep, op_name: str, fd: int, on_done):
        fut = self.create_future()

        def done(res: int, flags: int) -> None:
            if fut.done():
                return
            if res < 0:
                fut.set_exception(error_from_result(res, op_name, fd))
            else:
                try:
                    fut.set_result(on_done(res))
                except BaseException as exc:
                    fut.set_exception(exc)

        ud = self._oneshot(done)
        prep(ud)

        def cancel_op(f) -> None:
            if f.cancelled() and not self.is_closed() and ud in self._handlers:
                self._ring.cancel(ud, UD_IGNORE)

        fut.add_done_callback(cancel_op)
        return fut

    async def sock_recv(self, sock, n):
        _check_sock(self, sock)
        buf = bytearray(n)
        fd = sock.fileno()
        return await self._op_future(lambda ud: self._ring.recv(fd, buf, ud), "recv", fd,
                                     lambda r: bytes(buf[:r]))

    async def sock_recv_into(self, sock, buf):
        _check_sock(self, sock)
        fd = sock.fileno()
        return await self._op_future(lambda ud: self._ring.recv(fd, buf, ud), "recv", fd, lambda r: r)

    async def sock_sendall(self, sock, data):
        _check_sock(self, sock)
        fd = sock.fileno()
        view = memoryview(data).cast("B")
        while view:
            chunk = view
            n = await self._op_future(lambda ud: self._ring.send(fd, chunk, ud), "send", fd, lambda r: r)
            view = view[n:]

    async def sock_connect(self, sock, address):
        _check_sock(self, sock)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            resolved = await self._ensure_resolved(address, family=sock.family, type=sock.type,
                                                   proto=sock.proto, loop=self)
            address = resolved[0][4]
        fd = sock.fileno()
        family = sock.family
        fut = self._op_future(lambda ud: self._ring.connect(fd, address, ud, family=family),
                              "connect", fd, lambda r: None)
        # Start the connect now, as socket.connect() would: callers may rely on
        # the SYN being out before they next yield (e.g. a blocking accept()).
        self._ring.flush()
        await fut

    async def sock_accept(self, sock):
        _check_sock(self, sock)
        fd = sock.fileno()

        def wrap(newfd):
            conn = socket.socket(fileno=newfd)
            conn.setblocking(False)
            try:
                return conn, conn.getpeername()
            except OSError:
                return conn, None

        return await self._op_future(lambda ud: self._ring.accept(fd, ud), "accept", fd, wrap)

    # ------------------------------------------------- add_reader/add_writer
    def _watch(self, table: dict, fd, mask: int, callback, args):
        self._check_closed()
        fd = _fileobj_to_fd(fd)
        core = self._core
        # asyncio's debug mode records where a handle was made: its own Handle then
        handle = (events.Handle(callback, args, self, None) if self._debug
                  else core.new_handle(callback, *args))
        w = table.get(fd)
        if w is not None:
            w.handle = handle
            return
        # A Watch is a one-shot poll the compiled dispatcher re-arms only after
        # the callback has run (level-triggered, like epoll; see _loopcore.c).
        ud = self._next_ud
        self._next_ud = ud + 1
        w = _loopcore.Watch(core, table, fd, mask, handle, ud)
        table[fd] = w
        self._handlers[ud] = w
        w.arm()

    def _unwatch(self, table: dict, fd) -> bool:
        fd = _fileobj_to_fd(fd)
        if self.is_closed():
            return False  # as asyncio: close() already dropped every watch
        w = table.pop(fd, None)
        if w is None:
            return False
        w.handle.cancel()
        self._ring.poll_remove(w.ud, UD_IGNORE)
        self._handlers.pop(w.ud, None)
        return True

    def add_reader(self, fd, callback, *args):
        self._watch(self._readers, fd, consts.POLLIN | consts.POLLERR | consts.POLLHUP, callback, args)

    def remove_reader(self, fd):
        return self._unwatch(self._readers, fd)

    def add_writer(self, fd, callback, *args):
        self._watch(self._writers, fd, consts.POLLOUT | consts.POLLERR | consts.POLLHUP, callback, args)

    def remove_writer(self, fd):
        return self._unwatch(self._writers, fd)

    # ------------------------------------------------------- unix sockets
    async def create_unix_connection(self, protocol_factory, path=None, *, ssl=None, sock=None,
                                     server_hostname=None, ssl_handshake_timeout=None,
                                     ssl_shutdown_timeout=None):
        if ssl is not None and server_hostname is None:
            raise ValueError("you have to pass server_hostname when using ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM, 0)
            try:
                sock.setblocking(False)
                await self.sock_connect(sock, path)
            except BaseException:
                sock.close()
                raise
        elif sock is None:
            raise ValueError("no path and sock were specified")
        elif sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        sock.setblocking(False)
        return await self._create_connection_transport(
            sock, protocol_factory, ssl, server_hostname,
            ssl_handshake_timeout=ssl_handshake_timeout, ssl_shutdown_timeout=ssl_shutdown_timeout)

    async def create_unix_server(self, protocol_factory, path=None, *, sock=None, backlog=100,
                                 ssl=None, ssl_handshake_timeout=None, ssl_shutdown_timeout=None,
                                 start_serving=True):
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.bind(path)
            except BaseException:
                sock.close()
                raise
        elif sock is None:
            raise ValueError("path was not specified, and no sock specified")
        sock.setblocking(False)
        server = base_events.Server(self, [sock], protocol_factory, ssl, backlog,
                                    ssl_handshake_timeout, ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            await asyncio.sleep(0)
        return server

    # ---------------------------------------------------- not supported
    def _unsupported(self, what: str):
        raise NotImplementedError(
            f"ringleader's io_uring loop does not support {what}; run that part on asyncio's "
            f"default loop in another thread (e.g. asyncio.run in a thread) and talk to it with "
            f"call_soon_threadsafe")

    async def _make_subprocess_transport(self, *args, **kwargs):
        self._unsupported("subprocesses")

    async def create_datagram_endpoint(self, protocol_factory, local_addr=None, remote_addr=None,
                                       **kwargs):
        # Refuse up front: asyncio's version creates and binds the socket before
        # asking for the transport, and leaks it when that raises.
        self._unsupported("datagram endpoints (UDP)")

    def _make_datagram_transport(self, *args, **kwargs):
        self._unsupported("datagram endpoints (UDP)")

    def _make_read_pipe_transport(self, *args, **kwargs):
        self._unsupported("pipe transports")

    def _make_write_pipe_transport(self, *args, **kwargs):
        self._unsupported("pipe transports")

    def add_signal_handler(self, sig, callback, *args):
        self._unsupported("add_signal_handler (install handlers with signal.signal on the main "
                          "thread and forward with call_soon_threadsafe)")

    def remove_signal_handler(self, sig):
        self._unsupported("remove_signal_handler")

    async def sock_recvfrom(self, sock, bufsize):
        self._unsupported("sock_recvfrom (datagram sockets)")

    async def sock_recvfrom_into(self, sock, buf, nbytes=0):
        self._unsupported("sock_recvfrom_into (datagram sockets)")

    async def sock_sendto(self, sock, data, address):
        self._unsupported("sock_sendto (datagram sockets)")



def _fileobj_to_fd(fileobj) -> int:
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


def _check_sock(loop, sock) -> None:
    # asyncio's selector loop: sock_* need a non-blocking socket (checked in debug mode).
    base_events._check_ssl_socket(sock)
    if loop._debug and sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")

