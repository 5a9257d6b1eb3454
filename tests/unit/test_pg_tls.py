"""sslmode -> SSLContext (libpq's semantics) and the connection attempts each
mode makes; no server here (tests/integration/postgres/test_tls.py has one)."""
import ssl

import pytest

from ringleader.drivers.postgres import tls
from ringleader.drivers.postgres.dsn import parse_dsn


@pytest.fixture(autouse=True)
def empty_home(tmp_path, monkeypatch):
    # ~/.postgresql/root.crt and postgresql.crt change libpq's defaults: none here
    monkeypatch.setenv("HOME", str(tmp_path))
    for v in ("PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY"):
        monkeypatch.delenv(v, raising=False)
    return tmp_path


def test_modes_without_verification():
    assert tls.make_context("disable") is None
    for mode in ("allow", "prefer", "require"):
        ctx = tls.make_context(mode)
        assert ctx.verify_mode == ssl.CERT_NONE and not ctx.check_hostname
        assert ctx.minimum_version == ssl.TLSVersion.TLSv1_2


def test_verifying_modes_need_a_root_certificate(empty_home):
    for mode in ("verify-ca", "verify-full"):
        with pytest.raises(ValueError, match=f"sslmode={mode} needs a root certificate"):
            tls.make_context(mode)
    with pytest.raises(ValueError, match="cannot load sslrootcert"):
        tls.make_context("verify-ca", rootcert=str(empty_home / "missing.crt"))
    ctx = tls.make_context("verify-full", rootcert="system")
    assert ctx.verify_mode == ssl.CERT_REQUIRED and ctx.check_hostname
    ctx = tls.make_context("verify-ca", rootcert="system")
    assert ctx.verify_mode == ssl.CERT_REQUIRED and not ctx.check_hostname


def test_require_with_a_root_certificate_verifies_like_libpq(empty_home):
    # libpq: sslmode=require with a root certificate present acts as verify-ca
    assert tls.make_context("require", rootcert="system").verify_mode == ssl.CERT_REQUIRED


def test_bad_client_certificate_settings():
    with pytest.raises(ValueError, match="sslkey given without sslcert"):
        tls.make_context("require", key="k.pem")
    with pytest.raises(ValueError, match="cannot load sslcert"):
        tls.make_context("require", cert="nope.crt", key="nope.key")
    with pytest.raises(ValueError, match="invalid sslmode"):
        tls.make_context("required")


def test_attempts_per_mode():
    assert tls.attempts("disable", False) == [(False, False)]
    assert tls.attempts("prefer", False) == [(True, True), (False, False)]
    assert tls.attempts("allow", False) == [(False, True), (True, False)]
    for mode in tls.REQUIRED:
        assert tls.attempts(mode, False) == [(True, False)]
        assert tls.attempts(mode, True) == [(False, False)]  # unix sockets: never TLS


def test_dsn_carries_the_mode_and_context(monkeypatch):
    p = parse_dsn("host=h")
    assert p.sslmode == "prefer" and p.ssl_context is not None
    assert parse_dsn("host=h sslmode=disable").ssl_context is None
    monkeypatch.setenv("PGSSLMODE", "disable")
    assert parse_dsn("host=h").sslmode == "disable"
    own = ssl.create_default_context()
    p = parse_dsn("host=h sslmode=verify-full", ssl_context=own)
    assert p.ssl_context is own and p.sslmode == "verify-full"
    monkeypatch.delenv("PGSSLMODE")
    assert parse_dsn("host=h", ssl_context=own).sslmode == "require"
    with pytest.raises(ValueError, match="ssl_context given with sslmode=disable"):
        parse_dsn("host=h sslmode=disable", ssl_context=own)
    with pytest.raises(ValueError, match="must be an ssl.SSLContext"):
        parse_dsn("host=h", ssl_context=True)
