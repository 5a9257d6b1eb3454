"""The rig's plots draw a panel only for what the runs recorded (issue 16:
the overload plot showed three empty worker panels that read as "zero")."""
from __future__ import annotations

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "scripts"))

from riglib import plots  # noqa: E402


def _record(contender, *, busy, decisions=()):
    t = [1.0, 2.0, 3.0]
    return {"mode": "real", "pattern": "overload", "contender": contender, "seed": 1,
            "decisions": list(decisions),
            "series": {"t": t, "offered": [600, 600, 600], "achieved": [600, 590, 600],
                       "pools": {"postgres": {"cap": [4, 5, 5], "wait_p99_ms": [0.1, 12.0, 0.2]}},
                       "request_p99_ms": [5.0, 20.0, 6.0],
                       "workers": {"busy": busy, "batch": busy}}}


def test_no_worker_or_move_panels_when_nothing_was_recorded(tmp_path):
    recs = [_record("supervisor-littles", busy=[[], [], []],
                    decisions=[{"kind": "resize_pool", "t": 2.0, "old": 4, "new": 5, "target": "postgres"}]),
            _record("static-16", busy=[[], [], []])]
    assert plots.panels_for(recs) == ["offered", "cap:postgres", "wait:postgres", "req"]
    png = plots.plot_pattern(recs, str(tmp_path / "o.png"))
    assert os.path.getsize(png) > 5_000


def test_worker_and_move_panels_when_the_runs_have_them():
    busy = [[0.1, 0.2], [0.3, 0.1], [0.2, 0.2]]
    moved = _record("supervisor-littles", busy=busy,
                    decisions=[{"kind": "migrate", "t": 2.0, "target": "c1", "src": 0, "dst": 1}])
    assert plots.panels_for([moved])[-3:] == ["busy", "batch", "migrations"]
    assert "migrations" not in plots.panels_for([_record("static-16", busy=busy)])
