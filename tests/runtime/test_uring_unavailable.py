"""Start-up without io_uring fails with an error naming the cause and the fix.

With ``backend="uring"`` (no fallback; ``auto`` falls back to epoll, see
test_backend.py).  ``scripts/deny-uring`` installs a seccomp filter that makes
the io_uring syscalls return EPERM (what Docker's and Kubernetes' default
profiles do) or ENOSYS (what a kernel without io_uring, or a profile that
pretends so, gives), then execs this venv's Python on a snippet that starts
the runtime.  Nothing is faked: the kernel itself refuses the syscall.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

from ..conftest import URING_DENIED
from ..tutil import REPO

SNIPPET = textwrap.dedent("""
    import json, sys
    import ringleader
    from ringleader.runtime import RingEventLoop, RingUnavailableError

    async def main(rt):
        return None

    out = {}
    for name, start in [
        ("loop", lambda: RingEventLoop().close()),
        ("run", lambda: ringleader.run(main, workers=2, backend="uring")),
    ]:
        try:
            start()
            out[name] = None
        except RingUnavailableError as exc:
            out[name] = {"type": type(exc).__name__, "errno": exc.errno, "msg": str(exc),
                         "is_oserror": isinstance(exc, OSError)}
    import gc
    gc.collect()  # a half-built loop's __del__ runs here, not at some later point
    print(json.dumps(out))
""")


@pytest.fixture(scope="module")
def launcher():
    if sys.platform != "linux":
        pytest.skip("seccomp is Linux-only")
    return os.path.join(REPO, "scripts", "deny-uring")


def _start_under_seccomp(launcher, err: int) -> dict:
    return json.loads(_run_under_seccomp(launcher, err).stdout.strip().splitlines()[-1])


def _run_under_seccomp(launcher, err: int) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(launcher), "--errno", str(err), sys.executable, "-X", "dev", "-c", SNIPPET],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc


@pytest.mark.parametrize("err", [1, 38])
def test_failed_start_leaves_nothing_that_complains_later(launcher, err):
    """The clear RingUnavailableError is the only thing a user sees: the
    half-built loop must not print 'Exception ignored in BaseEventLoop.__del__'
    (nor an unclosed-loop ResourceWarning) when it is collected."""
    proc = _run_under_seccomp(launcher, err)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["loop"]["type"] == "RingUnavailableError"
    assert "Exception ignored" not in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    assert "unclosed event loop" not in proc.stderr, proc.stderr


def test_seccomp_eperm_names_seccomp_and_the_fix(launcher):
    out = _start_under_seccomp(launcher, 1)  # EPERM
    for how in ("loop", "run"):
        r = out[how]
        assert r is not None, f"{how}: started although io_uring_setup is denied"
        assert r["type"] == "RingUnavailableError" and r["errno"] == 1 and r["is_oserror"]
        msg = r["msg"]
        assert "io_uring_setup" in msg
        assert "seccomp" in msg                                   # the cause
        assert "allow io_uring_setup" in msg                       # the fix
        # The filter is visible in /proc/self/status: say so rather than guess.
        assert "this process runs under a seccomp filter" in msg, msg
        assert "io_uring_disabled" not in msg  # the sysctl is 0 here: not the cause


def test_seccomp_enosys_names_kernel_or_seccomp_and_the_fix(launcher):
    out = _start_under_seccomp(launcher, 38)  # ENOSYS
    for how in ("loop", "run"):
        r = out[how]
        assert r is not None and r["type"] == "RingUnavailableError" and r["errno"] == 38
        msg = r["msg"]
        # This kernel has io_uring (the sysctl exists), so the message must
        # blame the seccomp filter, not the kernel, and say how to fix it.
        assert "this kernel has io_uring, but this process runs under a seccomp filter" in msg
        assert "allow io_uring_setup" in msg, msg


@pytest.mark.skipif(URING_DENIED, reason="io_uring is denied to this whole process (the epoll tier)")
def test_without_filter_the_same_snippet_starts():
    """Control run: without the launcher the same snippet starts the loop and
    run(), so the failures above are the filter's doing."""
    proc = subprocess.run([sys.executable, "-c", SNIPPET], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"loop": None, "run": None}


def test_io_uring_disabled_sysctl_messages():
    """kernel.io_uring_disabled cannot be flipped in a shared test run, so the
    message for each sysctl value is checked through unavailable() itself."""
    from ringleader.uring import features

    real = features._disabled_sysctl
    try:
        features._disabled_sysctl = lambda: 2
        msg = str(features.unavailable(-1))
        assert "kernel.io_uring_disabled=2" in msg and "sysctl -w kernel.io_uring_disabled=0" in msg
        features._disabled_sysctl = lambda: 1
        msg = str(features.unavailable(-1))
        assert "kernel.io_uring_disabled=1" in msg and "io_uring_group" in msg
    finally:
        features._disabled_sysctl = real
