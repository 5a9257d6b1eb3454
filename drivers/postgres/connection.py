"""A PostgreSQL connection: prepared statements and the query API.

What it does: :class:`Connection` (made by :func:`~.connect.connect`) runs
queries with the extended protocol and a per-connection LRU cache of named
prepared statements keyed by (SQL, parameter types); each call is one
Bind/Execute/Sync group written without waiting for earlier ones, so
concurrent calls pipeline, and each gets its own ReadyForQuery (see ``ops``).
A cached plan the server calls stale (0A000 "cached plan must not change
result type", 26000) is dropped and the call retried once when not inside a
transaction block.  Values go through psycopg's adapters (``types``).  It is
also the pool's view of a connection (:meth:`Connection.reset` is the
pool's reset hook).

What it does not do: the wire, the pipeline, cancellation and closing
(``session``, its base); streaming — cursors, COPY, LISTEN (``streams``) and
transactions (``transaction``), which are written against the narrow
:class:`~.channel.Channel` this class implements.  Not done at all:
Kerberos/GSS auth, replication.
"""
from __future__ import annotations

import asyncio
from collections import OrderedDict
from typing import Awaitable, Iterable

import psycopg

from . import messages as m
from .channel import Prepared
from .dsn import ConnectParams
from .errors import InterfaceError, stale_plan
from .ops import Op, Result
from .session import Session
from .types import RowCodec, fetch_type_info

__all__ = ["Connection"]


class _Statement:
    __slots__ = ("name", "fields", "codec", "gen", "ready")

    def __init__(self, name: bytes):
        self.name = name
        self.fields: tuple = ()
        self.codec: RowCodec | None = None
        self.gen = -1
        self.ready: asyncio.Future | None = None



class Connection(Session):
    """One server connection; make it with :func:`connect`.  It may migrate to
    another worker while idle between operations (see ``drivers.contract``)."""

    def __init__(self, params: ConnectParams, address: tuple[str, int], *,
                 statement_cache_size: int = 100, command_timeout: float | None = None,
                 adapters=None):
        super().__init__(params, address, command_timeout=command_timeout, adapters=adapters)
        self._stmts: OrderedDict[tuple, _Statement] = OrderedDict()
        self._stmt_seq = 0
        self._cache_size = statement_cache_size

    # ---------------------------------------------------------------- statements

    async def _statement(self, sql: str, types: tuple[int, ...],
                         timeout: float | None) -> _Statement:
        key = (sql, types)
        st = self._stmts.get(key)
        if st is not None:
            self._stmts.move_to_end(key)
            ready = st.ready
            if ready is not None:
                try:
                    await asyncio.shield(ready)
                except asyncio.CancelledError:
                    # The task preparing it was cancelled, not us: prepare anew.
                    if ready.cancelled() and not asyncio.current_task().cancelling():
                        return await self._statement(sql, types, timeout)
                    raise
            return st
        self._stmt_seq += 1
        st = _Statement(f"_rl{self._stmt_seq}".encode())
        st.ready = self._loop.create_future()
        self._stmts[key] = st
        self._evict()
        op = Op(self._loop)
        try:
            await self.wait_turn()
            self.submit(m.parse(st.name, sql.encode(), types)
                        + m.describe(b"S", st.name) + m.SYNC, op)
            await self.wait(op, timeout)
        except BaseException as e:
            if self._stmts.get(key) is st:
                del self._stmts[key]
            if not st.ready.done():
                if isinstance(e, asyncio.CancelledError):
                    st.ready.cancel()
                else:
                    st.ready.set_exception(e)
                    st.ready.add_done_callback(lambda f: f.exception())
            raise
        st.fields = op.described or ()
        st.ready.set_result(None)
        st.ready = None
        return st

    def _evict(self) -> None:
        while len(self._stmts) > self._cache_size:
            for key, old in self._stmts.items():
                if old.ready is None:
                    del self._stmts[key]
                    self._pending_closes.append(old.name)
                    break
            else:
                return

    def _forget(self, sql: str, types: tuple[int, ...], st: _Statement) -> None:
        if self._stmts.get((sql, types)) is st:
            del self._stmts[(sql, types)]
            self._pending_closes.append(st.name)

    async def prepare(self, query: str, args: tuple, timeout: float | None) -> Prepared:
        """Dumps ``args`` and prepares ``query`` for their types (cached); the
        :class:`~.channel.Channel` entry point of cursors."""
        values, types, formats = self._dumper.dump(args)
        st = await self._statement(query, types, timeout)
        return Prepared(st.name, self._codec(st), values, formats)

    def _codec(self, st: _Statement) -> RowCodec:
        if st.gen != self._gen or st.codec is None:
            st.codec = RowCodec(self._ctx, st.fields)
            st.gen = self._gen
        return st.codec

    async def _run(self, sql: str, args: tuple, timeout: float | None,
                   limit: int = 0, decode: bool = False) -> tuple[Result, RowCodec | None]:
        """Runs one statement with parameters; returns its result and decoder
        (``decode``: big results are decoded as they arrive, see ops.Result)."""
        self._enter()
        try:
            if not isinstance(sql, str):
                raise InterfaceError(f"query must be a str, got {type(sql).__name__}")
            values, types, formats = self._dumper.dump(args)
            if self._cache_size <= 0:
                return await self._run_unnamed(sql, values, types, formats, timeout)
            for attempt in (0, 1):
                st = await self._statement(sql, types, timeout)
                codec = self._codec(st)
                op = Op(self._loop)
                if decode:
                    op.codec = codec
                await self.wait_turn()
                self.submit(m.bind(b"", st.name, formats, values, codec.formats)
                            + m.execute(b"", limit) + m.SYNC, op)
                try:
                    await self.wait(op, timeout)
                except psycopg.Error as e:
                    if not stale_plan(e):
                        raise
                    self._forget(sql, types, st)
                    if attempt or op.status != "I":
                        raise
                    continue
                res = op.results[-1] if op.results else (op._cur or Result())
                return res, codec
            raise AssertionError("unreachable")
        finally:
            self._users -= 1

    async def _run_unnamed(self, sql, values, types, formats, timeout):
        # Without a cache, Parse/Bind/Describe/Execute go in one group on the
        # unnamed statement, so concurrent calls cannot clobber it; results
        # come back as text because the column types are not known at Bind.
        op = Op(self._loop)
        await self.wait_turn()
        self.submit(m.parse(b"", sql.encode(), types)
                    + m.bind(b"", b"", formats, values, ())
                    + m.describe(b"P", b"") + m.execute(b"", 0) + m.SYNC, op)
        await self.wait(op, timeout)
        res = op.results[-1] if op.results else Result()
        return res, RowCodec(self._ctx, res.fields or (), binary=False)


    # ------------------------------------------------------------------ the API

    def reset(self) -> Awaitable[None] | None:
        """The pool's reset hook, called when the connection is given back:
        raises InterfaceError (the pool then discards it) if the next borrower
        must not inherit its state (a cursor or COPY holding it, LISTEN
        registrations, an open transaction block); returns an awaitable when
        its caller gave up mid-query, which the pool awaits in the background
        before reusing it — reconnecting costs the server a backend, and under
        overload that churn is what keeps the database busy."""
        if self.held_exclusive:
            raise InterfaceError("connection returned with a cursor or a COPY in flight")
        if self.listening:
            raise InterfaceError("connection returned while listening")
        if self.in_flight or self.cancels_pending:
            return self._settled()
        if self._status != "I":
            raise InterfaceError("connection returned inside a transaction block")
        return None

    async def _settled(self) -> None:
        await self.wait_idle()
        if self._status != "I":
            raise InterfaceError("connection returned inside a transaction block")

    async def execute(self, query: str, *args, timeout: float | None = None) -> str:
        """Runs a statement; returns the command tag of the last one (e.g.
        'INSERT 0 1').  Without arguments it uses the simple protocol, so a
        script of several statements works."""
        if args:
            res, _ = await self._run(query, args, timeout)
            return res.tag
        if not isinstance(query, str):
            raise InterfaceError(f"query must be a str, got {type(query).__name__}")
        self._enter()
        try:
            op = Op(self._loop)
            await self.wait_turn()
            self.submit(m.query(query.encode()), op)
            await self.wait(op, timeout)
        finally:
            self._users -= 1
        if any(r.tag in ("DEALLOCATE ALL", "DISCARD ALL") for r in op.results):
            # The server forgot every prepared statement: so must the cache
            # (in-flight preparations keep their entry and fail on their own).
            for key in [k for k, st in self._stmts.items() if st.ready is None]:
                del self._stmts[key]
        return op.results[-1].tag if op.results else ""

    async def fetch(self, query: str, *args, timeout: float | None = None) -> list:
        res, codec = await self._run(query, args, timeout, decode=True)
        if res.records is None:
            return codec.load_all(res.rows)
        res.records += codec.load_all(res.rows)
        return res.records

    async def fetchrow(self, query: str, *args, timeout: float | None = None):
        res, codec = await self._run(query, args, timeout)
        return codec.load(res.rows[0]) if res.rows else None

    async def fetchval(self, query: str, *args, column: int = 0,
                       timeout: float | None = None):
        row = await self.fetchrow(query, *args, timeout=timeout)
        return None if row is None else row[column]

    async def executemany(self, query: str, args: Iterable, *,
                          timeout: float | None = None) -> None:
        """Runs the statement once per parameter tuple, pipelined, in one
        Sync group: all rows are applied or none."""
        rows = [tuple(a) for a in args]
        if not rows:
            return
        self._enter()
        try:
            await self._executemany(query, rows, timeout)
        finally:
            self._users -= 1

    async def _executemany(self, query: str, rows: list, timeout: float | None) -> None:
        dumped = [self._dumper.dump(r) for r in rows]
        # psycopg picks int2/int4/int8/numeric per value, so rows may need
        # different statements: prepare each distinct signature first.
        stmts = {}
        for _, types, _ in dumped:
            if types not in stmts:
                stmts[types] = await self._statement(query, types, timeout)
        parts = []
        for values, types, formats in dumped:
            st = stmts[types]
            parts.append(m.bind(b"", st.name, formats, values, self._codec(st).formats))
            parts.append(m.execute(b"", 0))
        parts.append(m.SYNC)
        op = Op(self._loop)
        await self.wait_turn()
        self.submit(b"".join(parts), op)
        try:
            await self.wait(op, timeout)
        except psycopg.Error as e:
            if stale_plan(e):
                for types, st in stmts.items():
                    self._forget(query, types, st)
            raise

    async def ping(self) -> None:
        """One round trip (an empty query); raises if the connection is bad."""
        self._enter()
        try:
            op = Op(self._loop)
            await self.wait_turn()
            self.submit(m.query(b""), op)
            await self.wait(op, None)
        finally:
            self._users -= 1

    async def type_info(self, name: str, cls=None):
        """psycopg's ``TypeInfo`` (or ``cls``: ``EnumInfo``, ``CompositeInfo``,
        ``RangeInfo``, ...) for a type name, fetched with psycopg's own catalog
        query over this connection, ready for ``register_*(info, conn)``;
        None if there is no such type."""
        return await fetch_type_info(self, name, cls)

    def transaction(self, isolation: str | None = None, readonly: bool = False,
                    deferrable: bool = False):
        from .transaction import Transaction
        return Transaction(self, isolation, readonly, deferrable)

    def cursor(self, query: str, *args, prefetch: int = 100,
               timeout: float | None = None):
        """Streams a result in batches of ``prefetch`` rows (see streams.Cursor)."""
        from .streams import Cursor
        return Cursor(self, query, args, prefetch, timeout)

    def listen(self, *channels: str):
        """``async with conn.listen("ch") as notes: async for n in notes``."""
        from .streams import Listener
        return Listener(self, channels)

    async def copy_from(self, query: str, source, *, timeout: float | None = None) -> str:
        """COPY ... FROM STDIN fed from bytes/str, or an (async) iterable of them."""
        from .streams import copy_in
        return await copy_in(self, query, source, timeout)

    def copy_to(self, query: str):
        """``async with conn.copy_to("COPY ... TO STDOUT") as chunks: async for b in chunks``."""
        from .streams import CopyOut
        return CopyOut(self, query)

    async def __aenter__(self) -> "Connection":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()
