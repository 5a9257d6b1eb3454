"""Shared fixtures, and the tier markers.

Tiers are directories, and each test is marked with its directory's tier (the
hook below), so ``-m unit`` or ``-m "not integration"`` selects by tier with no
marker to forget in a file: unit/ (no I/O), ring/ (real io_uring), runtime/
(the loop and worker threads), integration/ (real Postgres/Redis servers),
fuzz/ (hypothesis), rig/ (the traffic rig's simulation), debug/ (the debug
socket and CLI).  Plain helpers shared by the tiers are in tutil.py.

The epoll fallback tier is the same tests run with io_uring denied to the whole
pytest process by a seccomp filter (``./scripts/test --epoll``, which wraps
pytest in ``scripts/deny-uring``; ``./scripts/test`` runs it after the main
pass).  There, ``URING_DENIED`` is true, the ring tier is skipped, and so is
any test marked ``ring_only`` or that builds a ring itself (it gets
RingUnavailableError): each says why in its skip reason.  So are the driver
tests' ``[asyncio]`` cases (the ``run`` fixture on asyncio's own loop): they
run the same code as in the main pass, so the tier runs only what differs.
"""
import os
import shutil
import subprocess

import pytest

TIERS = ("unit", "ring", "runtime", "integration", "fuzz", "rig", "debug")
_HERE = os.path.dirname(os.path.abspath(__file__))


def _uring_denied() -> bool:
    from ringleader.runtime.backend import probe_uring
    return probe_uring() is not None


URING_DENIED = _uring_denied()
_DENIED_WHY = "io_uring is denied to this process (the epoll fallback tier)"


def pytest_collection_modifyitems(config, items):
    for item in items:
        rel = os.path.relpath(str(item.path), _HERE)
        tier = rel.split(os.sep, 1)[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{rel}: tests live in a tier directory ({', '.join(TIERS)}); "
                                    f"a new tier needs its marker in pyproject.toml and TIERS")
        item.add_marker(getattr(pytest.mark, tier))
        if URING_DENIED:
            if tier == "ring":
                item.add_marker(pytest.mark.skip(reason=f"ring tier: {_DENIED_WHY}"))
            for m in item.iter_markers("ring_only"):
                why = m.args[0] if m.args else "tests the ring itself"
                item.add_marker(pytest.mark.skip(reason=f"ring-only ({why}): {_DENIED_WHY}"))
            if _on_asyncios_own_loop(item):
                item.add_marker(pytest.mark.skip(
                    reason=f"asyncio's own loop, the same as in the main pass: {_DENIED_WHY}"))


def _on_asyncios_own_loop(item) -> bool:
    # The drivers' ``run`` fixture is parametrized over asyncio's loop and ours
    # (redis: the name, postgres: the factory); only ours differs on epoll.
    callspec = getattr(item, "callspec", None)
    if callspec is None or "run" not in callspec.params:
        return False
    import asyncio
    return callspec.params["run"] in ("asyncio", asyncio.new_event_loop)


def _skip_if_ring_refused(outcome) -> None:
    # A test (or fixture) that builds a ring itself is ring-only by nature:
    # under the filter it gets RingUnavailableError, which is not a failure
    # of the fallback.  Anything else propagates.
    from ringleader.uring import RingUnavailableError
    exc = outcome.excinfo[1] if outcome.excinfo else None
    if URING_DENIED and isinstance(exc, RingUnavailableError):
        outcome.force_exception(pytest.skip.Exception(
            f"ring-only (builds a ring: {type(exc).__name__}): {_DENIED_WHY}", _use_item_location=True))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    outcome = yield
    _skip_if_ring_refused(outcome)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item):
    outcome = yield
    _skip_if_ring_refused(outcome)


def open_fds() -> set[int]:
    return {int(x) for x in os.listdir("/proc/self/fd")}


@pytest.fixture
def fd_guard():
    """Fails the test if it leaves file descriptors open."""
    before = open_fds()
    yield
    leaked = open_fds() - before
    # listdir itself briefly opens a directory fd; ignore fds that are already gone
    leaked = {fd for fd in leaked if os.path.exists(f"/proc/self/fd/{fd}")}
    assert not leaked, f"leaked fds: {sorted(leaked)}"


# ------------------------------------------------------------ TLS material

def _openssl(*args: str, cwd: str) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d: str) -> dict[str, str]:
    """A throw-away CA, a server certificate for localhost (only) and a
    client certificate for CN rl_cert, all signed by it; and a second CA that
    signed nothing here.  Returns name -> path."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl missing: run ./scripts/bootstrap")
    days = ["-days", "2"]
    # Extensions as RFC 5280 wants them: CPython >= 3.13 verifies with
    # VERIFY_X509_STRICT, which refuses a CA without keyUsage and a leaf
    # without an authority key identifier.
    for ca in ("ca", "other-ca"):
        _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{ca}.key",
                 "-out", f"{ca}.crt", *days, "-subj", f"/CN=ringleader test {ca}",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    leaf = "authorityKeyIdentifier=keyid,issuer\nsubjectKeyIdentifier=hash\n"
    with open(os.path.join(d, "san.ext"), "w") as f:
        # not 127.0.0.1: the name check must bite
        f.write(leaf + "subjectAltName=DNS:localhost\n")
    with open(os.path.join(d, "leaf.ext"), "w") as f:
        f.write(leaf)
    for name, cn in (("server", "localhost"), ("client", "rl_cert")):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
                 "-out", f"{name}.csr", "-subj", f"/CN={cn}", cwd=d)
        ext = ["-extfile", "san.ext" if name == "server" else "leaf.ext"]
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.crt", *days, *ext, cwd=d)
    os.chmod(os.path.join(d, "client.key"), 0o600)
    return {n: os.path.join(d, n) for n in ("ca.crt", "other-ca.crt", "server.crt",
                                            "server.key", "client.crt", "client.key")}



@pytest.fixture(scope="session")
def tls_certs(tmp_path_factory):
    """make_certs() once per session, for the TLS servers of the integration tests."""
    return make_certs(str(tmp_path_factory.mktemp("certs")))
