"""The pool sizing policies the simulator (:mod:`.sim`) races: a static size,
psycopg_pool's grow-on-wait as the rig applies it, and the supervisor's own
:class:`~.policy.Policy` (the *same* one the live supervisor runs).

Each decides a cap, per step (``on_step``) or per period (``on_period``), and
says how the pool opens (lazily or warm) and its burst allowance.  What it
does not do: queue, serve or open anything (that is :func:`.sim.simulate`).
"""
from __future__ import annotations

import math

from .config import PoolAutoscale, SupervisorConfig
from .observe import Observation, PoolObs, WorkerObs
from .policy import Policy


class Contender:
    """How a pool's cap evolves.  ``lazy``: connections open only on demand."""

    name = "contender"
    lazy = True
    warm = False  # opens up to the cap at once, spread over the workers (PoolAutoscale.warm)
    min_size = 1  # a lazy pool's connections opened before the load (its min_size)
    # the pool's burst_after / burst_linger / burst_recur (drivers/poolopen.py)
    burst_after = 0.0
    burst_linger = 1.0
    burst_recur = 60.0

    def initial_cap(self) -> int:
        raise NotImplementedError

    def on_period(self, obs: PoolObs, t: float, lag_ms: float = 0.0) -> tuple[int, list]:
        return obs.cap, []

    def on_step(self, t: float, cap: int, waiting: int, idle: int, size: int) -> int:
        return cap

    def burst(self, cap: int) -> int:
        """Connections the pool may open above ``cap`` for waiters now."""
        return 0


class Static(Contender):
    lazy = False

    def __init__(self, n: int):
        self.n = n
        self.name = f"static-{n}"

    def initial_cap(self):
        return self.n


class GrowOnWait(Contender):
    """psycopg_pool's rule: grow one at a time while clients wait; shrink one
    connection per ``max_idle`` if the idle low-watermark never reached zero.

    It looks every ``poll`` seconds, as the rig's real one does
    (``riglib.service.grow_on_wait``: every 10 ms), not every step.  Issue 16,
    sixth pass: looking every 1-ms step it saw nearly every caller queued for a
    connection being moved to it (a move waits two loop wake-ups) as a wait at
    the cap and raised the cap with no open to follow, so the twin's cap ran
    one or two above its size (diurnal: cap 4-5, size 3-4) where the real
    pool's size equalled its cap in every window of the fifth- and sixth-pass
    runs, and its idle low-watermark, taken every step, reached zero at once.
    (A move still lasts a whole step in the model, so a look now and then
    still sees one: the cap runs one above the size in some twin runs.)"""

    def __init__(self, lo: int = 2, hi: int = 32, max_idle: float = 10.0, poll: float = 0.01):
        self.lo, self.hi, self.max_idle, self.poll = lo, hi, max_idle, poll
        # the rig's psycopg-like pool opens min_size = lo at once (its "refill 2")
        self.min_size = lo
        self.name = f"grow-on-wait-{lo}..{hi}"
        self._cap = lo
        self._low_idle = math.inf
        self._since = 0.0
        self._next_look = 0.0

    def initial_cap(self):
        return self.lo

    def on_step(self, t, cap, waiting, idle, size):
        if t + 1e-9 < self._next_look:
            return self._cap
        self._next_look = t + self.poll
        if waiting and self._cap < self.hi and size >= self._cap:
            self._cap += 1
        self._low_idle = min(self._low_idle, idle)
        if t - self._since >= self.max_idle:
            if self._low_idle > 0 and self._cap > self.lo:
                self._cap -= 1
            self._low_idle = math.inf
            self._since = t
        return self._cap


class Supervised(Contender):
    def __init__(self, controller: str = "littles", lo: int = 2, hi: int = 64, start: int = 4,
                 guard: bool = True, slo_ms: float = 10.0, burst: int = PoolAutoscale.burst,
                 down_window: float | None = None):
        self.cfg = PoolAutoscale(min=lo, max=hi, controller=controller, guard=guard, target_wait_ms=slo_ms,
                                 burst=burst, down_window=PoolAutoscale.down_window if down_window is None
                                 else down_window)
        self.warm = self.cfg.warm
        self.policy = Policy(SupervisorConfig(pools={"db": self.cfg}))
        self.start = start
        self.name = f"supervisor-{controller}" + ("" if guard else "-noguard")

    def initial_cap(self):
        return self.start

    def burst(self, cap):
        # as the live supervisor hands it to the pool (Supervisor._set_burst)
        return self.cfg.burst_for(cap, self.policy.pools["db"].guard_tripped)

    def on_period(self, obs, t, lag_ms=0.0):
        # the client's loop lag reaches the policy as the live sampler's does
        workers = (WorkerObs(worker=0, busy=0.0, lag_ms=lag_ms, batch=1.0, flush_depth=1.0,
                             throughput=0.0, load=0.0),) if lag_ms > 0 else ()
        acts = self.policy.decide(Observation(t=t, period=1.0, pools=(obs,), workers=workers))
        cap = obs.cap
        for a in acts:
            if a.kind == "resize_pool":
                cap = a.new
        return cap, acts
