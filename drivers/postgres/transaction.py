"""``async with conn.transaction():`` — BEGIN/COMMIT/ROLLBACK, and savepoints
when nested.  The block commits on normal exit and rolls back when an
exception leaves it; a rollback that cannot reach the server (the connection
is gone) lets the original exception through.  Written against the narrow
:class:`~.channel.Channel` (``execute``, ``transaction_status``, ``tx_stack``)."""
from __future__ import annotations

from .channel import Channel
from .errors import ConnectionLost, InterfaceError

_ISOLATION = {
    None: "", "serializable": " ISOLATION LEVEL SERIALIZABLE",
    "repeatable_read": " ISOLATION LEVEL REPEATABLE READ",
    "read_committed": " ISOLATION LEVEL READ COMMITTED",
    "read_uncommitted": " ISOLATION LEVEL READ UNCOMMITTED",
}


class Transaction:
    def __init__(self, conn: Channel, isolation: str | None, readonly: bool, deferrable: bool):
        if isolation not in _ISOLATION:
            raise InterfaceError(f"isolation must be one of {sorted(k for k in _ISOLATION if k)}, "
                             f"got {isolation!r}")
        self._conn = conn
        self._begin = "BEGIN" + _ISOLATION[isolation]
        if readonly:
            self._begin += " READ ONLY"
        if deferrable:
            self._begin += " DEFERRABLE"
        self._savepoint: str | None = None
        self._entered = False

    async def __aenter__(self) -> "Transaction":
        if self._entered:
            raise RuntimeError("a Transaction object can be entered only once")
        self._entered = True
        stack = self._conn.tx_stack
        if stack:
            if self._begin != "BEGIN":
                raise InterfaceError("a nested transaction (savepoint) cannot set "
                                 "isolation, readonly or deferrable")
            self._savepoint = f"_rl_sp{len(stack)}"
            await self._conn.execute(f"SAVEPOINT {self._savepoint}")
        else:
            if self._conn.transaction_status != "I":
                raise RuntimeError("connection is already in a transaction block "
                                   "not opened by transaction()")
            await self._conn.execute(self._begin)
        stack.append(self)
        return self

    async def __aexit__(self, et, e, tb) -> None:
        stack = self._conn.tx_stack
        if not stack or stack[-1] is not self:
            raise RuntimeError("transactions exited out of order")
        stack.pop()
        if et is None:
            if self._savepoint:
                await self._conn.execute(f"RELEASE SAVEPOINT {self._savepoint}")
            else:
                await self._conn.execute("COMMIT")
            return
        try:
            if self._savepoint:
                await self._conn.execute(
                    f"ROLLBACK TO SAVEPOINT {self._savepoint}; RELEASE SAVEPOINT {self._savepoint}")
            else:
                await self._conn.execute("ROLLBACK")
        except ConnectionLost:
            pass  # nothing to roll back on a dead connection; keep the real error
