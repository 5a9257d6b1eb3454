"""The supervisor's policy: ``decide(observation) -> actions``, with no I/O.

The policy is deterministic given its configuration and the sequence of
observations (it keeps state: smoothed signals, recommendation history,
cooldown clocks, trial bookkeeping), so it is tested by feeding it synthetic
or replayed observations on a virtual clock, and the simulator drives the
very same object.  Every action carries the rule that produced it and the
inputs it read; the actuator applies and logs them.

Three mechanisms, each optional:

* pool caps (:class:`PoolPolicy`): a controller recommends a cap; the policy
  applies the downstream-health guard, HPA-style stabilisation (up on the
  minimum recommendation of ``up_window``, down on the maximum of
  ``down_window``), a deadband, per-direction cooldowns and step limits, then
  clamps to the rails;
* worker count (:class:`WorkerPolicy`): add a worker after a sustained high
  busy ratio confirmed by loop lag, keep it only if throughput rose by
  ``min_gain`` over the trial, otherwise drain it again;
* hot connections (:class:`RebalancePolicy`): when the busiest ring carries more
  than ``imbalance`` x the mean load, move the connection closest to half the
  gap to the quietest ring, within a move budget and a minimum residency.
"""
from __future__ import annotations

import collections
import dataclasses
import math

from .config import PoolAutoscale, Rebalance, SupervisorConfig, WorkerAutoscale
from .controllers import make_controller
from .observe import Ewma, Observation, PoolObs


@dataclasses.dataclass(frozen=True)
class Action:
    kind: str                 # "resize_pool" | "add_worker" | "remove_worker" | "migrate" | "hold"
    target: str               # pool name, worker id, connection id
    reason: str
    inputs: dict
    t: float = 0.0
    old: int | None = None
    new: int | None = None
    src: int | None = None
    dst: int | None = None
    floor: int | None = None  # resize_pool: the pool's min_size too (PoolAutoscale.warm)

    def as_dict(self) -> dict:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


class PoolPolicy:
    """One pool's cap decisions."""

    def __init__(self, name: str, cfg: PoolAutoscale):
        self.name = name
        self.cfg = cfg
        self.controller = make_controller(cfg)
        self.history: collections.deque[tuple[float, int]] = collections.deque()
        self.last_up = -math.inf
        self.last_down = -math.inf
        self.hold_short = Ewma(2.0)
        self.hold_long = Ewma(cfg.long_window, ramp=True)
        self.learned = 0  # periods the baseline learned from
        self.healthy_in_use = Ewma(cfg.long_window)
        self.healthy_load = Ewma(cfg.long_window, ramp=True)  # Little's L while healthy
        self.guard_tripped = False
        self.tripped_since: float | None = None  # start of the current trip
        self.trip_cap: int | None = None         # the cap when it started
        self.untripped_at = -math.inf            # end of the last trip
        self.last_dir = 0
        self.reversals = 0
        self.first_seen: float | None = None  # time of the first observation

    def _guard(self, o: PoolObs, now: float, dt: float,
               client_lag_ms: float = 0.0) -> tuple[bool, int | None, str, dict]:
        """(tripped, cut-to or None, why, inputs).

        Tripped when the downstream looks unhealthy: hold time well above its
        long-window baseline (by ``guard_latency_ratio`` *and* by
        ``guard_floor_ms``), query or connect errors, or acquire timeouts while
        holds are slower than usual (a retry storm).  Timeouts alone, with
        normal hold times, mean the pool is too small, and are left to the
        controller.

        Whose slowness: a hold time includes the client's own loop lag (the
        wake-up after the reply waits its turn on a busy worker), and cutting
        the pool does nothing for a client that is short of CPU.  The hold
        time the guard judges is the measured one less ``client_lag_ms`` (the
        workers' worst loop lag): the real steady run, its service sharing a
        core, tripped and cut to 3 on holds of 7 -> 29 ms with the database
        idle.

        What "healthy" is: the baselines learn only from untripped periods
        with enough releases (``guard_min_samples``), so neither a slow
        database nor a handful of start-up queries can teach the guard what
        normal is.  A trip on latency alone that harms nobody (no errors, no
        timeouts) for ``guard_rebase`` seconds is a new normal, not an
        overload: the baseline takes the current value, so the guard cannot
        hold a pool small forever on a stale baseline (issue 16)."""
        c = self.cfg
        dt = dt or 1.0
        hold_ms = None if o.hold_ms is None else max(0.0, o.hold_ms - client_lag_ms)
        short = self.hold_short.update(hold_ms, dt) if hold_ms is not None else self.hold_short.value
        base = self.hold_long.value
        ratio = (short / base) if short is not None and base else 1.0
        # A baseline from fewer than three periods is no baseline yet.
        slower = (short is not None and base is not None and self.learned >= 3
                  and short - base > c.guard_floor_ms)
        attempts = max(1.0, o.acquire_rate * dt)
        err_rate = o.errors / attempts
        to_rate = o.timeouts / attempts
        why = []
        if ratio > c.guard_latency_ratio and slower:
            why.append(f"hold time {short:.2f} ms is {ratio:.2f}x its baseline {base:.2f} ms")
        if err_rate > c.guard_error_rate:
            why.append(f"{o.errors} query errors ({err_rate:.1%} of acquires)")
        if o.connect_errors:
            why.append(f"{o.connect_errors} connect failures")
        if to_rate > c.guard_error_rate and ratio > 1.0 + (c.guard_latency_ratio - 1.0) / 2 and slower:
            why.append(f"{o.timeouts} acquire timeouts ({to_rate:.1%}) with slower holds: retry storm")
        tripped = bool(why) and c.guard
        harmless = not (o.errors or o.timeouts or o.connect_errors)
        if tripped and harmless and self.tripped_since is not None \
                and now - self.tripped_since >= c.guard_rebase and short is not None:
            why.append(f"rebased: {short:.2f} ms for {now - self.tripped_since:.0f}s with no errors "
                       f"or timeouts is the new normal")
            self.hold_long.value = short
            tripped = False
        if not tripped:
            if hold_ms is not None and attempts >= c.guard_min_samples:
                self.hold_long.update(hold_ms, dt)
                self.learned += 1
            self.healthy_in_use.update(o.in_use, dt)
            if hold_ms is not None and attempts >= c.guard_min_samples:
                self.healthy_load.update(o.acquire_rate * hold_ms / 1e3, dt)
        inputs = {"hold_ratio": round(ratio, 3), "client_lag_ms": round(client_lag_ms, 2),
                  "err_rate": round(err_rate, 4),
                  "timeout_rate": round(to_rate, 4), "connect_errors": o.connect_errors}
        cut_to = None
        # Cut on this period's hold time, not only the smoothed one: the smoothed
        # one lags, and a cut after the overload is over only starves the recovery.
        now_ratio = (hold_ms / base) if hold_ms is not None and base else ratio
        if tripped and ((min(ratio, now_ratio) > 2 * c.guard_latency_ratio and slower)
                        or err_rate > c.guard_error_rate or o.connect_errors):
            # Cut multiplicatively, but never below the concurrency the database
            # served comfortably while healthy (what was in use, and Little's L of
            # the healthy rate and hold time): below that we only lose throughput.
            busy = max(self.healthy_in_use.value or 0.0, self.healthy_load.value or 0.0)
            floor = max(c.min, math.ceil((busy + math.sqrt(busy)) * c.headroom))
            cut_to = max(floor, math.floor(o.cap * c.guard_cut))
            inputs["cut_floor"] = floor
        return tripped, cut_to, "; ".join(why), inputs

    def decide(self, o: PoolObs, now: float, dt: float, client_lag_ms: float = 0.0) -> Action | None:
        """``client_lag_ms``: the workers' worst loop lag this period (see _guard)."""
        c = self.cfg
        if not c.enabled:
            return None
        cap = o.cap
        if self.first_seen is None:
            self.first_seen = now
        tripped, cut_to, why, ginputs = self._guard(o, now, dt, client_lag_ms)
        if tripped and not self.guard_tripped:
            self.tripped_since, self.trip_cap = now, cap
        elif not tripped and self.guard_tripped:
            self.tripped_since, self.untripped_at = None, now
        self.guard_tripped = tripped
        if tripped:
            # Downstream is hurting: never grow.  Cut multiplicatively when it
            # is clearly overloaded, otherwise hold and let callers queue.
            if cut_to is not None and cut_to < cap:
                return self._change(o, now, cut_to, f"guard: {why}; cut x{c.guard_cut}", ginputs)
            return Action("hold", self.name, f"guard: {why}; holding at {cap}", ginputs, t=now,
                          old=cap, new=cap)
        if client_lag_ms > 0 and o.wait_p99_ms is not None:
            # A wait that is the client's loop lag is not a sign of too few
            # connections: more of them would not shorten it.
            o = dataclasses.replace(o, wait_p99_ms=max(0.0, o.wait_p99_ms - client_lag_ms))
        rec = self.controller.recommend(o, now, dt)
        self.history.append((now, rec.cap))
        horizon = max(c.up_window, c.down_window)
        while self.history and self.history[0][0] < now - horizon:
            self.history.popleft()
        ups = [v for t, v in self.history if t >= now - c.up_window]
        downs = [v for t, v in self.history if t >= now - c.down_window]
        want_up = min(ups) if ups else rec.cap
        want_down = max(downs) if downs else rec.cap
        inputs = dict(rec.inputs, recommended=rec.cap)
        if want_up > cap:
            if abs(want_up - cap) <= c.deadband * cap and o.waiting == 0:
                return None
            if now - self.last_up < c.cooldown_up:
                return None
            step = max(1, math.ceil(cap * c.step_up))
            new = min(want_up, cap + step)
            if now - self.untripped_at < c.guard_recover and self.trip_cap is not None:
                # Just out of a trip: the guard's own cut lowered the hold time it
                # reads, so growing past where it tripped would only trip it again.
                if cap >= self.trip_cap:
                    return None
                new = min(new, self.trip_cap)
                inputs["recover_ceiling"] = self.trip_cap
            return self._change(o, now, new, f"{self.controller.name}: {rec.rule}; up-window min {want_up}",
                                inputs)
        if want_down < cap:
            if abs(cap - want_down) <= c.deadband * cap:
                return None
            if now - self.first_seen < c.down_window:
                # A down window of history is needed before "the most it asked
                # for over the window" means anything: at start-up one quiet
                # second shrank the pool right before a burst (issue 16).
                return None
            if now - self.last_down < c.cooldown_down or now - self.last_up < c.cooldown_down:
                return None
            step = max(1, math.floor(cap * c.step_down))
            new = max(want_down, cap - step)
            return self._change(o, now, new,
                                f"{self.controller.name}: {rec.rule}; down-window max {want_down}", inputs)
        return None

    def _change(self, o: PoolObs, now: float, new: int, reason: str, inputs: dict) -> Action | None:
        c = self.cfg
        clamped = max(c.min, min(new, c.max))
        if clamped != new:
            reason += f"; clamped {new} -> {clamped} by rails [{c.min}, {c.max}]"
        if clamped == o.cap:
            return None
        direction = 1 if clamped > o.cap else -1
        if self.last_dir and direction != self.last_dir:
            self.reversals += 1
        self.last_dir = direction
        if direction > 0:
            self.last_up = now
        else:
            self.last_down = now
        return Action("resize_pool", self.name, reason, inputs, t=now, old=o.cap, new=clamped,
                      floor=clamped if c.warm else None)


class WorkerPolicy:
    """Grow the worker set on sustained saturation; keep a new worker only if it pays."""

    def __init__(self, cfg: WorkerAutoscale):
        self.cfg = cfg
        self.hot_since: float | None = None
        self.cold_since: float | None = None
        self.last_change = -math.inf
        self.trial: tuple[int, float, float] | None = None  # (worker id, started, baseline)
        self.thr = Ewma(3.0)

    def decide(self, obs: Observation, now: float) -> Action | None:
        c = self.cfg
        if not c.enabled or not obs.workers:
            return None
        n = len(obs.workers)
        busy = sum(w.busy for w in obs.workers) / n
        lag = max(w.lag_ms for w in obs.workers)
        thr = self.thr.update(sum(w.throughput for w in obs.workers), obs.period or 1.0)
        inputs = {"workers": n, "busy_mean": round(busy, 3), "lag_ms_max": round(lag, 3),
                  "throughput": round(thr, 1)}
        if self.trial is not None:
            wid, started, baseline = self.trial
            if now - started < c.trial:
                return None
            self.trial = None
            gain = (thr - baseline) / baseline if baseline > 0 else 0.0
            inputs.update(baseline=round(baseline, 1), gain=round(gain, 3))
            if gain < c.min_gain:
                self.last_change = now
                return Action("remove_worker", str(wid),
                              f"revert: throughput {thr:.0f}/s vs {baseline:.0f}/s before "
                              f"(+{gain:.0%} < {c.min_gain:.0%})", inputs, t=now, src=wid)
            return None
        hot = busy > c.busy_high and lag > c.lag_ms
        self.hot_since = (self.hot_since if self.hot_since is not None else now) if hot else None
        cold = busy < c.busy_low
        self.cold_since = (self.cold_since if self.cold_since is not None else now) if cold else None
        if now - self.last_change < c.cooldown:
            return None
        if hot and n < c.max and now - self.hot_since >= c.sustain:
            self.last_change = now
            self.trial = (n, now, thr)
            self.hot_since = None
            return Action("add_worker", str(n),
                          f"busy {busy:.0%} > {c.busy_high:.0%} and lag {lag:.1f} ms > {c.lag_ms} ms "
                          f"for {c.sustain:.0f}s", inputs, t=now)
        if c.shrink and cold and n > c.min and now - self.cold_since >= c.sustain * 6:
            self.last_change = now
            self.cold_since = None
            wid = obs.workers[-1].worker
            return Action("remove_worker", str(wid), f"busy {busy:.0%} < {c.busy_low:.0%} for "
                          f"{c.sustain * 6:.0f}s: drain", inputs, t=now, src=wid)
        return None


class RebalancePolicy:
    """Move a hot connection off the busiest ring, without ping-pong."""

    def __init__(self, cfg: Rebalance):
        self.cfg = cfg
        self.load = {}          # worker -> Ewma of bytes/s
        self.conn_load = {}     # conn id -> Ewma
        self.left = {}          # conn id -> workers it was moved away from
        self.last_move: float | None = None  # when the last move was proposed

    def decide(self, obs: Observation, now: float) -> list[Action]:
        c = self.cfg
        if not c.enabled or len(obs.workers) < 2:
            return []
        dt = obs.period or 1.0
        loads = {}
        conns = {}
        for w in obs.workers:
            loads[w.worker] = self.load.setdefault(w.worker, Ewma(2.0)).update(w.load, dt)
            for co in w.conns:
                conns[co.conn_id] = (co, self.conn_load.setdefault(co.conn_id, Ewma(2.0)).update(co.rate, dt))
        self.conn_load = {k: v for k, v in self.conn_load.items() if k in conns}
        if self.last_move is not None and now - self.last_move < c.settle:
            return []  # let the loads settle (and be measured) after a move
        actions = []
        for _ in range(c.moves_per_period):
            mean = sum(loads.values()) / len(loads)
            hot = max(loads, key=loads.get)
            cold = min(loads, key=loads.get)
            if mean < c.min_load or loads[hot] <= c.imbalance * mean:
                break
            gap = loads[hot] - loads[cold]
            best = None
            for co, rate in conns.values():
                if co.worker != hot or rate <= 0 or not co.movable:
                    continue
                if co.moved_at is not None and now - co.moved_at < c.min_residency:
                    continue
                # Never back to a ring it was moved off: the residency alone let
                # the real hot-spot run move one back after 10.2 s (issue 16).
                if cold in self.left.get(co.conn_id, ()):
                    continue
                # Moving it must leave the target below the old maximum, or we'd
                # just relocate the hot spot (the ping-pong case).
                if loads[cold] + rate >= loads[hot]:
                    continue
                # A move that closes under a tenth of the gap costs a migration
                # and buys nothing: without this, when every heavy connection is
                # too big to move, the rig saw a tiny one moved every period.
                if rate < 0.1 * gap:
                    continue
                score = abs(rate - gap / 2)
                if best is None or score < best[0]:
                    best = (score, co, rate)
            if best is None:
                break
            _, co, rate = best
            self.left.setdefault(co.conn_id, set()).add(hot)
            actions.append(Action(
                "migrate", str(co.conn_id),
                f"worker {hot} load {loads[hot]:.0f} B/s > {c.imbalance} x mean {mean:.0f}; "
                f"moving conn {co.conn_id} ({rate:.0f} B/s, closest to half the gap {gap / 2:.0f}) "
                f"to worker {cold}",
                {"loads": {k: round(v) for k, v in loads.items()}, "conn_rate": round(rate)},
                t=now, src=hot, dst=cold))
            loads[hot] -= rate
            loads[cold] += rate
            conns.pop(co.conn_id)
        if actions:
            self.last_move = now
        return actions


class Policy:
    """All mechanisms together; ``decide`` is the only entry point."""

    def __init__(self, config: SupervisorConfig):
        self.config = config
        self.pools = {name: PoolPolicy(name, cfg) for name, cfg in config.pools.items()}
        self.workers = WorkerPolicy(config.workers)
        self.rebalance = RebalancePolicy(config.rebalance)

    def add_pool(self, name: str, cfg: PoolAutoscale) -> None:
        if name not in self.pools:
            self.pools[name] = PoolPolicy(name, cfg)

    def decide(self, obs: Observation) -> list[Action]:
        actions: list[Action] = []
        lag = max((w.lag_ms for w in obs.workers), default=0.0)
        for p in obs.pools:
            pol = self.pools.get(p.name)
            if pol is not None:
                a = pol.decide(p, obs.t, obs.period, lag)
                if a is not None:
                    actions.append(a)
        w = self.workers.decide(obs, obs.t)
        if w is not None:
            actions.append(w)
        actions.extend(self.rebalance.decide(obs, obs.t))
        return actions

    def targets(self) -> dict:
        """What the policy currently aims at (for the debug socket)."""
        return {
            "pools": {n: {"guard_tripped": p.guard_tripped, "reversals": p.reversals,
                          "last_recommendation": p.history[-1][1] if p.history else None}
                      for n, p in self.pools.items()},
            "worker_trial": self.workers.trial,
        }
