"""The backend choice and the epoll fallback's own guarantees.

``auto`` picks the ring where io_uring is allowed and epoll (with one log line
naming cause and fix) where a seccomp filter denies it: the latter is checked
in a child process that ``scripts/deny-uring`` puts under a real filter, so
the kernel itself refuses the syscalls.  The fallback loop is then checked
directly (``backend="epoll"``), in this process: telemetry that only a ring
has is absent (None), not zero; per-connection counters count; a live
connection moves between workers with its bytes in order; the public loop
API works (signals, UDP, pipes, subprocesses).  The runtime, driver and
debug tests run on it as a whole in the epoll tier (``./scripts/test --epoll``).
"""
from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import ringleader
from ringleader.runtime import EpollEventLoop, RingEventLoop, Runtime
from ringleader.runtime.backend import choose

from ..conftest import URING_DENIED
from ..tutil import REPO, Echo, wait_until

DENY = os.path.join(REPO, "scripts", "deny-uring")

CHILD = textwrap.dedent("""
    import asyncio, json, logging, sys
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="LOG %(levelname)s %(message)s")
    import ringleader
    from ringleader.runtime import RingUnavailableError

    async def main(rt):
        return [rt.backend, type(asyncio.get_running_loop()).__name__,
                [s.backend for s in rt.stats()], rt.choice.reason]

    out = {"run": ringleader.run(main, workers=2, debug_socket=False)}
    loop = ringleader.new_event_loop()
    out["new_event_loop"] = type(loop).__name__
    loop.close()
    try:
        ringleader.run(main, backend="uring", debug_socket=False)
        out["uring"] = None
    except RingUnavailableError as exc:
        out["uring"] = str(exc)

    # A service (or framework) that sets ringleader's policy follows the same choice.
    async def loop_type():
        return type(asyncio.get_running_loop()).__name__
    for b in ("auto", "uring"):
        asyncio.set_event_loop_policy(ringleader.RingEventLoopPolicy(**({} if b == "auto" else {"backend": b})))
        try:
            out["policy_" + b] = asyncio.run(loop_type())
        except RingUnavailableError as exc:
            out["policy_" + b] = "refused: " + str(exc)
    asyncio.set_event_loop_policy(None)
    print(json.dumps(out))
""")


def _child(*wrap: str) -> tuple[dict, str]:
    proc = subprocess.run([*wrap, sys.executable, "-c", CHILD], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr


@pytest.mark.skipif(URING_DENIED, reason="io_uring is denied to this process (the epoll tier)")
def test_auto_picks_the_ring_where_it_is_allowed():
    assert choose("auto").name == "uring"
    out, err = _child()
    assert out["run"][:3] == ["uring", "RingEventLoop", ["uring", "uring"]]
    assert out["new_event_loop"] == "RingEventLoop" and out["uring"] is None
    assert out["policy_auto"] == out["policy_uring"] == "RingEventLoop"
    assert "epoll" not in err


@pytest.mark.parametrize("err,cause", [("EPERM", "seccomp filter"), ("ENOSYS", "seccomp filter")])
def test_auto_falls_back_to_epoll_under_a_seccomp_filter(err, cause):
    out, log = _child(DENY, "--errno", err)
    backend, loop_type, per_worker, reason = out["run"]
    assert (backend, loop_type, per_worker) == ("epoll", "EpollEventLoop", ["epoll", "epoll"])
    assert out["new_event_loop"] == "EpollEventLoop"
    assert cause in reason and "allow io_uring_setup, io_uring_enter and io_uring_register" in reason
    # one line, at WARNING, however many loops were made; it says why and how to enable io_uring
    lines = [ln for ln in log.splitlines() if "epoll fallback" in ln]
    assert len(lines) == 1, log
    assert lines[0].startswith("LOG WARNING") and "--security-opt seccomp=" in lines[0]
    assert "seccompProfile" in lines[0] and "Unconfined" in lines[0]
    # backend="uring" keeps today's refusal, with the cause and fix
    assert out["uring"] is not None and "io_uring_setup" in out["uring"]
    # so does RingEventLoopPolicy: auto falls back, backend="uring" refuses
    assert out["policy_auto"] == "EpollEventLoop"
    assert out["policy_uring"].startswith("refused: ") and "io_uring_setup" in out["policy_uring"]


def test_backend_must_be_one_of_three():
    with pytest.raises(ValueError, match="'auto', 'uring' or 'epoll'"):
        choose("kqueue")
    with pytest.raises(ValueError):
        Runtime(1, backend="select")
    with pytest.raises(ValueError, match="'auto', 'uring' or 'epoll'"):
        ringleader.RingEventLoopPolicy(backend="kqueue")


def test_epoll_loop_reports_ring_telemetry_as_absent():
    async def main(rt):
        g = await rt.serve(Echo, "127.0.0.1", 0)
        r, w = await asyncio.open_connection("127.0.0.1", g.port)
        for _ in range(3):
            w.write(b"x" * 10)
            await w.drain()
            await r.readexactly(10)
        loop = asyncio.get_running_loop()
        await wait_until(lambda: loop.connections(), what="the server side of the connection")
        conn = loop.hot_connections()[0]
        stats = rt.stats()
        w.close()
        await w.wait_closed()
        return stats, conn

    stats, conn = ringleader.run(main, workers=2, backend="epoll", debug_socket=False)
    for s in stats:
        assert s.backend == "epoll"
        assert s.ring is None and s.enobufs is None      # absent, not zero
        assert s.uptime > 0 and s.idle_s >= 0 and s.busy_s >= 0
    s0 = stats[0]
    assert s0.iterations > 0 and s0.handles_run > 0 and s0.connections >= 1
    assert conn.bytes_in == 30 and conn.bytes_out == 30 and conn.ops >= 6 and conn.slot == -1
    assert conn.worker == 0 and conn.migratable


class Tagged(asyncio.Protocol):
    """Answers each chunk prefixed with its worker; records the migration hooks
    and runs ``on_moving(transport)`` in ``connection_moving`` (the source
    thread, the instant the connection leaves it: the window in which a move
    is under way on epoll)."""

    instances: list = []

    def __init__(self):
        self.moving, self.migrated = [], []
        self.on_moving = None
        Tagged.instances.append(self)

    def connection_made(self, t):
        self.t = t

    def data_received(self, d):
        self.t.write(b"[%d]" % asyncio.get_running_loop().worker_id + d)

    def connection_moving(self, loop):
        self.moving.append(loop.worker_id)
        if self.on_moving is not None:
            self.on_moving(self.t)

    def connection_migrated(self, transport, loop):
        self.migrated.append(loop.worker_id)


def _on_epoll(main):
    """ringleader.run(main) on two epoll workers; Tagged starts afresh."""
    Tagged.instances = []
    return ringleader.run(main, workers=2, backend="epoll", debug_socket=False)


async def _served(rt):
    loop = asyncio.get_running_loop()
    srv = await loop.create_server(Tagged, "127.0.0.1", 0)
    r, w = await asyncio.open_connection("127.0.0.1", srv.sockets[0].getsockname()[1])
    w.write(b"a")
    assert await r.readexactly(4) == b"[0]a"
    return srv, r, w, Tagged.instances[-1]


def test_epoll_last_active_counts_writes_as_on_the_ring():
    async def main(rt):
        srv, r, w, p = await _served(rt)
        after_read = p.t.last_active
        assert after_read > 0
        await asyncio.sleep(0.01)            # let the loop's clock move on
        p.t.write(b"push")                   # a write with no read before it
        assert await r.readexactly(4) == b"push"
        after_write = p.t.last_active
        w.close()
        await w.wait_closed()
        srv.close()
        return after_read, after_write, asyncio.get_running_loop().time()

    after_read, after_write, now = _on_epoll(main)
    assert after_read < after_write <= now


def test_epoll_migration_keeps_bytes_in_order_and_calls_the_hooks():
    async def main(rt):
        srv, r, w, p = await _served(rt)

        def write_while_moving(t):
            t.write(b"<held1>")
            t.write(b"<held2>")
        p.on_moving = write_while_moving
        w.write(b"b")   # in flight to the server as it moves: read first on worker 1
        await rt.migrate(p.t, 1)
        assert await r.readexactly(18) == b"<held1><held2>[1]b"
        w.write(b"c")
        assert await r.readexactly(4) == b"[1]c"
        assert (p.moving, p.migrated) == ([1], [1])
        ls = {s.worker: s for s in rt.stats()}
        assert (ls[0].migrations_out, ls[1].migrations_in) == (1, 1)
        assert rt.loop(1).hot_connections()[0].migrations == 1
        w.close()
        await w.wait_closed()
        srv.close()

    _on_epoll(main)


def test_epoll_migration_carries_a_close_made_while_moving():
    async def main(rt):
        srv, r, w, p = await _served(rt)

        def close_while_moving(t):
            t.write(b"bye")
            t.write_eof()
            t.close()
        p.on_moving = close_while_moving
        await rt.migrate(p.t, 1)
        assert await asyncio.wait_for(r.read(), 10) == b"bye"   # sent from worker 1, then EOF
        await wait_until(lambda: not rt.loop(1).connections(), what="the close on worker 1")
        w.close()
        srv.close()

    _on_epoll(main)


def test_epoll_migration_fails_closed_on_an_abort_while_moving():
    async def main(rt):
        from ringleader.runtime import MigrationError
        srv, r, w, p = await _served(rt)

        def abort_while_moving(t):
            t.write(b"never sent")
            t.abort()
        p.on_moving = abort_while_moving
        with pytest.raises(MigrationError) as ei:
            await rt.migrate(p.t, 1)
        assert ei.value.where == "closed"
        assert await asyncio.wait_for(r.read(), 10) == b""
        await wait_until(lambda: not rt.loop(1).connections(), what="the abort on worker 1")
        w.close()
        srv.close()

    _on_epoll(main)


def test_epoll_migration_refuses_while_the_target_drains_and_keeps_working():
    async def main(rt):
        from ringleader.runtime import MigrationError
        srv, r, w, p = await _served(rt)
        rt.workers[1].draining = True
        with pytest.raises(MigrationError, match="being removed"):
            await rt.migrate(p.t, 1)
        rt.workers[1].draining = False
        w.write(b"z")
        assert await r.readexactly(4) == b"[0]z"
        w.close()
        srv.close()

    _on_epoll(main)


def test_epoll_loop_serves_the_public_loop_api(tmp_path):
    """Signals, UDP, pipes and subprocesses: asyncio's own code on the fallback."""
    got = {}

    async def main():
        loop = asyncio.get_running_loop()
        assert isinstance(loop, EpollEventLoop)
        fired = loop.create_future()
        loop.add_signal_handler(signal.SIGUSR1, fired.set_result, "usr1")
        os.kill(os.getpid(), signal.SIGUSR1)
        got["signal"] = await asyncio.wait_for(fired, 10)
        loop.remove_signal_handler(signal.SIGUSR1)

        class Udp(asyncio.DatagramProtocol):
            def connection_made(self, t):
                self.t = t

            def datagram_received(self, data, addr):
                self.t.sendto(data.upper(), addr)

        srv, _ = await loop.create_datagram_endpoint(Udp, local_addr=("127.0.0.1", 0))
        answer = loop.create_future()

        class Client(asyncio.DatagramProtocol):
            def datagram_received(self, data, addr):
                answer.set_result(data)

        cli, _ = await loop.create_datagram_endpoint(Client, remote_addr=srv.get_extra_info("sockname"))
        cli.sendto(b"udp")
        got["udp"] = await asyncio.wait_for(answer, 10)
        cli.close()
        srv.close()

        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", "print(input()[::-1])",
                                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        out, _ = await asyncio.wait_for(proc.communicate(b"epoll\n"), 30)
        got["subprocess"] = (out.strip(), proc.returncode)

    with asyncio.Runner(loop_factory=lambda: ringleader.new_event_loop(backend="epoll")) as r:
        r.run(main())
    assert got == {"signal": "usr1", "udp": b"UDP", "subprocess": (b"llope", 0)}


def test_ring_loop_unchanged_by_backend_uring():
    if URING_DENIED:
        pytest.skip("io_uring is denied to this process (the epoll tier)")
    loop = ringleader.new_event_loop(backend="uring")
    try:
        assert isinstance(loop, RingEventLoop)
    finally:
        loop.close()
