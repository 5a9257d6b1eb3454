"""Demo of the runtime, inspectable while it runs.

Starts ``ringleader.run`` with 2 workers serving a TCP echo server; clients on
worker 0 put a little load on it, some of them through a shared connection
pool that the supervisor watches.  It prints the commands that inspect it
from another terminal (with the path of this venv's ``ringleader``, which a
fresh clone does not have on its PATH), runs ``ringleader stats`` against
itself once (a subprocess, exactly what an operator would type, in 80
columns) and prints what that shows, then keeps the load running until
Ctrl-C -- or for ``--seconds N`` -- and says what it did.
"""
import argparse
import asyncio
import os
import subprocess
import sys

import ringleader
from ringleader.drivers.pool import Pool
from ringleader.uring import RingUnavailableError, probe


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


def cli_command() -> str:
    """This venv's ``ringleader``, relative to the current directory when inside it."""
    path = os.path.join(os.path.dirname(sys.executable), "ringleader")
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else path


async def main(rt, seconds: float | None) -> None:
    group = await rt.serve(Echo, "127.0.0.1", 0)
    port = group.port
    sock = rt.debug_server.path if rt.debug_server else None
    cli = cli_command()
    print(f"runtime: pid {os.getpid()}, {len(rt.workers)} workers, echo server on 127.0.0.1:{port}")
    if sock is not None:
        print(f"debug socket: {sock}")
        print("inspect it from another terminal (paste one of these):")
        print(f"  {cli} top --pid {os.getpid()}")
        print(f"  {cli} stats --pid {os.getpid()}")
    print("the load runs " + ("until Ctrl-C" if seconds is None else f"for {seconds:g} s "
                              f"(--seconds; without it, until Ctrl-C)"), flush=True)

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
    try:
        # Inspect while the load runs, so the snapshot shows traffic.
        await asyncio.sleep(2.0 if seconds is None else seconds / 2)
        print(await loop.run_in_executor(None, _stats_subprocess, sock, cli), flush=True)
        if seconds is None:
            print("running until Ctrl-C ...", flush=True)
            await asyncio.Event().wait()
        await asyncio.sleep(max(0.0, t0 + seconds - loop.time()))
    except asyncio.CancelledError:  # Ctrl-C: asyncio.Runner cancels this task
        print()
    done.set()
    counts = await asyncio.gather(*streams, *requests, return_exceptions=True)
    trips = sum(c for c in counts[:4] if isinstance(c, int))
    served = sum(c for c in counts[4:] if isinstance(c, int))
    print(f"load: {trips} stream round trips and {served} pooled requests in "
          f"{loop.time() - t0:.1f} s; stopping")
    if supervisor is not None:
        await supervisor.stop()
    await pool.close()
    group.close()


def _stats_subprocess(sock, cli: str) -> str:
    if sock is None:
        return "(no debug socket: it could not be created here)"
    cmd = [sys.executable, "-m", "ringleader", "stats", "--socket", str(sock)]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "COLUMNS": os.environ.get("COLUMNS", "80")})
    head = f"$ {cli} stats --socket {sock}" + (f"   (exit {p.returncode})" if p.returncode else "")
    return head + "\n" + p.stdout + p.stderr


def _log_at_80_columns() -> None:
    # The demo's screen is 80 columns; the runtime's warnings (one line each,
    # e.g. the epoll fallback's) are wrapped to fit it.
    import logging
    import textwrap

    class Wrap(logging.Formatter):
        def format(self, record):
            return textwrap.fill(super().format(record), 80, subsequent_indent="  ")
    handler = logging.StreamHandler()
    handler.setFormatter(Wrap("%(name)s: %(message)s"))
    logging.getLogger("ringleader").addHandler(handler)


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=None,
                    help="how long the load runs (default: until Ctrl-C)")
    args = ap.parse_args()
    _log_at_80_columns()
    try:
        f = probe()
    except RingUnavailableError:
        print("no io_uring here: the workers run on the epoll fallback (why: the log line)")
    else:
        feats = {"defer_taskrun": f.defer_taskrun, "buf_ring": f.buf_ring, "msg_ring": f.msg_ring}
        print(f"kernel {f.kernel}: io_uring with {len(f.opcodes)} opcodes")
        print("  has " + (", ".join(k for k, ok in feats.items() if ok) or "none of "
                          + ", ".join(feats))
              + "".join(f"; lacks {k}" for k, ok in feats.items() if not ok))
    try:
        ringleader.run(lambda rt: main(rt, args.seconds), workers=2)
    except KeyboardInterrupt:  # the demo already said what it did
        pass
