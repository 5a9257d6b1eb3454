"""Unit tier: the rebalancer moves only connections that can move now and
settles after a move; config mistakes are ConfigErrors; QueryTimeout is a
psycopg error; the actuator turns a failed move into a logged decision."""
import asyncio

import psycopg
import pytest

import ringleader
from ringleader.drivers import errors as de
from ringleader.drivers.postgres.errors import QueryTimeout, WrongLoop
from ringleader.runtime.errors import MigrationRefused
from ringleader.supervisor import (Action, Actuator, ConfigError, ConnObs, Observation, Policy,
                                   Rebalance, SupervisorConfig, WorkerAutoscale, WorkerObs)


def _obs(t, conns):
    """conns: id -> (worker, rate, movable)"""
    ws = []
    for w in (0, 1):
        cs = tuple(ConnObs(cid, wk, rate, None, movable) for cid, (wk, rate, movable) in conns.items()
                   if wk == w)
        ws.append(WorkerObs(worker=w, busy=0.5, lag_ms=0.1, batch=1.0, flush_depth=1.0,
                            throughput=1.0, load=sum(c.rate for c in cs), conns=cs))
    return Observation(t=t, period=1.0, workers=tuple(ws))


def test_only_connections_that_can_move_now_are_picked():
    pol = Policy(SupervisorConfig(rebalance=Rebalance(enabled=True)))
    busy = {1: (1, 2e6, False), 2: (1, 2e6, False), 3: (0, 1e6, True)}
    assert pol.decide(_obs(0.0, busy)) == []
    idle_one = {**busy, 2: (1, 2e6, True)}
    assert [(a.target, a.src, a.dst) for a in pol.decide(_obs(1.0, idle_one))] == [("2", 1, 0)]


def test_no_move_during_the_settling_period_after_one():
    pol = Policy(SupervisorConfig(rebalance=Rebalance(enabled=True, settle=3.0)))
    conns = {1: (1, 3e6, True), 2: (1, 2e6, True), 3: (1, 2e6, True), 4: (0, 1e6, True)}
    # (the world does not change here, so each period would propose the same move)
    moves = {t: pol.decide(_obs(float(t), conns)) for t in range(4)}
    assert len(moves[0]) == 1
    assert moves[1] == moves[2] == []  # settling
    assert len(moves[3]) == 1 and pol.rebalance.last_move == 3.0


@pytest.mark.parametrize("make", [
    lambda: WorkerAutoscale(min="2"),
    lambda: WorkerAutoscale(max=2.5),
    lambda: Rebalance(min_load=-5),
    lambda: Rebalance(moves_per_period=1.5),
    lambda: Rebalance(settle=-1),
    lambda: SupervisorConfig(rebalance="on"),
    lambda: SupervisorConfig(pools=[]),
])
def test_bad_supervisor_settings_are_config_errors(make):
    with pytest.raises(ConfigError):
        make()


def test_run_with_a_supervisor_that_is_not_a_config_says_so():
    async def main(rt):
        return 1

    with pytest.raises(ConfigError, match="SupervisorConfig"):
        ringleader.run(main, supervisor="yes", debug_socket=False)


def test_query_timeout_and_wrong_loop_are_psycopg_and_driver_errors():
    assert issubclass(QueryTimeout, psycopg.Error) and issubclass(QueryTimeout, de.TimeoutError)
    assert issubclass(WrongLoop, psycopg.Error) and issubclass(WrongLoop, de.WrongLoop)


class _Runtime:
    """Just enough runtime for the actuator: one worker whose move is refused."""

    class _Loop:
        """The WorkerLoop seam (runtime.contract) the actuator finds a connection through."""

        def __init__(self, t):
            self.conns = {7: t}

        def connection(self, conn_id):
            return self.conns.get(conn_id)

    class _T:
        def is_closing(self):
            return False

    def __init__(self):
        self._loop = self._Loop(self._T())

    def loop(self, wid):
        return self._loop

    async def run_on(self, wid, coro):
        return await coro

    async def migrate(self, t, dst):
        raise MigrationRefused("cannot move it now: queries are in flight")


def test_a_refused_move_is_a_decision_with_its_error_and_the_others_still_run():
    act = Actuator(_Runtime(), pools={})
    actions = [Action("migrate", "7", "test", {}, t=1.0, src=0, dst=1),
               Action("hold", "p", "test", {}, t=1.0)]
    out = asyncio.run(act.apply(actions))
    assert [d.applied for d in out] == [False, True]
    assert out[0].error.startswith("MigrationRefused: cannot move it now")
    assert act.moved_at == {7: 1.0}  # residency spaces the retry
