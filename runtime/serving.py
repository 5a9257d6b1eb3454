"""Serving TCP across the runtime's workers: the two ways of spreading connections.

What it does: :func:`serve` starts a :class:`ServerGroup` in one of two modes,
measured against each other by ``scripts/bench serve-modes``:

* ``"reuseport"``: every worker has its own listening socket on the port
  (SO_REUSEPORT); the kernel hashes each new connection to one of them;
* ``"acceptor"``: worker 0 accepts for everyone and deals each new socket to
  the next worker.  On a ring that is a multishot accept and a MSG_RING
  message carrying the fd (the receiving worker registers it in its own
  fixed-file table); on the epoll fallback, where the threads share the fd
  table, a call on the receiving loop's thread (:class:`~.epoll.EpollAcceptor`).

``"reuseport"`` is the default because it was the cheaper one where the two
differ, on new connections: with ``Connection: close`` (2 workers, one core)
it took 110 us of server CPU per request against 121 us for the acceptor
(medians of 5; 112 vs 137 in a second run), whose extra hop (MSG_RING to the
target worker, a socket object there) is pure overhead per connection.  On
kept-alive connections both run the same code and measured alike (19.1 vs
19.5 us/request, within the run-to-run spread).

What it does not do: own the workers (the Runtime does) or move live
connections (:mod:`.migration`).
"""
from __future__ import annotations

import asyncio
import itertools
import logging
import os
import socket
from typing import TYPE_CHECKING, Any, Callable

from ..uring import consts, error_from_result
from .backend import Backend

if TYPE_CHECKING:
    from .runtime import Runtime

logger = logging.getLogger("ringleader.runtime")

__all__ = ["ServerGroup", "serve", "listen_each", "listener"]


class ServerGroup:
    """The listening side of :meth:`Runtime.serve` across all workers."""

    def __init__(self, runtime: "Runtime", port: int, mode: str):
        self.runtime = runtime
        self.port = port
        self.mode = mode
        self._servers: list[tuple[Any, Any]] = []   # (worker loop, its server or acceptor)
        self.closed = False

    def close(self) -> None:
        """Stop accepting on every worker (thread-safe; connections stay open)."""
        if self.closed:
            return
        self.closed = True
        for loop, srv in self._servers:
            if loop.is_closed():
                continue
            if loop.in_owner_thread():
                srv.close()
            else:
                loop.call_soon_threadsafe(srv.close)


class RingAcceptor:
    """Worker 0's multishot accept that deals sockets round-robin to workers."""

    def __init__(self, runtime: "Runtime", loop, sock: socket.socket, protocol_factory, lid: int):
        self.runtime = runtime
        self.loop = loop
        self.sock = sock
        self.factory = protocol_factory
        self.lid = lid
        self.rr = itertools.count()
        self.ud = loop.handler_ud(self._on_accept)
        loop.ring.accept(sock.fileno(), self.ud, multishot=True)
        loop.kick()

    def _on_accept(self, res: int, flags: int) -> None:
        from .loop import TAG_NEWFD
        if res >= 0:
            # Index modulo the current worker count: workers added later get
            # their share, and a draining worker is skipped.
            live = [w for w in self.runtime.workers if not w.draining]
            target = live[next(self.rr) % len(live)]
            if target.loop is self.loop:
                self.loop.adopt_socket(socket.socket(fileno=res), self.factory)
            else:
                # res is a process-wide fd: the message carries it to the
                # target ring, whose handler registers it in its own table.
                self.loop.send_message(target.ring_fd, TAG_NEWFD, self.lid, res)
        elif res != -125:  # ECANCELED when closing
            logger.warning("acceptor: %s", error_from_result(res, "accept", self.sock.fileno()))
        if not flags & consts.CQE_F_MORE and self.sock.fileno() >= 0:
            self.loop.ring.accept(self.sock.fileno(), self.ud, multishot=True)

    def close(self) -> None:
        if self.sock.fileno() < 0:
            return
        from .loop import _shutdown_listener
        # As the loop's own servers: late accepts are closed, not leaked, and
        # shutdown() stops the listener although the ring still references it.
        self.loop.retire_accept(self.ud)
        _shutdown_listener(self.sock)
        self.sock.close()


def on_new_fd(rt: "Runtime", lid: int, fd: int) -> None:
    """A socket the ring acceptor sent this worker (runs on the receiving thread)."""
    loop = asyncio.get_running_loop()
    entry = rt._listeners.get(lid)
    if entry is None or fd < 0:
        if fd >= 0:
            os.close(fd)
        return
    loop.adopt_socket(socket.socket(fileno=fd), entry[0])


async def serve(rt: "Runtime", protocol_factory: Callable[[], asyncio.BaseProtocol], host: str,
                port: int, mode: str, backlog: int) -> ServerGroup:
    if mode not in ("reuseport", "acceptor"):
        raise ValueError(f"mode must be 'reuseport' or 'acceptor', got {mode!r}")
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    family, _, _, _, addr = infos[0]

    def make(bind_port: int) -> socket.socket:
        return listener(family, addr, bind_port, backlog, mode == "reuseport")

    first = make(port)
    port = first.getsockname()[1]
    group = ServerGroup(rt, port, mode)
    if mode == "acceptor":
        lid = next(rt._lids)
        rt._listeners[lid] = (protocol_factory,)
        loop0 = rt.loop(0)

        async def start_acceptor():
            if rt.choice.backend is Backend.EPOLL:
                from .epoll import EpollAcceptor
                return EpollAcceptor(rt, loop0, first, protocol_factory)
            return RingAcceptor(rt, loop0, first, protocol_factory, lid)

        acc = await rt.run_on(0, start_acceptor())
        group._servers.append((loop0, acc))
    else:
        group._listen = make
        group._factory = protocol_factory
        group._backlog = backlog
        socks = [first] + [make(port) for _ in rt.workers[1:]]
        for w, s in zip(rt.workers, socks):
            async def start(sock=s):
                return await asyncio.get_running_loop().create_server(protocol_factory, sock=sock,
                                                                      backlog=backlog)
            srv = await rt.run_on(w.id, start())
            group._servers.append((w.loop, srv))
    rt._groups.append(group)
    return group


def listen_each(n: int, host: str, port: int, backlog: int) -> list[socket.socket]:
    family, _, _, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    socks = [listener(family, addr, port, backlog, True)]
    port = socks[0].getsockname()[1]
    try:
        for _ in range(n - 1):
            socks.append(listener(family, addr, port, backlog, True))
    except BaseException:
        for s in socks:
            s.close()
        raise
    return socks


def listener(family: int, addr: tuple, port: int, backlog: int, reuseport: bool) -> socket.socket:
    s = socket.socket(family, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuseport:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        s.bind((addr[0], port) + tuple(addr[2:]))
        s.listen(backlog)
        s.setblocking(False)
    except BaseException:
        s.close()
        raise
    return s


async def listen_reuseport(group: ServerGroup, loop):
    """A new worker joins a reuseport group (its own socket on the group's port)."""
    sock = group._listen(group.port)
    return await loop.create_server(group._factory, sock=sock, backlog=group._backlog)
