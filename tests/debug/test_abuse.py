"""Bad clients get an error or are cut off, and echo traffic keeps flowing."""
import contextlib
import json
import os
import socket
import time
import weakref

import pytest

from ringleader.runtime.debug import DebugServer


def _raw(path, timeout=5.0) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    # A blocking connect waits for room in the listen backlog (a non-blocking
    # one fails with EAGAIN when hundreds arrive at once).
    s.connect(str(path))
    s.settimeout(timeout)
    return s


@contextlib.contextmanager
def _own_server(service, tmp_path, svc_kw=None, **kw):
    """A service without the default socket and a DebugServer of its own with
    the limits under test; the server is closed at the end."""
    svc = service(debug_socket=False, **(svc_kw or {}))
    srv = DebugServer(svc.rt, tmp_path / "d.sock", **kw).start()
    try:
        yield svc, srv
    finally:
        srv.close()


_unread: "weakref.WeakKeyDictionary[socket.socket, bytes]" = weakref.WeakKeyDictionary()


def _lines(s: socket.socket, n: int) -> list[dict]:
    """The next ``n`` JSON lines (fewer at EOF); bytes past them are kept for the next call."""
    buf = _unread.pop(s, b"")
    out = []
    while True:
        while b"\n" in buf and len(out) < n:
            line, buf = buf.split(b"\n", 1)
            out.append(json.loads(line))
        if len(out) == n:
            break
        chunk = s.recv(65536)
        if not chunk:
            break
        buf += chunk
    _unread[s] = buf
    return out


def _until_eof(s: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = s.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_malformed_unknown_and_bad_arguments_get_errors_and_the_connection_lives(service):
    svc = service()
    s = _raw(svc.path)
    try:
        assert _lines(s, 1)[0]["protocol"] == "ringleader-debug"
        cases = [
            (b"{not json", "bad_json"),
            (b"\xff\xfe\x00", "bad_json"),
            (b"[1, 2]", "bad_request"),
            (b'"summary"', "bad_request"),
            (b'{"cmd": "summary", "extra": 1}', "bad_request"),
            (b'{"cmd": "rm -rf", "id": 7}', "unknown_command"),
            (b'{"cmd": null}', "unknown_command"),
            (b'{"cmd": "hot", "args": {"n": "ten"}}', "bad_request"),
            (b'{"cmd": "hot", "args": {"n": 0}}', "bad_request"),
            (b'{"cmd": "hot", "args": {"n": true}}', "bad_request"),
            (b'{"cmd": "hot", "args": [1]}', "bad_request"),
            (b'{"cmd": "watch", "args": {"interval": 0.001}}', "bad_request"),
            (b'{"cmd": "watch", "args": {"what": ["rm"]}}', "bad_request"),
            (b'{"cmd": "watch", "args": {"interval": NaN}}', "bad_request"),
            (b'{"cmd": "summary", "id": {"x": 1}}', "bad_request"),
            (b'{"cmd": "migrate", "args": {"conn_id": 1, "worker": 0}}', "control_disabled"),
        ]
        for line, code in cases:
            s.sendall(line + b"\n")
            (resp,) = _lines(s, 1)
            assert resp["ok"] is False and resp["error"]["code"] == code, (line, resp)
            assert resp["error"]["message"]
        s.sendall(b'{"cmd": "rm -rf", "id": 7}\n{"cmd": "summary", "id": "x"}\n\n')
        r1, r2, r3 = _lines(s, 3)
        assert r1["id"] == 7 and r2 == {"id": "x", "ok": True, "result": r2["result"]}
        assert r3["error"]["code"] == "bad_json"  # an empty line is not a request
    finally:
        s.close()
    svc.wait_trips(50)


@pytest.mark.parametrize("newline", [True, False])
def test_oversized_request_is_refused_and_cut_off(service, newline):
    svc = service()
    s = _raw(svc.path)
    try:
        _lines(s, 1)
        big = b'{"cmd": "summary", "args": {"pad": "' + b"x" * (200 * 1024) + b'"}}'
        try:
            s.sendall(big + (b"\n" if newline else b""))
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may close before reading it all
        data = _until_eof(s)
        assert b'"code":"too_large"' in data
    finally:
        s.close()
    with svc.client() as c:
        assert c.request("summary")["workers"] == 2
    svc.wait_trips(50)


def test_a_client_that_never_reads_is_cut_off(service, tmp_path):
    with _own_server(service, tmp_path, max_outbuf=256 * 1024) as (svc, srv):
        s = _raw(srv.path)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b'{"cmd": "watch", "args": {"interval": 0.05, "what": '
                  b'["metrics", "workers", "hot"], "n": 1000}}\n')
        deadline = time.monotonic() + 20
        while srv.counters["cut_off"] == 0:
            assert time.monotonic() < deadline, "the stalled client was never cut off"
            time.sleep(0.05)
        svc.wait_trips(50)
        # The server dropped it: what is left in our buffer ends in EOF.
        s.settimeout(5)
        _until_eof(s)
        s.close()
        other = _raw(srv.path)
        assert _lines(other, 1)[0]["version"] == 1
        other.close()


def test_hundreds_of_clients_at_once(service):
    svc = service()
    limit = svc.rt.debug_server.max_clients
    socks = []
    try:
        for _ in range(300):
            socks.append(_raw(svc.path, timeout=10))
        for s in socks:
            try:
                s.sendall(b'{"cmd": "summary"}\n')
            except BrokenPipeError:
                pass  # refused and closed already; its error line is still readable
        served = refused = 0
        for s in socks:
            first = _lines(s, 1)[0]
            if first.get("protocol"):
                assert _lines(s, 1)[0]["result"]["workers"] == 2
                served += 1
            else:
                assert first["error"]["code"] == "too_many_clients"
                assert _until_eof(s) == b""
                refused += 1
        assert served == limit and refused == 300 - limit
        svc.wait_trips(50)
    finally:
        for s in socks:
            s.close()
    # Once they are gone, new clients get in again.
    deadline = time.monotonic() + 5
    while len(svc.rt.debug_server._clients) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(svc.rt.debug_server.snapshot_interval)  # a summary taken after they left
    with svc.client() as c:
        assert c.request("summary")["debug"]["refused"] == 300 - limit


def test_idle_connections_are_closed(service, tmp_path):
    with _own_server(service, tmp_path, idle_timeout=0.3) as (svc, srv):
        # Closed after its 0.3 s, long before the 300-s default; the upper
        # bound is generous (a loaded machine once ran past a 5-s read timeout).
        s = _raw(srv.path, timeout=30)
        t0 = time.monotonic()
        data = _until_eof(s)
        assert 0.2 < time.monotonic() - t0 < 30 and b"idle" in data
        s.close()
        assert os.path.exists(srv.path)


def test_a_watcher_that_never_reads_is_skipped_then_dropped(service, tmp_path):
    with _own_server(service, tmp_path, stall_timeout=1.0) as (svc, srv):
        s = _raw(srv.path)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        s.sendall(b'{"cmd": "watch", "args": {"interval": 0.05, "what": '
                  b'["metrics", "workers", "hot"], "n": 1000}}\n')
        t0 = time.monotonic()
        deadline = t0 + 20
        while srv.counters["cut_off"] == 0:
            assert time.monotonic() < deadline, "the stalled watcher was never dropped"
            time.sleep(0.02)
        # Pushes were skipped while the last one waited, not queued up.
        assert srv.counters["pushes_skipped"] > 0
        assert time.monotonic() - t0 >= 0.9
        svc.wait_trips(50)
        s.close()


def test_a_client_over_its_rate_is_slowed_and_loses_nothing(service, tmp_path):
    with _own_server(service, tmp_path, client_rate=20.0, client_burst=5) as (svc, srv):
        s = _raw(srv.path, timeout=30)
        _lines(s, 1)
        t0 = time.monotonic()
        s.sendall(b"".join(b'{"cmd": "summary", "id": %d}\n' % k for k in range(25)))
        got = _lines(s, 25)
        took = time.monotonic() - t0
        # All 25 answered, in order; past the burst of 5 at 20/s: >= ~1 s.
        assert [r["id"] for r in got] == list(range(25)) and all(r["ok"] for r in got)
        assert took >= 0.9, took
        assert srv.counters["throttled"] > 0
        s.close()


def test_views_are_computed_once_per_interval_and_served_as_copies(service, tmp_path):
    # 3 s: the eight requests below must all fall in one interval, which a
    # starved debug thread can stretch past 1 s.
    with _own_server(service, tmp_path, svc_kw=dict(conns=6), snapshot_interval=3.0) as (svc, srv):
        from ringleader.runtime.debug_cli import DebugClient
        # The first snapshot must see every connection: 6 clients on worker 0
        # and their 6 server ends (a loaded machine may still be connecting).
        deadline = time.monotonic() + 10
        while sum(s.connections for s in svc.rt.stats()) < 12:
            assert time.monotonic() < deadline, "the service's connections never came up"
            time.sleep(0.01)
        with DebugClient(srv.path) as c:
            first = c.request("summary")
            again = [c.request("summary") for _ in range(5)]
            hot = c.request("hot", n=3), c.request("hot", n=7)
            time.sleep(3.1)
            later = c.request("summary")
        assert all(a["uptime_s"] == first["uptime_s"] for a in again)  # the same snapshot
        assert later["uptime_s"] > first["uptime_s"]
        # one computation of hot (at 16) cut to each size asked for
        assert hot[0]["n"] == 3 and hot[1]["n"] == 7
        assert max(len(w["connections"]) for w in hot[0]["workers"]) == 3
        assert max(len(w["connections"]) for w in hot[1]["workers"]) > 3
        for few, more in zip(hot[0]["workers"], hot[1]["workers"]):
            assert few["connections"] == more["connections"][:3]
        assert srv.snapshot_counters["computed"] == 3
        assert srv.snapshot_counters["served_copies"] >= 6


def test_a_watch_is_no_faster_than_the_snapshots(service, tmp_path):
    with _own_server(service, tmp_path, snapshot_interval=0.3) as (svc, srv):
        s = _raw(srv.path)
        _lines(s, 1)
        s.sendall(b'{"cmd": "watch", "id": 1, "args": {"interval": 0.05, "count": 3}}\n')
        ack, *snaps, end = _lines(s, 5)
        assert ack["result"]["interval"] == 0.3
        ups = [x["result"]["summary"]["uptime_s"] for x in snaps]
        assert ups[0] < ups[1] < ups[2]  # each push a newer snapshot
        assert end["event"] == "end"
        s.close()
