"""The contract a pooled driver connection offers the pool and the multiplexer.

What it does: :class:`PooledConnection` names, once, what
:mod:`ringleader.drivers.pool` and :mod:`ringleader.drivers.mux` may use of a
connection; both drivers' connections implement it through :class:`Movable`
(their part of the contract that concerns worker ownership and live
migration) and :class:`MovableWire` (the hooks the runtime's migration calls
on their asyncio protocol, see :class:`ringleader.runtime.migration.MigrationAware`).

The ownership rule: a connection is driven by exactly one loop (``loop``,
``worker_id``), and only code running on that loop may use it; anything else
gets :class:`~.errors.WrongLoop` before a byte is written.  A connection may
move to another worker only while idle between operations and not lent to a
single caller (``migration_blocker()`` is None).  The instant the runtime
detaches it from the old worker, ``loop``/``worker_id`` name the new one and
the move listeners run (on the old worker's thread), so its pool files it
under the new worker and a multiplexer on the old one stops using it at once.

What it does not do: I/O, or choosing what to move (the supervisor does).
The generic pool still accepts any object with ``close()`` and a truthy
``broken``/``is_closed``/``closed`` once unusable (see :mod:`.pool`).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Awaitable, Callable, Protocol, runtime_checkable

log = logging.getLogger("ringleader.drivers")

__all__ = ["PooledConnection", "SharedPool", "Multiplexer", "Movable", "MovableWire",
           "writes_coalesced"]

MoveListener = Callable[[Any], None]


def writes_coalesced(transport: Any) -> bool:
    """Whether ``transport`` sends all writes of one loop iteration as one send
    (``ringleader.runtime.contract.CoalescingTransport``: the ring's stream
    transport; not asyncio's, uvloop's, the epoll fallback's or TLS).  Then a
    driver need not batch an iteration's commands itself."""
    return getattr(transport, "writes_coalesced", False) is True


@runtime_checkable
class PooledConnection(Protocol):
    """What the pool and the multiplexer use of a connection, and nothing more."""

    def close(self) -> Awaitable[None] | None:
        """Closes it (an awaitable result is awaited or scheduled by the pool)."""

    @property
    def defunct(self) -> bool:
        """Closed or failed: never hand it out again."""

    async def ping(self) -> Any:
        """One round trip; raises if the connection is bad."""

    @property
    def in_flight(self) -> int:
        """Commands sent whose reply has not arrived."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop that drives it now (the only one that may use it)."""

    @property
    def worker_id(self) -> int:
        """``loop``'s worker id (0 on a plain asyncio loop)."""

    def migration_blocker(self) -> str | None:
        """Why it cannot move to another worker now, or None."""

    def pin(self, reason: str | None) -> None:
        """Lent to one caller (``reason`` says so): it must not move until
        ``pin(None)``."""

    def add_move_listener(self, listener: MoveListener) -> None:
        """``listener(conn)`` runs on the old worker's thread the instant the
        connection moves (``loop``/``worker_id`` already name the new worker),
        and again if the move fails and it stays."""

    def remove_move_listener(self, listener: MoveListener) -> None: ...


@runtime_checkable
class SharedPool(Protocol):
    """What the multiplexer (:mod:`.mux`) uses of its pool, and nothing more."""

    name: str
    acquire_timeout: float
    max_lifetime: float

    @property
    def max_size(self) -> int: ...

    def acquire(self, timeout: float | None = None) -> Awaitable[Any]:
        """A connection lent to the multiplexer (then :meth:`share`-d)."""

    def release(self, conn: Any) -> None: ...

    def share(self, conn: Any) -> None:
        """Marks a borrowed connection as shared by many callers' commands."""

    def wanted_back(self) -> int:
        """How many shared connections the pool wants back now: the excess over
        its cap after a shrink, else one while callers queue for an exclusive
        connection, else 0."""

    def record_error(self, kind: str) -> None: ...

    def check_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Raises WrongLoop for a loop that may not use the pool's connections."""


@runtime_checkable
class Multiplexer(Protocol):
    """What a driver's multiplexed shortcuts use of one loop's multiplexer
    (:class:`.mux.Mux`), and nothing more."""

    closed: bool

    def pick(self) -> Any:
        """A connection to send on now, or None (then ``await get()``)."""

    async def get(self, timeout: float | None = None) -> Any:
        """A connection to send on, borrowing the first one if needed."""

    def ended(self, conn: Any) -> None:
        """A command on ``conn`` ended normally (the hot path)."""

    def after(self, conn: Any) -> None:
        """A command on ``conn`` ended with an error or was cancelled."""

    def drop(self, conn: Any) -> None:
        """Stop using ``conn`` (it is in a state others must not inherit)."""


class Movable:
    """Worker ownership and migration for a driver connection (mixed into
    both drivers' ``Connection``).  The driver provides ``_loop`` (set in its
    ``__init__``), ``_closed_exc`` (not None once closed), ``_busy_reason()``
    and ``_rebind(transport, loop)``, and sets ``_wrong_loop`` to its
    :class:`~.errors.WrongLoop` subclass."""

    _wrong_loop: type[Exception]
    _loop: asyncio.AbstractEventLoop
    _closed_exc: BaseException | None
    _pinned: str | None = None
    _move_listeners: tuple[MoveListener, ...] = ()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop (worker) driving this connection; use it only from there."""
        return self._loop

    @property
    def worker_id(self) -> int:
        return getattr(self._loop, "worker_id", 0)

    @property
    def defunct(self) -> bool:
        return self._closed_exc is not None

    def _check_loop(self) -> None:
        """Raises WrongLoop unless called on the loop that drives it."""
        if asyncio.get_running_loop() is not self._loop:
            raise self._wrong_loop(
                f"{self!r} is driven by worker {self.worker_id}'s loop and was used from "
                f"another loop (a plain thread, or the worker it migrated away from): "
                f"run the call on its worker (runtime.run_on({self.worker_id}, ...))")

    def _busy_reason(self) -> str | None:
        raise NotImplementedError

    def _rebind(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        raise NotImplementedError

    def migration_blocker(self) -> str | None:
        if self._closed_exc is not None:
            return "it is closed"
        if self._pinned is not None:
            return self._pinned
        return self._busy_reason()

    def pin(self, reason: str | None) -> None:
        self._pinned = reason

    def add_move_listener(self, listener: MoveListener) -> None:
        self._move_listeners = self._move_listeners + (listener,)

    def remove_move_listener(self, listener: MoveListener) -> None:
        self._move_listeners = tuple(x for x in self._move_listeners if x != listener)

    def _moved_to(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        for listener in self._move_listeners:
            try:
                listener(self)
            except Exception:  # one tracker's failure must not stop the move
                log.exception("%r: move listener %r failed", self, listener)


class MovableWire:
    """The runtime's migration hooks on a driver's asyncio protocol, forwarded
    to its connection (``self.conn``, a :class:`Movable`)."""

    __slots__ = ()
    conn: Movable

    def migration_blocker(self) -> str | None:
        return self.conn.migration_blocker()

    def connection_moving(self, loop: asyncio.AbstractEventLoop) -> None:
        self.conn._moved_to(loop)

    def connection_migrated(self, transport: asyncio.Transport,
                            loop: asyncio.AbstractEventLoop) -> None:
        self.conn._rebind(transport, loop)
