"""Both demos as a new user runs them, in an 80x24 pseudo-terminal: no line
wider than 80 columns, the commands they invite to paste work as printed,
and ``--demo`` runs until Ctrl-C (or for ``--seconds``) and says what it did."""
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import pytest

from .ptyscreen import plain_lines, run_in_pty

ROOT = Path(__file__).resolve().parents[2]


def _check(out: str, status: int) -> list[str]:
    assert status == 0, out[-3000:]
    lines = plain_lines(out)
    wide = [ln for ln in lines if len(ln) > 80]
    assert not wide, "lines wider than 80 columns:\n" + "\n".join(wide)
    assert "Traceback" not in out and "Exception ignored" not in out, out[-3000:]
    return lines


def _pasted_commands(lines: list[str]) -> list[list[str]]:
    return [ln.split() for ln in lines if re.match(r"\s+\S*ringleader (top|stats) --pid \d+$", ln)]


def test_demo_for_some_seconds():
    out, status = run_in_pty([sys.executable, str(ROOT / "scripts" / "demo.py"), "--seconds", "3"],
                             cwd=str(ROOT), timeout=120)
    lines = _check(out, status)
    assert any("the load runs for 3 s" in ln for ln in lines)
    cmds = _pasted_commands(lines)
    assert len(cmds) == 2
    # the printed program exists as printed (relative to where the demo ran)
    prog = cmds[0][0]
    assert os.access(ROOT / prog if not os.path.isabs(prog) else prog, os.X_OK), prog
    assert any(ln.startswith("workers (since start)") for ln in lines)  # its own stats, 80 wide
    assert re.search(r"load: \d+ stream round trips and \d+ pooled requests in [\d.]+ s", out)


def test_demo_runs_until_ctrl_c():
    out, status = run_in_pty([sys.executable, str(ROOT / "scripts" / "demo.py")], cwd=str(ROOT),
                             timeout=120, signal_when=("running until Ctrl-C", signal.SIGINT))
    lines = _check(out, status)
    assert any("the load runs until Ctrl-C" in ln for ln in lines)
    assert re.search(r"load: \d+ stream round trips .* stopping", out)


@pytest.mark.skipif(shutil.which("redis-server") is None or not list(
    Path("/usr/lib/postgresql").glob("*/bin/initdb")), reason="needs PostgreSQL and Redis")
def test_debug_demo_at_80_columns():
    out, status = run_in_pty([sys.executable, str(ROOT / "scripts" / "rig"), "--debug-demo",
                              "--real-seconds", "6"], cwd=str(ROOT), timeout=300)
    lines = _check(out, status)
    assert any(re.match(r"\s+\S*ringleader top --socket \S+\.sock$", ln) for ln in lines), lines[:5]
    assert any(ln.startswith("the run, in figures") for ln in lines)
    assert not any("{" in ln and "'ping_pong'" in ln for ln in lines)  # no raw dict
    assert any(re.match(r"moved back within 20 s \(ping-pong\)\s+\d+$", ln) for ln in lines)
