"""The running supervisor: sampler -> policy -> actuator, on the runtime's clock.

:class:`Supervisor` runs as a task on worker 0.  Each period it reads frozen
snapshots (every worker's ``LoopStats`` and connections, every registered
pool's ``PoolStats``), asks the :class:`~.policy.Policy` what to do, and hands
the actions to the :class:`Actuator`, which applies them and records every
decision: a stdlib log record with structured fields, a counter per kind, and
the recent ones for the debug socket (:meth:`Supervisor.snapshot`).

Safety: the policy only proposes values inside the rails; an exception
anywhere in a tick is logged and the supervisor backs off (doubling its
period up to ``max_backoff``) instead of propagating; ``stop()`` ends it
cleanly before the runtime shuts down.  With every mechanism disabled it reads
telemetry and never acts.
"""
from __future__ import annotations

import asyncio
import collections
import dataclasses
import logging
import time
from typing import Callable

from .config import ConfigError, SupervisorConfig
from .observe import Observation, Sampler
from .policy import Action, Policy

log = logging.getLogger("ringleader.supervisor")

# Seconds one migrate action may take (an idle connection moves in well under a
# millisecond; this only keeps a wedged move from stalling the ticks).
MIGRATE_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True)
class Decision:
    """An action and what became of it."""

    action: Action
    applied: bool
    error: str | None = None

    def as_dict(self) -> dict:
        d = self.action.as_dict()
        d["applied"] = self.applied
        if self.error:
            d["error"] = self.error
        return d


class Actuator:
    """Applies actions to a runtime and its pools; records every decision."""

    def __init__(self, runtime, pools: dict, recent: int = 256):
        self.runtime = runtime
        self.pools = pools
        self.recent: collections.deque[Decision] = collections.deque(maxlen=recent)
        self.counts: collections.Counter = collections.Counter()
        self.moved_at: dict[int, float] = {}
        self._last_kind: dict[str, str] = {}

    async def apply(self, actions: list[Action]) -> list[Decision]:
        out = []
        for a in actions:
            err = None
            applied = False
            try:
                if a.kind == "resize_pool":
                    pool = self.pools[a.target]
                    # warm: the floor follows the cap, so a grow opens its
                    # connections now, not when a caller needs one
                    pool.resize(a.floor if a.floor is not None else min(pool.min_size, a.new), a.new)
                    applied = True
                elif a.kind == "add_worker":
                    loop = asyncio.get_running_loop()
                    await loop.run_in_executor(None, self.runtime.add_worker)
                    applied = True
                elif a.kind == "remove_worker":
                    await self.runtime.remove_last_worker()
                    applied = True
                elif a.kind == "migrate":
                    applied = await self._migrate(a)
                elif a.kind == "hold":
                    applied = True
                else:
                    err = f"unknown action kind {a.kind!r}"
            except Exception as exc:  # one failed action must not stop the others
                err = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            d = Decision(a, applied, err)
            self.record(d)
            out.append(d)
        return out

    async def _migrate(self, a: Action) -> bool:
        """One move, bounded in time: a refusal (the connection got busy since
        it was observed) or any failure is an error on the decision, and the
        supervisor carries on.  A move cut off by the bound finishes or backs
        out on its own (see ringleader.runtime.migration)."""
        conn_id = int(a.target)
        loop = self.runtime.loop(a.src)
        t = loop.connection(conn_id)
        if t is None or t.is_closing():
            return False
        self.moved_at[conn_id] = a.t  # also after a failure: residency spaces retries
        async with asyncio.timeout(MIGRATE_TIMEOUT):
            await self.runtime.run_on(a.src, self.runtime.migrate(t, a.dst))
        return True

    def record(self, d: Decision) -> None:
        a = d.action
        # A hold repeats every period while the guard is tripped: keep the first
        # of a run in the recent list (the counter still counts them all).
        if a.kind != "hold" or self._last_kind.get(a.target) != "hold":
            self.recent.append(d)
        self._last_kind[a.target] = a.kind
        self.counts[a.kind] += 1
        level = logging.WARNING if d.error else logging.INFO
        log.log(level, "supervisor %s %s: %s%s", a.kind, a.target, a.reason,
                f" (failed: {d.error})" if d.error else "",
                extra={"decision": a.kind, "target": a.target, "old": a.old, "new": a.new,
                       "src": a.src, "dst": a.dst, "inputs": a.inputs, "applied": d.applied})


class Supervisor:
    """Sample, decide, act, every ``config.period`` seconds of the runtime's clock."""

    def __init__(self, runtime, config: SupervisorConfig, pools: dict | None = None,
                 clock: Callable[[], float] | None = None):
        self.runtime = runtime
        self.config = config
        self.pools: dict = {}
        self.policy = Policy(dataclasses.replace(config, pools={}))
        self.skipped: dict[str, str] = {}     # pools we could not adopt, and why
        for name, pool in (pools or {}).items():
            self.adopt(name, pool)
        self.sampler = Sampler()
        self.actuator = Actuator(runtime, self.pools, config.recent)
        self._clock = clock
        self._task: asyncio.Task | None = None
        self.paused = False
        self.ticks = 0
        self.errors = 0
        self.last_obs: Observation | None = None
        self._delay = config.period

    def now(self) -> float:
        if self._clock is not None:
            return self._clock()
        return asyncio.get_running_loop().time()

    def adopt(self, name: str, pool) -> None:
        """Put ``pool`` under control: its ``PoolAutoscale`` comes from the config
        (by name) or from the pool's own ``autoscale`` attribute; none means the
        pool is only observed.  Its current ``max_size`` is the initial cap and
        must lie inside the rails; :class:`ConfigError` otherwise."""
        cfg = self.config.pools.get(name) or getattr(pool, "autoscale", None)
        if cfg is not None and not all(hasattr(cfg, a) for a in ("min", "max", "enabled")):
            raise ConfigError(f"pool {name!r}: autoscale must be a PoolAutoscale, got {cfg!r}")
        if cfg is not None and cfg.enabled and not cfg.min <= pool.max_size <= cfg.max:
            raise ConfigError(f"pool {name!r}: its max_size {pool.max_size} (the initial cap) is "
                             f"outside the rails [{cfg.min}, {cfg.max}]")
        self.pools[name] = pool
        if cfg is not None:
            self.policy.add_pool(name, cfg)
            self._set_burst(name)
            if cfg.enabled and cfg.warm and hasattr(pool, "resize") and pool.min_size < pool.max_size:
                pool.resize(pool.max_size, pool.max_size)  # warm from the start (see PoolAutoscale.warm)

    def _set_burst(self, name: str) -> None:
        """Hands the pool its burst allowance: the configured one, bounded so cap
        plus burst stays inside the rails, and none while the guard holds (a
        sick database gets no extra connections, and a cut is not undone by
        opens above the new cap)."""
        pol, pool = self.policy.pools.get(name), self.pools.get(name)
        if pol is None or pool is None or not hasattr(pool, "set_burst"):
            return
        want = pol.cfg.burst_for(pool.max_size, pol.guard_tripped)
        if want != pool.burst:
            pool.set_burst(want)

    def _refresh_pools(self) -> None:
        registry = getattr(self.runtime, "registry", None)
        if registry is None:
            return
        for entry in registry.pools():
            if entry.name in self.pools or entry.name in self.skipped:
                continue
            try:
                self.adopt(entry.name, entry.pool)
            except ConfigError as exc:
                self.skipped[entry.name] = str(exc)
                log.error("supervisor: not controlling pool %r: %s", entry.name, exc)

    # -------------------------------------------------------------- one tick
    def observe(self) -> Observation:
        loops = []
        conns = []
        for w in list(self.runtime.workers):
            loop = w.loop
            if loop is None or loop.is_closed() or w.draining:
                continue
            loops.append(loop.stats())
            conns.extend(t.conn_stats() for t in loop.connections())
        pools = {name: p.stats() for name, p in self.pools.items()}
        return self.sampler.observe(self.now(), loops, conns, pools, self.actuator.moved_at)

    async def tick(self) -> list[Decision]:
        self._refresh_pools()
        obs = self.observe()
        self.last_obs = obs
        self.ticks += 1
        if self.paused or obs.period <= 0:
            return []
        actions = self.policy.decide(obs)
        done = await self.actuator.apply(actions)
        for name in self.policy.pools:
            self._set_burst(name)
        return done

    # --------------------------------------------------------------- running
    def start(self) -> "Supervisor":
        """Start on the current worker's loop (call from inside a worker)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run(), name="ringleader-supervisor")
            reg = getattr(self.runtime, "register_supervisor", None)
            if reg is not None:
                reg(self)
        return self

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
                self._delay = self.config.period
            except asyncio.CancelledError:
                raise
            except Exception:
                self.errors += 1
                self._delay = min(self._delay * 2, self.config.max_backoff)
                log.exception("supervisor tick failed; backing off to %.1fs", self._delay)
            await asyncio.sleep(self._delay)

    async def stop(self) -> None:
        t, self._task = self._task, None
        if t is not None:
            t.cancel()
            try:
                await t
            except asyncio.CancelledError:
                pass

    def pause(self) -> None:
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def snapshot(self) -> dict:
        """Configuration, current targets and recent decisions (for the debug socket)."""
        obs = self.last_obs
        return {
            "time": time.time(),
            "paused": self.paused,
            "ticks": self.ticks,
            "errors": self.errors,
            "config": dict(self.config.as_dict(),
                           pools={n: dataclasses.asdict(p.cfg) for n, p in self.policy.pools.items()}),
            "skipped_pools": dict(self.skipped),
            "targets": self.policy.targets(),
            "counts": dict(self.actuator.counts),
            "decisions": [d.as_dict() for d in list(self.actuator.recent)],
            "observation": dataclasses.asdict(obs) if obs is not None else None,
        }
