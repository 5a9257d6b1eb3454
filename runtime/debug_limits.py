"""What keeps the debug socket cheap for the service whatever its clients do.

:class:`SnapshotCache` computes each read-only view (``summary``, ``workers``,
``hot``, ...) at most once per ``interval`` seconds, however many clients ask,
and keeps it encoded: a request or a watch push then costs a copy of bytes,
not a walk over the runtime's workers, connections and pools.  Views that
take a size (``hot`` n, ``decisions`` n) are computed at a few fixed sizes
(powers of two) and cut down, so a client cycling through sizes cannot force
a fresh computation per request either.

:class:`TokenBucket` is the rate limit: the server takes one token per request
from the client's bucket and one from a bucket all clients share; a client out
of tokens is not read from until it has one again (it is slowed down, never
refused, and nothing it sent is lost).

Not here: sockets, the protocol, or any view's content (the server,
:mod:`ringleader.runtime.debug`, computes them through the callable it gives).
"""
from __future__ import annotations

import math
from typing import Any, Callable

from .debug_protocol import encode_value

__all__ = ["SnapshotCache", "TokenBucket"]


class TokenBucket:
    """``rate`` tokens per second, at most ``burst`` saved up; times are the caller's."""

    __slots__ = ("rate", "burst", "tokens", "stamp")

    def __init__(self, rate: float, burst: float, now: float):
        self.rate = rate
        self.burst = burst
        self.tokens = burst
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def ready(self, now: float) -> bool:
        self._refill(now)
        return self.tokens >= 1.0

    def take(self) -> None:
        self.tokens -= 1.0

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0 if one is)."""
        self._refill(now)
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


def _size_bucket(n: int) -> int:
    """The size a sized view is computed at: the next power of two >= max(n, 16)."""
    b = 16
    while b < n:
        b *= 2
    return b


def _cut_hot(result: dict, n: int) -> dict:
    return {**result, "n": n, "workers": [{**w, "connections": w["connections"][:n]}
                                          for w in result["workers"]]}


def _cut_decisions(result: dict, n: int) -> dict:
    return {**result, "decisions": result["decisions"][-n:]}


# view -> how to cut a result computed at a larger n down to n
_SIZED: dict[str, Callable[[dict, int], dict]] = {"hot": _cut_hot, "decisions": _cut_decisions}


class SnapshotCache:
    """Each view at most once per ``interval``; results are served as encoded JSON.

    ``compute(cmd, args)`` returns a view's JSON-ready result (or raises; errors
    are not cached).  ``counters`` say how often a view was computed and how
    often a copy was served instead.
    """

    def __init__(self, compute: Callable[[str, dict], Any], interval: float):
        self.compute = compute
        self.interval = interval
        # (cmd, size) -> (taken, result, {exact n: encoded})
        self._entries: dict[tuple, tuple[float, Any, dict]] = {}
        self.counters = {"computed": 0, "served_copies": 0}

    def get(self, cmd: str, args: dict, now: float, newer_than: float = -math.inf) -> bytes:
        """The encoded result of ``cmd(**args)`` taken less than ``interval`` ago
        (and after ``newer_than``: a watch asks for a newer one than it pushed)."""
        n = args.get("n") if cmd in _SIZED else None
        key = (cmd, None if n is None else _size_bucket(n))
        entry = self._entries.get(key)
        if entry is None or now - entry[0] >= self.interval or entry[0] <= newer_than:
            full_args = dict(args)
            if n is not None:
                full_args["n"] = key[1]
            result = self.compute(cmd, full_args)
            self.counters["computed"] += 1
            entry = self._entries[key] = (now, result, {})
        else:
            self.counters["served_copies"] += 1
        encoded = entry[2].get(n)
        if encoded is None:
            result = entry[1]
            if n is not None and isinstance(result, dict) and "error" not in result:
                result = _SIZED[cmd](result, n)
            encoded = entry[2][n] = encode_value(result)
        return encoded
