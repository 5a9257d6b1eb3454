"""Unit tier: the rebalancer does not move connections too small to matter."""
from ringleader.supervisor import ConnObs, Observation, Policy, Rebalance, SupervisorConfig, WorkerObs


def _obs(t, conns):
    ws = []
    for w in (0, 1):
        cs = tuple(ConnObs(cid, w, rate, None) for cid, (wk, rate) in conns.items() if wk == w)
        ws.append(WorkerObs(worker=w, busy=0.5, lag_ms=0.1, batch=1.0, flush_depth=1.0, throughput=1.0,
                            load=sum(c.rate for c in cs), conns=cs))
    return Observation(t=t, period=1.0, workers=tuple(ws))


def test_no_move_when_only_tiny_connections_fit():
    # worker 1 carries one 5 MB/s connection (too big: moving it just moves the hot
    # spot) and a 400 B/s one (moving it closes 0.01% of the gap: not worth a migration)
    pol = Policy(SupervisorConfig(rebalance=Rebalance(enabled=True)))
    conns = {1: (1, 5e6), 2: (1, 400.0), 3: (0, 1e6)}
    moves = [a for t in range(5) for a in pol.decide(_obs(float(t), conns))]
    assert moves == []


def test_a_useful_move_still_happens():
    pol = Policy(SupervisorConfig(rebalance=Rebalance(enabled=True)))
    conns = {1: (1, 3e6), 2: (1, 2e6), 3: (0, 1e6)}
    moves = [a for a in pol.decide(_obs(0.0, conns))]
    assert [(a.target, a.src, a.dst) for a in moves] == [("2", 1, 0)]
