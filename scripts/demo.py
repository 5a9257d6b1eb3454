"""Demo of the runtime, inspectable while it runs.

Starts ``ringleader.run`` with 2 workers serving a TCP echo server; clients on
worker 0 put a little load on it for a few seconds, some of them through a
shared connection pool that the supervisor watches.  It prints where its debug
socket is, then runs ``ringleader stats`` against itself once (a subprocess,
exactly what an operator would type) and prints what that shows.

``--seconds N`` sets how long the load runs; during that time, from another
terminal, ``ringleader top`` (or ``.venv/bin/ringleader top``) shows it live.
"""
import argparse
import asyncio
import os
import subprocess
import sys

import ringleader
from ringleader.drivers.pool import Pool
from ringleader.uring import probe


class Echo(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport = transport

    def data_received(self, data):
        self.transport.write(data)


async def stream_client(port: int, size: int, done: asyncio.Event) -> int:
    """Ping-pong ``size``-byte messages until ``done``; returns round trips."""
    r, w = await asyncio.open_connection("127.0.0.1", port)
    trips = 0
    msg = os.urandom(size)
    while not done.is_set():
        w.write(msg)
        await w.drain()
        assert await r.readexactly(size) == msg
        trips += 1
    w.close()
    return trips


async def pooled_requests(pool: Pool, done: asyncio.Event) -> int:
    """Short requests through the pool, as a service would use a database."""
    n = 0
    while not done.is_set():
        async with pool.acquire() as (r, w):
            w.write(b"request\n")
            await w.drain()
            await r.readexactly(8)
            await asyncio.sleep(0.002)  # the "query" holds the connection a moment
        n += 1
    return n


async def main(rt, seconds: float) -> None:
    group = await rt.serve(Echo, "127.0.0.1", 0)
    port = group.port
    sock = rt.debug_server.path if rt.debug_server else None
    print(f"runtime: pid {os.getpid()}, {len(rt.workers)} workers, echo server on 127.0.0.1:{port}")
    print(f"debug socket: {sock}")
    print(f"  inspect it live:  ringleader --socket {sock} top    (or --pid {os.getpid()})")

    async def connect():
        return await asyncio.open_connection("127.0.0.1", port)

    pool = Pool(connect, min_size=1, max_size=4, name="echo")
    await pool.open()
    rt.register_pool("echo", pool)
    supervisor = None
    try:
        from ringleader.supervisor import PoolAutoscale, Supervisor, SupervisorConfig
        cfg = SupervisorConfig(period=0.5, pools={"echo": PoolAutoscale(min=1, max=8)})
        supervisor = Supervisor(rt, cfg, pools={"echo": pool}).start()
    except ImportError as exc:  # the demo still shows rings and pools without it
        print(f"(supervisor not available: {exc})")

    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    t0 = loop.time()
    streams = [asyncio.ensure_future(stream_client(port, size, done)) for size in (64, 512, 4096, 16384)]
    requests = [asyncio.ensure_future(pooled_requests(pool, done)) for _ in range(12)]
    # Inspect half-way, while the load still runs (it runs on until the
    # subprocess has answered), so the snapshot shows traffic.
    await asyncio.sleep(seconds / 2)
    stats = await loop.run_in_executor(None, _stats_subprocess, sock)
    await asyncio.sleep(max(0.0, t0 + seconds - loop.time()))
    done.set()
    counts = await asyncio.gather(*streams, *requests)
    print(f"load: {sum(counts[:4])} stream round trips, {sum(counts[4:])} pooled requests "
          f"in {loop.time() - t0:.1f}s")
    print(stats)
    if supervisor is not None:
        await supervisor.stop()
    await pool.close()
    group.close()


def _stats_subprocess(sock) -> str:
    if sock is None:
        return "(no debug socket: it could not be created here)"
    cmd = [sys.executable, "-m", "ringleader", "--socket", str(sock), "stats"]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "COLUMNS": os.environ.get("COLUMNS", "160")})
    head = f"$ ringleader --socket {sock} stats   (exit {p.returncode})\n"
    return head + p.stdout + p.stderr


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=3.0, help="how long the load runs")
    args = ap.parse_args()
    f = probe()
    print(f"kernel {f.kernel}: {len(f.opcodes)} io_uring opcodes; defer_taskrun={f.defer_taskrun} "
          f"buf_ring={f.buf_ring} msg_ring={f.msg_ring}")
    ringleader.run(lambda rt: main(rt, args.seconds), workers=2)
