"""The rig's demo service: a small HTTP/1.1 app on a ringleader runtime whose
endpoints read and write Redis and PostgreSQL through the drivers' pools.

Run as its own process (pinned by the rig to the service core):

    python -m riglib.service CONFIG.json

Endpoints (GET, keep-alive, no pipelining needed by the rig's client):

* ``/cache?k=K``  Redis GET (a cache read)
* ``/kv?k=K``     Redis SET (a key-value write)
* ``/read?k=K``   Postgres read: one row plus a little CPU work on the server
* ``/write?k=K``  Postgres write in a transaction (UPDATE + INSERT)
* ``/report``     a slow, CPU-bound Postgres report query
* ``/big``        a 64 KiB Redis value (what the hot-spot connections ask for)

Every response carries ``X-Worker`` (the ring that served it), so the load
generator can place its heavy connections on one worker.  An acquire that
times out answers 503 (the client may retry: the retry storm).

The contender decides the pools' sizing: ``static-N`` (min = max = N),
``grow-on-wait`` (psycopg_pool's rule, applied here by polling the pools every
10 ms) or ``supervisor-<controller>`` (``PoolAutoscale`` on both pools plus the
worker-count mechanism; hot-connection rebalancing too in the hot-spot pattern).  Once a second it
records the pools (cap, size, acquire rate, hold time, the acquire-wait p99 the
handlers measured in that second), every worker's busy ratio, batch size and
load, and every supervisor decision (captured from its log records); on
SIGTERM or after ``duration`` it writes them as JSON and exits.

Not here: load generation (:mod:`.loadgen`), servers, analysis.
"""
from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import signal
import sys
import time

import ringleader
from ringleader.runtime import Runtime
from ringleader.drivers import postgres, redis
from ringleader.drivers.poolstats import percentile
from ringleader.supervisor import PoolAutoscale, Rebalance, Sampler, SupervisorConfig, WorkerAutoscale

ACQUIRE_TIMEOUT = 0.1
SCHEMA = """
CREATE TABLE IF NOT EXISTS kv (k int PRIMARY KEY, v bigint NOT NULL, pad text NOT NULL);
CREATE TABLE IF NOT EXISTS log (id bigserial PRIMARY KEY, k int NOT NULL, at timestamptz DEFAULT now());
INSERT INTO kv SELECT g, g, repeat('x', 100) FROM generate_series(1, 10000) g ON CONFLICT DO NOTHING;
"""
READ_SQL = "SELECT v, (SELECT count(*) FROM generate_series(1, 3000)) FROM kv WHERE k = $1"
SLOW_MS = 5.0
REPORT_SQL = "SELECT count(*), sum(v), max(length(pad)) FROM kv a, generate_series(1, 4) g"


# The pool's counters a run's windows carry (totals so far): where its opens
# went (errors, lost, moved, burst, delayed by the open budget), returns, and
# health checks that ended after their caller left (the connection kept if sound).
COUNTERS = ("connections_num", "connections_errors", "connections_lost", "connections_burst",
            "connections_delayed", "connections_moved", "returns_bad", "returns_drained",
            "requests_timeouts", "checks_orphaned")


def down_window(seconds: float | None) -> float:
    """The supervisor's down window for a run of ``seconds``: the rig's patterns
    are compressed (a diurnal period of half the run), and the default 30-s
    window never acts in a 30-s run; a quarter of the run still outlasts the
    gap between bursts (0.22 of the run), so the cap is held across it."""
    return PoolAutoscale.down_window if not seconds else min(PoolAutoscale.down_window, seconds / 4)


# psycopg_pool's defaults as the rig runs grow-on-wait: from 2 up to 32 per pool
GROW_ON_WAIT = (2, 32)


def pool_sizing(contender: str, seconds: float | None = None) -> tuple[int, int, PoolAutoscale | None]:
    """(min_size, initial max_size, autoscale) for a contender name, in a run of
    ``seconds`` (None: the supervisor's default windows)."""
    if contender.startswith("static-"):
        n = int(contender.split("-", 1)[1])
        return n, n, None
    if contender == "grow-on-wait":
        return GROW_ON_WAIT[0], GROW_ON_WAIT[0], None
    if contender.startswith("supervisor-"):
        ctl = contender[len("supervisor-"):]
        return 1, 4, PoolAutoscale(min=2, max=40, controller=ctl, target_wait_ms=10.0,
                                   down_window=down_window(seconds))
    raise ValueError(f"unknown contender {contender!r}")


def rails(contender: str) -> tuple[int, int]:
    """(min, max): the sizes a contender's policy may give each pool (the
    supervisor's ``PoolAutoscale`` rails, grow-on-wait's, a static size's own);
    the minimum is what the connection-seconds floor (:mod:`.floor`) is made of."""
    if contender == "grow-on-wait":
        return GROW_ON_WAIT
    lo, hi, auto = pool_sizing(contender)
    return (auto.min, auto.max) if auto else (lo, hi)


def supervisor_config(contender: str, workers: bool = True,
                      rebalance: bool = False) -> SupervisorConfig | None:
    """The supervisor of a ``supervisor-*`` contender; ``workers=False``: pools only.
    ``rebalance``: hot-connection moves too, as the product ships them, off
    unless the pattern is the hot spot: in the real steady run (issue 16) the
    rebalancer moved a Postgres pool connection off worker 0 every two seconds,
    and that worker's callers then waited for connects (2 of 29 windows missed)."""
    if not contender.startswith("supervisor-"):
        return None
    return SupervisorConfig(period=1.0, workers=WorkerAutoscale(enabled=workers, min=1, max=4),
                            rebalance=Rebalance(enabled=workers and rebalance))


class App:
    def __init__(self, cfg: dict):
        self.cfg = cfg
        self.waits: dict[str, list[float]] = {"postgres": [], "redis": []}
        self.timeouts = {"postgres": 0, "redis": 0}
        self.pg: postgres.Pool | None = None
        self.redis: redis.Pool | None = None
        self.big = b"b" * 65536
        self.slow: list[dict] = []  # Postgres acquires over SLOW_MS (see _acquire)

    async def _acquire(self, name, pool):
        loop = asyncio.get_running_loop()
        before = pool.stats() if name == "postgres" else None
        t0 = loop.time()
        try:
            conn = await pool.acquire(ACQUIRE_TIMEOUT)
        except Exception:
            self.timeouts[name] += 1
            self.waits[name].append(ACQUIRE_TIMEOUT * 1e3)
            raise
        waited = (loop.time() - t0) * 1e3
        self.waits[name].append(waited)
        if before is not None and waited > SLOW_MS:
            # why a wait was slow: the pool as the caller found it, and
            # whether a connection was opened meanwhile (a connect, not a return)
            after = pool.stats()
            self.slow.append({"t": round(time.time(), 3), "ms": round(waited, 2),
                              "worker": Runtime.current_worker(), "cap": before.pool_max,
                              "size": before.pool_size, "idle": before.pool_available,
                              "in_use": before.pool_in_use, "waiting": before.requests_waiting,
                              "opened": after.connections_num - before.connections_num,
                              "burst": after.connections_burst - before.connections_burst})
        return conn

    async def handle(self, path: str, key: int) -> bytes:
        if path in ("/cache", "/kv", "/big"):
            c = await self._acquire("redis", self.redis)
            try:
                if path == "/cache":
                    v = await c.execute("GET", f"k{key}")
                elif path == "/kv":
                    v = await c.execute("SET", f"k{key}", str(time.time()))
                else:
                    v = await c.execute("GET", "big")
            finally:
                self.redis.release(c)
            return v if isinstance(v, bytes) else str(v).encode()
        if path in ("/read", "/write", "/report"):
            c = await self._acquire("postgres", self.pg)
            try:
                if path == "/read":
                    v = await c.fetchval(READ_SQL, key)
                elif path == "/write":
                    async with c.transaction():
                        await c.execute("UPDATE kv SET v = v + 1 WHERE k = $1", key)
                        await c.execute("INSERT INTO log (k) VALUES ($1)", key)
                    v = "ok"
                else:
                    v = (await c.fetchrow(REPORT_SQL))[0]
            finally:
                self.pg.release(c)
            return str(v).encode()
        if path == "/whoami":
            return b"-"
        raise KeyError(path)


class Http(asyncio.Protocol):
    """Minimal HTTP/1.1 for GETs: requests on a connection are answered in order."""

    def __init__(self, app: App):
        self.app = app
        self.buf = b""
        self.busy = False
        self.t = None

    def connection_made(self, t):
        self.t = t

    def data_received(self, data):
        self.buf += data
        self._next()

    def _next(self):
        if self.busy or b"\r\n\r\n" not in self.buf:
            return
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        line = head.split(b"\r\n", 1)[0].decode("latin-1")
        try:
            target = line.split(" ")[1]
        except IndexError:
            self.t.close()
            return
        path, _, q = target.partition("?")
        key = int(q[2:]) if q.startswith("k=") and q[2:].isdigit() else 1
        self.busy = True
        # the running loop, not one saved earlier: the connection may have migrated
        asyncio.get_running_loop().create_task(self._serve(path, key))

    async def _serve(self, path, key):
        try:
            body = await self.app.handle(path, key)
            status = b"200 OK"
        except KeyError:
            body, status = b"not found", b"404 Not Found"
        except Exception as exc:
            body, status = type(exc).__name__.encode(), b"503 Service Unavailable"
        w = Runtime.current_worker()
        if not self.t.is_closing():
            self.t.write(b"HTTP/1.1 " + status + b"\r\nContent-Length: " + str(len(body)).encode()
                         + b"\r\nX-Worker: " + str(w).encode() + b"\r\n\r\n" + body)
        self.busy = False
        self._next()


class DecisionLog(logging.Handler):
    """Every supervisor decision, from the structured log records its actuator
    writes (the debug socket keeps only the recent ones)."""

    def __init__(self):
        super().__init__()
        self.items = []

    def emit(self, r):
        if hasattr(r, "decision"):
            self.items.append({"t": round(time.time(), 3), "kind": r.decision, "target": r.target,
                               "old": r.old, "new": r.new, "src": r.src, "dst": r.dst,
                               "applied": r.applied, "reason": r.getMessage()[:300]})


async def grow_on_wait(pools: dict, lo: int, hi: int, max_idle: float = 10.0):
    """psycopg_pool's policy: +1 while callers wait (and the pool is full), -1 per
    ``max_idle`` if the idle low-watermark never reached zero in that time."""
    low = {n: math.inf for n in pools}
    since = time.monotonic()
    while True:
        await asyncio.sleep(0.01)
        now = time.monotonic()
        for n, p in pools.items():
            st = p.stats()
            if st.requests_waiting and st.pool_max < hi and st.pool_size >= st.pool_max:
                p.resize(min(p.stats().pool_min, st.pool_max + 1), st.pool_max + 1)
            low[n] = min(low[n], st.pool_available)
        if now - since >= max_idle:
            for n, p in pools.items():
                st = p.stats()
                if low[n] > 0 and st.pool_max > lo:
                    p.resize(min(st.pool_min, st.pool_max - 1), st.pool_max - 1)
                low[n] = math.inf
            since = now


async def amain(rt, cfg: dict):
    app = App(cfg)
    lo, hi, auto = pool_sizing(cfg["contender"], cfg.get("seconds"))
    app.pg = postgres.Pool(cfg["pg_dsn"], min_size=lo, max_size=hi, acquire_timeout=ACQUIRE_TIMEOUT,
                           window_s=1.0, autoscale=auto, name="postgres")
    app.redis = redis.Pool(cfg["redis_url"], min_size=lo, max_size=hi, acquire_timeout=ACQUIRE_TIMEOUT,
                           autoscale=auto, name="redis")
    await app.pg.open()
    await app.redis.open()
    async with app.pg.acquire() as c:
        for stmt in SCHEMA.strip().split(";\n"):
            await c.execute(stmt)
    await app.redis.execute("SET", "big", app.big)
    pools = {"postgres": app.pg, "redis": app.redis}
    bg = []
    if cfg["contender"] == "grow-on-wait":
        bg.append(asyncio.get_running_loop().create_task(grow_on_wait(pools, *GROW_ON_WAIT)))
    group = await rt.serve(lambda: Http(app), "127.0.0.1", 0)
    with open(cfg["port_file"] + ".tmp", "w") as f:
        f.write(str(group.port))
    os.replace(cfg["port_file"] + ".tmp", cfg["port_file"])
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # ringleader's loop has no add_signal_handler: forward from the handler
    signal.signal(signal.SIGTERM, lambda *_: loop.call_soon_threadsafe(stop.set))
    sampler = Sampler()
    windows = []
    deadline = time.time() + cfg["duration"]
    while not stop.is_set() and time.time() < deadline:
        try:
            await asyncio.wait_for(stop.wait(), 1.0)
        except asyncio.TimeoutError:
            pass
        conns = [t.conn_stats() for w in rt.workers if w.loop is not None and not w.draining
                 for t in w.loop.connections()]
        # epoch times: the rig aligns them with the load generator's windows
        loops = rt.stats()
        totals = {n: p.stats() for n, p in pools.items()}  # one snapshot: the sampler's and the record's
        obs = sampler.observe(time.time(), loops, conns, totals)
        waits, app.waits = app.waits, {"postgres": [], "redis": []}
        tos, app.timeouts = app.timeouts, {"postgres": 0, "redis": 0}
        slow, app.slow = app.slow, []
        windows.append({
            "t": round(obs.t, 3),
            "backend": rt.backend,   # "uring", or "epoll" where io_uring is denied
            "pools": {p.name: {"cap": p.cap, "size": p.size, "in_use": p.in_use, "waiting": p.waiting,
                               "acquire_rate": p.acquire_rate, "hold_ms": p.hold_ms,
                               "wait_p99_ms": _p99(waits[p.name]), "timeouts": tos[p.name],
                               **pool_totals(totals[p.name]),
                               # the hold's tail, not only its mean: a return is as late as it
                               "hold_p99_ms": totals[p.name].usage_p99_ms}
                      for p in obs.pools},
            "slow": slow,
            # the worst timer lateness since start, per worker: a rise is a stall
            "lag_max_ms": {str(ls.worker): round(ls.lag_max_s * 1e3, 2) for ls in loops},
            "workers": [{"worker": w.worker, "busy": w.busy, "batch": w.batch, "load": w.load,
                         "lag_ms": w.lag_ms} for w in obs.workers],
        })
    for t in bg:
        t.cancel()
    group.close()
    await app.pg.close()
    await app.redis.close()
    return windows


def pool_totals(st) -> dict:
    """A window's record of one pool's totals so far, from its stats (the
    service and the overload runner both write it; realmode turns the totals
    into per-window deltas): connects and borrow-time health checks with
    their time, opens and closes by cause (issue 16: why each connection was
    opened), the counters in COUNTERS, and the workers whose callers used the
    pool (a strict pool needs a connection on each: the floor, :mod:`.floor`)."""
    return {"opened": st.connections_num, "connect_ms": st.connections_ms, "workers": st.workers,
            "checks": st.checks, "checks_ms": st.checks_ms,
            "opens_by": dict(st.opens_by), "closes_by": dict(st.closes_by),
            "counters": {k: getattr(st, k) for k in COUNTERS}}


def _p99(v: list[float]) -> float:
    return percentile(v, 0.99) or 0.0


def capture_decisions() -> DecisionLog:
    """Every supervisor decision of this process, from its log records."""
    log = DecisionLog()
    sl = logging.getLogger("ringleader.supervisor")
    sl.addHandler(log)
    sl.setLevel(logging.INFO)
    sl.propagate = False
    return log


def main(argv: list[str]) -> int:
    cfg = json.load(open(argv[0]))
    log = capture_decisions()
    windows = ringleader.run(lambda rt: amain(rt, cfg), workers=cfg["workers"],
                             supervisor=supervisor_config(cfg["contender"],
                                                          rebalance=cfg.get("rebalance", False)),
                             debug_socket=cfg.get("debug_socket") or False)
    with open(cfg["out"], "w") as f:
        json.dump({"windows": windows, "decisions": log.items}, f)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
