"""The connection's named lifecycle (session.State) against a real server, and
the narrow Channel interface on a live connection."""
import socket

import pytest

from ringleader.drivers import postgres as pg
from ringleader.drivers.postgres.channel import Channel
from ringleader.drivers.postgres.connection import Connection
from ringleader.drivers.postgres.dsn import parse_dsn
from ringleader.drivers.postgres.session import State


def test_states_of_a_good_connection(pg_server, run):
    async def main():
        conn = await pg.connect(pg_server.dsn("trust"))
        assert isinstance(conn, Channel)
        assert conn.state is State.READY
        assert conn.migration_blocker() is None
        await conn.close()
        assert conn.state is State.CLOSED and conn.is_closed()
        assert conn.migration_blocker() == "it is closed"
    run(main())


def test_a_failed_start_leaves_it_closed(pg_server, run):
    # A port nothing listens on: start() raises and the connection is CLOSED,
    # with no transport left for connect() to clean up.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    async def main():
        params = parse_dsn(pg_server.dsn("trust"))
        conn = Connection(params, ("127.0.0.1", port))
        assert conn.state is State.NEW
        with pytest.raises(OSError):
            await conn.start()
        assert conn.state is State.CLOSED and conn.is_closed()
        with pytest.raises(AssertionError):
            await conn.start()  # CLOSED is final
    run(main())


def test_a_refused_login_leaves_it_closed(pg_server, run):
    async def main():
        params = parse_dsn(pg_server.dsn("scram"), password="wrong")
        conn = Connection(params, params.addresses[0])
        with pytest.raises(Exception) as ei:
            await conn.start()
        assert "password" in str(ei.value).lower()
        assert conn.state is State.CLOSED
    run(main())


def test_reset_hook_refuses_what_the_next_borrower_must_not_inherit(pg_server, run):
    async def main():
        conn = await pg.connect(pg_server.dsn("trust"))
        try:
            assert conn.reset() is None
            async with conn.listen("ch"):
                with pytest.raises(pg.InterfaceError, match="listening"):
                    conn.reset()
            await conn.execute("BEGIN")
            with pytest.raises(pg.InterfaceError, match="transaction block"):
                conn.reset()
            await conn.execute("ROLLBACK")
            async with conn.cursor("select generate_series(1, 10)", prefetch=2) as cur:
                await cur.fetch(1)
                with pytest.raises(pg.InterfaceError, match="cursor"):
                    conn.reset()
            assert conn.reset() is None
        finally:
            await conn.close()
    run(main())
