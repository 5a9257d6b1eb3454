"""The narrow interface the Postgres driver's flows are written against.

What it does: :class:`Channel` names, once, what the flows outside the
connection's own modules may use of a connection — server-side cursors,
COPY in/out and LISTEN (:mod:`.streams`), transaction blocks
(:mod:`.transaction`).  They build frontend messages (:mod:`.messages`),
queue an answer collector (:mod:`.ops`) and wait for it; everything else (the
read path, the pipeline of operations, cancellation, closing) stays behind
this interface in :mod:`.session`.  psycopg's ``generators.py`` is the model:
each flow is written once against a small connection interface.
:class:`~.connection.Connection` implements it; ``isinstance(conn, Channel)``
checks the shape at run time (tests do).

What it does not do: the pool's view of a connection (that is
:class:`ringleader.drivers.contract.PooledConnection`, plus
``Connection.reset`` as the pool's reset hook) or the application API.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, NamedTuple, Protocol, runtime_checkable

from .ops import Op
from .types import RowCodec

__all__ = ["Channel", "Prepared"]


class Prepared(NamedTuple):
    """A statement ready to bind: its server-side name, the decoder of its
    rows, and the arguments dumped for Bind."""

    name: bytes
    codec: RowCodec
    values: list
    formats: list


@runtime_checkable
class Channel(Protocol):
    """What :mod:`.streams` and :mod:`.transaction` use of a connection.

    Writing: :meth:`submit` sends one Sync group and queues its op (the op
    then receives that group's answers in order); :meth:`send` writes more
    bytes for the op already at the head of the pipeline (COPY data, a
    cursor's next Execute+Flush).  A flow that must have the connection to
    itself (an unnamed portal, COPY) brackets its work with
    :meth:`hold_exclusive` / :meth:`release_exclusive`; everyone else calls
    :meth:`wait_turn` before submitting."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop that drives the connection (ops are made on it)."""

    @property
    def transaction_status(self) -> str:
        """'I' idle, 'T' in a transaction block, 'E' in a failed one."""

    @property
    def tx_stack(self) -> list:
        """The open ``Transaction`` objects, outermost first (owned by
        :mod:`.transaction`; savepoints are named after its depth)."""

    def is_closed(self) -> bool: ...

    async def execute(self, query: str, *args: Any, timeout: float | None = None) -> str: ...

    async def prepare(self, query: str, args: tuple, timeout: float | None) -> Prepared:
        """Dumps ``args`` and prepares ``query`` for them (cached)."""

    async def wait_turn(self) -> None:
        """Waits while another task holds the connection exclusively."""

    def submit(self, data: bytes, op: Op) -> Op:
        """Writes one Sync group and queues ``op`` for its answers; never yields."""

    def send(self, data: bytes) -> None:
        """Writes bytes that belong to the op at the head (raises if closed)."""

    async def wait(self, op: Op, timeout: float | None,
                   fut: asyncio.Future | None = None) -> None:
        """Waits for ``fut`` (default ``op.fut``); a timeout or a cancelled
        caller cancels the op on the server."""

    async def drain(self) -> None:
        """Waits while the transport's write buffer is over its high mark."""

    async def hold_exclusive(self) -> None:
        """Takes the connection for the calling task alone (others'
        :meth:`wait_turn` waits); raises InterfaceError if it already has it."""

    def release_exclusive(self) -> None: ...

    def pause_reading(self) -> None:
        """Stops reading from the server (a slow COPY TO reader); idempotent."""

    def resume_reading(self) -> None: ...

    async def cancel(self) -> None:
        """Sends a CancelRequest for whatever the server runs for us now."""

    def add_listener(self, channel: str, callback: Callable[[Any], None]) -> None:
        """``callback(psycopg.Notify)`` per notification on ``channel``, and
        ``callback(exc)`` once if the connection closes."""

    def remove_listener(self, channel: str, callback: Callable[[Any], None]) -> None: ...

    def listening_to(self, channel: str) -> bool:
        """Whether any callback is registered for ``channel``."""
