"""Fuzzed requests (hypothesis): every line gets exactly one well-formed answer."""
import json
import socket

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ringleader.runtime.debug import COMMANDS

from .conftest import Service

CODES = {"bad_json", "bad_request", "unknown_command", "control_disabled", "not_found", "failed",
         "internal"}
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False)
    | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12)
arg_names = st.sampled_from(sorted({a for spec, _, _ in COMMANDS.values() for a in spec}) + ["zz"])


@pytest.fixture(scope="module")
def svc():
    s = Service()
    yield s
    s.close()


class Conn:
    def __init__(self, path):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.s.settimeout(10)
        self.s.connect(str(path))
        self.buf = b""
        assert self.next()["protocol"] == "ringleader-debug"

    def next(self) -> dict:
        while b"\n" not in self.buf:
            chunk = self.s.recv(65536)
            assert chunk, "the server closed the connection"
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def answer(self, line: bytes) -> dict:
        """Send a line; the next reply that is not a watch push."""
        self.s.sendall(line + b"\n")
        while True:
            msg = self.next()
            if "event" not in msg:
                return msg


@pytest.fixture(scope="module")
def conn(svc):
    c = Conn(svc.path)
    yield c
    c.s.close()


def _check(resp: dict) -> None:
    assert isinstance(resp["ok"], bool)
    if resp["ok"]:
        assert "result" in resp
    else:
        assert resp["error"]["code"] in CODES and resp["error"]["message"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=300).filter(lambda b: b"\n" not in b))
def test_random_bytes(conn, data):
    _check(conn.answer(data))


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cmd=st.sampled_from(sorted(COMMANDS)) | st.text(max_size=12),
       args=st.none() | st.dictionaries(arg_names, json_values, max_size=4) | json_values,
       rid=st.none() | st.integers(-10**6, 10**6) | st.text(max_size=10))
def test_random_requests(conn, cmd, args, rid):
    req = {"cmd": cmd, "id": rid}
    if args is not None:
        req["args"] = args
    resp = conn.answer(json.dumps(req).encode())
    _check(resp)
    assert resp["id"] == rid
    if cmd not in COMMANDS:
        assert resp["error"]["code"] == "unknown_command"
    elif COMMANDS[cmd][2]:
        assert resp["error"]["code"] == "control_disabled"
    if cmd == "watch" and resp["ok"]:
        assert conn.answer(b'{"cmd": "unwatch"}')["ok"]


def test_after_fuzzing_the_runtime_serves_and_answers(svc, conn):
    svc.wait_trips(100)
    resp = conn.answer(b'{"cmd": "summary"}')
    assert resp["ok"] and resp["result"]["workers"] == 2
    assert svc.rt.debug_server.counters["requests"] > 300
