"""Connect with each authentication method over TCP and unix sockets."""
import pytest

from ringleader.drivers import postgres as pg


@pytest.mark.parametrize("kind", ["scram", "md5", "trust"])
@pytest.mark.parametrize("unix", [False, True], ids=["tcp", "unix"])
def test_auth_methods(pg_server, run, kind, unix):
    async def main():
        conn = await pg.connect(pg_server.dsn(kind, unix=unix))
        try:
            assert await conn.fetchval("select current_user") == f"rl_{kind}"
            assert conn.backend_pid > 0
            assert conn.get_parameter("server_version").startswith("15")
        finally:
            await conn.close()
        assert conn.is_closed()
    run(main())
