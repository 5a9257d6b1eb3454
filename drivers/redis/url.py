"""Connection parameters for Redis, parsed from a URL plus keyword overrides.

Accepted forms::

    redis://[[username]:password@]host[:port][/db][?option=value&...]
    rediss://...  (the same over TLS)
    unix://[[username]:password@]/path/to/socket[?db=N&option=value&...]

Options (query string or keyword): ``db``, ``protocol`` (2 or 3),
``client_name`` (alias ``name``), ``username``, ``password``,
``connect_timeout`` and ``timeout`` (seconds; ``timeout`` is the default
per-command deadline, none if unset), ``decode_responses`` (bool).
User and password are percent-decoded.

TLS, with redis-py's option names: ``ssl`` (what ``rediss://`` sets),
``ssl_cert_reqs`` (``required``, the default; ``optional``; ``none``),
``ssl_ca_certs`` (a CA file; default the system store), ``ssl_certfile`` and
``ssl_keyfile`` (a client certificate), ``ssl_check_hostname`` (default true),
or ``ssl_context=`` an ``ssl.SSLContext`` of the caller's (keyword only).
The context is built here, so a missing file fails at parse time.  Parsing
and reading those files; no network I/O.
"""
from __future__ import annotations

import dataclasses
import ssl
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from ..sslcontext import client_context
from .errors import InterfaceError

__all__ = ["ConnectParams", "parse_url"]


@dataclasses.dataclass(frozen=True, slots=True)
class ConnectParams:
    host: str = "localhost"
    port: int = 6379
    path: str | None = None  # a unix socket instead of host/port
    username: str | None = None
    password: str | None = None
    db: int = 0
    client_name: str | None = None
    protocol: int = 2
    connect_timeout: float = 10.0
    timeout: float | None = None
    decode_responses: bool = False
    ssl: bool = False
    ssl_cert_reqs: str = "required"
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    ssl_context: ssl.SSLContext | None = dataclasses.field(default=None, compare=False)

    @property
    def address(self) -> str:
        return self.path if self.path else f"{self.host}:{self.port}"


_TRUE = {"1", "true", "yes", "on"}
_CERT_REQS = {"none": ssl.CERT_NONE, "optional": ssl.CERT_OPTIONAL, "required": ssl.CERT_REQUIRED}
_FALSE = {"0", "false", "no", "off"}


def _convert(name: str, value: Any) -> Any:
    """Checks and converts one option (strings from a query string, or typed)."""
    if name == "ssl_cert_reqs":
        text = str(value).lower()
        if text not in _CERT_REQS:
            raise InterfaceError(f"ssl_cert_reqs must be one of {', '.join(_CERT_REQS)}, "
                                 f"got {value!r}")
        return text
    try:
        if name in ("db", "port", "protocol"):
            if isinstance(value, bool):
                raise ValueError
            out: Any = int(value)
            if name == "protocol" and out not in (2, 3):
                raise InterfaceError(f"protocol must be 2 or 3, got {value!r}")
            if name == "port" and not 0 < out < 65536 or name == "db" and out < 0:
                raise ValueError
            return out
        if name in ("connect_timeout", "timeout"):
            if value is None and name == "timeout":
                return None
            out = float(value)
            if not out > 0:
                raise ValueError
            return out
        if name == "ssl_context":
            if value is None or isinstance(value, ssl.SSLContext):
                return value
            raise ValueError
        if name in ("decode_responses", "ssl", "ssl_check_hostname"):
            if isinstance(value, bool):
                return value
            text = str(value).lower()
            if text in _TRUE | _FALSE:
                return text in _TRUE
            raise ValueError
        if name in ("host", "path", "username", "password", "client_name", "ssl_ca_certs",
                    "ssl_certfile", "ssl_keyfile"):
            if value is None or isinstance(value, str):
                if name == "client_name" and value and " " in value:
                    raise InterfaceError(f"client_name may not contain spaces: {value!r}")
                return value
            raise ValueError
    except (TypeError, ValueError):
        raise InterfaceError(f"bad value for Redis option {name}: {value!r}") from None
    raise InterfaceError(f"unknown Redis option {name!r}; known: "
                         f"{', '.join(f.name for f in dataclasses.fields(ConnectParams))}")


def parse_url(url: str | None = None, **options: Any) -> ConnectParams:
    """Parameters from ``url`` (default ``redis://localhost:6379/0``) and keyword
    options, which win over the URL.  Raises :class:`InterfaceError` on anything
    malformed or unknown."""
    values: dict[str, Any] = {}
    if url is not None:
        if not isinstance(url, str):
            raise InterfaceError(f"Redis URL must be a str, got {type(url).__name__}")
        values.update(_parse(url))
    for name, value in options.items():
        name = "client_name" if name == "name" else name
        values[name] = _convert(name, value)
    if values.get("ssl_context") is not None:
        values["ssl"] = True
    elif values.get("ssl"):
        values["ssl_context"] = _context(values)
    if values.get("ssl") and values.get("path"):
        raise InterfaceError("TLS over a unix socket is not supported; use rediss://host:port")
    return ConnectParams(**values)


def _context(v: dict[str, Any]) -> ssl.SSLContext:
    reqs = v.get("ssl_cert_reqs", "required")
    try:
        return client_context(
            _CERT_REQS[reqs], v.get("ssl_check_hostname", True) and reqs != "none",
            v.get("ssl_ca_certs") or (None if reqs == "none" else "system"),
            v.get("ssl_certfile"), v.get("ssl_keyfile"),
            names=("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"))
    except ValueError as e:
        raise InterfaceError(f"cannot load TLS files ({e})") from None


def _parse(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("redis", "rediss", "unix"):
        raise InterfaceError(f"Redis URL must start with redis://, rediss:// or unix://, got {url!r}")
    values: dict[str, Any] = {"ssl": True} if scheme == "rediss" else {}
    if parts.username:
        values["username"] = unquote(parts.username)
    if parts.password is not None:
        values["password"] = unquote(parts.password)
    try:
        port = parts.port
    except ValueError:
        raise InterfaceError(f"bad port in Redis URL {url!r}") from None
    if scheme == "unix":
        if not parts.path:
            raise InterfaceError(f"unix:// URL needs a socket path: {url!r}")
        values["path"] = unquote(parts.path)
    else:
        if parts.hostname:
            values["host"] = parts.hostname
        if port is not None:
            values["port"] = port
        db = parts.path.lstrip("/")
        if db:
            values["db"] = _convert("db", db)
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        name = "client_name" if name == "name" else name
        if name in ("host", "port", "path"):
            raise InterfaceError(f"{name} belongs in the URL itself, not its query: {url!r}")
        if name == "ssl_context":
            raise InterfaceError("ssl_context is a keyword option (an ssl.SSLContext), not a URL one")
        values[name] = _convert(name, value)
    return values
