"""User-facing knobs of the supervisor, validated at construction.

Semantics (answering the seed spike's draft surface):

* ``PoolAutoscale.min``/``max`` are hard rails: no decision ever sets a pool's
  cap outside them.  The pool's own ``max_size`` at start is the initial cap
  (it must lie inside the rails, or construction fails); the pool's
  ``min_size`` (warm connections) is kept at ``min(min_size, cap)``.
* ``enabled=False`` means the supervisor never touches that pool: today's
  static behaviour exactly.
* ``burst`` is the pool's burst allowance: connections it may open above the
  cap for waiting callers at once (bounded by the rails' max, withdrawn while
  the downstream-health guard holds), so the cap follows the steady state and
  the pool absorbs the edge of a step;
* the guard trips on hold time only when it rose both ``guard_latency_ratio``
  times over its baseline and by ``guard_floor_ms`` (sub-millisecond noise
  on a fast store is not a sick database); the baseline learns only from
  untripped periods with ``guard_min_samples`` releases; a trip on latency
  alone that harms nobody (no errors, no timeouts) for ``guard_rebase``
  seconds is taken as the new normal; for ``guard_recover`` seconds after a
  trip the cap grows no higher than where it tripped.
* ``target_wait_ms`` is the SLO on acquire-wait p99 that growth defends;
  ``headroom`` multiplies the Little's-law demand.  ``littles`` staffs each
  worker of a strict (per-worker) pool for its own share of the arrivals,
  so that an acquire waits past the SLO with probability ``wait_tail`` and
  longer than ``queue_grace_ms`` with probability ``queue_tail`` while a
  period holds fewer than 100 acquires (their p99 is their maximum, and a
  queued caller's wake-up is at the mercy of the loop: a stalled loop turns
  a 1-ms wait into a missed SLO).  The grace: a wait shorter than a couple
  of milliseconds is one hold time of a fast query, which a stall would
  have cost the caller anyway; bounding *any* wait held a third Postgres
  connection per worker and a second Redis one in the real steady run at
  0.1-0.2 connections of demand (issue 16: 1.45x grow-on-wait's conn-s).
* ``warm``: the pool's ``min_size`` follows the cap, so the connections a
  grow asks for open at once (spread over the workers) instead of when a
  caller needs one: a caller who waits for a connect (~8 ms) misses a 10-ms
  SLO (issue 16: 24 of the 25 slow acquires in the real runs' missed windows).
* ``step_up``/``step_down`` bound one change (a fraction of the cap, at least
  one connection); ``cooldown_up``/``cooldown_down`` are the minimum seconds
  between changes in that direction; ``up_window``/``down_window`` are the
  stabilisation windows (scale up on the minimum recommendation of the short
  window, down on the maximum of the long one, as Kubernetes' HPA does).
* The seed's separate "initial size" knob is dropped: the pool's explicit
  ``max_size`` already is the initial value.  Its "grow threshold" and
  "shrink threshold" are folded into the controller choice.
* At shutdown the supervisor stops first; pools keep their last cap while they
  drain and close.
"""
from __future__ import annotations

import dataclasses
import math

CONTROLLERS = ("littles", "threshold", "ewma", "pid")


class ConfigError(ValueError):
    """A supervisor setting is out of range or inconsistent."""


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _non_negative(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or value < 0:
        raise ConfigError(f"{name} must be a number >= 0, got {value!r}")


def _positive(name: str, value: float) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
            or value <= 0:
        raise ConfigError(f"{name} must be a positive number, got {value!r}")


@dataclasses.dataclass(frozen=True)
class PoolAutoscale:
    enabled: bool = True
    min: int = 1
    max: int = 32
    controller: str = "littles"
    target_wait_ms: float = 10.0
    headroom: float = 1.1
    wait_tail: float = 0.01       # littles: share of acquires that may wait past target_wait_ms
    queue_tail: float = 0.001     # littles: share of acquires that may wait past queue_grace_ms
    queue_grace_ms: float = 2.0   # (per worker, while a period holds < 100 acquires)
    warm: bool = True             # the pool's min_size follows the cap (opens on grow, not on demand)
    step_up: float = 3.0          # at most +300% (and at least +1) per change
    step_down: float = 0.1        # at most -10% (and at least -1) per change
    cooldown_up: float = 0.0
    cooldown_down: float = 5.0
    up_window: float = 0.0
    down_window: float = 30.0
    deadband: float = 0.1
    # downstream-health guard
    guard: bool = True
    guard_latency_ratio: float = 1.5   # short/long hold-time EWMA that trips it
    guard_error_rate: float = 0.02     # (errors + timeouts) / acquires
    guard_cut: float = 0.9             # multiplicative cut per period while badly tripped
    long_window: float = 60.0          # EWMA horizon of the latency baseline
    guard_floor_ms: float = 2.0        # hold time must also rise by this much (absolute) to trip
    guard_min_samples: int = 20        # releases a period needs to teach the baseline
    guard_rebase: float = 15.0         # tripped this long on latency alone, unharmed: new normal
    guard_recover: float = 10.0        # after a trip, grow no higher than the cap it tripped at
    # burst allowance handed to the pool (opens above the cap for waiters, at
    # once; never above the rails' max, withdrawn while the guard holds):
    # burst_ratio x the cap, at least one, at most ``burst``
    burst: int = 8
    burst_ratio: float = 2.0

    def __post_init__(self):
        if not _is_int(self.min) or not _is_int(self.max):
            raise ConfigError(f"min and max must be ints, got {self.min!r}, {self.max!r}")
        if self.min < 1 or self.max < self.min:
            raise ConfigError(f"need 1 <= min <= max, got min={self.min} max={self.max}")
        if self.controller not in CONTROLLERS:
            raise ConfigError(f"controller must be one of {CONTROLLERS}, got {self.controller!r}")
        for name in ("wait_tail", "queue_tail"):
            if not 0 < getattr(self, name) < 1:
                raise ConfigError(f"{name} must be in (0, 1), got {getattr(self, name)!r}")
        if not isinstance(self.warm, bool):
            raise ConfigError(f"warm must be a bool, got {self.warm!r}")
        for name in ("target_wait_ms", "headroom", "step_up", "step_down", "guard_latency_ratio",
                     "guard_error_rate", "long_window"):
            _positive(name, getattr(self, name))
        for name in ("cooldown_up", "cooldown_down", "up_window", "down_window", "deadband",
                     "guard_floor_ms", "guard_rebase", "guard_recover", "queue_grace_ms"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or v < 0:
                raise ConfigError(f"{name} must be >= 0, got {v!r}")
        for name in ("burst", "guard_min_samples"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 0:
                raise ConfigError(f"{name} must be an int >= 0, got {v!r}")
        if not 0 < self.guard_cut < 1:
            raise ConfigError(f"guard_cut must be in (0, 1), got {self.guard_cut!r}")
        _non_negative("burst_ratio", self.burst_ratio)

    def burst_for(self, cap: int, guard_tripped: bool = False) -> int:
        """The burst allowance at ``cap``: ``burst_ratio`` x the cap, at most
        ``burst``, inside the rails, none while the guard holds.  Issue 16: 8
        above a cap of 4-5 was most of the opens in the real burst and diurnal
        runs, but 1x the cap lost 5% of the simulated burst's requests at the
        first 15x edge (from a cap of 3); 2x keeps them and bounds the opens
        of a small pool."""
        if guard_tripped or not self.enabled:
            return 0
        return max(0, min(self.burst, max(1, math.ceil(cap * self.burst_ratio)), self.max - cap))


@dataclasses.dataclass(frozen=True)
class WorkerAutoscale:
    enabled: bool = False
    min: int = 1
    max: int = 4
    busy_high: float = 0.85
    busy_low: float = 0.3
    lag_ms: float = 5.0            # loop lag that confirms saturation
    sustain: float = 5.0           # seconds the condition must hold
    trial: float = 10.0            # seconds before judging an added worker
    min_gain: float = 0.10         # keep an added worker only if throughput rises this much
    cooldown: float = 30.0
    shrink: bool = False           # drain-shrink on sustained low busy ratio

    def __post_init__(self):
        if not _is_int(self.min) or not _is_int(self.max):
            raise ConfigError(f"min and max must be ints, got {self.min!r}, {self.max!r}")
        if self.min < 1 or self.max < self.min:
            raise ConfigError(f"need 1 <= min <= max workers, got {self.min}..{self.max}")
        for name in ("busy_low", "busy_high"):
            _positive(name, getattr(self, name))
        if not 0 < self.busy_low < self.busy_high <= 1:
            raise ConfigError("need 0 < busy_low < busy_high <= 1")
        for name in ("lag_ms", "sustain", "trial", "min_gain", "cooldown"):
            _positive(name, getattr(self, name))


@dataclasses.dataclass(frozen=True)
class Rebalance:
    enabled: bool = False
    imbalance: float = 1.17        # act when the busiest ring exceeds the mean by this factor
    min_residency: float = 10.0    # seconds a connection stays put after a move
    moves_per_period: int = 1
    min_load: float = 1024.0       # bytes/s below which a ring counts as idle (no moves)
    settle: float = 2.0            # seconds without moves after one, while loads re-measure

    def __post_init__(self):
        _positive("imbalance", self.imbalance)
        if self.imbalance <= 1:
            raise ConfigError(f"imbalance must be > 1, got {self.imbalance}")
        if not _is_int(self.moves_per_period) or self.moves_per_period < 1:
            raise ConfigError(f"moves_per_period must be an int >= 1, got {self.moves_per_period!r}")
        _positive("min_residency", self.min_residency)
        _non_negative("min_load", self.min_load)
        _non_negative("settle", self.settle)


@dataclasses.dataclass(frozen=True)
class SupervisorConfig:
    period: float = 1.0
    pools: dict = dataclasses.field(default_factory=dict)   # pool name -> PoolAutoscale
    workers: WorkerAutoscale = WorkerAutoscale()
    rebalance: Rebalance = Rebalance()
    recent: int = 256              # decisions kept for the debug socket
    max_backoff: float = 60.0      # after an internal error, wait up to this long

    def __post_init__(self):
        _positive("period", self.period)
        _positive("max_backoff", self.max_backoff)
        for name, kind in (("workers", WorkerAutoscale), ("rebalance", Rebalance)):
            if not isinstance(getattr(self, name), kind):
                raise ConfigError(f"{name} must be a {kind.__name__}, got {getattr(self, name)!r}")
        if not isinstance(self.pools, dict):
            raise ConfigError(f"pools must be a dict of name -> PoolAutoscale, got {self.pools!r}")
        for name, pa in self.pools.items():
            if not isinstance(pa, PoolAutoscale):
                raise ConfigError(f"pools[{name!r}] must be a PoolAutoscale, got {type(pa).__name__}")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)
