"""Pool-size controllers behind one interface, so the rig can compare them.

Each controller turns one pool's observation (and its own state) into a
*recommended cap* with the rule that produced it.  They do not clamp, rate
limit, stabilise or apply the downstream-health guard: :mod:`.policy` does
that identically for all of them, so differences the rig measures come from
the control law alone.

* ``littles``: demand from Little's law, L = acquire rate x hold time
  (x ``headroom``), staffed by Erlang C per worker of a strict pool (the
  exact square-root staffing: spare servers that grow like sqrt(L)); bumped
  by one step when the acquire-wait SLO is still missed (the real hold time
  includes client overhead).
* ``threshold``: grow by a step when waiters or a missed SLO persist for two
  periods, shrink by a step when more than half the connections idled for the
  whole down window: hysteresis with a cooldown.
* ``ewma``: short and long EWMAs of concurrent demand (in use + waiting); a
  rising trend (short > 1.1 x long) sizes for the short one, otherwise for the
  long one.
* ``pid``: a PID loop on the normalised acquire-wait error, with an integral
  clamp against windup at the rails.  Kept for comparison; the research notes
  why it is a poor fit (the error is zero until saturation).
"""
from __future__ import annotations

import dataclasses
import math

from .config import PoolAutoscale
from .observe import Ewma, PoolObs
from .queueing import erlang_c_servers


@dataclasses.dataclass(frozen=True)
class Recommendation:
    cap: int
    rule: str
    inputs: dict


class Controller:
    name = "base"

    def __init__(self, cfg: PoolAutoscale):
        self.cfg = cfg

    def recommend(self, obs: PoolObs, now: float, dt: float) -> Recommendation:
        raise NotImplementedError

    def _slo_missed(self, obs: PoolObs) -> bool:
        """The wait p99 is over the SLO, and someone queued this period: the
        pool's percentile window (10 s by default) outlasts a queue, and a
        bump per period on a stale p99 took a real Redis pool from 10 to 40
        connections at 0.02 connections of demand after one 250-ms stall of
        the client (issue 16, diurnal run)."""
        return (obs.wait_p99_ms is not None and obs.wait_p99_ms > self.cfg.target_wait_ms
                and (obs.queued is None or obs.queued > 0))


class LittlesLaw(Controller):
    name = "littles"

    def recommend(self, obs, now, dt):
        hold_s = (obs.hold_ms or 0.0) / 1e3
        # The attempts less those that timed out: a retry storm multiplies the
        # attempts by up to 1 + retries, and sizing for them grew a real pool
        # 16 -> 25 into a database still overloaded (issue 16, overload
        # repetition 2: L = 1519/s x 46 ms).  Not the served rate: at a rising
        # edge the queue grows, and the served rate is only what the cap allows.
        arrivals = max(0.0, obs.acquire_rate - obs.timeouts / (dt or 1.0))
        demand = arrivals * hold_s
        workers = max(1, obs.workers)
        if demand > 0:
            # Erlang C per worker (a strict pool is one queue per worker, each
            # served only by its own connections, and the arrivals split among
            # them): the fewest connections for which an acquire waits past the
            # SLO with probability <= wait_tail and past queue_grace_ms with
            # probability <= queue_tail (the exact form of square-root staffing, L + beta
            # sqrt L), for the rate times the headroom (the estimate's own
            # error: on the load, not on the count, which for a worker needing
            # 2 would be a third connection).  Why the second bound: a queued
            # caller is woken by its loop, and on a loaded machine a late
            # wake-up alone exceeds the SLO; it applies while a period holds
            # fewer than 100 acquires, whose p99 (nearest rank) is their
            # maximum: one late wake-up misses the window (the real rig's
            # ~90 acquires/s).  Busier pools may lose 1% to the tail.
            rate = arrivals * self.cfg.headroom / workers
            per = erlang_c_servers(rate, hold_s, self.cfg.target_wait_ms / 1e3, self.cfg.wait_tail)
            if obs.acquire_rate * (dt or 1.0) < 100:
                per = max(per, erlang_c_servers(rate, hold_s, self.cfg.queue_grace_ms / 1e3,
                                                self.cfg.queue_tail))
            target = per * workers
        else:
            target = 0
        rule = f"L = {arrivals:.0f}/s x {hold_s * 1e3:.2f} ms = {demand:.2f}; " \
               f"Erlang C at x{self.cfg.headroom}: " + \
               (f"{workers} workers x {target // workers} = {target}" if workers > 1 else f"{target}")
        # Waits are evidence of too few connections only once the pool is at its
        # cap: below it they are connects under way (the real start-up bumped 5 ->
        # 7 on the first second's connect waits and held it for the whole run).
        full = obs.size >= obs.cap
        if self._slo_missed(obs) and target <= obs.cap and full:
            target = obs.cap + max(1, math.ceil(obs.cap * 0.25))
            rule += f"; wait p99 {obs.wait_p99_ms:.1f} ms > SLO: bump to {target}"
        elif obs.waiting > 0 and target <= obs.cap and full:
            target = obs.cap + 1
            rule += f"; {obs.waiting} waiting: +1"
        return Recommendation(max(1, target), rule,
                              {"acquire_rate": obs.acquire_rate, "hold_ms": obs.hold_ms,
                               "wait_p99_ms": obs.wait_p99_ms, "waiting": obs.waiting})


class Threshold(Controller):
    name = "threshold"

    def __init__(self, cfg):
        super().__init__(cfg)
        self._hot = 0
        self._idle_since: float | None = None

    def recommend(self, obs, now, dt):
        pressure = obs.waiting > 0 or self._slo_missed(obs)
        self._hot = self._hot + 1 if pressure else 0
        idle_frac = obs.available / obs.size if obs.size else 1.0
        if idle_frac > 0.5 and not pressure:
            if self._idle_since is None:
                self._idle_since = now
        else:
            self._idle_since = None
        inputs = {"waiting": obs.waiting, "wait_p99_ms": obs.wait_p99_ms, "idle_frac": idle_frac}
        if self._hot >= 2:
            return Recommendation(obs.cap + max(1, math.ceil(obs.cap * 0.25)),
                                  f"pressure for {self._hot} periods", inputs)
        if self._idle_since is not None and now - self._idle_since >= self.cfg.down_window:
            self._idle_since = now
            return Recommendation(obs.cap - 1, f"{idle_frac:.0%} idle for {self.cfg.down_window:.0f}s",
                                  inputs)
        return Recommendation(obs.cap, "inside the band", inputs)


class EwmaTrend(Controller):
    name = "ewma"

    def __init__(self, cfg):
        super().__init__(cfg)
        self._short = Ewma(max(cfg.up_window, 2.0))
        self._long = Ewma(cfg.long_window)

    def recommend(self, obs, now, dt):
        demand = obs.in_use + obs.waiting
        s = self._short.update(demand, dt or 1.0)
        lng = self._long.update(demand, dt or 1.0)
        rising = s > 1.1 * lng
        base = s if rising else max(s, lng * 0.9)
        target = math.ceil((base + math.sqrt(base)) * self.cfg.headroom)
        return Recommendation(max(1, target),
                              f"demand short {s:.1f} long {lng:.1f} ({'rising' if rising else 'flat/falling'})",
                              {"demand": demand, "short": s, "long": lng})


class PID(Controller):
    name = "pid"

    def __init__(self, cfg, kp: float = 2.0, ki: float = 0.5, kd: float = 0.5):
        super().__init__(cfg)
        self.kp, self.ki, self.kd = kp, ki, kd
        self._i = 0.0
        self._prev: float | None = None

    def recommend(self, obs, now, dt):
        wait = obs.wait_p99_ms or 0.0
        err = (wait - self.cfg.target_wait_ms) / self.cfg.target_wait_ms
        if obs.waiting == 0 and wait == 0.0:
            # no queue at all: drift down slowly, like a leak toward the floor
            err = -0.25
        err = max(-1.0, min(err, 4.0))
        dt = dt or 1.0
        # clamp the integral so it cannot wind up while pinned at a rail
        self._i = max(-4.0, min(self._i + err * dt, 4.0))
        d = 0.0 if self._prev is None else (err - self._prev) / dt
        self._prev = err
        out = self.kp * err + self.ki * self._i + self.kd * d
        target = obs.cap + round(out)
        return Recommendation(max(1, target), f"pid e={err:+.2f} i={self._i:+.2f} d={d:+.2f} out={out:+.2f}",
                              {"wait_p99_ms": obs.wait_p99_ms, "error": err})


def make_controller(cfg: PoolAutoscale) -> Controller:
    return {"littles": LittlesLaw, "threshold": Threshold, "ewma": EwmaTrend, "pid": PID}[cfg.controller](cfg)
