"""Moving one live connection from one worker's ring to another's: one state machine.

What it does: :class:`Migration` carries one transport from its worker (the
*source*) to another (the *target*) in named steps, and resolves its caller on
every path, leaving the connection usable on exactly one worker or closed
(never stranded between rings):

* ``PREPARING`` (source thread): the protocol is asked whether it can move now
  (``migration_blocker()``, see :class:`MigrationAware`); if not, the caller
  gets :class:`~.errors.MigrationRefused` before anything changed.  Otherwise
  receiving stops and the in-flight send is allowed to finish.  The protocol is
  asked again at the end of that wait (a task may have started using it
  meanwhile); a refusal then puts everything back (``REFUSED``).
* ``HANDING_OVER``: the transport leaves the source loop; the protocol's
  ``connection_moving(target_loop)`` runs right then, on the source thread, so
  the connection and whoever tracks it (its pool, a multiplexer) switch
  workers at that instant; the fixed file goes to the target ring with
  MSG_RING SEND_FD (on the epoll fallback, whose threads share the fd table,
  the fd goes to the target loop with a call on its thread: the source loop's
  ``carry``, see :mod:`.epoll`).
* ``ARRIVED`` (target thread): the file is adopted there, the transport joins
  the target loop and the protocol's ``connection_migrated(transport, loop)``
  runs.  A hook that raises makes the connection fail there (``FAILED``:
  closed, its protocol sees ``connection_lost``) and the caller gets
  :class:`~.errors.MigrationError` with ``where="closed"``.
* ``RETURNED``: the kernel refused the hand-over; the transport rejoins the
  source (``connection_moving`` and ``connection_migrated`` again, with the
  source loop) and the caller gets ``MigrationError(where="source")``.
* ``LOST``: the connection died while the move was preparing.

A caller cancelled while ``PREPARING`` leaves the connection where it was; once
``HANDING_OVER`` the move completes on its own (the kernel has the file) and
the caller only stops waiting.

What it does not do: pick connections or targets (the supervisor's rebalancer
does), or move TLS connections (asyncio's SSLProtocol is bound to its loop).
"""
from __future__ import annotations

import asyncio
import concurrent.futures
import enum
import logging
from typing import Protocol, runtime_checkable

from ..uring import error_from_result
from .errors import MigrationError, MigrationRefused
from .loop import TAG_MIGRATE
from .contract import TLS_BLOCKER, MigrationLoop, MovableTransport

logger = logging.getLogger("ringleader.runtime")

__all__ = ["MigrationState", "Migration", "MigrationAware"]


@runtime_checkable
class MigrationAware(Protocol):
    """The optional hooks a protocol offers the runtime's migration (any
    subset; a protocol without them is moved as a plain byte stream).

    ``migration_blocker()``: why it cannot move *now* (queries in flight, a
    transaction open, lent to one caller ...), or None.  Must only read state:
    the supervisor asks it from its own thread when it picks candidates.

    ``connection_moving(loop)``: on the source thread, the instant the
    transport leaves it; ``loop`` drives the connection from now on (the
    source loop again if the hand-over failed).  Must not raise.

    ``connection_migrated(transport, loop)``: on ``loop``'s thread once the
    transport is attached there.
    """

    def migration_blocker(self) -> str | None: ...

    def connection_moving(self, loop: asyncio.AbstractEventLoop) -> None: ...

    def connection_migrated(self, transport: asyncio.Transport,
                            loop: asyncio.AbstractEventLoop) -> None: ...


class MigrationState(enum.Enum):
    PREPARING = "preparing"
    HANDING_OVER = "handing_over"
    ARRIVED = "arrived"
    REFUSED = "refused"
    RETURNED = "returned"
    FAILED = "failed"
    LOST = "lost"


_NEXT = {
    None: {MigrationState.PREPARING},
    MigrationState.PREPARING: {MigrationState.HANDING_OVER, MigrationState.REFUSED,
                               MigrationState.LOST},
    MigrationState.HANDING_OVER: {MigrationState.ARRIVED, MigrationState.RETURNED,
                                  MigrationState.FAILED},
}
FINAL = frozenset({MigrationState.ARRIVED, MigrationState.REFUSED, MigrationState.RETURNED,
                   MigrationState.FAILED, MigrationState.LOST})


class Migration:
    """One move of transport ``t`` from ``src`` to ``dst`` (two worker loops).

    ``run()`` is awaited on the source loop; ``arrive(slot)`` is called on the
    target loop when the file gets there.  ``pending`` is the runtime's table
    of moves in flight, keyed by token (the MSG_RING payload).  It uses only
    what :mod:`.contract` declares: :class:`~.contract.MovableTransport` of
    ``t``; :class:`~.contract.RingMigrationLoop` or
    :class:`~.contract.CarryingLoop` of the loops."""

    def __init__(self, t: MovableTransport, src: MigrationLoop, dst: MigrationLoop,
                 token: int, pending: dict):
        self.t = t
        self.src = src
        self.dst = dst
        self.token = token
        self.pending = pending
        self.state: MigrationState | None = None
        self.done: concurrent.futures.Future = concurrent.futures.Future()
        self._slot = -1

    def __repr__(self) -> str:
        return (f"<Migration #{self.token} conn {getattr(self.t, 'conn_id', '?')} worker "
                f"{getattr(self.src, 'worker_id', '?')}->{getattr(self.dst, 'worker_id', '?')} "
                f"{self.state and self.state.value}>")

    def _to(self, state: MigrationState) -> None:
        if state not in _NEXT.get(self.state, ()):
            raise AssertionError(f"{self!r}: no transition to {state.value}")
        self.state = state

    def _resolve(self, exc: BaseException | None = None) -> None:
        self.pending.pop(self.token, None)
        if self.done.done():
            return
        if exc is None:
            self.done.set_result(None)
        else:
            self.done.set_exception(exc)

    def _refuse(self, reason: str) -> MigrationRefused:
        self._to(MigrationState.REFUSED)
        return MigrationRefused(f"cannot move {self.t!r} to worker {self.dst.worker_id} now: "
                                f"{reason}; it stays on worker {self.src.worker_id}",
                                permanent=reason == TLS_BLOCKER)

    # ------------------------------------------------------------ source side
    async def run(self) -> None:
        t = self.t
        self._to(MigrationState.PREPARING)
        reason = t.migration_blocker()
        if reason is not None:
            raise self._refuse(reason)
        waiter = self.src.create_future()
        t.begin_migration(waiter)
        self.src.kick()
        try:
            await waiter
        except ConnectionError as exc:
            t.abort_migration()
            self._to(MigrationState.LOST)
            raise MigrationError(f"{t!r} was lost while preparing to move: {exc}",
                                 "closed") from exc
        except BaseException:
            t.abort_migration()
            self._to(MigrationState.REFUSED)
            raise
        reason = t.migration_blocker(moving=True)
        if reason is not None:
            t.abort_migration()
            raise self._refuse(reason)
        self._hand_over()
        # The kernel has the file now: a cancelled caller stops waiting, the
        # move itself completes (arrive() or _sent() resolve it), and its
        # outcome is read here so that nothing is reported as never retrieved.
        outcome = asyncio.wrap_future(self.done)
        outcome.add_done_callback(_read)
        await asyncio.shield(outcome)

    def _hand_over(self) -> None:
        t = self.t
        self._slot = t.detach_for_move()
        self._to(MigrationState.HANDING_OVER)
        self._moving(self.dst)
        self.pending[self.token] = self
        carry = getattr(self.src, "carry", None)
        if carry is not None:
            # In-process hand-over (epoll): the fd is already the target's too.
            if not carry(self.dst, self._slot, self.arrive):
                self._return("the target loop has stopped")
            return
        self.src.send_file(self.dst.ring_fd, self._slot, TAG_MIGRATE | self.token, self._sent)

    def _moving(self, loop) -> None:
        hook = getattr(self.t.get_protocol(), "connection_moving", None)
        if hook is None:
            return
        try:
            hook(loop)
        except Exception:  # the contract says it must not; the move goes on regardless
            logger.exception("%r: protocol.connection_moving() failed", self)

    def _sent(self, res: int, flags: int) -> None:
        # Source thread: the MSG_RING completion.
        if res >= 0:
            self.src.release_sent_file(self._slot)
            self.src.migrations_out += 1
            return
        if self.state is not MigrationState.HANDING_OVER:
            return
        self._return(str(error_from_result(res, 'msg_ring(send_fd)', self._slot, True)))

    def _return(self, why: str) -> None:
        # Source thread: the hand-over failed; the connection rejoins the source.
        self._to(MigrationState.RETURNED)
        self.pending.pop(self.token, None)
        err = MigrationError(f"moving {self.t!r} to worker {self.dst.worker_id} failed: "
                             f"{why}; it stays on worker {self.src.worker_id}")
        self._moving(self.src)
        try:
            self.t.attach_moved(self.src, self._slot, moved=False)
        except BaseException as exc:
            err = MigrationError(f"{self.t!r} could not rejoin worker {self.src.worker_id} "
                                 f"after a failed move: {exc!r}", "closed")
        self._resolve(err)

    # ------------------------------------------------------------ target side
    def arrive(self, slot: int) -> None:
        """Target thread: the file is in our table at ``slot``.  Always resolves."""
        if self.state is not MigrationState.HANDING_OVER:
            return
        try:
            if slot < 0:
                # The source's completion reports the refusal and takes it back.
                logger.warning("%r: target ring refused the file: %s", self,
                               error_from_result(slot, "msg_ring(send_fd)"))
                return
            if not hasattr(self.dst, "carry"):   # a ring: the slot is ours now
                self.dst.adopt_file(slot)
            self.dst.migrations_in += 1
            self.t.attach_moved(self.dst, slot)
        except BaseException as exc:
            self._to(MigrationState.FAILED)
            err = MigrationError(f"{self.t!r} could not start on worker {self.dst.worker_id}: "
                                 f"{exc!r}; it was closed", "closed")
            err.__cause__ = exc
            self._resolve(err)
            return
        self._to(MigrationState.ARRIVED)
        self._resolve()

    def abandon(self, why: str) -> None:
        """The runtime stops with this move in flight: release its caller."""
        self._resolve(MigrationError(f"{self!r}: {why}", "closed"))


def _read(fut) -> None:
    if not fut.cancelled():
        fut.exception()
