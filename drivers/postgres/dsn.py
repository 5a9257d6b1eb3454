"""Connection parameters from libpq-style DSNs.

Accepts ``postgresql://`` URLs and ``key=value`` strings (parsed by psycopg's
``conninfo_to_dict``, i.e. libpq's own parser), keyword overrides, and the
PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE/PGAPPNAME/PGCONNECT_TIMEOUT
environment variables, the way libpq layers them; TLS settings (``sslmode``,
``sslrootcert``, ``sslcert``, ``sslkey``, ``sslpassword``, see :mod:`.tls`)
become an ``ssl.SSLContext`` here, so a missing certificate fails at parse
time.  Parameters this driver does not implement are refused, not ignored.
Every mistake in the input raises :class:`.errors.InterfaceError` (a
``ValueError``).
"""
from __future__ import annotations

import getpass
import os
import ssl
from dataclasses import dataclass, field

from psycopg.conninfo import conninfo_to_dict

from . import tls
from .errors import InterfaceError

_ENV = {
    "host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD",
    "dbname": "PGDATABASE", "application_name": "PGAPPNAME",
    "connect_timeout": "PGCONNECT_TIMEOUT", "sslmode": "PGSSLMODE",
    "sslrootcert": "PGSSLROOTCERT", "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY",
}
_KNOWN = set(_ENV) | {"options", "client_encoding", "sslpassword"}
_DEFAULT_SOCKET_DIRS = ("/var/run/postgresql", "/tmp")


@dataclass(frozen=True)
class ConnectParams:
    # (host, port) pairs, tried in order; a host starting with "/" is a unix
    # socket directory.
    addresses: tuple[tuple[str, int], ...]
    user: str
    password: str | None
    dbname: str
    connect_timeout: float | None
    server_settings: dict[str, str] = field(default_factory=dict)
    # libpq's sslmode and the context that implements it (None: no TLS).
    sslmode: str = "disable"
    ssl_context: ssl.SSLContext | None = field(default=None, compare=False)

    def startup_params(self) -> dict[str, str]:
        # client_encoding is fixed to UTF8: all text crosses the wire as UTF-8
        # and psycopg's adapters are told so.
        return {"database": self.dbname, "client_encoding": "UTF8",
                **self.server_settings}


def parse_dsn(dsn: str | None = None, *, ssl_context: ssl.SSLContext | None = None,
              **kwargs) -> ConnectParams:
    """``ssl_context``: a context of the caller's, used as is (its verify_mode
    and check_hostname decide the checks); sslmode then defaults to require."""
    try:
        opts = conninfo_to_dict(dsn or "")
    except Exception as e:
        raise InterfaceError(f"invalid DSN: {e}") from None
    for k, v in kwargs.items():
        if v is not None:
            opts[k] = str(v) if k != "server_settings" else v
    for k, env in _ENV.items():
        if k not in opts and os.environ.get(env):
            opts[k] = os.environ[env]
    settings = dict(opts.pop("server_settings", None) or {})
    unknown = set(opts) - _KNOWN
    if unknown:
        raise InterfaceError(f"unsupported connection parameters: {sorted(unknown)}")
    if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
        raise InterfaceError(f"ssl_context must be an ssl.SSLContext, not {type(ssl_context).__name__}")
    sslmode = opts.get("sslmode", "require" if ssl_context is not None else "prefer")
    if ssl_context is not None:
        tls.check_mode(sslmode)
        if sslmode == "disable":
            raise InterfaceError("ssl_context given with sslmode=disable")
        context = ssl_context
    else:
        context = tls.make_context(sslmode, opts.get("sslrootcert"), opts.get("sslcert"),
                                   opts.get("sslkey"), opts.get("sslpassword"))

    hosts = [h for h in opts.get("host", "").split(",")] if opts.get("host") else []
    if not hosts:
        hosts = [next((d for d in _DEFAULT_SOCKET_DIRS if os.path.isdir(d)), "localhost")]
    ports = opts.get("port", "").split(",") if opts.get("port") else [""]
    if len(ports) == 1:
        ports = ports * len(hosts)
    if len(ports) != len(hosts):
        raise InterfaceError(f"{len(hosts)} hosts but {len(ports)} ports")
    addresses = []
    for h, p in zip(hosts, ports):
        try:
            port = int(p) if p else 5432
        except ValueError:
            raise InterfaceError(f"invalid port {p!r}") from None
        if not 0 < port < 65536:
            raise InterfaceError(f"invalid port {port}")
        addresses.append((h or "localhost", port))

    user = opts.get("user") or getpass.getuser()
    timeout = opts.get("connect_timeout")
    try:
        # libpq treats 0 (and negatives) as "wait forever"; so do we.
        ct = float(timeout) if timeout else None
    except ValueError:
        raise InterfaceError(f"invalid connect_timeout {timeout!r}") from None
    if ct is not None and ct <= 0:
        ct = None
    for k in ("application_name", "options"):
        if opts.get(k):
            settings.setdefault(k, opts[k])
    if opts.get("client_encoding", "UTF8").upper().replace("-", "") not in ("UTF8", "UNICODE"):
        raise InterfaceError("only client_encoding=UTF8 is supported")
    return ConnectParams(tuple(addresses), user, opts.get("password"),
                         opts.get("dbname") or user, ct, settings, sslmode, context)
