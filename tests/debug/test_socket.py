"""A real client over the debug socket against a runtime serving echo traffic."""
import os
import socket
import stat
import threading
import time

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ringleader.runtime import Runtime
from ringleader.runtime.debug import (PROTOCOL, VERSION, DebugCommandError, DebugServer,
                                      DebugSocketError, list_sockets, socket_dirs)
from ringleader.uring import RingStats


def test_default_socket_is_private_named_by_pid_and_removed_at_stop(fd_guard, no_thread_leak):
    rt = Runtime(2).start()
    try:
        path = rt.debug_server.path
        assert path.parent in socket_dirs()
        assert path.name.startswith(f"ringleader-{os.getpid()}")
        st = os.stat(path)
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
        assert stat.S_IMODE(os.stat(path.parent).st_mode) & 0o077 == 0
        assert any(i.path == path and i.pid == os.getpid() and i.running for i in list_sockets())
        # A second runtime in the same process gets its own socket.
        rt2 = Runtime(1).start()
        try:
            assert rt2.debug_server.path != path and rt2.debug_server.path.exists()
        finally:
            rt2.stop(drain_timeout=0)
        # A client still connected (here: watching) is told why its stream ends.
        watcher = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        watcher.connect(str(path))
        watcher.sendall(b'{"cmd": "watch", "args": {"interval": 60}}\n')
        watcher.settimeout(10)
        got = b""
        while got.count(b"\n") < 3:  # hello, the watch's acknowledgement, snapshot 1
            got += watcher.recv(65536)
    finally:
        rt.stop(drain_timeout=0)
    assert not path.exists()
    rest = b""
    while chunk := watcher.recv(65536):
        rest += chunk
    watcher.close()
    assert b'"code":"shutting_down"' in got + rest


def test_debug_socket_off_and_explicit_path_errors(tmp_path, fd_guard):
    rt = Runtime(1, debug_socket=False).start()
    assert rt.debug_server is None
    rt.stop(drain_timeout=0)
    blocker = tmp_path / "not-a-socket"
    blocker.write_text("x")
    rt = Runtime(1, debug_socket=str(blocker))
    with pytest.raises(DebugSocketError, match="not a socket"):
        rt.start()
    rt.stop(drain_timeout=0)
    assert blocker.read_text() == "x"


def test_reads_every_view_under_load(fd_guard, service):
    # The per-worker checks below need connections on every worker: the
    # acceptor deals them round-robin (SO_REUSEPORT's hash may not).
    svc = service(mode="acceptor")
    svc.wait_trips(200)
    svc.add_pool()
    with svc.client() as c:
        assert c.hello["protocol"] == PROTOCOL and c.hello["version"] == VERSION
        assert c.hello["control"] is False and "resize_pool" not in c.hello["commands"]

        s = c.request("summary")
        assert s["pid"] == os.getpid() and s["workers"] == 2 and s["socket"] == str(svc.path)
        assert s["connections"] >= 8 and s["pools"] == ["echo"]
        assert s["supervisor"] == {"registered": False}

        w = c.request("workers")
        assert len(w["hist_bounds"]) == RingStats.HIST_BUCKETS
        assert [x["worker"] for x in w["workers"]] == [0, 1]
        for x in w["workers"]:
            assert 0.0 <= x["busy_ratio"] <= 1.0 and x["lag_max_s"] >= 0
            if x["backend"] == "epoll":
                # no ring: its figures are absent, not zeros; the reason is given
                assert x["ring"] is None and x["enobufs"] is None and x["mean_batch"] is None
                assert "io_uring" in x["backend_reason"]
                continue
            assert len(x["ring"]["batch_hist"]) == RingStats.HIST_BUCKETS
            # SO_REUSEPORT may hand every accepted connection to worker 0
            # (about 1 run in 30): an idle worker 1 has nothing to show.
            if x["connections"]:
                assert x["ring"]["fixed_in_use"] >= 1 and x["ring"]["cqes_reaped"] > 0
                assert x["mean_batch"] > 0 and x["mean_flush_depth"] > 0
        assert w["workers"][0]["connections"] >= 5  # the clients and the pool's connection

        hot = c.request("hot", n=2)
        assert [h["worker"] for h in hot["workers"]] == [0, 1]
        for h, x in zip(hot["workers"], w["workers"]):
            assert min(1, x["connections"]) <= len(h["connections"]) <= 2
            moved = [x["bytes_in"] + x["bytes_out"] for x in h["connections"]]
            assert moved == sorted(moved, reverse=True) and (not moved or moved[0] > 0)

        pools = c.request("pools")["pools"]
        assert [p["name"] for p in pools] == ["echo"] and pools[0]["worker"] == 0
        assert pools[0]["stats"]["pool_max"] == 4 and pools[0]["stats"]["requests_num"] == 3

        assert c.request("supervisor") == {"registered": False}
        assert c.request("decisions") == {"registered": False, "decisions": []}

        svc.add_supervisor()
        # Its first ticks (period 0.1 s), as a fresh snapshot shows them: polled,
        # not slept on (a starved worker thread may take longer than a few periods).
        deadline = time.monotonic() + 10
        while not (sup := c.request("supervisor"))["registered"] or sup["ticks"] < 1:
            assert time.monotonic() < deadline, f"the supervisor never ticked: {sup}"
            time.sleep(0.05)
        assert sup["registered"] and sup["paused"] is False and sup["ticks"] >= 1
        assert sup["config"]["pools"]["echo"]["max"] == 8
        assert "echo" in sup["targets"]["pools"]
        dec = c.request("decisions", n=5)
        assert dec["registered"] and len(dec["decisions"]) <= 5
        assert c.request("summary")["supervisor"]["registered"] is True

        text = c.request("metrics")["text"]
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        backends = {s.labels["worker"]: s.labels["backend"]
                    for s in fams["ringleader_worker_backend"].samples}
        assert set(backends) == {"0", "1"}
        batch = fams["ringleader_ring_batch_size"]
        assert batch.type == "histogram"
        # ring-only series: no sample (not a zero) for a worker on the epoll fallback
        assert {s.labels["worker"] for s in batch.samples} == \
            {w for w, b in backends.items() if b == "uring"}
        inf = [s for s in batch.samples if s.name.endswith("_bucket") and s.labels["le"] == "+Inf"]
        count = [s for s in batch.samples if s.name.endswith("_count")]
        assert sorted(s.value for s in inf) == sorted(s.value for s in count)
        assert fams["ringleader_ring_cqes_reaped"].type == "counter"
        assert fams["ringleader_pool_max"].samples[0].labels == {"pool": "echo"}
        assert fams["ringleader_supervisor_registered"].samples[0].value == 1.0
        assert fams["ringleader_workers"].samples[0].value == 2.0

        got = list(c.watch(["summary", "hot"], interval=0.05, count=3, n=1))
        assert len(got) == 3 and all(set(g) == {"summary", "hot"} for g in got)
        assert got[-1]["summary"]["uptime_s"] > got[0]["summary"]["uptime_s"]
        assert c.request("unwatch") == {"stopped": False}
    svc.wait_trips(100)
    assert svc.rt.debug_server.counters["errors"] == 0


def test_snapshots_from_another_thread_while_connections_migrate(service):
    """loop.stats()/hot_connections() are read by the debug thread while the
    workers move connections back and forth: no error, no torn snapshot."""
    svc = service(control=True, conns=6)
    svc.wait_trips(100)
    stop = threading.Event()
    moves = []

    def mover():
        with svc.client() as c:
            k = 0
            while not stop.is_set():
                hot = c.request("hot", n=50)["workers"]
                conns = [(h["worker"], x["conn_id"]) for h in hot for x in h["connections"]]
                if conns:
                    wid, cid = conns[k % len(conns)]
                    try:
                        moves.append(c.request("migrate", conn_id=cid, worker=1 - wid))
                    except DebugCommandError as exc:
                        # the connection may have moved or closed since the snapshot
                        assert exc.code in ("not_found", "failed"), exc
                k += 1

    t = threading.Thread(target=mover)
    t.start()
    try:
        with svc.client() as c:
            # At least 2 s of reads, and on until enough moves overlapped them
            # (a loaded machine may serve fewer in 2 s; 60 s bounds it).
            t0 = time.monotonic()
            reads = 0
            while time.monotonic() < t0 + 2.0 or reads <= 10 or len(moves) <= 5:
                assert time.monotonic() < t0 + 60, (reads, len(moves))
                for h in c.request("hot", n=100)["workers"]:
                    assert all(x["conn_id"] > 0 for x in h["connections"])
                c.request("workers")
                reads += 1
    finally:
        stop.set()
        t.join()
    assert reads > 10 and len(moves) > 5
    svc.wait_trips(100)
    assert svc.rt.debug_server.counters["errors"] == 0


def test_control_commands_only_when_enabled(service):
    ro = service()
    ro.add_pool()
    with ro.client() as c:
        for cmd, args in [("resize_pool", {"name": "echo", "min": 1, "max": 2}),
                          ("migrate", {"conn_id": 1, "worker": 1}), ("pause_supervisor", {})]:
            with pytest.raises(DebugCommandError) as e:
                c.request(cmd, **args)
            assert e.value.code == "control_disabled"
        assert "resize_pool" not in c.request("help")["commands"]
    assert ro.pool.max_size == 4

    rw = service(control=True)
    rw.add_pool()
    rw.add_supervisor()
    with rw.client() as c:
        assert c.hello["control"] is True and "migrate" in c.request("help")["commands"]
        assert c.request("resize_pool", name="echo", min=2, max=6) == {"name": "echo", "min": 2,
                                                                         "max": 6}
        assert (rw.pool.min_size, rw.pool.max_size) == (2, 6)
        with pytest.raises(DebugCommandError) as e:
            c.request("resize_pool", name="nope", min=1, max=2)
        assert e.value.code == "not_found" and "echo" in e.value.message
        with pytest.raises(DebugCommandError) as e:
            c.request("resize_pool", name="echo", min=3, max=2)
        assert e.value.code == "bad_request"
        rw.rt.register_pool("elsewhere", rw.pool, worker=5)  # a worker that does not run
        with pytest.raises(DebugCommandError) as e:
            c.request("resize_pool", name="elsewhere", min=1, max=2)
        assert e.value.code == "failed" and "no worker 5" in e.value.message
        assert rw.pool.max_size == 6
        rw.rt.unregister_pool("elsewhere")

        assert c.request("pause_supervisor") == {"paused": True}
        assert rw.supervisor.paused and c.request("supervisor")["paused"] is True
        assert c.request("resume_supervisor") == {"paused": False}
        assert not rw.supervisor.paused

        hot = c.request("hot", n=1)["workers"]
        src = hot[0]["worker"]
        cid = hot[0]["connections"][0]["conn_id"]
        assert c.request("migrate", conn_id=cid, worker=1 - src) == {"conn_id": cid, "from": src,
                                                                     "to": 1 - src}
        after = c.request("hot", n=100)["workers"]
        assert cid in [x["conn_id"] for x in after[1 - src]["connections"]]
        for args, code in [({"conn_id": 10**9, "worker": 0}, "not_found"),
                           ({"conn_id": cid, "worker": 7}, "not_found")]:
            with pytest.raises(DebugCommandError) as e:
                c.request("migrate", **args)
            assert e.value.code == code
    rw.wait_trips(100)


_CHILD = r"""
import socket, sys
path, expect = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(5)
try:
    s.connect(path)
except PermissionError:
    sys.exit(0 if expect == "eacces" else 3)
data = b""
while not data.endswith(b"\n"):
    chunk = s.recv(4096)
    if not chunk:
        break
    data += chunk
ok = expect == "forbidden" and b'"code":"forbidden"' in data and s.recv(4096) == b""
sys.exit(0 if ok else 4)
"""


def _as_nobody(path: str, expect: str) -> int:
    """Exit status of a client run as nobody: 0 if the expected refusal happened.
    A subprocess, not os.fork(): forking this threaded process and running
    Python in the child could deadlock on a lock held at fork time."""
    import shutil
    import subprocess
    import sys
    # The venv's interpreter may live where nobody cannot read (/root/.pyenv);
    # the client needs only the stdlib, so prefer the system interpreter.
    exe = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    p = subprocess.run([exe, "-I", "-c", _CHILD, path, expect], user=65534, group=65534,
                       extra_groups=[], timeout=30, cwd="/")
    return p.returncode


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to switch to the nobody user")
def test_other_uid_is_refused(service):
    svc = service()
    path = str(svc.path)
    os.chmod(svc.dir, 0o755)  # let nobody reach the socket file itself
    # Layer 1: the socket file is 0600, so connect() fails for another uid.
    assert _as_nobody(path, "eacces") == 0
    # Layer 2: even when the file mode would let it in, SO_PEERCRED does not.
    os.chmod(path, 0o666)
    assert _as_nobody(path, "forbidden") == 0
    assert svc.rt.debug_server.counters["refused"] == 1
    with svc.client() as c:  # the owner still gets in
        assert c.request("summary")["workers"] == 2
    svc.wait_trips(50)


def test_server_without_runtime_start_is_closed_cleanly(tmp_path, fd_guard, no_thread_leak):
    rt = Runtime(1, debug_socket=False).start()
    srv = DebugServer(rt, tmp_path / "s.sock").start()
    srv.close()
    srv.close()
    assert not (tmp_path / "s.sock").exists()
    rt.stop(drain_timeout=0)


def test_sockets_left_behind_are_cleaned_up(tmp_path):
    import subprocess
    import sys

    # A process that exits without stopping its runtime still removes its socket.
    code = ("from ringleader.runtime import Runtime; rt = Runtime(1).start(); "
            "print(rt.debug_server.path, flush=True)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    left = p.stdout.strip()
    assert left.endswith(".sock") and not os.path.exists(left)

    # One of a killed process (a socket file nobody listens on, its pid gone)
    # is removed by the next runtime that starts in that directory.
    dead = subprocess.Popen(["true"])
    dead.wait()
    rt = Runtime(1).start()
    d = rt.debug_server.path.parent  # the default directory
    rt.stop(drain_timeout=0)
    stale = d / f"ringleader-{dead.pid}.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(stale))
    s.close()
    assert stale.exists()
    assert any(i.path == stale and not i.running for i in list_sockets())
    rt = Runtime(1).start()
    try:
        assert not stale.exists()
    finally:
        rt.stop(drain_timeout=0)


def test_reading_does_not_wake_the_workers(tmp_path, fd_guard):
    """Snapshots are read from the debug thread: an idle runtime's loops stay
    asleep in io_uring_enter however much the socket is queried."""
    from ringleader.runtime.debug_cli import DebugClient
    rt = Runtime(2, debug_socket=str(tmp_path / "d.sock")).start()
    try:
        # Settled: the workers' start-up iterations are over (a starved
        # machine may take longer than any fixed sleep).
        deadline = time.monotonic() + 10
        before = [s.iterations for s in rt.stats()]
        while True:
            time.sleep(0.2)
            now = [s.iterations for s in rt.stats()]
            if now == before:
                break
            assert time.monotonic() < deadline, f"idle workers keep iterating: {before} -> {now}"
            before = now
        with DebugClient(rt.debug_server.path) as c:
            for _ in range(20):
                for cmd in ("summary", "workers", "hot", "pools", "metrics"):
                    c.request(cmd)
            assert len(list(c.watch(["workers", "hot"], interval=0.05, count=5))) == 5
        after = [s.iterations for s in rt.stats()]
        assert after == before
    finally:
        rt.stop(drain_timeout=0)
