"""The ``ringleader`` CLI against a running runtime: stats, top, decisions, metrics, list."""
import os
import pty
import select
import subprocess
import sys
import time

from prometheus_client.parser import text_string_to_metric_families

from .conftest import cli_path

ENV = {**os.environ, "COLUMNS": "200", "LINES": "60", "TERM": "xterm-256color", "NO_COLOR": "1"}


def run_cli(*args, timeout=30):
    return subprocess.run([cli_path(), *args], capture_output=True, text=True, timeout=timeout,
                          env=ENV)


def test_stats_decisions_metrics_list(service):
    svc = service(debug_socket=True)
    svc.add_pool()
    svc.add_supervisor()
    svc.wait_trips(200)
    time.sleep(0.3)
    sock = str(svc.path)

    p = run_cli("--socket", sock, "stats")
    assert p.returncode == 0, p.stderr
    out = p.stdout
    assert f"ringleader pid {os.getpid()}" in out and "2 workers" in out
    assert "supervisor running" in out and "control off" in out
    for heading in ("workers (since start)", "CQEs per enter", "SQEs per flush",
                    "hottest connections", "pools", "supervisor config", "supervisor decisions"):
        assert heading in out, heading
    rows = [ln for ln in out.splitlines() if ln.startswith("│") and "/16384" in ln]
    assert len(rows) == 2  # one row per worker with its fixed-slot usage
    assert "echo" in out

    p = run_cli("--pid", str(os.getpid()), "stats", "--json")
    assert p.returncode == 0, p.stderr
    import json
    data = json.loads(p.stdout)
    assert data["summary"]["workers"] == 2 and data["pools"]["pools"][0]["name"] == "echo"

    p = run_cli("--pid", str(os.getpid()), "decisions", "-n", "3")
    assert p.returncode == 0, p.stderr
    assert "supervisor decisions" in p.stdout and "age s" in p.stdout

    p = run_cli("--socket", sock, "metrics")
    assert p.returncode == 0, p.stderr
    fams = {f.name: f for f in text_string_to_metric_families(p.stdout)}
    assert {s.labels["worker"] for s in fams["ringleader_loop_busy_ratio"].samples} == {"0", "1"}
    assert fams["ringleader_pool_size"].samples[0].labels["pool"] == "echo"

    p = subprocess.run([sys.executable, "-m", "ringleader", "list"], capture_output=True, text=True,
                       timeout=30, env=ENV)
    assert p.returncode == 0 and f"pid {os.getpid():>7}  running" in p.stdout and sock in p.stdout
    svc.wait_trips(50)


def test_top_prints_frames_with_rates(service):
    svc = service()
    svc.add_pool()
    p = run_cli("--socket", str(svc.path), "top", "--frames", "2", "--interval", "0.2")
    assert p.returncode == 0, p.stderr
    frames = p.stdout.split("─" * 40)
    assert len(frames) >= 2
    assert "workers (since start)" in frames[0] and "workers (last interval)" in p.stdout
    assert "in+out /s" in p.stdout and "KiB/s" in p.stdout  # per-connection rates in frame 2
    assert "echo" in p.stdout and "not registered" in p.stdout  # pool row; no supervisor


def test_top_in_a_pseudo_terminal(service):
    svc = service()
    # Popen, not pty.fork(): this process runs worker threads, and Python code
    # in a forked child of a threaded process can deadlock on a lock another
    # thread held at fork time.  Popen's child execs without running Python.
    fd, slave = pty.openpty()
    child = subprocess.Popen([cli_path(), "--socket", str(svc.path), "top", "--frames", "3",
                              "--interval", "0.1"], stdin=slave, stdout=slave, stderr=slave,
                             env={**os.environ, **ENV}, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], 1.0)
        if not r:
            if child.poll() is not None:
                break
            continue
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        out += chunk
    try:
        child.wait(timeout=10)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
    os.close(fd)
    status = child.returncode
    assert status == 0, out[-2000:]
    text = out.decode("utf-8", "replace")
    assert "\x1b[" in text  # drawn in place with cursor movement, not printed as a log
    assert "workers (last interval)" in text and "hottest connections" in text


def test_cli_errors(service, tmp_path):
    p = run_cli("--socket", str(tmp_path / "none.sock"), "stats")
    assert p.returncode == 1 and "cannot connect" in p.stderr and "still running" in p.stderr
    p = run_cli("--pid", "1", "stats")
    assert p.returncode == 1 and "no debug socket of process 1" in p.stderr
    p = run_cli("stats", "--frames", "x")
    assert p.returncode == 2

    svc = service()
    svc.add_pool()
    p = run_cli("--socket", str(svc.path), "resize-pool", "echo", "1", "2")
    assert p.returncode == 1 and "control_disabled" in p.stderr
    ctl = service(control=True)
    ctl.add_pool()
    p = run_cli("--socket", str(ctl.path), "resize-pool", "echo", "1", "2")
    assert p.returncode == 0, p.stderr
    assert ctl.pool.max_size == 2
