"""TLS to a real PostgreSQL with ssl=on (pg_tls_server), on both loops:
libpq's sslmode semantics (prefer/allow fall-backs, require, verify-ca,
verify-full), certificate checks that fail as they should, client-certificate
login, large results and pipelined queries over TLS, and a TLS connection on a
ring refusing to migrate.  The plaintext server (pg_server, ssl off) checks
that require fails and prefer falls back."""
import asyncio
import ssl

import psycopg
import pytest

import ringleader
from ringleader.drivers import postgres as pg
from ringleader.runtime.errors import MigrationError


IS_TLS = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


def dsn(srv, user="rl_trust", host="127.0.0.1", **extra) -> str:
    parts = [f"host={host}", f"port={srv.port}", f"user={user}", "dbname=rltest"]
    return " ".join(parts + [f"{k}={v}" for k, v in extra.items()])


def test_sslmodes_on_a_tls_server(pg_tls_server, run):
    srv, certs = pg_tls_server, pg_tls_server.certs

    async def tls_of(**kw) -> bool:
        async with await pg.connect(dsn(srv, **kw)) as c:
            return await c.fetchval(IS_TLS)

    async def main():
        assert await tls_of() is True  # default sslmode=prefer
        assert await tls_of(sslmode="disable") is False
        assert await tls_of(sslmode="allow") is False  # plaintext first, and accepted
        assert await tls_of(sslmode="require") is True
        assert await tls_of(sslmode="verify-ca", sslrootcert=certs["ca.crt"]) is True
        assert await tls_of(sslmode="verify-full", sslrootcert=certs["ca.crt"],
                            host="localhost") is True
        # the fall-backs: prefer retries in plaintext when pg_hba refuses TLS,
        # allow retries with TLS when pg_hba refuses plaintext
        assert await tls_of(user="rl_plainonly") is False
        assert await tls_of(user="rl_tlsonly", sslmode="allow") is True
        with pytest.raises(psycopg.errors.InvalidAuthorizationSpecification,
                           match="pg_hba.conf rejects connection.*no encryption"):
            await tls_of(user="rl_tlsonly", sslmode="disable")
        # a caller's own context
        ctx = ssl.create_default_context(cafile=certs["ca.crt"])
        async with await pg.connect(dsn(srv, host="localhost"), ssl_context=ctx) as c:
            assert await c.fetchval(IS_TLS) is True
    run(main())


def test_certificate_checks_fail_closed(pg_tls_server, run):
    srv, certs = pg_tls_server, pg_tls_server.certs

    async def main():
        # signed by another CA: refused, with the reason in the message
        with pytest.raises(pg.ConnectionLost, match="CERTIFICATE_VERIFY_FAILED"):
            await pg.connect(dsn(srv, sslmode="verify-ca", sslrootcert=certs["other-ca.crt"]))
        # right CA, wrong name (the certificate names localhost only)
        with pytest.raises(pg.ConnectionLost, match="CERTIFICATE_VERIFY_FAILED.*mismatch"):
            await pg.connect(dsn(srv, host="127.0.0.1", sslmode="verify-full",
                                 sslrootcert=certs["ca.crt"]))
        # verify-ca does not check the name
        async with await pg.connect(dsn(srv, host="127.0.0.1", sslmode="verify-ca",
                                        sslrootcert=certs["ca.crt"])) as c:
            assert await c.fetchval(IS_TLS) is True
    run(main())


def test_client_certificate_login(pg_tls_server, run):
    srv, certs = pg_tls_server, pg_tls_server.certs

    async def main():
        async with await pg.connect(dsn(srv, user="rl_cert", host="localhost", sslmode="verify-full",
                                        sslrootcert=certs["ca.crt"], sslcert=certs["client.crt"],
                                        sslkey=certs["client.key"])) as c:
            assert await c.fetchval("SELECT current_user") == "rl_cert"
        with pytest.raises(Exception, match="certificate"):
            await pg.connect(dsn(srv, user="rl_cert", sslmode="require"))
    run(main())


def test_big_results_and_pipelining_over_tls(pg_tls_server, run):
    srv = pg_tls_server

    async def main():
        async with pg.Pool(dsn(srv, sslmode="require"), min_size=1, max_size=3) as pool:
            rows = await pool.fetch("SELECT g, repeat('x', 1000) FROM generate_series(1, 2000) g")
            assert len(rows) == 2000 and rows[-1][0] == 2000 and len(rows[0][1]) == 1000
            got = await asyncio.gather(*(pool.fetchval("SELECT $1::int", i) for i in range(200)))
            assert got == list(range(200))
            assert await pool.fetchval(IS_TLS) is True
            blob = bytes(range(256)) * 4096  # 1 MiB up and back
            assert await pool.fetchval("SELECT $1::bytea", blob) == blob
    run(main())


def test_require_on_a_plaintext_server_fails_and_prefer_falls_back(pg_server, run):
    async def main():
        with pytest.raises(pg.ConnectionLost, match="TLSRefused.*sslmode=require"):
            await pg.connect(pg_server.dsn("trust", sslmode="require"))
        async with await pg.connect(pg_server.dsn("trust", sslmode="prefer")) as c:
            assert await c.fetchval(IS_TLS) is False
    run(main())


def test_a_tls_connection_does_not_migrate(pg_tls_server, fd_guard):
    async def main(rt):
        conn = await pg.connect(dsn(pg_tls_server, sslmode="require"))
        with pytest.raises(MigrationError, match="TLS"):
            await rt.migrate(conn._transport, 1)
        ring_transport = conn._transport.get_extra_info("ssl_object") and \
            conn._transport._ssl_protocol._transport
        assert ring_transport.conn_stats().migratable is False
        with pytest.raises(MigrationError, match="TLS"):
            await rt.migrate(ring_transport, 1)
        assert await conn.fetchval("SELECT 1") == 1  # still fine where it is
        await conn.close()
    ringleader.run(main, workers=2, debug_socket=False)


@pytest.mark.parametrize("answer, what", [
    (b"SZ\x00\x00\x00\x05I", "unencrypted data after accepting"),  # CVE-2021-23222
    (b"E\x00\x00\x00\x08abcd", "unexpected answer to SSLRequest"),
])
def test_bad_answers_to_the_ssl_request(run, answer, what):
    async def handle(reader, writer):
        await reader.readexactly(8)
        writer.write(answer)
        await reader.read(100)
        writer.close()

    async def main():
        server = await asyncio.start_server(handle, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with pytest.raises(pg.ProtocolViolation, match=what):
                await pg.connect(f"host=127.0.0.1 port={port} user=u sslmode=require")
        finally:
            server.close()
    run(main())
