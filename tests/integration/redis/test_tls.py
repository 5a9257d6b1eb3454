"""rediss:// to a real redis-server with a TLS port, on both loops:
certificate checks that pass and fail as they should, a client certificate
the server requires,
and pooled, pipelined, big and pub/sub traffic over TLS; a TLS connection on
a ring refuses to migrate."""
import asyncio

import pytest

import ringleader
from ringleader.drivers import redis
from ringleader.runtime.errors import MigrationError


def url(srv, host="localhost", client_cert=True, **q) -> str:
    if client_cert:  # the TLS port wants one (--tls-auth-clients yes)
        q = dict(q, ssl_certfile=srv.certs["client.crt"], ssl_keyfile=srv.certs["client.key"])
    query = "&".join(f"{k}={v}" for k, v in q.items())
    return f"rediss://{host}:{srv.tls_port}/0" + (f"?{query}" if query else "")


def test_certificate_checks(redis_tls_server, run):
    srv, certs = redis_tls_server, redis_tls_server.certs

    async def main():
        c = await redis.connect(url(srv, ssl_ca_certs=certs["ca.crt"]))
        assert await c.execute("PING") in (b"PONG", "PONG", True)
        c.close()
        # the certificate names localhost only: 127.0.0.1 fails the host check...
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED.*mismatch"):
            await redis.connect(url(srv, host="127.0.0.1", ssl_ca_certs=certs["ca.crt"]))
        # ...unless the check is off; another CA fails the chain check
        c = await redis.connect(url(srv, host="127.0.0.1", ssl_ca_certs=certs["ca.crt"],
                                    ssl_check_hostname="false"))
        c.close()
        with pytest.raises(redis.ConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
            await redis.connect(url(srv, ssl_ca_certs=certs["other-ca.crt"]))
        c = await redis.connect(url(srv, host="127.0.0.1", ssl_cert_reqs="none"))
        c.close()
        # without the client certificate the server ends the handshake
        with pytest.raises(redis.ConnectionError):
            c = await redis.connect(url(srv, client_cert=False, ssl_ca_certs=certs["ca.crt"]))
            await c.execute("PING")
    run(main())


def test_pool_traffic_over_tls(redis_tls_server, run):
    srv, certs = redis_tls_server, redis_tls_server.certs

    async def main():
        async with redis.Pool(url(srv, ssl_ca_certs=certs["ca.crt"]), min_size=1,
                              max_size=3) as pool:
            keys = [f"tls:{i}" for i in range(300)]
            await asyncio.gather(*(pool.set(k, i) for i, k in enumerate(keys)))
            assert await asyncio.gather(*(pool.get(k) for k in keys)) == \
                [str(i).encode() for i in range(300)]
            big = bytes(range(256)) * 8192  # 2 MiB each way
            await pool.set("tls:big", big)
            assert await pool.get("tls:big") == big
            ps = pool.pubsub()
            await ps.subscribe("tls-news")
            assert await pool.publish("tls-news", "hi") == 1
            assert (await ps.get_message(2)).data == b"hi"
            await ps.close()
            await pool.delete("tls:big", *keys)
    run(main())


def test_a_tls_connection_does_not_migrate(redis_tls_server):
    async def main(rt):
        c = await redis.connect(url(redis_tls_server, ssl_cert_reqs="none"))
        with pytest.raises(MigrationError, match="TLS"):
            await rt.migrate(c._transport, 1)
        assert await c.execute("PING") in (b"PONG", "PONG", True)
        c.close()
    ringleader.run(main, workers=2, debug_socket=False)
