"""Temporary PostgreSQL and Redis servers for the rig's real mode.

Each lives in its own temp dir on a free loopback port, pinned with ``taskset``
to the database core (CPU 0 by default) so the database has a finite,
known capacity and the retry storm can overload it; children inherit the
pinning.  PostgreSQL runs as the ``postgres`` user via ``runuser`` (it refuses
root), with ``max_connections`` capped (the limit a pool can run into) and
durability off (the rig measures pools, not fsync).  ``stop()`` is idempotent
and is called from the rig's ``finally``/signal path, so Ctrl-C or a failure
does not leave servers or temp dirs behind.

Also: DSN/URL validation for servers the operator supplies.
"""
from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time

PG_BIN = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)), None)
DB_CORE = 0
MAX_CONNECTIONS = 60


class ServerError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def taskset(core: int) -> list[str]:
    """A ``taskset -c core`` prefix, or nothing when taskset or the core is missing."""
    if shutil.which("taskset") and (os.cpu_count() or 1) > core:
        return ["taskset", "-c", str(core)]
    return []


class Postgres:
    def __init__(self, core: int = DB_CORE, max_connections: int = MAX_CONNECTIONS):
        if PG_BIN is None or shutil.which("runuser") is None:
            raise ServerError("PostgreSQL server binaries or runuser missing: run ./scripts/bootstrap")
        self.core = core
        self.base = tempfile.mkdtemp(prefix="rl-rig-pg-")
        self.data = os.path.join(self.base, "data")
        self.sock = os.path.join(self.base, "sock")
        self.port = free_port()
        self.max_connections = max_connections
        self.started = False

    def _as_pg(self, *cmd: str) -> None:
        r = subprocess.run(["runuser", "-u", "postgres", "--", *cmd], capture_output=True, text=True)
        if r.returncode:
            raise ServerError(f"{' '.join(cmd[:2])} failed: {r.stderr.strip()[-500:]}")

    def start(self) -> "Postgres":
        shutil.chown(self.base, "postgres", "postgres")
        os.mkdir(self.sock)
        shutil.chown(self.sock, "postgres", "postgres")
        self._as_pg(f"{PG_BIN}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust",
                    "-E", "UTF8", "--locale=C.UTF-8")
        with open(os.path.join(self.data, "postgresql.auto.conf"), "a") as f:
            f.write(f"fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
                    f"max_connections = {self.max_connections}\nshared_buffers = '64MB'\n")
        self._as_pg(*taskset(self.core), f"{PG_BIN}/pg_ctl", "-D", self.data, "-l",
                    os.path.join(self.base, "log"), "-w", "-t", "60", "start", "-o",
                    f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1")
        self.started = True
        return self

    def sql(self, statement: str, dbname: str = "postgres") -> None:
        """Run ``statement`` with psql as postgres over the unix socket."""
        self._as_pg(f"{PG_BIN}/psql", "-h", self.sock, "-p", str(self.port), "-U", "postgres",
                    "-q", "-v", "ON_ERROR_STOP=1", "-d", dbname, "-c", statement)

    @property
    def dsn(self) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres"

    def stop(self) -> None:
        if self.started:
            self.started = False
            try:
                self._as_pg(f"{PG_BIN}/pg_ctl", "-D", self.data, "stop", "-m", "immediate", "-w")
            except ServerError:
                pass
        shutil.rmtree(self.base, ignore_errors=True)


class Redis:
    """``core=None``: not pinned.  ``unixsocket``: also listen on ``self.socket``.
    ``extra_args``: more redis-server options (the tests add debug commands and
    a TLS port).  ``kill()`` then ``start()``, or ``restart()``, keep the port
and the directory; ``stop()`` removes the directory."""

    def __init__(self, core: int | None = DB_CORE, *, unixsocket: bool = False,
                 extra_args: tuple[str, ...] | list[str] = ()):
        self.exe = shutil.which("redis-server")
        if self.exe is None:
            raise ServerError("redis-server is not installed: run ./scripts/bootstrap")
        self.core = core
        self.dir = tempfile.mkdtemp(prefix="rl-rig-redis-")
        self.port = free_port()
        self.socket = os.path.join(self.dir, "redis.sock") if unixsocket else None
        self.extra_args = list(extra_args)
        self.proc: subprocess.Popen | None = None

    def start(self) -> "Redis":
        pin = taskset(self.core) if self.core is not None else []
        sock = ["--unixsocket", self.socket] if self.socket else []
        self.proc = subprocess.Popen(
            [*pin, self.exe, "--port", str(self.port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", self.dir, "--loglevel", "warning",
             *sock, *self.extra_args],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise ServerError(f"redis-server exited with {self.proc.returncode}")
            time.sleep(0.02)
        raise ServerError("redis-server did not start within 10 s")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """Ends the process but keeps its directory: ``start()`` brings it back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> "Redis":
        self.kill()
        return self.start()

    def stop(self) -> None:
        self.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def check_pg_dsn(dsn: str) -> None:
    """Fail early and clearly on a DSN that is malformed or does not connect."""
    import psycopg
    try:
        with psycopg.connect(dsn, connect_timeout=5) as c:
            c.execute("SELECT 1")
    except Exception as exc:
        raise ServerError(f"--pg-dsn {dsn!r} is unusable: {type(exc).__name__}: {exc}") from None


def check_redis_url(url: str) -> None:
    from ringleader.drivers.redis.url import parse_url
    try:
        p = parse_url(url)
    except Exception as exc:
        raise ServerError(f"--redis-url {url!r} is malformed: {exc}") from None
    try:
        if p.path:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(5)
            s.connect(p.path)
        else:
            s = socket.create_connection((p.host, p.port), timeout=5)
        with s:
            s.sendall(b"PING\r\n")
            reply = s.recv(64)
    except OSError as exc:
        raise ServerError(f"--redis-url {url!r}: cannot connect: {exc}") from None
    if not reply.startswith((b"+PONG", b"-NOAUTH")):
        raise ServerError(f"--redis-url {url!r}: unexpected reply {reply[:40]!r}")
