"""Unit tier: the supervisor's pure policy on synthetic observations, in virtual time."""
import dataclasses
import random

import pytest

from ringleader.supervisor import (ConfigError, ConnObs, Observation, Policy, PoolAutoscale, PoolObs,
                                   Rebalance, SupervisorConfig, WorkerAutoscale, WorkerObs)
from ringleader.supervisor.config import CONTROLLERS
from ringleader.supervisor.controllers import LittlesLaw


def pobs(cap, rate=1000.0, hold=4.0, wait=0.0, waiting=0, in_use=None, errors=0, timeouts=0,
         connect_errors=0, name="db"):
    in_use = min(cap, round(rate * hold / 1e3)) if in_use is None else in_use
    return PoolObs(name=name, cap=cap, floor=1, size=cap, in_use=in_use, available=max(0, cap - in_use),
                   waiting=waiting, acquire_rate=rate, hold_ms=hold, wait_p99_ms=wait, errors=errors,
                   timeouts=timeouts, connect_errors=connect_errors)


def run(policy, seq, t0=0.0, period=1.0):
    """Feed observations (built from the current cap) and apply resizes; return actions."""
    cap = None
    out = []
    for i, make in enumerate(seq):
        o = make(cap)
        cap = o.cap
        acts = policy.decide(Observation(t=t0 + i * period, period=period, pools=(o,)))
        for a in acts:
            out.append(a)
            if a.kind == "resize_pool":
                cap = a.new
        seq_cap = cap
    return out, seq_cap


@pytest.mark.parametrize("controller", CONTROLLERS)
def test_rails_never_crossed(controller):
    cfg = PoolAutoscale(min=2, max=12, controller=controller, cooldown_down=0, down_window=0)
    pol = Policy(SupervisorConfig(pools={"db": cfg}))
    rng = random.Random(7)
    cap = 6
    for i in range(500):
        rate = rng.choice([0, 10, 500, 5000, 50000])
        wait = rng.choice([0.0, 1.0, 50.0, 500.0])
        o = pobs(cap, rate=rate, wait=wait, waiting=rng.choice([0, 0, 5, 100]))
        for a in pol.decide(Observation(t=float(i), period=1.0, pools=(o,))):
            if a.kind == "resize_pool":
                assert 2 <= a.new <= 12, a
                cap = a.new


def test_burst_grows_within_two_periods_then_stabilises():
    cfg = PoolAutoscale(min=2, max=64)
    pol = Policy(SupervisorConfig(pools={"db": cfg}))
    cap = 4
    grows_at = None
    for i in range(40):
        rate = 300.0 if i < 20 else 3000.0
        backlog = i >= 20 and cap < 12
        o = pobs(cap, rate=rate, wait=40.0 if backlog else 0.5, waiting=30 if backlog else 0)
        for a in pol.decide(Observation(t=float(i), period=1.0, pools=(o,))):
            assert a.kind in ("resize_pool", "hold")
            if a.kind == "resize_pool":
                if i >= 20 and grows_at is None and a.new > a.old:
                    grows_at = i
                cap = a.new
    assert grows_at is not None and grows_at - 20 <= 1, grows_at  # first grow <= 2 periods after the edge
    # 3000/s x 4 ms = 12 busy: (12 + sqrt 12) x 1.2 = 19
    assert 12 <= cap <= 24


def test_steady_input_no_change_after_warmup():
    pol = Policy(SupervisorConfig(pools={"db": PoolAutoscale(min=1, max=64)}))
    cap = 8
    changes = []
    rng = random.Random(3)
    for i in range(600):
        o = pobs(cap, rate=1500 * rng.uniform(0.95, 1.05), hold=4.0 * rng.uniform(0.95, 1.05))
        for a in pol.decide(Observation(t=float(i), period=1.0, pools=(o,))):
            if a.kind == "resize_pool":
                changes.append((i, a.old, a.new))
                cap = a.new
    late = [c for c in changes if c[0] > 60]
    assert not late, late


def test_guard_blocks_growth_in_retry_storm_and_cuts():
    cfg = PoolAutoscale(min=2, max=64)
    pol = Policy(SupervisorConfig(pools={"db": cfg}))
    cap = 10
    for i in range(60):  # healthy: learn the 4 ms baseline
        o = pobs(cap, rate=1500, hold=4.0)
        for a in pol.decide(Observation(t=float(i), period=1.0, pools=(o,))):
            if a.kind == "resize_pool":
                cap = a.new
    # the pool is above its healthy working point when the storm starts (say an
    # operator raised it): the guard cuts it, but not below what the database
    # served comfortably while healthy (6 busy -> (6 + sqrt 6) x 1.1 = 9.3 -> 10)
    cap = start = 30
    grows = 0
    for i in range(60, 80):  # the database is 5x slower and clients time out and retry
        o = pobs(cap, rate=4000, hold=20.0, wait=80.0, waiting=200, timeouts=300, in_use=cap)
        for a in pol.decide(Observation(t=float(i), period=1.0, pools=(o,))):
            assert "guard" in a.reason
            if a.kind == "resize_pool":
                grows += a.new > a.old
                cap = a.new
    assert grows == 0
    assert 10 <= cap < start


def test_determinism_per_seed():
    def once():
        pol = Policy(SupervisorConfig(pools={"db": PoolAutoscale(controller="ewma")}))
        rng = random.Random(42)
        cap, log = 8, []
        for i in range(300):
            o = pobs(cap, rate=rng.uniform(100, 5000), wait=rng.uniform(0, 30), waiting=rng.randint(0, 5))
            for a in pol.decide(Observation(t=float(i), period=1.0, pools=(o,))):
                log.append(a.as_dict())
                if a.kind == "resize_pool":
                    cap = a.new
        return log
    assert once() == once()


def test_config_validation():
    with pytest.raises(ConfigError):
        PoolAutoscale(min=5, max=2)
    with pytest.raises(ConfigError):
        PoolAutoscale(controller="magic")
    with pytest.raises(ConfigError):
        SupervisorConfig(period=0)
    with pytest.raises(ConfigError):
        Rebalance(imbalance=1.0)


def test_disabled_pool_is_never_touched():
    pol = Policy(SupervisorConfig(pools={"db": PoolAutoscale(enabled=False)}))
    for i in range(50):
        assert pol.decide(Observation(t=float(i), period=1.0,
                                      pools=(pobs(4, rate=9000, wait=100, waiting=50),))) == []


def _rebalance_world(seed=1, workers=3, conns=30):
    rng = random.Random(seed)
    # one hot worker: most heavy connections hashed onto worker 0
    loads = {}
    where = {}
    for c in range(conns):
        loads[c] = rng.choice([2e3, 5e3, 1e4]) * (8 if c < 6 else 1)
        where[c] = 0 if c < 12 else rng.randrange(workers)
    return loads, where


def _workers(n, loads, where, moved_at):
    """WorkerObs for n rings: connection c (load loads[c]) on ring where[c]."""
    ws = []
    for w in range(n):
        cs = tuple(ConnObs(c, w, loads[c], moved_at.get(c)) for c in loads if where[c] == w)
        ws.append(WorkerObs(worker=w, busy=0.5, lag_ms=0.1, batch=1, flush_depth=1, throughput=1,
                            load=sum(x.rate for x in cs), conns=cs))
    return tuple(ws)


def test_rebalancer_converges_without_ping_pong():
    cfg = Rebalance(enabled=True, imbalance=1.17, min_residency=10, moves_per_period=1)
    pol = Policy(SupervisorConfig(rebalance=cfg))
    loads, where = _rebalance_world()
    moved_at, moves = {}, []
    for i in range(120):
        t = float(i)
        ws = _workers(3, loads, where, moved_at)
        for a in pol.decide(Observation(t=t, period=1.0, workers=ws)):
            assert a.kind == "migrate"
            c = int(a.target)
            assert where[c] == a.src
            where[c] = a.dst
            moved_at[c] = t
            moves.append((t, c))
    per = [sum(loads[c] for c in loads if where[c] == w) for w in range(3)]
    mean = sum(per) / 3
    assert max(per) / mean <= 1.17 + 1e-9, per
    # no connection moved twice within its residency, and moves stopped once balanced
    last = {}
    for t, c in moves:
        assert c not in last or t - last[c] >= 10
        last[c] = t
    assert moves and moves[-1][0] < 60


def test_rebalancer_never_moves_a_connection_back():
    """Issue 16: the residency alone allowed a move back after it expired (the
    real hot-spot run moved one back after 10.2 s).  Two heavy connections
    swap which ring is hot every 15 s; each may move on, never back."""
    cfg = Rebalance(enabled=True, imbalance=1.17, min_residency=10, moves_per_period=1)
    pol = Policy(SupervisorConfig(rebalance=cfg))
    where, moved_at, trail = {1: 0, 2: 0, 3: 1, 4: 1}, {}, {}
    for i in range(90):
        t = float(i)
        phase = (i // 15) % 2
        loads = {1: 9000.0 if phase == 0 else 100.0, 2: 3000.0, 3: 9000.0 if phase else 100.0, 4: 3000.0}
        ws = _workers(2, loads, where, moved_at)
        for a in pol.decide(Observation(t=t, period=1.0, workers=ws)):
            c = int(a.target)
            assert a.dst not in trail.get(c, set()), f"conn {c} moved back to worker {a.dst} at {t}"
            trail.setdefault(c, set()).add(a.src)
            where[c] = a.dst
            moved_at[c] = t
    assert trail  # it did move


def _drive(pol, phases, cap=8):
    """Feeds (periods, make(cap) -> PoolObs[, the workers' loop lag in ms])
    phases at 1 s; returns per-period (t, cap, guard_tripped, action)."""
    t, out = 0.0, []
    for n, make, *lag in phases:
        ws = tuple(WorkerObs(worker=w, busy=0.9, lag_ms=lag[0], batch=1.0, flush_depth=1.0,
                             throughput=1.0, load=0.0) for w in range(2)) if lag else ()
        for _ in range(n):
            acts = pol.decide(Observation(t=t, period=1.0, pools=(make(cap),), workers=ws))
            a = acts[0] if acts else None
            if a is not None and a.kind == "resize_pool":
                cap = a.new
            out.append((t, cap, pol.pools["db"].guard_tripped, a))
            t += 1.0
    return out


def test_guard_recovers_within_two_periods_after_an_overload():
    """Issue 16: an overload (holds x6, timeouts) trips the guard and cuts; once
    it ends the guard lets go at once and the cap is back where the load needs
    it within two periods; it never grows while tripped."""
    pol = Policy(SupervisorConfig(pools={"db": PoolAutoscale(min=2, max=32)}))
    healthy = lambda cap: pobs(cap, rate=1500, hold=4.5)  # noqa: E731
    storm = lambda cap: pobs(cap, rate=4000, hold=30.0, timeouts=1500, waiting=40)  # noqa: E731
    log = _drive(pol, [(20, healthy), (20, storm), (10, healthy)])
    before = log[19][1]
    during = log[20:40]
    assert all(tripped for _, _, tripped, _ in during[1:])
    assert not any(a is not None and a.kind == "resize_pool" and a.new > a.old and tripped
                   for _, _, tripped, a in during)
    # it holds (or cuts), but not below what the healthy load needed (its floor)
    assert max(cap for _, cap, _, _ in during) <= before
    assert min(cap for _, cap, _, _ in during) >= pobs(before).in_use
    after = log[40:]
    assert not after[1][2]  # the guard let go within two periods
    assert min(cap for _, cap, _, _ in after[2:]) >= pobs(before).in_use  # serving the load again


def test_guard_ignores_sub_millisecond_noise_and_startup_samples():
    """The Redis case of issue 16 (hold 0.39 -> 0.63 ms) is noise, not a sick
    server; and a handful of start-up queries do not make a baseline."""
    pol = Policy(SupervisorConfig(pools={"db": PoolAutoscale(min=2, max=32)}))
    log = _drive(pol, [(10, lambda cap: pobs(cap, rate=5000, hold=0.39)),
                       (10, lambda cap: pobs(cap, rate=5000, hold=0.63, waiting=3))])
    assert not any(tripped for _, _, tripped, _ in log)
    pol = Policy(SupervisorConfig(pools={"db": PoolAutoscale(min=2, max=32)}))
    # 5 quick queries in the first period (calibration), then the real workload
    log = _drive(pol, [(1, lambda cap: pobs(cap, rate=5, hold=1.0)),
                       (10, lambda cap: pobs(cap, rate=1500, hold=4.5, waiting=2))])
    assert not any(tripped for _, _, tripped, _ in log)
    assert pol.pools["db"].hold_long.value == pytest.approx(4.5)


def test_harmless_slowdown_becomes_the_new_normal():
    """Holds x3 with no errors or timeouts (a heavier query mix, say) trip the
    guard, but not forever: after guard_rebase seconds the baseline moves."""
    cfg = PoolAutoscale(min=2, max=32, guard_rebase=10.0)
    pol = Policy(SupervisorConfig(pools={"db": cfg}))
    log = _drive(pol, [(20, lambda cap: pobs(cap, rate=1000, hold=4.0)),
                       (30, lambda cap: pobs(cap, rate=1000, hold=12.0))])
    tripped = [t for t, _, tr, _ in log if tr]
    assert tripped and max(tripped) < 20 + 10 + 3
    assert not log[-1][2]


def test_a_client_short_of_cpu_is_not_an_overloaded_database():
    """The real steady run (issue 16): the service's own core saturated, its
    holds went 7 -> 29 ms and its waits far past the SLO with the database idle; the
    guard cut the pool to 3 and timeouts followed.  Hold time and wait less the
    workers' loop lag are what the guard and the controller judge: the same
    slowdown with the lag to explain it neither trips the guard nor grows the
    pool; without the lag it trips the guard (a sick database)."""
    def cfg():
        return Policy(SupervisorConfig(pools={"db": PoolAutoscale(min=2, max=32)}))
    healthy = lambda cap: pobs(cap, rate=100, hold=7.0)  # noqa: E731
    lagged = lambda cap: pobs(cap, rate=100, hold=29.0, wait=30.0, timeouts=5)  # noqa: E731
    log = _drive(cfg(), [(20, healthy, 1.0), (15, lagged, 23.0)])
    assert not any(tripped for _, _, tripped, _ in log)
    # sized for what the connections are held (Little's law), no bump for the lag's waits
    assert not any(a is not None and "SLO" in a.reason for _, _, _, a in log)
    log = _drive(cfg(), [(20, healthy, 1.0), (15, lagged, 1.0)])
    assert any(tripped for _, _, tripped, _ in log[20:])


def test_no_shrink_before_a_down_window_of_history():
    """One quiet first period shrank the pool (4 -> 3) right before the sim's
    first burst edge: a shrink needs a whole down window of recommendations."""
    cfg = PoolAutoscale(min=2, max=32, down_window=10.0)
    pol = Policy(SupervisorConfig(pools={"db": cfg}))
    log = _drive(pol, [(25, lambda cap: pobs(cap, rate=50, hold=4.0))], cap=8)
    shrinks = [t for t, _, _, a in log if a is not None and a.kind == "resize_pool" and a.new < a.old]
    assert shrinks and min(shrinks) >= 10.0


def _worker_trial(speedup_2: float) -> list:
    """A saturated one-worker service whose throughput with two workers is
    ``speedup_2`` x (how much of its work runs with the GIL released: TLS
    encryption, large copies); returns the worker actions over 40 s."""
    cfg = WorkerAutoscale(enabled=True, min=1, max=2, sustain=3.0, trial=5.0, cooldown=60.0)
    pol = Policy(SupervisorConfig(workers=cfg))
    n, acts = 1, []
    for i in range(40):
        thr = 1000.0 * (speedup_2 if n == 2 else 1.0)
        ws = tuple(WorkerObs(worker=w, busy=0.97, lag_ms=12.0, batch=4.0, flush_depth=4.0,
                             throughput=thr / n, load=0.0) for w in range(n))
        for a in pol.decide(Observation(t=float(i), period=1.0, workers=ws)):
            acts.append(a)
            n += {"add_worker": 1, "remove_worker": -1}.get(a.kind, 0)
    return acts


def test_a_second_worker_is_kept_only_where_it_pays():
    """Issue 16's worker question: the supervisor adds a worker on sustained
    saturation and keeps it only if throughput rose by min_gain over the
    trial.  (Measured with scripts/bench_tls.py on this machine: a TLS service
    with 128 KiB responses did 0.76x with two workers, so there it is tried
    and reverted; where two workers give +40% it stays.)"""
    kinds = [a.kind for a in _worker_trial(1.4)]
    assert kinds == ["add_worker"]
    kinds = [a.kind for a in _worker_trial(0.76)]
    assert kinds == ["add_worker", "remove_worker"]


def test_waits_below_the_cap_are_connects_not_a_reason_to_grow():
    """The real start-up: one connection open under a cap of 5, the first
    second's callers waited for connects (p99 23 ms) and the SLO bump took
    the cap to 7 for the whole run.  Below the cap a wait is a connect under
    way; at the cap the same wait means too few connections."""
    def first(size):
        pol = Policy(SupervisorConfig(pools={"db": PoolAutoscale(min=2, max=40)}))
        o = dataclasses.replace(pobs(5, rate=99, hold=3.6, wait=23.4, waiting=2), size=size)
        return [a for a in pol.decide(Observation(t=0.0, period=1.0, pools=(o,)))
                if a.kind == "resize_pool"]
    assert first(size=1) == []
    grown = first(size=5)
    assert grown and grown[0].new > 5


def test_littles_staffs_each_worker_of_a_strict_pool():
    """Issue 16: a strict pool is one queue per worker, served only by that
    worker's connections.  Staffing the pool's total by Erlang C left a worker
    with one connection (its callers queued behind it and, on a loaded
    machine, were woken late).  Each worker now gets enough for its own share
    of the arrivals that only ``queue_tail`` of its acquires wait longer than
    ``queue_grace_ms``."""
    def cap_for(workers, queue_tail=0.001, grace=0.0, hold=2.5):
        pol = Policy(SupervisorConfig(pools={"db": PoolAutoscale(min=1, max=64, queue_tail=queue_tail,
                                                                   queue_grace_ms=grace)}))
        o = dataclasses.replace(pobs(2, rate=90.0, hold=hold), workers=workers)
        acts = pol.decide(Observation(t=0.0, period=1.0, pools=(o,)))
        return acts[0].new if acts else 2
    # 90/s x 2.5 ms (x 1.1 headroom): L = 0.25; one shared queue needs 4 for
    # P(wait) <= 0.1%, two worker queues 3 each; without the queue bound the
    # 10-ms SLO alone asks for 1 a worker
    assert cap_for(1) == 4
    assert cap_for(2) == 6
    assert cap_for(2, queue_tail=0.5) == 2
    # Issue 16: a wait under the grace (2 ms by default) is one fast hold; the
    # real steady run's holds of ~1.5 ms need 2 a worker for P(wait > 2 ms)
    # <= 0.1%, where bounding any wait asked for 3; a 0.3-ms Redis hold needs 1
    assert cap_for(2, hold=1.5) == 6
    assert cap_for(2, hold=1.5, grace=2.0) == 4
    assert cap_for(2, hold=0.3, grace=0.0) == 4 and cap_for(2, hold=0.3, grace=2.0) == 2


def test_warm_pools_open_on_grow_and_the_floor_follows_the_cap():
    """``warm``: the resize carries the new cap as the pool's floor, so the
    connections a grow asks for open at once (a caller who waits for a connect
    misses a 10-ms SLO); ``warm=False`` leaves the floor to the pool."""
    for warm in (True, False):
        pol = Policy(SupervisorConfig(pools={"db": PoolAutoscale(min=1, max=64, warm=warm)}))
        (a,) = pol.decide(Observation(t=0.0, period=1.0, pools=(pobs(4, rate=3000.0),)))
        assert a.kind == "resize_pool" and a.new > 4
        assert a.floor == (a.new if warm else None)


def test_a_stale_wait_percentile_bumps_nothing():
    """Issue 16 (real diurnal run): after one 250-ms stall of the client, the
    Redis pool's 10-s wait percentile stayed over the SLO with nobody queueing,
    and the SLO bump added 25% a period, 10 -> 40 connections at 0.02 of
    demand.  A bump needs a caller that queued in the period."""
    def after(queued):
        pol = Policy(SupervisorConfig(pools={"db": PoolAutoscale(min=1, max=64)}))
        o = dataclasses.replace(pobs(8, rate=40.0, hold=0.5, wait=105.0), queued=queued)
        acts = pol.decide(Observation(t=0.0, period=1.0, pools=(o,)))
        return acts[0].new if acts else 8
    assert after(queued=0) == 8
    assert after(queued=3) == 10


def test_littles_sizes_for_the_attempts_less_the_timeouts():
    """Issue 16 (overload repetition 2): a retry storm multiplies the acquire
    attempts, and Little's law on them grew the pool into a database still
    overloaded.  The demand is the attempts less those that timed out (each
    retry's earlier attempt): 1500 attempts of which 1100 timed out are 400
    arrivals, sized like 400 without a storm (the guard off, to read the
    controller alone)."""
    ctl = LittlesLaw(PoolAutoscale(min=1, max=64, guard=False))
    storm = ctl.recommend(pobs(8, rate=1500.0, hold=10.0, timeouts=1100, in_use=8), 0.0, 1.0)
    calm = ctl.recommend(pobs(8, rate=400.0, hold=10.0, in_use=8), 0.0, 1.0)
    blind = ctl.recommend(pobs(8, rate=1500.0, hold=10.0, in_use=8), 0.0, 1.0)
    assert storm.cap == calm.cap < blind.cap
    assert "L = 400/s" in storm.rule
