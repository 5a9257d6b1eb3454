"""Every deliberate client-side mistake in the Postgres driver raises the
driver's InterfaceError, which is also the shared drivers.errors.InterfaceError,
a ValueError (what these raised before) and a psycopg.InterfaceError."""
import psycopg
import pytest

from ringleader.drivers import errors as de
from ringleader.drivers.postgres import InterfaceError, tls
from ringleader.drivers.postgres import messages as m
from ringleader.drivers.postgres.dsn import parse_dsn
from ringleader.drivers.postgres.streams import Cursor, Listener, quote_ident
from ringleader.drivers.postgres.transaction import Transaction
from ringleader.drivers.sslcontext import client_context


@pytest.fixture(autouse=True)
def empty_env(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for v in ("PGHOST", "PGPORT", "PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY",
              "PGCONNECT_TIMEOUT"):
        monkeypatch.delenv(v, raising=False)


def test_the_class_has_every_base_callers_may_catch():
    for base in (de.InterfaceError, de.DriverError, ValueError, psycopg.InterfaceError,
                 psycopg.Error):
        assert issubclass(InterfaceError, base)


MISTAKES = {
    "malformed DSN": lambda: parse_dsn("host='unterminated"),
    "unknown parameter": lambda: parse_dsn("host=h gssencmode=disable"),
    "ssl_context not a context": lambda: parse_dsn("host=h", ssl_context=object()),
    "ssl_context with sslmode=disable": lambda: parse_dsn("host=h sslmode=disable",
                                                          ssl_context=__import__("ssl").create_default_context()),
    "hosts and ports differ": lambda: parse_dsn("host=a,b,c port=1,2"),
    "port not a number": lambda: parse_dsn("host=h port=x"),
    "port out of range": lambda: parse_dsn("host=h port=70000"),
    "connect_timeout not a number": lambda: parse_dsn("host=h connect_timeout=soon"),
    "client_encoding not UTF8": lambda: parse_dsn("host=h client_encoding=LATIN1"),
    "bad sslmode": lambda: tls.make_context("requir"),
    "verify without root": lambda: tls.make_context("verify-full"),
    "unreadable root file": lambda: tls.make_context("verify-ca", "/nonexistent/root.crt"),
    "key without cert": lambda: client_context(__import__("ssl").CERT_NONE, False, None,
                                               keyfile="k.key", error=InterfaceError),
    "NUL in a query": lambda: m.query(b"select '\0'"),
    "too many parameters": lambda: m.parse(b"", b"select 1", (0,) * 65536),
    "bad identifier": lambda: quote_ident(""),
    "bad prefetch": lambda: Cursor(None, "select 1", (), 0, None),
    "listen without channels": lambda: Listener(None, ()),
    "bad isolation": lambda: Transaction(None, "bogus", False, False),
}


@pytest.mark.parametrize("what", sorted(MISTAKES))
def test_mistake_raises_interface_error(what):
    with pytest.raises(InterfaceError):
        MISTAKES[what]()


def test_shared_builder_defaults_to_the_shared_class():
    import ssl
    with pytest.raises(de.InterfaceError, match="cannot load cafile"):
        client_context(ssl.CERT_REQUIRED, False, "/nonexistent/ca.crt")
