"""In-flight operations of one connection.

Each operation is one group of frontend messages ending in Sync (or a simple
Query), so the server answers each with a group of messages ending in exactly
one ReadyForQuery.  The connection keeps the operations in a FIFO in send
order and feeds every backend message (except the asynchronous ones:
notifications, notices, parameter changes) to the head; when the head sees
its ReadyForQuery it is done and the next one becomes the head.  That is what
makes pipelining safe: results reach the right callers in order, and one
failing group does not affect the next.

Operations only collect raw messages and resolve a future; decoding values
happens in the caller's task, not in ``data_received``.
"""
from __future__ import annotations

import asyncio
from collections import deque

import psycopg

from . import messages as m
from .errors import ProtocolViolation, server_error


def _consume(fut: asyncio.Future) -> None:
    # An operation whose caller was cancelled still completes; retrieving the
    # exception here keeps asyncio from reporting it as never retrieved.
    if not fut.cancelled():
        fut.exception()


# Raw rows of a result are decoded while more arrive once this many wait:
# a big result's decoding then overlaps with the server still sending it
# (10k rows x 10 columns: 28 -> 22 ms wall), and its raw bytes are freed early.
DECODE_BATCH = 256


class Result:
    """The outcome of one statement execution: ``rows`` raw (lists of bytes
    or None) and, for a big result decoded on the way, ``records`` before
    them."""

    __slots__ = ("fields", "rows", "tag", "records")

    def __init__(self) -> None:
        self.fields: tuple[m.Field, ...] | None = None
        self.rows: list[list[bytes | None]] = []
        self.tag = ""
        self.records: list | None = None


class Op:
    """Collects one Sync group's answers.  ``fut`` resolves (to None) once
    ``results``, ``param_types`` and ``status`` are complete, or to the first
    server error."""

    __slots__ = ("fut", "error", "results", "param_types", "status",
                 "cancel_at_head", "_cur", "codec")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.fut = loop.create_future()
        self.fut.add_done_callback(_consume)
        self.error: Exception | None = None
        self.results: list[Result] = []
        self.param_types: tuple[int, ...] | None = None
        self.status = ""
        self.cancel_at_head = False
        self._cur: Result | None = None
        self.codec = None  # a RowCodec: decode big results as they arrive

    def _result(self) -> Result:
        r = self._cur
        if r is None:
            r = self._cur = Result()
        return r

    def feed(self, kind: bytes, body: bytes) -> bool:
        """Takes one message; True once the op's ReadyForQuery was seen."""
        if kind == b"D":
            self._result().rows.append(m.parse_data_row(body))
        elif kind == b"C":
            r = self._result()
            r.tag = m.parse_command_complete(body)
            self.results.append(r)
            self._cur = None
        elif kind == b"T":
            self._result().fields = m.parse_row_description(body)
        elif kind == b"Z":
            self.status = m.parse_ready(body)
            self.finish()
            return True
        elif kind == b"E":
            if self.error is None:
                self.error = server_error(m.parse_error_fields(b"E", body))
        elif kind == b"t":
            self.param_types = m.parse_parameter_description(body)
        elif kind == b"n" or kind == b"I":
            m.parse_empty(kind, body)
            r = self._result()
            r.fields = r.fields or ()
            if kind == b"I":
                self.results.append(r)
                self._cur = None
        elif kind in (b"1", b"2", b"3", b"s"):
            m.parse_empty(kind, body)
        else:
            self.unexpected(kind, body)
        return False

    def sink(self) -> list:
        """Where the connection's DataRow fast path appends raw rows."""
        return self._result().rows

    def decode_some(self) -> None:
        """Called after rows were appended: decodes them once DECODE_BATCH
        wait.  A value that fails to load stops this for the op and leaves
        the rows raw, so the caller's own decoding raises the error in the
        caller's task (a loader error must not look like a broken wire)."""
        r = self._cur
        if r is None or len(r.rows) < DECODE_BATCH:
            return
        try:
            done = self.codec.load_all(r.rows)
        except Exception:
            self.codec = None
            return
        if r.records is None:
            r.records = done
        else:
            r.records += done
        r.rows.clear()

    @property
    def described(self) -> tuple[m.Field, ...] | None:
        """The RowDescription (or () for NoData) of a Describe not followed
        by an Execute: a statement preparation's answer."""
        return self._cur.fields if self._cur is not None else None

    def unexpected(self, kind: bytes, body: bytes) -> None:
        raise ProtocolViolation(f"unexpected message {kind!r} for {type(self).__name__}")

    def finish(self) -> None:
        if self.fut.done():
            return
        if self.error is not None:
            self.fut.set_exception(self.error)
        else:
            # Not the op itself: op -> fut -> op would be a reference cycle,
            # and every result's rows would wait for the cyclic GC (a quarter
            # of a FETCH's client CPU went to gen-1 collections).
            self.fut.set_result(None)

    def fail(self, exc: BaseException) -> None:
        """The connection is gone: a server error already received (say the
        FATAL of pg_terminate_backend) explains it better than ``exc``."""
        if not self.fut.done():
            self.fut.set_exception(self.error or exc)


class PortalOp(Op):
    """A portal read in batches (Execute with a row limit): ``batch`` is a
    future per Execute, resolved at PortalSuspended, CommandComplete or an
    error; the op itself ends at the ReadyForQuery of the closing Sync."""

    __slots__ = ("batch", "rows", "complete", "fields")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        super().__init__(loop)
        self.batch: asyncio.Future | None = None
        self.rows: list[list[bytes | None]] = []
        self.complete = False
        self.fields = None

    def _wake(self) -> None:
        if self.batch is not None and not self.batch.done():
            self.batch.set_result(None)

    def sink(self) -> list:
        return self.rows

    def feed(self, kind: bytes, body: bytes) -> bool:
        if kind == b"D":
            self.rows.append(m.parse_data_row(body))
            return False
        if kind == b"s":
            m.parse_empty(kind, body)
            self._wake()
            return False
        if kind == b"C":
            m.parse_command_complete(body)
            self.complete = True
            self._wake()
            return False
        done = super().feed(kind, body)
        if kind == b"E" or done:
            self._wake()
        return done

    def fail(self, exc: BaseException) -> None:
        super().fail(exc)
        if self.batch is not None and not self.batch.done():
            self.batch.set_exception(self.error or exc)
            self.batch.add_done_callback(_consume)


class CopyOp(Op):
    """COPY through a simple Query: ``started`` resolves at CopyIn/OutResponse
    (or the error that replaced it); copied-out chunks go to ``chunks`` and
    ``readable`` is set whenever there is something for the reader."""

    __slots__ = ("started", "chunks", "readable", "out_done", "on_chunk")

    def __init__(self, loop: asyncio.AbstractEventLoop):
        super().__init__(loop)
        self.started = loop.create_future()
        self.started.add_done_callback(_consume)
        self.chunks: deque[bytes] = deque()
        self.readable = asyncio.Event()
        self.out_done = False
        self.on_chunk = None  # called after each chunk, for flow control

    def feed(self, kind: bytes, body: bytes) -> bool:
        if kind == b"d":
            self.chunks.append(body)
            self.readable.set()
            if self.on_chunk is not None:
                self.on_chunk(len(self.chunks))
            return False
        if kind in (b"G", b"H"):
            m.parse_copy_response(kind, body)
            if not self.started.done():
                self.started.set_result(kind)
            return False
        if kind == b"c":
            m.parse_empty(kind, body)
            self.out_done = True
            self.readable.set()
            return False
        done = super().feed(kind, body)
        if self.error is not None and not self.started.done():
            self.started.set_exception(self.error)
        if done:
            if not self.started.done():
                # The caller's mistake (a query that is no COPY), not the
                # server's: the rows it returned were drained with the op.
                self.started.set_exception(
                    psycopg.ProgrammingError("the query did not start a COPY"))
            self.out_done = True
            self.readable.set()
        return done

    def fail(self, exc: BaseException) -> None:
        super().fail(exc)
        if not self.started.done():
            self.started.set_exception(self.error or exc)
        self.out_done = True
        self.readable.set()
