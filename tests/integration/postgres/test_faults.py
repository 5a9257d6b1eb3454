"""Faults: timeouts and cancellation (a real CancelRequest), statement_timeout,
pg_terminate_backend, lost connections, wrong passwords, and a fake server
sending malformed messages."""
import asyncio
import struct

import pytest
from psycopg import errors as pe

from ringleader.drivers import postgres as pg


async def _active_queries(pg_server, pid: int) -> str:
    su = await pg.connect(pg_server.superuser_dsn())
    try:
        return await su.fetchval("select state from pg_stat_activity where pid = $1", pid)
    finally:
        await su.close()


async def _until(su, sql: str, *args, what: str) -> None:
    """Polls ``sql`` (a count over pg_stat_activity) on the superuser
    connection ``su`` until it is non-zero: waits for the server to be in a
    state instead of sleeping and hoping it is (generous 10-s deadline)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not await su.fetchval(sql, *args):
        assert loop.time() < deadline, f"the server never got to: {what}"
        await asyncio.sleep(0.01)


async def _running(su, pid: int, like: str) -> None:
    await _until(su, "select count(*) from pg_stat_activity where pid = $1 and state = 'active' "
                     "and query like $2", pid, like, what=f"backend {pid} running {like!r}")


async def _gone(su, pid: int) -> None:
    await _until(su, "select count(*) = 0 from pg_stat_activity where pid = $1", pid,
                 what=f"backend {pid} exited")


def test_timeout_sends_cancel_request(pg_server, run):
    async def main():
        c = await pg.connect(pg_server.dsn())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        with pytest.raises(pg.QueryTimeout) as ei:
            await c.fetchval("select pg_sleep(30)", timeout=0.3)
        assert isinstance(ei.value, TimeoutError)
        assert isinstance(ei.value.__cause__, TimeoutError)
        assert loop.time() - t0 < 5
        # the server really stopped: the connection answers at once, idle
        assert await c.fetchval("select 1") == 1
        assert loop.time() - t0 < 5
        assert await _active_queries(pg_server, c.backend_pid) == "idle"
        # command_timeout applies when no per-call timeout is given
        c.command_timeout = 0.2
        with pytest.raises(pg.QueryTimeout):
            await c.execute("select pg_sleep(30)")
        c.command_timeout = None
        assert await c.fetchval("select 2") == 2
        await c.close()
    run(main())


def test_task_cancellation_cancels_on_server(pg_server, run):
    async def main():
        c = await pg.connect(pg_server.dsn())
        su = await pg.connect(pg_server.superuser_dsn())
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        head = asyncio.ensure_future(c.fetchval("select pg_sleep(0.3)::text || 'head'"))
        slow = asyncio.ensure_future(c.fetchval("select pg_sleep(30)::text || $1", "x"))
        after = asyncio.ensure_future(c.fetchval("select $1::int", 5))
        await _running(su, c.backend_pid, "%'head'%")
        slow.cancel()  # still queued behind `head`: cancelled when it gets to run
        assert await head == "head"
        with pytest.raises(asyncio.CancelledError):
            await slow
        assert await after == 5
        assert loop.time() - t0 < 15  # not the 30 s: cancelled (generous: a loaded machine)
        # cancelling the query at the head of the pipeline
        t = asyncio.ensure_future(c.execute("select pg_sleep(30)"))
        await _running(su, c.backend_pid, "select pg_sleep(30)")
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        assert await c.fetchval("select 3") == 3
        assert loop.time() - t0 < 20
        # the task preparing a statement is cancelled; another one waiting for
        # that statement prepares it itself
        t1 = asyncio.ensure_future(c.fetchval("select $1::int + 100", 1))
        t2 = asyncio.ensure_future(c.fetchval("select $1::int + 100", 2))
        await asyncio.sleep(0)
        t1.cancel()
        assert await t2 == 102
        with pytest.raises(asyncio.CancelledError):
            await t1
        await c.close()
        await su.close()
    run(main())


def test_a_late_cancel_request_does_not_cancel_the_next_query(pg_server, run, monkeypatch):
    """A CancelRequest cancels whatever the backend runs when it arrives.  One
    sent for a query that then ends by itself must not hit a query submitted
    while the request was under way: that one is held back until the server
    has taken the request.  (Seen in a suite run: a statement re-prepared
    after its first preparer was cancelled failed with QueryCanceled.)"""
    from ringleader.drivers.postgres import session
    real = session.send_cancel
    late = []

    async def main():
        c = await pg.connect(pg_server.dsn())

        async def cancel_after_the_head_ended(*args, **kw):
            # the next query is submitted now; the request is sent once the
            # cancelled one has ended, as when its answer crosses the request
            late.append(asyncio.ensure_future(c.execute("select pg_sleep(0.5)")))
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 10
            for ops in (2, 1):  # the next query submitted; then the cancelled one ended
                while c.in_flight != ops:
                    assert loop.time() < deadline, f"never {ops} queries in flight"
                    await asyncio.sleep(0.005)
            await real(*args, **kw)

        monkeypatch.setattr(session, "send_cancel", cancel_after_the_head_ended)
        head = asyncio.ensure_future(c.execute("select pg_sleep(0.2)"))
        await asyncio.sleep(0.05)
        head.cancel()
        with pytest.raises(asyncio.CancelledError):
            await head
        while not late:
            await asyncio.sleep(0.005)
        assert await late[0] == "SELECT 1"
        assert await c.fetchval("select 4") == 4
        await c.close()
    run(main())


def test_statement_timeout(pg_server, run):
    async def main():
        c = await pg.connect(pg_server.dsn(), server_settings={"statement_timeout": "100"})
        assert c.get_parameter("application_name") == ""
        with pytest.raises(pe.QueryCanceled) as ei:
            await c.fetch("select pg_sleep(5)")
        assert "statement timeout" in str(ei.value)
        assert await c.fetchval("select 1") == 1
        await c.close()
    run(main())


def test_terminate_backend_in_flight_and_idle(pg_server, run):
    async def main():
        su = await pg.connect(pg_server.superuser_dsn())
        c = await pg.connect(pg_server.dsn(application_name="victim"))
        assert c.get_parameter("application_name") == "victim"
        q = asyncio.ensure_future(c.fetch("select pg_sleep(30)"))
        queued = [asyncio.ensure_future(c.fetchval("select $1::int", i)) for i in range(3)]
        await _running(su, c.backend_pid, "select pg_sleep(30)")
        assert await su.fetchval("select pg_terminate_backend($1)", c.backend_pid) is True
        with pytest.raises(pe.AdminShutdown):
            await q
        for t in queued:
            with pytest.raises(pg.ConnectionLost):
                await t
        assert c.is_closed()
        with pytest.raises(pg.ConnectionLost):
            await c.fetchval("select 1")
        # idle connection killed: the next query fails with a typed error
        c2 = await pg.connect(pg_server.dsn())
        await su.fetchval("select pg_terminate_backend($1)", c2.backend_pid)
        await _gone(su, c2.backend_pid)
        with pytest.raises(pg.ConnectionLost) as ei:
            await c2.fetchval("select 1")
        assert isinstance(ei.value, ConnectionError)
        # a listener whose connection is killed: the iterator raises, no hang
        c3 = await pg.connect(pg_server.dsn())
        async with c3.listen("ch") as notes:
            await su.fetchval("select pg_terminate_backend($1)", c3.backend_pid)
            with pytest.raises(pg.ConnectionLost):
                await asyncio.wait_for(notes.__anext__(), 5)
        await su.close()
    run(main())


def test_authentication_failures(pg_server, run):
    async def main():
        with pytest.raises(pe.InvalidPassword):
            await pg.connect(pg_server.dsn().replace("scr@m pass", "wrong"))
        with pytest.raises(pg.AuthenticationUnsupported, match="no password"):
            await pg.connect(f"host=127.0.0.1 port={pg_server.port} user=rl_scram dbname=rltest")
        with pytest.raises(pe.InvalidPassword):  # the server hides unknown users
            await pg.connect(pg_server.dsn("nosuchuser") + " password=x")
        with pytest.raises(pe.InvalidCatalogName):
            await pg.connect(pg_server.dsn("trust").replace("dbname=rltest", "dbname=nodb"))
        with pytest.raises(pg.ConnectionLost, match="could not connect"):
            await pg.connect("host=127.0.0.1 port=1 user=x")
        c = await pg.connect(f"postgresql://rl_md5:md5pass@127.0.0.1:{pg_server.port}/rltest"
                             f"?application_name=url&connect_timeout=5")
        assert await c.fetchval("show application_name") == "url"
        await c.close()
    run(main())


def test_dsn_errors():
    from ringleader.drivers.postgres.dsn import parse_dsn
    with pytest.raises(ValueError, match="invalid DSN"):
        parse_dsn("host")
    with pytest.raises(ValueError, match="unsupported"):
        parse_dsn("host=a sslcompression=1")
    with pytest.raises(ValueError, match="cannot load sslcert 'x'"):
        parse_dsn("host=a sslcert=x")
    with pytest.raises(ValueError, match="invalid sslmode 'requir'"):
        parse_dsn("host=a sslmode=requir")
    with pytest.raises(ValueError, match="port"):
        parse_dsn("host=a port=99999")
    p = parse_dsn("postgresql://u:p@h1:5433,h2/db?connect_timeout=0&application_name=a")
    assert p.addresses == (("h1", 5433), ("h2", 5432)) or p.addresses == (("h1", 5433), ("h2", 5433))
    assert (p.user, p.password, p.dbname, p.connect_timeout) == ("u", "p", "db", None)
    assert p.server_settings == {"application_name": "a"}


# ---------------------------------------------------------------- fake server

def _msg(kind: bytes, body: bytes = b"") -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


HELLO = _msg(b"R", struct.pack("!i", 0)) + _msg(b"K", struct.pack("!i", 7) + b"KEY!") \
    + _msg(b"S", b"TimeZone\0UTC\0") + _msg(b"Z", b"I")


class FakeServer:
    """Declines TLS (as a server with ssl=off does), completes start-up, then
    answers the first client bytes with ``reply`` (and closes if ``reply`` is
    None)."""

    def __init__(self, reply: bytes | None, hello: bytes = HELLO):
        self.reply, self.hello = reply, hello

    async def handle(self, reader, writer):
        try:
            while True:
                n = struct.unpack("!i", await reader.readexactly(4))[0]
                body = await reader.readexactly(n - 4)
                if body != struct.pack("!i", 80877103):  # not an SSLRequest
                    break
                writer.write(b"N")
            writer.write(self.hello)
            if await reader.read(65536):
                if self.reply is None:
                    writer.close()
                    return
                writer.write(self.reply)
            await reader.read(65536)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def __aenter__(self):
        self.server = await asyncio.start_server(self.handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return f"host=127.0.0.1 port={self.port} user=u dbname=d"

    async def __aexit__(self, *exc):
        self.server.close()


@pytest.mark.parametrize("reply, what", [
    (b"\x00\x00\x00\x00\x05", "unknown backend message type"),
    (b"Z\x00\x00\x00\x02", "bad message length"),
    (_msg(b"D", b"\0\1\0\0\0\x09ab"), "truncated"),
    (_msg(b"Z", b"Q"), "ReadyForQuery"),
    (_msg(b"K", b"\0\0\0\1\0\0\0\2"), "unexpected message"),
    (_msg(b"T", b"\0\1name"), "unterminated"),
])
def test_malformed_server_messages(run, reply, what):
    async def main():
        async with FakeServer(reply) as dsn:
            c = await pg.connect(dsn, statement_cache_size=0)
            tasks = [asyncio.ensure_future(c.fetchval("select $1::int", i)) for i in range(3)]
            for t in tasks:
                with pytest.raises(pg.ProtocolViolation, match=what):
                    await t
            assert c.is_closed()
            with pytest.raises(pg.ConnectionLost):
                await c.execute("select 1")
    run(main())


def test_connection_lost_fails_every_query_in_flight(run):
    async def main():
        async with FakeServer(None) as dsn:
            c = await pg.connect(dsn)
            tasks = [asyncio.ensure_future(c.fetch("select $1::int", i)) for i in range(5)]
            tasks.append(asyncio.ensure_future(c.execute("select 1")))
            done, pending = await asyncio.wait(tasks, timeout=5)
            assert not pending
            for t in done:
                assert isinstance(t.exception(), pg.ConnectionLost)
    run(main())


def test_malformed_startup_and_connect_timeout(run):
    async def main():
        async with FakeServer(b"", hello=_msg(b"R", struct.pack("!i", 5) + b"ab")) as dsn:
            with pytest.raises(pg.ProtocolViolation):
                await pg.connect(dsn + " password=x")
        async with FakeServer(b"", hello=b"") as dsn:  # never answers the start-up
            loop = asyncio.get_running_loop()
            t0 = loop.time()
            with pytest.raises(pg.ConnectionLost, match="TimeoutError"):
                await pg.connect(dsn + " connect_timeout=0.3")
            assert loop.time() - t0 < 3
    run(main())


def _pending_cancel_tasks() -> list:
    return [t for t in asyncio.all_tasks() if not t.done()
            and "_cancel_head" in getattr(t.get_coro(), "__qualname__", "")]


def test_pool_close_finishes_cancel_requests_in_flight(pg_server, run):
    """Closing a (multiplexed) pool right after callers were cancelled
    mid-query, as at the end of a benchmark run, leaves no CancelRequest task
    pending: the loop may close at once without 'Task was destroyed but it is
    pending'."""
    async def main():
        pids = []

        async def setup(conn):
            pids.append(conn.backend_pid)
        pool = pg.Pool(pg_server.dsn(), min_size=2, max_size=2, setup=setup)
        await pool.open()
        callers = [asyncio.ensure_future(pool.fetchval("select pg_sleep(30)")) for _ in range(4)]
        await asyncio.sleep(0.3)  # the queries run on the server
        for t in callers:
            t.cancel()
        await asyncio.gather(*callers, return_exceptions=True)
        assert _pending_cancel_tasks(), "the cancelled callers started no CancelRequest"
        await pool.close()
        assert _pending_cancel_tasks() == []
        # nothing of the pool's is left pending (the run fixture's wait_for aside)
        assert [t for t in asyncio.all_tasks() if not t.done() and t is not asyncio.current_task()
                and t.get_coro().__qualname__ != "wait_for"] == []
        # and the connections those statements ran on are closed, their backends gone
        c = await pg.connect(pg_server.dsn())
        try:
            deadline = asyncio.get_running_loop().time() + 10
            while left := await c.fetchval("select count(*) from pg_stat_activity "
                                           "where pid = any($1::int[])", pids):
                assert asyncio.get_running_loop().time() < deadline, f"{left} backends left open"
                await asyncio.sleep(0.05)
        finally:
            await c.close()
    run(main())


def test_connection_close_finishes_cancel_requests_in_flight(pg_server, run):
    async def main():
        c = await pg.connect(pg_server.dsn())
        t = asyncio.ensure_future(c.execute("select pg_sleep(30)"))
        await asyncio.sleep(0.2)
        t.cancel()
        with pytest.raises(asyncio.CancelledError):
            await t
        assert _pending_cancel_tasks()
        await c.close()
        assert _pending_cancel_tasks() == []
    run(main())
