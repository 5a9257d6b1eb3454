"""Growing and shrinking the worker set of a live runtime: a new worker joins
the reuseport servers and takes connections; removing it migrates its plain
connections to the remaining workers (they keep echoing, byte-exact) and
closes its TLS ones (which cannot migrate), whose peers then see EOF."""
from __future__ import annotations

import asyncio
import ssl

import pytest

import ringleader
from ringleader.runtime import WorkerError
from ..tutil import Echo


LOST: list = []  # (protocol id, exc) of the TLS server's connection_lost calls


class TlsEcho(Echo):
    def connection_lost(self, exc):
        LOST.append(exc)


async def echo_round(reader, writer, payload: bytes) -> bytes:
    writer.write(payload)
    return await reader.readexactly(len(payload))


def test_add_then_remove_a_worker_under_live_connections(fd_guard, tls_certs):
    async def main(rt):
        loop = asyncio.get_running_loop()
        group = await rt.serve(Echo, mode="reuseport")
        assert await loop.run_in_executor(None, rt.add_worker) == 1
        assert len(rt.workers) == 2

        # Plain clients on worker 0; the kernel spreads their server sides
        # over both workers' listeners.
        clients = [await asyncio.open_connection("127.0.0.1", group.port) for _ in range(24)]
        for i, (r, w) in enumerate(clients):
            assert await echo_round(r, w, b"hello %d\n" % i) == b"hello %d\n" % i
        on_new = len(rt.loop(1)._conns)
        assert on_new > 0, "no connection landed on the new worker"

        # A TLS connection whose server side lives on worker 1.
        sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        sctx.load_cert_chain(tls_certs["server.crt"], tls_certs["server.key"])

        async def tls_server():
            srv = await asyncio.get_running_loop().create_server(TlsEcho, "127.0.0.1", 0, ssl=sctx)
            return srv, srv.sockets[0].getsockname()[1]

        tls_srv, tls_port = await rt.run_on(1, tls_server())
        cctx = ssl.create_default_context(cafile=tls_certs["ca.crt"])
        tr, tw = await asyncio.open_connection("localhost", tls_port, ssl=cctx)
        assert await echo_round(tr, tw, b"over tls") == b"over tls"

        before = rt.stats()[0].migrations_in
        await rt.remove_last_worker()
        with pytest.raises(WorkerError):
            rt.loop(1)
        assert len(rt.workers) == 1
        # exactly worker 1's plain connections moved here (the TLS one did not)
        assert rt.stats()[0].migrations_in - before == on_new
        # every plain connection still echoes, on worker 0 now
        for i, (r, w) in enumerate(clients):
            assert await echo_round(r, w, b"again %d " % i * 50) == b"again %d " % i * 50
        assert len(rt.loop(0)._conns) >= 2 * len(clients)  # both ends on worker 0 now
        # the TLS connection was closed, not left on a stopped ring: its
        # protocol was told, and the peer sees EOF
        assert len(LOST) == 1
        assert await asyncio.wait_for(tr.read(), 5) == b""
        tw.close()
        for _, w in clients:
            w.close()
        with pytest.raises(WorkerError, match="last remaining worker"):
            await rt.remove_last_worker()
        return on_new

    assert ringleader.run(main, workers=1, debug_socket=False) > 0
