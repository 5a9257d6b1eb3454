"""The loop's operations on ordinary file descriptors (a mixin of RingEventLoop).

``sock_*`` coroutines are single ring operations on the socket's own fd (not a
fixed slot: the caller keeps the socket); ``add_reader``/``add_writer`` are
one-shot polls re-armed after each callback, which gives asyncio's
level-triggered semantics; unix-socket connections and servers reuse the
stream transport (with asyncio's argument checks, stale socket-file removal
and wording).  A receive cancelled while the kernel already filled it keeps
its bytes for the next ``sock_recv*`` call.  Datagrams, pipes, subprocesses
and signals have their own modules.  The ring, handler table and transports are the loop's
(:mod:`ringleader.runtime.loop`); this module only adds methods.
"""
from __future__ import annotations

import asyncio
import collections
import errno
import logging
import os
import socket
import stat
from asyncio import base_events, events

from ..uring import consts
from .contract import UD_IGNORE
from .errors import builtin_error

logger = logging.getLogger("ringleader.runtime")

_READ = consts.POLLIN | consts.POLLERR | consts.POLLHUP
_WRITE = consts.POLLOUT | consts.POLLERR | consts.POLLHUP


class FdOpsMixin:
    # ---------------------------------------------------------- sock_* ops
    def _op_future(self, prep, op_name: str, fd: int, on_done, on_orphan=None, owner=None):
        """A future for one ring operation on ``fd``.  ``on_orphan(res)`` runs
        when the operation completes after its future was cancelled (the
        cancel raced a receive already in the kernel): it keeps what arrived
        for the next call instead of losing it.  Receives name their socket
        (``owner``): until a cancelled one has completed, the next receive on
        that socket waits for it (:meth:`_settle_cancelled_recvs`); issued at
        once, it would queue in the kernel behind the bytes the orphan keeps."""
        fut = self.create_future()
        entry = None
        if owner is not None:
            entry = (fut, self.create_future())
            self._recv_inflight.setdefault(owner, []).append(entry)

        def done(res: int, flags: int) -> None:
            if entry is not None:
                entries = self._recv_inflight.get(owner)
                if entries is not None:
                    entries.remove(entry)
                    if not entries:
                        del self._recv_inflight[owner]
            if fut.done():
                if res > 0 and on_orphan is not None:
                    on_orphan(res)
                if entry is not None:
                    entry[1].set_result(None)
                return
            if res < 0:
                fut.set_exception(builtin_error(res))
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

    def _recv_op(self, sock, fd: int, buf):
        """Receive into ``buf``; bytes that arrive for a cancelled call are
        kept (per socket object, so a reused fd number never sees them) for
        the next sock_recv*, as asyncio never loses them."""
        def orphan(res: int) -> None:
            self._keep_leftover(sock, bytes(buf[:res]), None)

        return self._op_future(lambda ud: self._ring.recv(fd, buf, ud), "recv", fd,
                               lambda r: r, orphan, sock)

    async def _settle_cancelled_recvs(self, sock) -> None:
        """Wait until the receives on ``sock`` whose futures were cancelled
        while in the kernel have completed (what they got is then kept).
        A future that is done while its operation is in flight was cancelled
        (results are set only on completion)."""
        while True:
            settling = [s for f, s in self._recv_inflight.get(sock, ()) if f.done()]
            if not settling:
                return
            await asyncio.shield(settling[0])

    def _keep_leftover(self, sock, data: bytes, addr) -> None:
        self._leftovers.setdefault(sock, collections.deque()).append((data, addr))

    def _take_leftover(self, sock, n: int, split: bool = True):
        """The oldest kept receive for ``sock``, at most ``n`` bytes: a stream's
        rest stays for the next call (``split``), a datagram's is cut off as
        recvfrom would.  Returns bytes (``split``) or (bytes, address)."""
        if not self._leftovers:
            return None
        q = self._leftovers.get(sock)
        if not q:
            return None
        data, addr = q.popleft()
        if len(data) > n:
            if split:
                q.appendleft((data[n:], addr))
            data = data[:n]
        if not q:
            del self._leftovers[sock]
        return data if split else (data, addr)

    async def sock_recv(self, sock, n):
        check_sock(self, sock)
        fd = sock.fileno()
        if sock in self._recv_inflight:
            await self._settle_cancelled_recvs(sock)
        data = self._take_leftover(sock, n)
        if data is not None:
            return data
        buf = bytearray(n)
        r = await self._recv_op(sock, fd, buf)
        return bytes(buf[:r])

    async def sock_recv_into(self, sock, buf):
        check_sock(self, sock)
        fd = sock.fileno()
        view = memoryview(buf).cast("B")
        if sock in self._recv_inflight:
            await self._settle_cancelled_recvs(sock)
        data = self._take_leftover(sock, len(view))
        if data is not None:
            view[:len(data)] = data
            return len(data)
        return await self._recv_op(sock, fd, buf)

    async def sock_sendall(self, sock, data):
        check_sock(self, sock)
        fd = sock.fileno()
        view = memoryview(data).cast("B")
        if view and sock.gettimeout() == 0:
            # As asyncio: try the send at once; the ring takes only what the
            # socket buffer did not (a round trip saved, and the bytes are on
            # their way before anything else runs, which callers rely on).
            try:
                view = view[sock.send(view):]
            except (BlockingIOError, InterruptedError):
                pass
        while view:
            chunk = view
            n = await self._op_future(lambda ud: self._ring.send(fd, chunk, ud), "send", fd, lambda r: r)
            view = view[n:]

    async def sock_connect(self, sock, address):
        check_sock(self, sock)
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            resolved = await self._ensure_resolved(address, family=sock.family, type=sock.type,
                                                   proto=sock.proto, loop=self)
            address = resolved[0][4]
        fd = sock.fileno()
        family = sock.family
        # A connect abandoned earlier (cancelled while in the kernel) can leave
        # its error pending on the socket, and the ring's connect reports that
        # stale error for this attempt (it reads SO_ERROR once the handshake
        # ends) although this one connected.  Reading SO_ERROR clears it.
        sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
        fut = self._op_future(lambda ud: self._ring.connect(fd, address, ud, family=family),
                              "connect", fd, lambda r: None)
        # Start the connect now, as socket.connect() would: callers may rely on
        # the SYN being out before they next yield (e.g. a blocking accept()).
        self._ring.flush()
        await fut

    async def sock_accept(self, sock):
        check_sock(self, sock)
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
    def _ensure_fd_no_transport(self, fd: int) -> None:
        # asyncio refuses to watch a file a transport of this loop owns.
        transport = self._transports.get(fd) or self._stream_fds.get(fd)
        if transport is not None and not transport.is_closing():
            raise RuntimeError(f"File descriptor {fd!r} is used by transport {transport!r}")

    # The loop binds the compiled core's add_reader/add_writer/remove_reader/
    # remove_writer on itself (loop.py, _take_over_scheduling); these methods
    # are their fallback for what needs asyncio's checks in full: fd objects
    # that are not ints, fds a transport of this loop may own, a closed loop,
    # debug mode.  Both register through the core (runtime/loopcore/watch.c).
    def _watch(self, table: dict, fd, mask: int, callback, args):
        self._check_closed()
        fd = _fileobj_to_fd(fd)
        self._ensure_fd_no_transport(fd)
        # asyncio's debug mode records where a handle was made: its own Handle then
        handle = (events.Handle(callback, args, self, None) if self._debug
                  else self._core.new_handle(callback, *args))
        self._core.watch(table, fd, mask, handle)

    def _unwatch(self, table: dict, fd) -> bool:
        fd = _fileobj_to_fd(fd)
        self._ensure_fd_no_transport(fd)
        if self.is_closed():
            return False  # as asyncio: close() already dropped every watch
        return self._core.unwatch(table, fd)

    def add_reader(self, fd, callback, *args):
        self._watch(self._readers, fd, _READ, callback, args)

    def remove_reader(self, fd):
        return self._unwatch(self._readers, fd)

    def add_writer(self, fd, callback, *args):
        self._watch(self._writers, fd, _WRITE, callback, args)

    def remove_writer(self, fd):
        return self._unwatch(self._writers, fd)

    # ------------------------------------------------------- unix sockets
    async def create_unix_connection(self, protocol_factory, path=None, *, ssl=None, sock=None,
                                     server_hostname=None, ssl_handshake_timeout=None,
                                     ssl_shutdown_timeout=None):
        # asyncio's argument checks, in asyncio's order and words.
        if ssl:
            if server_hostname is None:
                raise ValueError("you have to pass server_hostname when using ssl")
        else:
            if server_hostname is not None:
                raise ValueError("server_hostname is only meaningful with ssl")
            if ssl_handshake_timeout is not None:
                raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
            if ssl_shutdown_timeout is not None:
                raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
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
        if isinstance(ssl, bool):
            raise TypeError("ssl argument must be an SSLContext or None")
        if ssl_handshake_timeout is not None and not ssl:
            raise ValueError("ssl_handshake_timeout is only meaningful with ssl")
        if ssl_shutdown_timeout is not None and not ssl:
            raise ValueError("ssl_shutdown_timeout is only meaningful with ssl")
        if path is not None:
            if sock is not None:
                raise ValueError("path and sock can not be specified at the same time")
            path = os.fspath(path)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            _remove_stale_socket(path)
            try:
                sock.bind(path)
            except OSError as exc:
                sock.close()
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(errno.EADDRINUSE, f"Address {path!r} is already in use") from None
                raise
            except BaseException:
                sock.close()
                raise
        elif sock is None:
            raise ValueError("path was not specified, and no sock specified")
        elif sock.family != socket.AF_UNIX or sock.type != socket.SOCK_STREAM:
            raise ValueError(f"A UNIX Domain Stream Socket was expected, got {sock!r}")
        sock.setblocking(False)
        server = base_events.Server(self, [sock], protocol_factory, ssl, backlog,
                                    ssl_handshake_timeout, ssl_shutdown_timeout)
        if start_serving:
            server._start_serving()
            await asyncio.sleep(0)
        return server


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


def _remove_stale_socket(path) -> None:
    """Remove a socket file left at ``path`` by an earlier server, as asyncio
    does (abstract names, starting with NUL, have no file)."""
    if path[0] in (0, "\x00"):
        return
    try:
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.remove(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        logger.error("Unable to check or remove stale UNIX socket %r: %r", path, err)


def check_sock(loop, sock) -> None:
    # asyncio's selector loop: sock_* need a non-blocking socket (checked in debug mode).
    base_events._check_ssl_socket(sock)
    if loop._debug and sock.gettimeout() != 0:
        raise ValueError("the socket must be non-blocking")
