"""Explicit pipelines and MULTI/EXEC transactions.

A :class:`Pipeline` collects commands (the typed helpers and
``execute_command(*args)`` queue and return the pipeline) and sends them all in
one write when awaited with ``execute()``; replies come back as a list in
command order.  With ``transaction=True`` they are wrapped in MULTI/EXEC: the
server runs them atomically, or not at all if a key ``WATCH``-ed on the same
connection changed (then :class:`~.errors.WatchError` is raised).

Arguments are checked when a command is queued, so bad input fails at the call
that caused it.  A pipeline on a pool borrows one connection for the whole
``execute()``.  ``async with pool.pipeline() as p:`` is also accepted; leaving
the block with commands never executed raises PipelineNotExecuted.  WATCH
needs a connection you hold yourself (``async with pool.acquire() as conn``),
since it applies to the connection, not the pool.  Nothing is retried.
"""
from __future__ import annotations

from typing import Any, Callable

from .commands import DEFAULT, Commands
from .errors import PipelineNotExecuted, ReplyError, WatchError
from .protocol import encode_command

__all__ = ["Pipeline"]


class Pipeline(Commands):
    def __init__(self, client: Any, transaction: bool = False) -> None:
        self._client = client  # a Connection, or a Pool (has acquire())
        self.transaction = transaction
        self._queued: list[tuple[tuple, Callable[[Any], Any] | None]] = []

    def _command(self, args: tuple, transform: Callable[[Any], Any] | None = None,
                 timeout: Any = DEFAULT) -> Pipeline:
        encode_command(args)  # validate now; encoded again (cheaply) on execute
        self._queued.append((args, transform))
        return self

    def __len__(self) -> int:
        return len(self._queued)

    async def __aenter__(self) -> Pipeline:
        return self

    async def __aexit__(self, exc_type, exc, tb) -> None:
        # Leaving the block with commands still queued is a mistake (a missing
        # ``await p.execute()``): say so rather than drop them silently.  After
        # an exception they are discarded and the exception goes on.
        queued, self._queued = self._queued, []
        if queued and exc_type is None:
            raise PipelineNotExecuted(
                f"pipeline left with {len(queued)} queued command(s) never sent "
                f"(first: {queued[0][0][0]!r}); call 'await pipe.execute()' inside the block")

    async def execute(self, raise_on_error: bool = True, timeout: Any = DEFAULT) -> list[Any]:
        """Runs the queued commands and empties the pipeline.  With
        ``raise_on_error`` the first error reply is raised (after all replies were
        read); otherwise error replies are :class:`ReplyError` items in the list."""
        queued, self._queued = self._queued, []
        if not queued:
            return []
        if hasattr(self._client, "acquire"):
            async with self._client.acquire() as conn:
                return await self._run(conn, queued, raise_on_error, timeout)
        return await self._run(self._client, queued, raise_on_error, timeout)

    async def _run(self, conn: Any, queued: list, raise_on_error: bool, timeout: Any) -> list[Any]:
        commands = [args for args, _ in queued]
        if self.transaction:
            commands = [("MULTI",), *commands, ("EXEC",)]
        try:
            replies = await conn.execute_many(commands, timeout=timeout)
        finally:
            if self.transaction:
                conn.watching = False  # EXEC ends every WATCH, whatever its outcome
        if self.transaction:
            replies = self._unwrap(replies)
        results = []
        for (_, transform), reply in zip(queued, replies):
            if transform is not None and not isinstance(reply, ReplyError):
                reply = transform(reply)
            results.append(reply)
        if raise_on_error:
            for r in results:
                if isinstance(r, ReplyError):
                    raise r
        return results

    @staticmethod
    def _unwrap(replies: list[Any]) -> list[Any]:
        if isinstance(replies[0], ReplyError):  # e.g. MULTI inside MULTI
            raise replies[0]
        result = replies[-1]
        if isinstance(result, ReplyError):
            # EXECABORT: a command was refused while queueing; say which.
            refused = next((r for r in replies[1:-1] if isinstance(r, ReplyError)), None)
            if refused is not None:
                raise result from refused
            raise result
        if result is None:
            raise WatchError("transaction aborted: a watched key changed")
        return result
