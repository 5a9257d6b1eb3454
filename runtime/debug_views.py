"""The debug socket's read-only views: what ``summary``, ``workers``, ``hot``,
``pools``, ``supervisor``, ``decisions`` and ``metrics`` return.

Each view reads the runtime's frozen snapshots (``loop.stats()``,
``hot_connections()``, each registered pool's ``stats()``, the supervisor's
``snapshot()``; see :mod:`ringleader.runtime.registry`) from the debug
server's thread and returns plain JSON values.  Nothing here runs on a worker,
caches, or speaks the protocol: the server (:mod:`ringleader.runtime.debug`)
serves these through its snapshot cache.
"""
from __future__ import annotations

import os
import time
from typing import Any

from ..uring import RingStats
from .debug_protocol import VERSION, DebugCommandError, format_peer, jsonable

__all__ = ["VIEWS", "DebugViews"]

VIEWS = ("summary", "workers", "hot", "pools", "supervisor", "decisions", "metrics")


def _worker_dict(st, reason: str) -> dict:
    d = jsonable(st)
    d["busy_ratio"] = st.busy_ratio
    # Ring-only figures are absent (None) on the epoll fallback, never zeros.
    d["mean_batch"] = st.ring.mean_batch() if st.ring is not None else None
    d["mean_flush_depth"] = st.ring.mean_flush_depth() if st.ring is not None else None
    d["backend_reason"] = reason
    return d


def _backend(runtime) -> tuple[str, str]:
    choice = getattr(runtime, "choice", None)
    return (choice.name, choice.reason) if choice is not None else ("uring", "")


class DebugViews:
    """The views of ``runtime``; ``server`` is the debug server that serves
    them (its socket, control flag, uptime and counters are in ``summary``)."""

    def __init__(self, runtime, server):
        self.runtime = runtime
        self.server = server

    def loops(self) -> list:
        return [(w.id, w.loop) for w in list(self.runtime.workers)
                if w.loop is not None and not w.loop.is_closed()]

    def summary(self) -> dict:
        from .. import __version__
        srv = self.server
        stats = self.runtime.stats()
        backend, reason = _backend(self.runtime)
        sup = self.runtime.registry.supervisor
        sup_info: dict = {"registered": sup is not None}
        if sup is not None:
            try:
                snap = _retry_snapshot(sup)
                sup_info.update(paused=bool(snap.get("paused")),
                                decisions=len(snap.get("decisions") or ()))
            except Exception as exc:
                sup_info["error"] = f"{type(exc).__name__}: {exc}"
        return {
            "pid": os.getpid(), "version": __version__, "protocol": VERSION,
            "started_at": srv.started_at, "uptime_s": srv.uptime_s,
            # The clock of loop.time() and of the supervisor's decision times,
            # so a client can show how long ago something happened.
            "monotonic": time.monotonic(),
            "socket": str(srv.path), "control": srv.control,
            "workers": len(stats), "connections": sum(s.connections for s in stats),
            "backend": backend, "backend_reason": reason,
            "per_worker": [{"worker": s.worker, "backend": s.backend, "connections": s.connections,
                            "busy_ratio": s.busy_ratio, "lag_ewma_s": s.lag_ewma_s,
                            "lag_max_s": s.lag_max_s,
                            "mean_batch": s.ring.mean_batch() if s.ring is not None else None,
                            "mean_flush_depth": s.ring.mean_flush_depth()
                            if s.ring is not None else None} for s in stats],
            "pools": [e.name for e in self.runtime.registry.pools()],
            "supervisor": sup_info,
            "debug": {"clients": srv.client_count, **srv.counters},
        }

    def workers(self) -> dict:
        return {"hist_bounds": [list(RingStats.bucket_bounds(k)) for k in range(RingStats.HIST_BUCKETS)],
                "workers": [_worker_dict(s, _backend(self.runtime)[1]) for s in self.runtime.stats()]}

    def hot(self, n: int) -> dict:
        out = []
        for wid, loop in self.loops():
            conns = jsonable(loop.hot_connections(n))
            for c in conns:
                c["peer"] = format_peer(c.get("peer"))  # host:port, not a tuple's repr
            out.append({"worker": wid, "connections": conns})
        return {"n": n, "workers": out}

    def pools(self) -> dict:
        out = []
        for e in self.runtime.registry.pools():
            item = {"name": e.name, "worker": e.worker, "closed": bool(getattr(e.pool, "closed", False))}
            try:
                item["stats"] = jsonable(e.pool.stats())
            except Exception as exc:
                item["error"] = f"{type(exc).__name__}: {exc}"
            out.append(item)
        return {"pools": out}

    def _supervisor_snapshot(self) -> dict | None:
        sup = self.runtime.registry.supervisor
        if sup is None:
            return None
        snap = jsonable(_retry_snapshot(sup))
        if not isinstance(snap, dict):
            raise DebugCommandError("failed", f"the supervisor's snapshot() returned "
                                              f"{type(snap).__name__}, not a mapping")
        return snap

    def supervisor(self) -> dict:
        snap = self._supervisor_snapshot()
        return {"registered": False} if snap is None else {"registered": True, **snap}

    def decisions(self, n: int = 20) -> dict:
        snap = self._supervisor_snapshot()
        if snap is None:
            return {"registered": False, "decisions": []}
        return {"registered": True, "paused": bool(snap.get("paused")),
                "decisions": list(snap.get("decisions") or [])[-n:]}

    def metrics(self) -> dict:
        from .metrics import CONTENT_TYPE, render
        return {"content_type": CONTENT_TYPE, "text": render(self.runtime, self.server)}


def _retry_snapshot(sup) -> Any:
    # snapshot() runs on this thread while the supervisor appends decisions on
    # its worker; copying a deque that grows meanwhile raises RuntimeError
    # ("mutated during iteration").  A retry sees a settled copy.
    for attempt in range(3):
        try:
            return sup.snapshot()
        except RuntimeError:
            if attempt == 2:
                raise
