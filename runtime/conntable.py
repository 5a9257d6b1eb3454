"""The connection table both worker loops keep, read through runtime.contract.WorkerLoop.

Each worker loop (:class:`~ringleader.runtime.loop.RingEventLoop`,
:class:`~ringleader.runtime.epoll.EpollEventLoop`) registers its open stream
transports in ``_conns`` (conn_id -> transport) and records in ``_owner`` the
thread that runs it.  This mixin answers the runtime, the supervisor and the
debug socket from those two, the same way for both backends.  It does not add
or remove entries: each loop and its transports do that.
"""
from __future__ import annotations

import threading
from typing import Any

from .stats import ConnStats, hottest


class ConnectionTable:
    _conns: dict[int, Any]
    _owner: int | None

    def connections(self) -> list[Any]:
        """The open stream transports (a copy: safe to iterate while they close)."""
        return list(self._conns.values())

    def connection(self, conn_id: int) -> Any | None:
        """The open stream transport with this ``conn_id`` on this loop, or None."""
        return self._conns.get(conn_id)

    def in_owner_thread(self) -> bool:
        """Whether the caller runs on the thread that runs this loop."""
        return threading.get_ident() == self._owner

    def hot_connections(self, n: int = 10) -> list[ConnStats]:
        """The ``n`` connections with the most bytes moved, busiest first."""
        return hottest(self._conns.values(), n)
