"""Pub/sub: SUBSCRIBE / PSUBSCRIBE as an async iterator of messages, with
resubscription after a reconnect.

A :class:`PubSub` owns a dedicated connection (a subscribed RESP2 connection
cannot run other commands, so it never comes from or goes back to a pool).
``await ps.subscribe(...)`` returns once the server confirmed the subscription,
so a message published afterwards is delivered.  Messages are queued as they
arrive and read with ``async for msg in ps`` or ``await ps.get_message(timeout)``.

If the connection is lost, it reconnects with exponential back-off (on the loop
clock) and subscribes again to every channel and pattern; ``reconnects`` counts
that.  Messages published while disconnected are lost — Redis pub/sub is
at-most-once.  If no connection can be made within ``reconnect_timeout``
seconds, the iterator raises :class:`~.errors.ConnectionError` rather than wait
forever.  Confirmation frames are consumed here, not yielded.  The message
queue is unbounded: a consumer that stops reading grows memory, as with any
pub/sub client that does not drop messages.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from . import errors as E
from .connection import Connection
from .url import ConnectParams

__all__ = ["PubSub", "Message"]

log = logging.getLogger(__name__)
_END = object()


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    kind: str  # "message" or "pmessage"
    channel: Any
    data: Any
    pattern: Any = None  # the matching pattern, for "pmessage"


def _key(name: Any) -> bytes:
    # Frames carry bytes (or str when decoding); callers may pass either.
    if isinstance(name, str):
        return name.encode("utf-8", "surrogateescape")
    if isinstance(name, (bytes, memoryview)):
        return bytes(name)
    raise E.InterfaceError(f"channel names must be str or bytes, got {type(name).__name__}")


class PubSub:
    def __init__(self, params: ConnectParams, *, reconnect: bool = True,
                 reconnect_timeout: float = 30.0, confirm_timeout: float = 10.0) -> None:
        self.params = params
        self.reconnect = reconnect
        self.reconnect_timeout = reconnect_timeout
        self.confirm_timeout = confirm_timeout
        self.reconnects = 0
        self._conn: Connection | None = None
        self._channels: dict[bytes, Any] = {}  # key -> name as given
        self._patterns: dict[bytes, Any] = {}
        self._confirm: dict[tuple[str, bytes], list[asyncio.Future[None]]] = {}
        self._queue: asyncio.Queue[Any] = asyncio.Queue()
        self._connecting: asyncio.Task[Connection] | None = None
        self._reconnector: asyncio.Task[None] | None = None
        self._closed = False

    # -- subscribing ---------------------------------------------------------------

    async def subscribe(self, *channels: Any) -> None:
        await self._change("subscribe", self._channels, channels)

    async def psubscribe(self, *patterns: Any) -> None:
        await self._change("psubscribe", self._patterns, patterns)

    async def unsubscribe(self, *channels: Any) -> None:
        await self._change("unsubscribe", self._channels, channels or list(self._channels.values()))

    async def punsubscribe(self, *patterns: Any) -> None:
        await self._change("punsubscribe", self._patterns, patterns or list(self._patterns.values()))

    async def _change(self, kind: str, table: dict[bytes, Any], names: Any) -> None:
        if self._closed:
            raise E.ConnectionError("PubSub is closed")
        keys = [_key(n) for n in names]
        if not keys:
            if kind.endswith("unsubscribe"):
                return
            raise E.InterfaceError(f"{kind}() needs at least one name")
        # Connect first: if that fails, nothing has changed.
        conn = await self._connection()
        for k, n in zip(keys, names):
            if kind.endswith("unsubscribe"):
                table.pop(k, None)
            else:
                table[k] = n
        waits = [self._expect(kind, k) for k in keys]
        conn.send_only(kind.upper(), *names)
        try:
            async with asyncio.timeout(self.confirm_timeout):
                await asyncio.gather(*waits)
        except TimeoutError:
            raise E.TimeoutError(f"{kind} not confirmed within {self.confirm_timeout}s") from None

    def _expect(self, kind: str, key: bytes) -> asyncio.Future[None]:
        fut = asyncio.get_running_loop().create_future()
        self._confirm.setdefault((kind, key), []).append(fut)
        return fut

    # -- the connection --------------------------------------------------------------

    async def _connection(self) -> Connection:
        if self._conn is not None and not self._conn.is_closed:
            return self._conn
        if self._connecting is None:
            self._connecting = asyncio.get_running_loop().create_task(self._connect())
        return await asyncio.shield(self._connecting)

    async def _connect(self) -> Connection:
        try:
            conn = await Connection.connect(self.params)
            conn.pubsub_mode = True
            conn.on_push = self._on_frame
            conn.add_close_callback(self._on_closed)
            self._conn = conn
            return conn
        finally:
            self._connecting = None

    def _on_closed(self, conn: Connection) -> None:
        if self._closed or conn is not self._conn:
            return
        self._conn = None
        if self.reconnect and (self._channels or self._patterns):
            self._reconnector = asyncio.get_running_loop().create_task(self._reconnect_loop())
        elif not self.reconnect:
            self._queue.put_nowait(E.ConnectionError("pub/sub connection lost"))

    async def _reconnect_loop(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.reconnect_timeout
        delay = 0.05
        last: Exception | None = None
        while not self._closed and loop.time() < deadline:
            try:
                conn = await self._connection()
                names = list(self._channels.values())
                patterns = list(self._patterns.values())
                waits = [self._expect("subscribe", _key(n)) for n in names]
                waits += [self._expect("psubscribe", _key(p)) for p in patterns]
                if names:
                    conn.send_only("SUBSCRIBE", *names)
                if patterns:
                    conn.send_only("PSUBSCRIBE", *patterns)
                async with asyncio.timeout(self.confirm_timeout):
                    await asyncio.gather(*waits)
                self.reconnects += 1
                return
            except (E.RedisError, OSError, TimeoutError) as exc:
                last = exc
                log.info("pub/sub reconnect to %s failed: %r", self.params.address, exc)
                await asyncio.sleep(min(delay, max(0.0, deadline - loop.time())))
                delay = min(delay * 2, 1.0)
        if not self._closed:
            err = E.ConnectionError(f"pub/sub connection to {self.params.address} lost and not "
                                    f"re-established within {self.reconnect_timeout}s")
            err.__cause__ = last
            for futs in self._confirm.values():
                for f in futs:
                    if not f.done():
                        f.set_exception(err)
            self._confirm.clear()
            self._queue.put_nowait(err)

    def _on_frame(self, frame: list[Any]) -> None:
        kind = frame[0].decode() if isinstance(frame[0], bytes) else str(frame[0])
        if kind in ("message", "smessage"):
            self._queue.put_nowait(Message("message", frame[1], frame[2]))
        elif kind == "pmessage":
            self._queue.put_nowait(Message("pmessage", frame[2], frame[3], pattern=frame[1]))
        elif frame[1] is not None:  # a confirmation (unsubscribe-all with none has None)
            for fut in self._confirm.pop((kind, _key(frame[1])), ()):
                if not fut.done():
                    fut.set_result(None)

    # -- reading ---------------------------------------------------------------------

    def __aiter__(self) -> PubSub:
        return self

    async def __anext__(self) -> Message:
        item = await self._queue.get()
        if item is _END:
            self._queue.put_nowait(_END)  # every later read ends too
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item

    async def get_message(self, timeout: float | None = None) -> Message | None:
        """The next message, or None if none came within ``timeout`` seconds."""
        try:
            async with asyncio.timeout(timeout):
                return await self.__anext__()
        except TimeoutError:
            return None
        except StopAsyncIteration:
            return None

    async def close(self) -> None:
        """Ends iteration and closes the connection."""
        if self._closed:
            return
        self._closed = True
        if self._reconnector is not None:
            self._reconnector.cancel()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        self._queue.put_nowait(_END)

    async def __aenter__(self) -> PubSub:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
