"""What a runtime knows about beyond its workers: named pools and the supervisor.

The debug socket (:mod:`ringleader.runtime.debug`) and the metrics collector
read this registry to show pools and the supervisor next to the rings.  It
holds references only; it never opens, closes or drives what it holds.  Code
running on a worker finds its runtime with :func:`current_runtime` (the
running loop's ``runtime`` attribute) and registers there::

    rt = current_runtime()
    if rt is not None:
        rt.register_pool("pg", pool)

The contracts, duck-typed:

* a pool has ``stats()`` returning a frozen snapshot (a dataclass such as
  :class:`ringleader.drivers.pool.PoolStats`), may have ``closed``, and has
  ``resize(min_size, max_size)`` for the control command, which runs it on
  the worker the pool was registered from;
* the supervisor has ``snapshot()`` returning a mapping with ``"config"`` (its
  settings), ``"targets"`` (what it currently aims at), ``"decisions"`` (the
  recent decisions, oldest first, each a mapping with at least ``t``,
  ``kind``, ``target``, ``reason`` and ``inputs``) and ``"paused"`` (bool);
  ``pause()`` and ``resume()`` serve the control commands.  ``snapshot()`` is
  called from the debug thread and must not touch the rings.

Everything here is thread-safe: workers register, the debug thread reads.
"""
from __future__ import annotations

import asyncio
import dataclasses
import threading
from typing import Any

from .errors import RuntimeLayerError

__all__ = ["Registry", "RegistryError", "PoolEntry", "current_runtime"]


class RegistryError(RuntimeLayerError, ValueError):
    """A name is registered twice, unknown, or the object lacks the contract's methods."""


@dataclasses.dataclass(frozen=True)
class PoolEntry:
    name: str
    pool: Any
    worker: int          # where resize() runs (the pool's own refills use that loop)


def current_runtime():
    """The :class:`Runtime` whose worker runs the current thread's loop, else ``None``."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return None
    return getattr(loop, "runtime", None)


class Registry:
    """Named pools and at most one supervisor (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pools: dict[str, PoolEntry] = {}
        self._supervisor: Any = None

    def add_pool(self, name: str, pool: Any, worker: int) -> None:
        if not isinstance(name, str) or not name:
            raise RegistryError(f"a pool name must be a non-empty string, got {name!r}")
        if not callable(getattr(pool, "stats", None)):
            raise RegistryError(f"pool {name!r} has no stats() method: {pool!r}")
        with self._lock:
            if name in self._pools and self._pools[name].pool is not pool:
                raise RegistryError(f"a different pool is already registered as {name!r}")
            self._pools[name] = PoolEntry(name, pool, worker)

    def remove_pool(self, name: str) -> None:
        with self._lock:
            if self._pools.pop(name, None) is None:
                raise RegistryError(f"no pool registered as {name!r}")

    def pools(self) -> list[PoolEntry]:
        with self._lock:
            return sorted(self._pools.values(), key=lambda e: e.name)

    def pool(self, name: str) -> PoolEntry:
        with self._lock:
            entry = self._pools.get(name)
        if entry is None:
            raise RegistryError(f"no pool registered as {name!r} (registered: "
                                f"{', '.join(sorted(self._pools)) or 'none'})")
        return entry

    def set_supervisor(self, supervisor: Any) -> None:
        if supervisor is not None and not callable(getattr(supervisor, "snapshot", None)):
            raise RegistryError(f"a supervisor needs a snapshot() method: {supervisor!r}")
        with self._lock:
            if supervisor is not None and self._supervisor not in (None, supervisor):
                raise RegistryError("another supervisor is already registered")
            self._supervisor = supervisor

    @property
    def supervisor(self) -> Any:
        return self._supervisor
