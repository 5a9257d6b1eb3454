"""A real PostgreSQL 15 for the integration tests, started once per session.

initdb runs as the ``postgres`` user (the server refuses root) into a temp
dir that user owns; the server listens on 127.0.0.1 at a free port and on a
unix socket dir, with ``password_encryption=scram-sha-256`` and pg_hba rules
giving one user each of trust, md5 and SCRAM authentication.  The superuser
``postgres`` is trusted on the unix socket for set-up and for killing
backends.  Tests are parametrised over event loops: asyncio's default one,
and ringleader's io_uring loop once ``ringleader.runtime.new_event_loop``
exists.
"""
from __future__ import annotations

import asyncio
import glob
import os
import shutil
import socket
import subprocess
import tempfile

import psycopg
import pytest

BIN = next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)), None)
USERS = {"scram": ("rl_scram", "scr@m pass"), "md5": ("rl_md5", "md5pass"),
         "trust": ("rl_trust", None)}

HBA = """\
local all postgres trust
local all rl_trust trust
host all rl_trust 127.0.0.1/32 trust
local all rl_md5 md5
host all rl_md5 127.0.0.1/32 md5
local all all scram-sha-256
host all all 127.0.0.1/32 scram-sha-256
"""


def _as_pg(*cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["runuser", "-u", "postgres", "--", *cmd], check=True,
                          capture_output=True, text=True, **kw)


class Server:
    def __init__(self, base: str, port: int):
        self.base, self.port = base, port
        self.data = os.path.join(base, "data")
        self.sock = os.path.join(base, "sock")

    def dsn(self, kind: str = "scram", unix: bool = False, **extra) -> str:
        user, pw = USERS[kind] if kind in USERS else (kind, None)
        host = self.sock if unix else "127.0.0.1"
        parts = [f"host={host}", f"port={self.port}", f"user={user}", "dbname=rltest"]
        if pw:
            parts.append("password='" + pw.replace("'", "\\'") + "'")
        parts += [f"{k}={v}" for k, v in extra.items()]
        return " ".join(parts)

    def superuser_dsn(self) -> str:
        return f"host={self.sock} port={self.port} user=postgres dbname=rltest"

    def pg_ctl(self, *args: str) -> None:
        _as_pg(f"{BIN}/pg_ctl", "-D", self.data, "-l", os.path.join(self.base, "log"),
               "-w", "-t", "60", *args)

    def start(self) -> None:
        self.pg_ctl("start", "-o", f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1")

    def restart(self) -> None:
        self.pg_ctl("restart", "-m", "immediate",
                    "-o", f"-p {self.port} -k {self.sock} -c listen_addresses=127.0.0.1")

    def stop(self) -> None:
        try:
            self.pg_ctl("stop", "-m", "immediate")
        except subprocess.CalledProcessError:
            pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reap_orphans() -> None:
    """Stops servers this fixture started in test runs that were killed before
    their teardown (pg_ctl daemonises the server, so it outlives pytest): only
    those whose recorded owner process is gone."""
    for owner in glob.glob(os.path.join(tempfile.gettempdir(), "rl-pg-*", "owner")):
        base = os.path.dirname(owner)
        try:
            with open(owner) as f:
                pid = int(f.read())
            os.kill(pid, 0)
            continue  # its pytest is still running
        except ProcessLookupError:
            pass
        except (ValueError, OSError):
            continue
        Server(base, 0).stop()
        shutil.rmtree(base, ignore_errors=True)


def make_server(extra_conf: str = "", hba: str = HBA, files: dict[str, bytes] | None = None,
                roles: tuple[str, ...] = ()):
    """Starts a fresh cluster (see the module docstring) and yields it; ``files``
    are written into its data dir (owned by postgres, mode 0600) before start,
    ``roles`` are extra CREATE ROLE statements."""
    if BIN is None or shutil.which("runuser") is None:
        pytest.fail("PostgreSQL server binaries or runuser missing: run ./scripts/bootstrap")
    _reap_orphans()
    base = tempfile.mkdtemp(prefix="rl-pg-")
    shutil.chown(base, "postgres", "postgres")
    with open(os.path.join(base, "owner"), "w") as f:
        f.write(str(os.getpid()))
    srv = Server(base, _free_port())
    os.mkdir(srv.sock)
    shutil.chown(srv.sock, "postgres", "postgres")
    _as_pg(f"{BIN}/initdb", "-D", srv.data, "-U", "postgres", "--auth=trust",
           "-E", "UTF8", "--locale=C.UTF-8")
    with open(os.path.join(srv.data, "postgresql.auto.conf"), "a") as f:
        f.write("password_encryption = 'scram-sha-256'\nfsync = off\n"
                "synchronous_commit = off\nfull_page_writes = off\n"
                "max_connections = 100\nTimeZone = 'Europe/Rome'\n" + extra_conf)
    with open(os.path.join(srv.data, "pg_hba.conf"), "w") as f:
        f.write(hba)
    for name, data in (files or {}).items():
        path = os.path.join(srv.data, name)
        with open(path, "wb") as f:
            f.write(data)
        shutil.chown(path, "postgres", "postgres")
        os.chmod(path, 0o600)
    srv.start()
    try:
        with psycopg.connect(f"host={srv.sock} port={srv.port} user=postgres dbname=postgres",
                             autocommit=True) as c:
            c.execute("CREATE DATABASE rltest")
            c.execute("CREATE ROLE rl_scram LOGIN SUPERUSER PASSWORD %s" % _lit(USERS["scram"][1]))
            c.execute("SET password_encryption = 'md5'")
            c.execute("CREATE ROLE rl_md5 LOGIN SUPERUSER PASSWORD %s" % _lit(USERS["md5"][1]))
            c.execute("CREATE ROLE rl_trust LOGIN SUPERUSER")
            for r in roles:
                c.execute(r)
        yield srv
    finally:
        srv.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server():
    yield from make_server()


# The TLS server's rules, first match wins: rl_tlsonly is refused without TLS,
# rl_plainonly with it, rl_cert logs in by client certificate (CN = user).
TLS_HBA = """\
local all postgres trust
hostnossl all rl_tlsonly 127.0.0.1/32 reject
hostssl all rl_plainonly 127.0.0.1/32 reject
hostssl all rl_cert 127.0.0.1/32 cert
host all all 127.0.0.1/32 trust
"""


@pytest.fixture(scope="session")
def pg_tls_server(tls_certs):
    """A second cluster with ssl=on (certificates from tests/conftest.py's
    tls_certs) and TLS_HBA; ``.certs`` maps file names to paths."""
    certs = tls_certs
    files = {n: open(certs[n], "rb").read() for n in ("server.crt", "server.key", "ca.crt")}
    gen = make_server("ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
                      "ssl_ca_file = 'ca.crt'\n", TLS_HBA, files,
                      roles=("CREATE ROLE rl_tlsonly LOGIN", "CREATE ROLE rl_plainonly LOGIN",
                             "CREATE ROLE rl_cert LOGIN"))
    srv = next(gen)
    srv.certs = certs
    yield srv
    gen.close()


def _lit(s: str) -> str:
    return "'" + s.replace("'", "''") + "'"


def _loop_factories():
    params = [pytest.param(asyncio.new_event_loop, id="asyncio")]
    try:
        from ringleader.runtime import new_event_loop  # type: ignore
    except ImportError:
        params.append(pytest.param(None, id="ringleader", marks=pytest.mark.skip(
            reason="ringleader.runtime.new_event_loop does not exist yet")))
    else:
        params.append(pytest.param(new_event_loop, id="ringleader"))
    return params


@pytest.fixture(params=_loop_factories())
def run(request):
    """``run(coro)`` runs a coroutine to completion on the parametrised loop."""
    loop = request.param()

    def _run(coro, timeout: float = 60):
        return loop.run_until_complete(asyncio.wait_for(coro, timeout))

    yield _run
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
