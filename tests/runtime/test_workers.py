"""Multi-worker runtime: cross-worker calls, migration of busy connections,
and shutdown that leaves no fds and no threads behind.

The migration test's clients run on stock asyncio (a SelectorEventLoop in a
thread of their own), so the bytes are checked by an implementation that
shares no code with ours.
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import threading

import pytest

import ringleader
from ringleader.runtime import EpollEventLoop, RingEventLoop, Runtime, WorkerError
from ringleader.runtime.errors import MigrationError
from ..tutil import Echo

GUARD = 30.0  # seconds: hang guards only


# ------------------------------------------------------------ cross-worker
def test_cross_worker_calls(fd_guard):
    async def main(rt):
        main_thread = threading.get_ident()
        loop = asyncio.get_running_loop()

        async def where(x):
            running = asyncio.get_running_loop()
            await asyncio.sleep(0)  # a real suspension on that worker's loop
            return rt.current_worker(), threading.get_ident(), type(running), x

        # every worker runs the runtime's backend (the ring; epoll where io_uring is denied)
        kind0 = RingEventLoop if rt.backend == "uring" else EpollEventLoop
        w, tid, kind, x = await rt.run_on(1, where(5))
        assert (w, kind, x) == (1, kind0, 5) and tid != main_thread
        # run_on the current worker runs inline.
        assert await rt.run_on(0, where(6)) == (0, main_thread, kind0, 6)

        # From a thread that is no worker: spawn and call give concurrent futures.
        def from_outside():
            assert rt.current_worker() is None
            spawned = rt.spawn(where(7), 1).result(GUARD)
            called = rt.call(1, lambda a, b: (rt.current_worker(), a + b), 2, 3).result(GUARD)
            return spawned, called

        spawned, called = await loop.run_in_executor(None, from_outside)
        assert spawned[0] == 1 and spawned[3] == 7
        assert called == (1, 5)

        # Errors travel back with their type.
        async def boom():
            raise KeyError("on worker 1")

        with pytest.raises(KeyError, match="on worker 1"):
            await rt.run_on(1, boom())
        with pytest.raises(ZeroDivisionError):
            await asyncio.wrap_future(rt.call(1, lambda: 1 / 0))
        with pytest.raises(WorkerError, match="no worker 7"):
            rt.loop(7)

        # Cancelling the caller cancels the coroutine running on the other worker.
        started, cancelled = threading.Event(), threading.Event()

        async def forever():
            started.set()
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        task = asyncio.create_task(rt.run_on(1, forever()))
        assert await loop.run_in_executor(None, started.wait, GUARD)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await loop.run_in_executor(None, cancelled.wait, GUARD)

        # A queue fed from worker 1 via call_soon_threadsafe (asyncio's only
        # thread-safe entry point) and consumed on worker 0.
        q: asyncio.Queue = asyncio.Queue()

        async def produce():
            for i in range(100):
                loop.call_soon_threadsafe(q.put_nowait, i)

        await rt.run_on(1, produce())
        assert [await asyncio.wait_for(q.get(), GUARD) for _ in range(100)] == list(range(100))
        return "ok"

    assert ringleader.run(main, workers=2) == "ok"


# -------------------------------------------------------------- migration
REC = 16  # record size: b"CCCC:SSSSSSSSSS\n"


def _record(conn: int, seq: int) -> bytes:
    return b"%04d:%010d\n" % (conn, seq)


class NumberedEcho(asyncio.Protocol):
    """Server end: checks the client's records arrive complete and in order,
    echoes every byte, and counts its moves."""

    def __init__(self, registry: list, all_made: asyncio.Event, n: int):
        self.buf = b""
        self.seq = 0
        self.conn = None
        self.errors: list[str] = []
        self.moves = 0
        self.loops_seen: set[int] = set()
        self.progress: asyncio.Future | None = None
        self.lost: asyncio.Future = asyncio.get_running_loop().create_future()
        self.lost_loop = asyncio.get_running_loop()
        registry.append(self)
        self._all_made = (registry, all_made, n)

    def connection_made(self, t):
        self.t = t
        registry, all_made, n = self._all_made
        if sum(hasattr(p, "t") for p in registry) == n:
            all_made.set()

    def connection_migrated(self, t, loop):
        self.moves += 1

    def data_received(self, d):
        self.loops_seen.add(asyncio.get_running_loop().worker_id)
        self.t.write(d)
        self.buf += d
        n = len(self.buf) // REC * REC
        for k in range(0, n, REC):
            rec = self.buf[k:k + REC]
            conn, seq = int(rec[:4]), int(rec[5:15])
            if self.conn is None:
                self.conn = conn
            if (conn, seq) != (self.conn, self.seq):
                self.errors.append(f"got {rec!r}, expected conn {self.conn} seq {self.seq}")
            self.seq += 1
        self.buf = self.buf[n:]
        if self.progress is not None and not self.progress.done():
            self.progress.set_result(None)

    def eof_received(self):
        self.t.close()  # after the echo of everything before the EOF is sent
        return True

    def connection_lost(self, exc):
        loop = self.lost_loop
        loop.call_soon_threadsafe(lambda: self.lost.done() or self.lost.set_result(exc))


async def _stream_client(port: int, conn: int, stop: asyncio.Event) -> tuple[int, int]:
    """Send numbered records until ``stop``, then EOF; verify the echo byte-exactly."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    sent = 0

    async def writer():
        nonlocal sent
        while not stop.is_set():
            w.write(b"".join(_record(conn, sent + i) for i in range(32)))
            sent += 32
            await w.drain()
            await asyncio.sleep(0)
        w.write_eof()

    async def reader():
        got, buf = 0, b""
        while chunk := await r.read(65536):
            buf += chunk
            n = len(buf) // REC * REC
            for k in range(0, n, REC):
                if buf[k:k + REC] != _record(conn, got):
                    raise AssertionError(f"conn {conn}: echo {buf[k:k + REC]!r} at record {got}")
                got += 1
            buf = buf[n:]
        assert buf == b"", f"conn {conn}: a torn record at the end: {buf!r}"
        return got

    wt = asyncio.create_task(writer())
    got = await reader()
    await wt
    w.close()
    return sent, got


def _clients_in_thread(port: int, n: int, stop_box: list, ready: threading.Event):
    """Runs n clients on asyncio's own SelectorEventLoop in a separate thread."""
    async def main():
        stop = asyncio.Event()
        stop_box.append((asyncio.get_running_loop(), stop))
        ready.set()
        return await asyncio.gather(*(_stream_client(port, c, stop) for c in range(n)))

    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        return runner.run(main())


def test_migrate_busy_connections_back_and_forth(fd_guard):
    N, ROUNDS = 8, 150  # 8 connections x 150 round trips x 2 = 2,400 moves

    async def main(rt):
        loop = asyncio.get_running_loop()
        protos: list[NumberedEcho] = []
        all_made = asyncio.Event()
        srv = await loop.create_server(lambda: NumberedEcho(protos, all_made, N), "127.0.0.1", 0)
        port = srv.sockets[0].getsockname()[1]
        stop_box: list = []
        ready = threading.Event()
        pool = concurrent.futures.ThreadPoolExecutor(1)
        clients = loop.run_in_executor(pool, _clients_in_thread, port, N, stop_box, ready)
        await asyncio.wait_for(all_made.wait(), GUARD)  # all N accepted on worker 0

        async def mover(p: NumberedEcho):
            for _ in range(ROUNDS):
                await rt.migrate(p.t, 1)
                await rt.run_on(1, rt.migrate(p.t, 0))
                # Busy: let bytes flow on worker 0 before the next move, so no
                # move finds the connection idle for long.
                p.progress = loop.create_future()
                await asyncio.wait_for(p.progress, GUARD)

        await asyncio.wait_for(asyncio.gather(*(mover(p) for p in protos)), 120)
        await loop.run_in_executor(None, ready.wait)
        client_loop, stop = stop_box[0]
        client_loop.call_soon_threadsafe(stop.set)
        results = await asyncio.wait_for(clients, GUARD)
        pool.shutdown()
        await asyncio.wait_for(asyncio.gather(*(p.lost for p in protos)), GUARD)
        srv.close()
        stats = rt.stats()
        return protos, results, stats

    protos, results, stats = ringleader.run(main, workers=2)
    for p in protos:
        assert not p.errors, p.errors[:3]
        assert p.moves == 2 * ROUNDS and p.t.migrations == 2 * ROUNDS
        assert p.loops_seen == {0, 1}  # data was handled on both workers
    by_conn = {p.conn: p for p in protos}
    for conn, (sent, got) in enumerate(results):
        # Byte-exact both ways: the server saw every record in order, and the
        # client got every byte it sent back, in order, up to its EOF.
        assert got == sent and by_conn[conn].seq == sent, (conn, sent, got)
        assert sent > 0


# --------------------------------------------------------------- shutdown
def _busy_workers(rt: Runtime, port: int, cancelled: list, keep: list):
    """On every worker: open client connections left open, a task sleeping
    forever, and a default-executor thread."""
    async def leave_things_open(wid):
        for _ in range(3):
            r, w = await asyncio.open_connection("127.0.0.1", port)
            w.write(b"hi")
            assert await r.readexactly(2) == b"hi"
            keep.append(w)  # a collected StreamWriter would close its transport
        await asyncio.get_running_loop().run_in_executor(None, threading.get_ident)

        async def forever():
            try:
                await asyncio.sleep(3600)
            except asyncio.CancelledError:
                cancelled.append(wid)
                raise
        asyncio.create_task(forever())
        return wid

    return [leave_things_open(w.id) for w in rt.workers]


def test_runtime_stop_leaves_no_fds_or_threads(fd_guard):
    threads_before = set(threading.enumerate())
    rt = Runtime(2).start()
    cancelled: list = []
    keep: list = []
    try:
        group = rt.spawn(rt.serve(Echo, "127.0.0.1", 0), 0).result(GUARD)
        for wid, coro in enumerate(_busy_workers(rt, group.port, cancelled, keep)):
            assert rt.spawn(coro, wid).result(GUARD) == wid
        assert sum(s.connections for s in rt.stats()) == 12
    finally:
        rt.stop(drain_timeout=0.2)
    assert sorted(cancelled) == [0, 1]  # pending tasks were cancelled, not dropped
    assert all(w.loop.is_closed() for w in rt.workers)
    assert set(threading.enumerate()) <= threads_before  # (an earlier test's may have ended)
    rt.stop()  # idempotent


def test_run_returning_leaves_no_fds_or_threads(fd_guard):
    threads_before = set(threading.enumerate())
    cancelled: list = []
    keep: list = []

    async def main(rt):
        group = await rt.serve(Echo, "127.0.0.1", 0, mode="acceptor")
        for wid, coro in enumerate(_busy_workers(rt, group.port, cancelled, keep)):
            assert await rt.run_on(wid, coro) == wid
        return sum(s.connections for s in rt.stats())

    # main returns with the server, 12 connection ends, tasks and executor
    # threads still alive: run() must drain, cancel and close all of it.
    assert ringleader.run(main, workers=2, drain_timeout=0.2) == 12
    assert sorted(cancelled) == [0, 1]
    assert set(threading.enumerate()) <= threads_before  # (an earlier test's may have ended)



@pytest.mark.parametrize("mode", ["reuseport", "acceptor"])
def test_server_group_close_refuses_new_connections(fd_guard, mode):
    """As asyncio's Server.close(): once closed, the port refuses connections
    (the ring's own reference to a listener must not keep it accepting)."""
    async def main(rt):
        g = await rt.serve(Echo, "127.0.0.1", 0, mode=mode)
        r, w = await asyncio.open_connection("127.0.0.1", g.port)
        w.write(b"served")  # accepted and served before the close
        assert await r.readexactly(6) == b"served"
        g.close()
        # close() reaches other workers through call_soon_threadsafe; a call
        # queued after it on each worker runs once it has been done.
        for wk in rt.workers:
            await rt.run_on(wk.id, asyncio.sleep(0))
        with pytest.raises(ConnectionRefusedError):
            await asyncio.open_connection("127.0.0.1", g.port)
        # Existing connections are not affected.
        w.write(b"still here")
        assert await r.readexactly(10) == b"still here"
        w.close()
        await w.wait_closed()
        return True

    assert ringleader.run(main, workers=2)


@pytest.mark.ring_only("the race of a reset completing the ring's cancelled receive mid-move")
def test_migrate_a_connection_the_peer_resets(fd_guard):
    """The peer resets as the move starts: migrate() must fail with
    MigrationError (or succeed, if the move won the race), never hang, and the
    protocol is told the connection is lost."""
    import socket
    import struct

    class Got(asyncio.Protocol):
        def __init__(self):
            loop = asyncio.get_running_loop()
            self.got, self.lost, self.home = loop.create_future(), loop.create_future(), loop

        def connection_made(self, t):
            self.t = t

        def data_received(self, d):
            self.got.done() or self.got.set_result(d)

        def connection_lost(self, exc):
            self.home.call_soon_threadsafe(lambda: self.lost.done() or self.lost.set_result(exc))

    async def main(rt):
        loop = asyncio.get_running_loop()
        protos: list[Got] = []
        srv = await loop.create_server(lambda: protos.append(Got()) or protos[-1], "127.0.0.1", 0)
        outcomes = []
        for i in range(10):
            cli = socket.socket()
            cli.setblocking(False)
            await loop.sock_connect(cli, srv.sockets[0].getsockname())
            await loop.sock_sendall(cli, b"x")
            while len(protos) <= i:
                await asyncio.sleep(0)
            await asyncio.wait_for(protos[i].got, GUARD)  # its receive is armed
            cli.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            cli.close()  # RST, processed by the kernel before close() returns
            try:
                # In a task of its own, so the move starts one loop iteration
                # later, once the ring has seen the RST (3.11's wait_for did
                # that itself; 3.12's awaits in the caller's task).
                await asyncio.wait_for(asyncio.ensure_future(rt.migrate(protos[i].t, 1)), GUARD)
                outcomes.append("moved")
            except MigrationError:
                outcomes.append("lost")
            exc = await asyncio.wait_for(protos[i].lost, GUARD)
            assert exc is None or isinstance(exc, ConnectionResetError), exc
        srv.close()
        return outcomes

    outcomes = ringleader.run(main, workers=2)
    assert "lost" in outcomes, outcomes  # the race this test is about did happen


@pytest.mark.ring_only("on epoll a move completes without yielding to the caller; its window, "
                       "connection_moving(), is covered in test_backend.py")
@pytest.mark.parametrize("how", ["close", "write_eof", "abort"])
def test_close_while_migrating(fd_guard, how):
    """write() then close()/write_eof() while a move is under way: the new
    worker sends the bytes, then the FIN.  abort() fails the move instead."""
    async def main(rt):
        loop = asyncio.get_running_loop()
        protos: list = []
        srv = await loop.create_server(lambda: protos.append(Echo()) or protos[-1], "127.0.0.1", 0)
        r, w = await asyncio.open_connection(*srv.sockets[0].getsockname())
        w.write(b"hello")
        assert await r.readexactly(5) == b"hello"  # served: protos[0] is ours
        t = protos[0].t
        move = asyncio.create_task(rt.migrate(t, 1))
        await asyncio.sleep(0)  # the move has begun (receive cancelled)
        assert t.migrating
        t.write(b"sent from the old worker")
        getattr(t, how)()
        try:
            await asyncio.wait_for(move, GUARD)
            moved = True
        except MigrationError as exc:
            assert exc.where == "closed"
            moved = False
        rest = await asyncio.wait_for(r.read(), GUARD)  # up to EOF
        w.close()
        await w.wait_closed()
        srv.close()
        return moved, rest

    moved, rest = ringleader.run(main, workers=2)
    if how == "abort":
        assert (moved, rest) == (False, b"")
    else:
        assert (moved, rest) == (True, b"sent from the old worker")
