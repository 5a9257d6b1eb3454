"""What the Postgres and Redis pools both put in front of the generic pool.

What it does: :func:`pool_options` splits a driver pool's keywords into the
generic pool's (:class:`ringleader.drivers.pool.Pool`, read from its
signature, so a new generic option reaches both drivers without a list to
update) and the connection's, and applies the rules both drivers share:
connections are bound to the worker (ring) that made them, so ``affinity``
is always ``"strict"``; each driver resets a returned connection with its own
``Connection.reset``, so ``reset=`` is refused rather than silently replaced;
``connect_timeout`` bounds one open in both the pool and the connection.
:func:`finish_shared` is the end of one multiplexed command
(:mod:`ringleader.drivers.mux`), written once for both drivers.

What it does not do: choose the shared connection, route commands or run
them (each driver's pool does, with its own errors and retries).
"""
from __future__ import annotations

import inspect
from typing import Any

from .errors import InterfaceError
from .mux import Mux
from .pool import Pool

__all__ = ["POOL_KEYS", "pool_options", "finish_shared"]

#: Keywords of the generic pool a driver pool passes through.
POOL_KEYS = frozenset(inspect.signature(Pool.__init__).parameters) - {"self", "connect"}

# Both a pool option and a connection option, with one meaning: how long one
# open may take.
_BOTH = frozenset({"connect_timeout"})


def pool_options(kwargs: dict[str, Any], *, driver: str,
                 error: type[Exception] = InterfaceError, **defaults: Any) -> dict[str, Any]:
    """Removes the generic pool's keywords from ``kwargs`` (what is left is
    the connection's) and returns them with ``defaults`` filled in and the
    drivers' shared rules applied; ``driver`` names the pool in messages and
    a broken rule raises ``error`` (the driver's InterfaceError)."""
    pool_kw = {k: (kwargs[k] if k in _BOTH else kwargs.pop(k))
               for k in list(kwargs) if k in POOL_KEYS}
    if "reset" in pool_kw:
        raise error(f"the {driver} pool resets returned connections itself "
                             f"(Connection.reset); reset= is not accepted")
    affinity = pool_kw.setdefault("affinity", "strict")
    if affinity != "strict":
        raise error(f"the {driver} pool's connections are bound to the worker that made "
                             f"them: affinity must be 'strict', got {affinity!r}")
    for k, v in defaults.items():
        pool_kw.setdefault(k, v)
    return pool_kw


def finish_shared(pool: Pool, mux: Mux, conn: Any, elapsed: float, ok: bool,
                  keep: bool = True) -> None:
    """Ends one command on a shared connection: counts it in the pool's stats
    and hands the connection back to the multiplexer — out of the rotation if
    not ``keep`` (it carries session state), through ``mux.after`` after a
    failure, else through ``mux.ended`` (the hot path, which itself hands the
    connection back while the multiplexer is closing or draining)."""
    pool.count_request(elapsed)
    if not keep:
        mux.drop(conn)
    elif ok:
        mux.ended(conn)
    else:
        mux.after(conn)
