"""Streams of one connection: server-side cursors, COPY in/out, LISTEN.

``Cursor`` reads a portal in batches of ``prefetch`` rows.  Inside a
transaction block it uses a named portal and a Sync per batch, so other
queries may run on the connection between batches.  Outside one, a portal
would die at the first Sync, so the cursor takes the connection to itself
(Execute + Flush per batch, one Sync at the end) and must be used as
``async with conn.cursor(...) as cur:`` so it always gives the connection
back.  COPY always takes the connection to itself for the same reason.

``Listener`` turns NotificationResponse messages for some channels into an
async iterator of ``psycopg.Notify``.

Each flow is written against :class:`~.channel.Channel` (the connection's
narrow interface) and nothing else of the connection.
"""
from __future__ import annotations

import asyncio
from collections import deque

import psycopg

from . import messages as m
from .channel import Channel
from .errors import ConnectionLost, InterfaceError
from .ops import CopyOp, Op, PortalOp


def quote_ident(name: str) -> str:
    if not isinstance(name, str) or not name or "\0" in name:
        raise InterfaceError(f"invalid identifier {name!r}")
    return '"' + name.replace('"', '""') + '"'


class _Exclusive:
    """Holds a connection's send gate for one task; release() is idempotent."""

    def __init__(self, conn: Channel):
        self.conn = conn
        self.held = False

    async def acquire(self) -> None:
        await self.conn.hold_exclusive()
        self.held = True

    def release(self) -> None:
        if self.held:
            self.held = False
            self.conn.release_exclusive()


class Cursor:
    _seq = 0

    def __init__(self, conn: Channel, query: str, args: tuple, prefetch: int, timeout):
        if not isinstance(prefetch, int) or prefetch < 1:
            raise InterfaceError(f"prefetch must be a positive int, got {prefetch!r}")
        self._conn, self._query, self._args = conn, query, args
        self._prefetch, self._timeout = prefetch, timeout
        self._rows: deque = deque()
        self._codec = None
        self._started = self._done = self._entered = False
        self._portal = b""
        self._excl = _Exclusive(conn)
        self._op: PortalOp | None = None

    async def __aenter__(self) -> "Cursor":
        self._entered = True
        return self

    async def __aexit__(self, *exc) -> None:
        await self.aclose()

    def __aiter__(self) -> "Cursor":
        return self

    async def __anext__(self):
        while not self._rows:
            if self._done:
                raise StopAsyncIteration
            await self._fetch()
        return self._rows.popleft()

    async def fetch(self, n: int) -> list:
        """Up to ``n`` more rows (fewer at the end)."""
        out = []
        while len(out) < n:
            while not self._rows and not self._done:
                await self._fetch()
            if not self._rows:
                break
            out.append(self._rows.popleft())
        return out

    async def _fetch(self) -> None:
        conn = self._conn
        if not self._started:
            self._started = True
            st = await conn.prepare(self._query, self._args, self._timeout)
            self._codec = codec = st.codec
            bind = m.bind
            if conn.transaction_status == "T":
                Cursor._seq += 1
                self._portal = f"_rl_c{Cursor._seq}".encode()
                first = bind(self._portal, st.name, st.formats, st.values, codec.formats)
            else:
                if not self._entered:
                    raise InterfaceError(
                        "outside a transaction a cursor holds the connection: use "
                        "'async with conn.cursor(...) as cur' (or open a transaction)")
                await self._excl.acquire()
                self._op = PortalOp(conn.loop)
                first = bind(b"", st.name, st.formats, st.values, codec.formats)
            await self._batch(first)
        else:
            await self._batch(b"")

    async def _batch(self, prefix: bytes) -> None:
        conn = self._conn
        if self._portal:
            op = Op(conn.loop)
            await conn.wait_turn()
            conn.submit(prefix + m.execute(self._portal, self._prefetch) + m.SYNC, op)
            await conn.wait(op, self._timeout)
            if op.results:
                rows, self._done = op.results[-1].rows, True
                await self._close_portal()
            else:
                rows = op._cur.rows if op._cur else []
        else:
            op = self._op
            op.batch = conn.loop.create_future()
            data = prefix + m.execute(b"", self._prefetch) + m.FLUSH
            if prefix:
                conn.submit(data, op)
            else:
                conn.send(data)
            try:
                await conn.wait(op, self._timeout, op.batch)
            except BaseException:
                try:
                    await self._finish_exclusive(op)
                except psycopg.Error:
                    pass  # the server's side of what is raised below
                raise
            rows, op.rows = op.rows, []
            if op.error is not None or op.complete:
                self._done = True
                await self._finish_exclusive(op)
        self._rows.extend(self._codec.load_all(rows))

    async def _finish_exclusive(self, op: PortalOp) -> None:
        conn = self._conn
        try:
            if not op.fut.done() and not conn.is_closed():
                conn.send(m.SYNC)
            await conn.wait(op, self._timeout)
        finally:
            self._done = True
            self._excl.release()

    async def _close_portal(self) -> None:
        portal, self._portal = self._portal, b""
        if portal and not self._conn.is_closed() and self._conn.transaction_status == "T":
            op = Op(self._conn.loop)
            self._conn.submit(m.close(b"P", portal) + m.SYNC, op)
            await self._conn.wait(op, self._timeout)

    async def aclose(self) -> None:
        """Stops reading: closes the portal and gives the connection back."""
        self._done = True
        self._rows.clear()
        if self._portal:
            await self._close_portal()
        elif self._excl.held:
            await self._finish_exclusive(self._op)


async def copy_in(conn: Channel, query: str, source, timeout) -> str:
    excl = _Exclusive(conn)
    await excl.acquire()
    try:
        op = CopyOp(conn.loop)
        conn.submit(m.query(query.encode()), op)
        await asyncio.shield(op.started)
        try:
            async for chunk in _chunks(source):
                if op.fut.done() or op.error is not None:
                    break  # the server already failed the COPY; it drops our data
                conn.send(m.copy_data(chunk))
                await conn.drain()
        except BaseException as e:
            if not conn.is_closed():
                conn.send(m.copy_fail(f"client error: {e!r}"[:1000]))
                try:
                    await conn.wait(op, timeout)
                except psycopg.errors.QueryCanceled:
                    pass
                except psycopg.Error:
                    pass
            raise
        if not conn.is_closed():
            conn.send(m.COPY_DONE)
        await conn.wait(op, timeout)
        return op.results[-1].tag if op.results else ""
    finally:
        excl.release()


async def _chunks(source):
    if isinstance(source, str):
        source = source.encode()
    if isinstance(source, (bytes, bytearray, memoryview)):
        for i in range(0, len(source), 1 << 16):
            yield bytes(source[i:i + (1 << 16)])
        return
    if hasattr(source, "__aiter__"):
        async for c in source:
            yield c.encode() if isinstance(c, str) else bytes(c)
    elif hasattr(source, "__iter__"):
        for c in source:
            yield c.encode() if isinstance(c, str) else bytes(c)
    else:
        raise TypeError(f"COPY source must be bytes, str or an (async) iterable, "
                        f"not {type(source).__name__}")


class CopyOut:
    """COPY ... TO STDOUT as an async iterator of byte chunks (one per row for
    text formats).  Reading is paused while the reader lags behind."""

    HIGH, LOW = 256, 32

    def __init__(self, conn: Channel, query: str):
        self._conn, self._query = conn, query
        self._excl = _Exclusive(conn)
        self._op: CopyOp | None = None
        self.tag = ""

    async def __aenter__(self) -> "CopyOut":
        conn = self._conn
        await self._excl.acquire()
        try:
            op = self._op = CopyOp(conn.loop)
            op.on_chunk = self._on_chunk
            conn.submit(m.query(self._query.encode()), op)
            await asyncio.shield(op.started)
        except BaseException:
            self._excl.release()
            raise
        return self

    def _on_chunk(self, n: int) -> None:
        if n >= self.HIGH:
            self._conn.pause_reading()

    def _maybe_resume(self) -> None:
        if len(self._op.chunks) <= self.LOW:
            self._conn.resume_reading()

    def __aiter__(self) -> "CopyOut":
        return self

    async def __anext__(self) -> bytes:
        op = self._op
        while not op.chunks:
            if op.out_done:
                raise StopAsyncIteration
            op.readable.clear()
            self._maybe_resume()
            await op.readable.wait()
        chunk = op.chunks.popleft()
        self._maybe_resume()
        return chunk

    async def __aexit__(self, et, e, tb) -> None:
        conn, op = self._conn, self._op
        cancelled = False
        try:
            if not op.out_done and not conn.is_closed():
                # Stopped early: ask the server to stop, drop what still comes.
                cancelled = True
                await conn.cancel()
            op.on_chunk = None
            op.chunks.clear()
            conn.resume_reading()
            try:
                await conn.wait(op, None)
                self.tag = op.results[-1].tag if op.results else ""
            except psycopg.errors.QueryCanceled:
                if not cancelled:
                    raise
        finally:
            self._excl.release()


class Listener:
    """Notifications on some channels; LISTEN on enter, UNLISTEN on exit."""

    def __init__(self, conn: Channel, channels: tuple[str, ...]):
        if not channels:
            raise InterfaceError("listen() needs at least one channel")
        self._conn = conn
        self._channels = channels
        self._queue: deque = deque()
        self._wake = asyncio.Event()

    def _push(self, item) -> None:
        self._queue.append(item)
        self._wake.set()

    async def __aenter__(self) -> "Listener":
        for ch in self._channels:
            self._conn.add_listener(ch, self._push)
        try:
            await self._conn.execute("; ".join(f"LISTEN {quote_ident(c)}" for c in self._channels))
        except BaseException:
            self._unregister()
            raise
        return self

    def _unregister(self) -> None:
        for ch in self._channels:
            self._conn.remove_listener(ch, self._push)

    async def __aexit__(self, *exc) -> None:
        self._unregister()
        if not self._conn.is_closed():
            gone = [c for c in self._channels if not self._conn.listening_to(c)]
            if gone:
                try:
                    await self._conn.execute("; ".join(f"UNLISTEN {quote_ident(c)}" for c in gone))
                except ConnectionLost:
                    pass

    def __aiter__(self) -> "Listener":
        return self

    async def __anext__(self) -> psycopg.Notify:
        while not self._queue:
            self._wake.clear()
            await self._wake.wait()
        item = self._queue.popleft()
        if isinstance(item, BaseException):
            self._queue.appendleft(item)  # stays failed
            raise ConnectionLost("connection lost while listening") from item
        return item
