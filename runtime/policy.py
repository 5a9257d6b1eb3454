"""asyncio's event-loop policy for ringleader's loops.

What it does: ``asyncio.set_event_loop_policy(RingEventLoopPolicy())`` makes
``asyncio.run`` (and frameworks that take a policy) create ringleader loops,
following the same backend choice as ``ringleader.run`` (see
:mod:`.backend`).  What it does not do: run workers or a runtime; that is
:func:`ringleader.run`.
"""
from __future__ import annotations

from .asyncio_compat import DefaultPolicyBase

__all__ = ["RingEventLoopPolicy"]


class RingEventLoopPolicy(DefaultPolicyBase):
    """``asyncio.set_event_loop_policy(RingEventLoopPolicy())`` makes asyncio.run use rings.

    ``backend`` is chosen as for ``ringleader.run``: ``"auto"`` (the default)
    makes epoll loops where io_uring is denied (a default container), so a
    service that sets this policy still starts there; ``"uring"`` keeps the
    refusal (RingUnavailableError), ``"epoll"`` always falls back.

    asyncio's Unix policy underneath: its child watcher is there for code that
    asks for one, but ring loops do not use it (they watch children through
    pidfds on the ring, see :mod:`ringleader.runtime.subprocess`)."""

    def __init__(self, backend: str = "auto"):
        from .backend import parse
        super().__init__()
        self._backend = parse(backend)   # a typo fails here, not at the first loop

    def _loop_factory(self):
        from .backend import new_event_loop as make   # backend imports this module
        return make(backend=self._backend)
