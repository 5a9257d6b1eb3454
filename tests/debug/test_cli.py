"""The ``ringleader`` CLI against a running runtime, as a person sees it in an
80x24 terminal (a pseudo-terminal of that size, replayed on a small VT100
model: see ``ptyscreen``), and as a machine reads it (``--json``).

Every command's screen is compared with a snapshot in ``snapshots/`` after
the numbers were normalised (``RINGLEADER_UPDATE_SNAPSHOTS=1`` rewrites them),
and no line it writes may be wider than 80 columns.
"""
import json
import os
import re
import subprocess
import sys
import time

import pytest

from prometheus_client.parser import text_string_to_metric_families

from .conftest import cli_path
from .ptyscreen import Screen, check_snapshot, normalise, plain_lines, run_in_pty

ENV = {**os.environ, "COLUMNS": "80", "LINES": "24", "TERM": "xterm-256color", "NO_COLOR": "1"}


def run_cli(*args, timeout=30):
    """The CLI with its output to a pipe (rich then uses COLUMNS=80)."""
    return subprocess.run([cli_path(), *args], capture_output=True, text=True, timeout=timeout,
                          env=ENV)


def screen_of(*args, rows=24) -> tuple[list[str], list[str]]:
    """(what the command wrote, line by line; the terminal's final picture)."""
    out, status = run_in_pty([cli_path(), *args], cols=80, rows=rows,
                             env={**os.environ, "NO_COLOR": "1"})
    assert status == 0, out[-3000:]
    written = plain_lines(out)
    too_wide = [ln for ln in written if len(ln) > 80]
    assert not too_wide, f"{args}: lines wider than 80 columns:\n" + "\n".join(too_wide)
    return written, Screen(80).feed(out).lines()


def _snapshot_of(screen: list[str], svc) -> str:
    # The ENOBUFS note appears only if a buffer ring ran dry, which a loaded
    # machine may cause; it is not part of a view's shape.
    return normalise([ln for ln in screen if not ln.startswith("receives that ran out")],
                     _replace(svc))


def _replace(svc) -> dict:
    return {str(svc.path): "<socket>", f"pid {os.getpid()}": "pid <pid>"}


ONE_SHOT = {
    "stats": ["stats"],
    "stats-hist-wide": ["stats", "--hist", "--wide"],
    "workers": ["workers"],
    "workers-hist-wide": ["workers", "--hist", "--wide"],
    "hot": ["hot", "-n", "3"],
    "pools-wide": ["pools", "--wide"],
    "metrics": ["metrics"],
    "supervisor-none": ["supervisor"],
    "decisions-none": ["decisions"],
}


@pytest.mark.ring_only("snapshots of the ring's figures")
def test_every_view_at_80_columns(service):
    svc = service(conns=4)
    svc.add_pool()
    svc.wait_trips(200)
    for name, args in ONE_SHOT.items():
        # the global option after the command, git-style
        _, screen = screen_of(*args, "--socket", str(svc.path), rows=24)
        check_snapshot(name, _snapshot_of(screen, svc))
    svc.wait_trips(50)


def test_the_epoll_fallback_says_so_and_shows_ring_figures_as_absent(service):
    """On epoll the CLI names the backend and why, and the ring-only columns
    read n/a (absent), never 0."""
    svc = service(conns=2, backend="epoll", mode="acceptor")
    svc.wait_trips(50)
    written, _ = screen_of("workers", "--wide", "--socket", str(svc.path))
    text = "\n".join(written)
    assert "backend: epoll on every worker (backend='epoll' was asked for)" in text, text
    rows = [ln.split() for ln in written if ln.strip()[:1].isdigit()]
    assert rows and all("n/a" in r for r in rows), text
    with svc.client() as c:
        s = c.request("summary")
        assert s["backend"] == "epoll" and "asked for" in s["backend_reason"]
        assert {w["backend"] for w in s["per_worker"]} == {"epoll"}
        assert all(w["mean_batch"] is None for w in s["per_worker"])
    _, screen = screen_of("stats", "--socket", str(svc.path))
    assert not any("Exception" in ln or "Traceback" in ln for ln in screen)


def test_supervisor_and_decisions_at_80_columns(service):
    svc = service(debug_socket=True)
    svc.add_pool()
    svc.add_supervisor()
    svc.wait_trips(200)
    _, screen = screen_of("--socket", str(svc.path), "supervisor")
    text = _snapshot_of(screen, svc)
    # How many actions it took by now depends on timing; the config does not.
    check_snapshot("supervisor", re.sub(r"actions: .*", "actions: ...", text))
    assert "pools.echo: enabled true · min 1 · max 8 · controller littles" in "\n".join(screen)

    # decisions: the rows depend on what the supervisor saw; their shape does not
    with svc.client() as c:
        deadline = time.monotonic() + 30
        while not c.request("decisions", n=1)["decisions"]:
            assert time.monotonic() < deadline, "the supervisor made no decision"
            time.sleep(0.2)
    written, screen = screen_of("--socket", str(svc.path), "decisions", "-n", "3")
    assert screen[0].startswith("supervisor decisions")
    assert re.match(r"\s*age\s+kind\s+target\s+change\s+reason$", screen[1])
    ages = [ln.split()[0] for ln in screen[3:] if ln and not ln.startswith(" ")]
    assert ages and all(re.fullmatch(r"\d+(\.\d)?s|\d+m\d\ds", a) for a in ages), screen
    # numbers rounded for a person: no 16-digit floats
    digits = [n.replace(".", "").lstrip("0") for n in re.findall(r"\d+\.\d+", "\n".join(written))]
    assert all(len(d) <= 4 for d in digits), digits

    _, screen = screen_of("stats", "--pid", str(os.getpid()))
    assert "last supervisor decisions" in screen and "config" in screen
    assert not any("Exception" in ln or "Traceback" in ln for ln in screen)


@pytest.mark.ring_only("snapshot of the ring's figures")
def test_top_fits_80x24(service):
    svc = service(conns=6)
    svc.add_pool()
    svc.wait_trips(200)
    written, screen = screen_of("top", "--socket", str(svc.path), "--frames", "3",
                                "--interval", "0.2")
    # drawn in place: the terminal shows one frame, which leaves the last line
    # of the screen free (for the prompt once top has stopped)
    assert len(screen) <= 23, "\n".join(screen)
    assert screen[0].startswith(f"ringleader pid {os.getpid()}")
    assert "workers (last interval)" in screen
    assert any(re.search(r"/s\s+\S+\s+\d+$", ln) for ln in screen), screen  # per-connection rates
    check_snapshot("top", _snapshot_of(screen, svc))


def test_top_fits_a_shorter_terminal(service):
    svc = service(conns=6)
    svc.add_pool()
    svc.add_supervisor()
    svc.wait_trips(200)
    _, screen = screen_of("top", "--socket", str(svc.path), "--frames", "2",
                          "--interval", "0.2", rows=18)
    assert len(screen) <= 17, "\n".join(screen)
    assert "hottest connections" in screen and "pools" in screen


def test_control_commands_print_sentences(service):
    svc = service(control=True, conns=2)
    svc.add_pool()
    sock = str(svc.path)
    written, _ = screen_of("resize-pool", "echo", "1", "3", "--socket", sock)
    assert written[0] == "pool echo resized to min 1, max 3 connections"
    assert svc.pool.max_size == 3
    p = run_cli("--socket", sock, "--json", "resize-pool", "echo", "1", "4")
    assert p.returncode == 0 and json.loads(p.stdout) == {"name": "echo", "min": 1, "max": 4}
    svc.add_supervisor()  # after the resizes: it moves the pool's cap itself
    written, _ = screen_of("pause-supervisor", "--socket", sock)
    assert written[0].startswith("supervisor paused")
    written, _ = screen_of("resume-supervisor", "--socket", sock)
    assert written[0] == "supervisor resumed"
    with svc.client() as c:
        hot = c.request("hot", n=1)["workers"][0]
    conn = hot["connections"][0]["conn_id"]
    written, _ = screen_of("migrate", str(conn), "1", "--socket", sock)
    assert written[0] == f"connection #{conn} moved from worker 0 to worker 1"


def test_global_options_before_or_after_the_command(service):
    svc = service(debug_socket=True)
    svc.add_pool()
    sock, pid = str(svc.path), str(os.getpid())
    for args in (["--pid", pid, "stats", "--json"], ["stats", "--pid", pid, "--json"],
                 ["--json", "stats", "--socket", sock], ["stats", "--json", "--timeout", "5",
                                                         "--socket", sock]):
        p = run_cli(*args)
        assert p.returncode == 0, (args, p.stderr)
        data = json.loads(p.stdout)
        assert data["summary"]["workers"] == 2 and data["pools"]["pools"][0]["name"] == "echo"
    p = run_cli("stats", "--socket", sock, "--pid", pid)
    assert p.returncode == 2 and "not both" in p.stderr
    p = run_cli("--socket", "/nonexistent.sock", "stats", "--socket", sock)
    assert p.returncode == 0, p.stderr  # the one after the command wins


def test_json_for_every_command(service):
    svc = service()
    svc.add_pool()
    sock = str(svc.path)
    for cmd, key in [("workers", "workers"), ("hot", "workers"), ("pools", "pools"),
                     ("supervisor", "registered"), ("decisions", "decisions"),
                     ("metrics", "text")]:
        p = run_cli(cmd, "--json", "--socket", sock)
        assert p.returncode == 0, p.stderr
        assert key in json.loads(p.stdout), cmd
    hot = json.loads(run_cli("hot", "--json", "--socket", sock).stdout)
    peers = [c["peer"] for w in hot["workers"] for c in w["connections"]]
    assert peers and all(re.fullmatch(r"127\.0\.0\.1:\d+", p) for p in peers), peers
    p = run_cli("top", "--json", "--frames", "2", "--interval", "0.2", "--socket", sock)
    frames = [json.loads(ln) for ln in p.stdout.splitlines()]
    assert len(frames) == 2 and set(frames[0]) == {"summary", "workers", "hot", "pools",
                                                   "decisions"}
    p = run_cli("list", "--json")
    assert p.returncode == 0 and isinstance(json.loads(p.stdout), list)


def test_metrics_prometheus_text_and_list(service):
    svc = service(debug_socket=True)
    svc.add_pool()
    sock = str(svc.path)
    p = run_cli("--socket", sock, "metrics", "--prom")
    assert p.returncode == 0, p.stderr
    fams = {f.name: f for f in text_string_to_metric_families(p.stdout)}
    assert {s.labels["worker"] for s in fams["ringleader_loop_busy_ratio"].samples} == {"0", "1"}
    assert fams["ringleader_pool_size"].samples[0].labels["pool"] == "echo"

    written, screen = screen_of("list")
    row = next(ln for ln in screen if sock in ln)
    assert re.match(rf"\s*{os.getpid()}\s+running\s+{re.escape(sock)}$", row), screen
    p = subprocess.run([sys.executable, "-m", "ringleader", "list", "--json"], capture_output=True,
                       text=True, timeout=30, env=ENV)
    assert {"pid": os.getpid(), "running": True, "socket": sock} in json.loads(p.stdout)


def test_top_as_a_log_when_piped(service):
    svc = service()
    svc.add_pool()
    p = run_cli("--socket", str(svc.path), "top", "--frames", "2", "--interval", "0.2")
    assert p.returncode == 0, p.stderr
    assert all(len(ln) <= 80 for ln in p.stdout.splitlines())
    frames = p.stdout.split("─" * 80)
    assert len(frames) >= 2
    assert "workers (since start)" in frames[0] and "workers (last interval)" in p.stdout
    assert "rate" in p.stdout and "/s" in p.stdout  # per-connection rates in frame 2
    assert "echo" in p.stdout and "not registered" in p.stdout  # pool row; no supervisor


def test_cli_errors(service, tmp_path):
    p = run_cli("--socket", str(tmp_path / "none.sock"), "stats")
    assert p.returncode == 1 and "cannot connect" in p.stderr and "still running" in p.stderr
    p = run_cli("stats", "--pid", "1")
    assert p.returncode == 1 and "no debug socket of process 1" in p.stderr
    p = run_cli("stats", "--frames", "x")
    assert p.returncode == 2

    svc = service()
    svc.add_pool()
    p = run_cli("--socket", str(svc.path), "resize-pool", "echo", "1", "2")
    assert p.returncode == 1 and "control_disabled" in p.stderr
