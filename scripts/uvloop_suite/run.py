"""Run uvloop's own test suite against ringleader's loop and tell real differences apart.

What it does: fetches uvloop's sdist at a pinned version from PyPI (checked
against its sha256, cached outside git), copies its ``tests/`` and
``uvloop/_testbase.py`` into a run directory next to our shim package
(``shim/uvloop``, which binds uvloop's names to ``ringleader.new_event_loop``),
and runs the tests with pytest.  Every failure is retried once on ringleader
(the machine is shared: a timeout under load is not a verdict), then the tests
still failing are rerun with the shim bound to asyncio's default loop.  A test
that fails on ringleader and passes on asyncio is a real difference.

The verdict compares the failures with ``expected.txt`` (each test we do not
pass, with its kind and reason): an unlisted failure fails the run; a listed
test that passes is reported so the list can shrink.  What it does not do:
install anything (psutil and pyOpenSSL come with the ``test`` extra) or ship
any of uvloop's code in this repository.

With ``--differences-only`` (what ``./scripts/test`` passes) an unlisted
failure that asyncio's loop shares is reported but does not fail the run.

Exit status: 0 = as expected (or skipped because PyPI is unreachable and
nothing is cached), 1 = unexpected failures, 2 = the download did not verify.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import xml.etree.ElementTree as ET
from pathlib import Path

VERSION = "0.23.0"
SDIST_URL = ("https://files.pythonhosted.org/packages/fa/42/"
             "02c739ce85fb2ee8d99212c61417da8140c6b87e9d97c430bea520d76044/uvloop-0.23.0.tar.gz")
SDIST_SHA256 = "28d160f51ab4da3b187063652e643dea6831072add4adc1e6d62afbe73b6be27"

HERE = Path(__file__).resolve().parent
KINDS = {
    "uvloop-only": "tests an API only uvloop has (its Cython module, libuv handles, its SSL protocol)",
    "asyncio-too": "fails the same way on asyncio's default loop on this machine",
    "difference": "a known difference from asyncio's loop, reason given",
}


class SuiteError(Exception):
    """The suite could not be prepared (download did not verify, expectation file malformed)."""


@dataclasses.dataclass(frozen=True)
class Expectation:
    test_id: str
    kind: str
    reason: str


@dataclasses.dataclass(frozen=True)
class RunResult:
    passed: frozenset[str]
    failed: frozenset[str]
    skipped: frozenset[str]
    seconds: float


def cache_dir() -> Path:
    base = os.environ.get("RL_UVLOOP_CACHE")
    if base:
        return Path(base)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ringleader" / "uvloop-suite"


def fetch_sdist(cache: Path) -> Path | None:
    """The verified sdist in the cache (downloaded if missing); None when PyPI cannot be reached."""
    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"uvloop-{VERSION}.tar.gz"
    if target.exists() and _sha256(target) == SDIST_SHA256:
        return target
    try:
        with urllib.request.urlopen(SDIST_URL, timeout=60) as resp:
            data = resp.read()
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        print(f"uvloop-suite: SKIPPED: PyPI unreachable ({exc})")
        return None
    digest = hashlib.sha256(data).hexdigest()
    if digest != SDIST_SHA256:
        raise SuiteError(f"uvloop-{VERSION}.tar.gz has sha256 {digest}, expected {SDIST_SHA256}")
    tmp = target.with_suffix(".part")
    tmp.write_bytes(data)
    tmp.replace(target)
    return target


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def prepare_run_dir(sdist: Path, cache: Path) -> Path:
    """A fresh directory with uvloop's tests, its _testbase and our shim package."""
    prefix = f"uvloop-{VERSION}/"
    wanted = (prefix + "tests/", prefix + "uvloop/_testbase.py")
    run = cache / "run"
    if run.exists():
        shutil.rmtree(run)
    src = cache / "src"
    if src.exists():
        shutil.rmtree(src)
    with tarfile.open(sdist) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(wanted)]
        tar.extractall(src, members=members, filter="data")
    shutil.copytree(src / prefix / "tests", run / "tests")
    shutil.copytree(HERE / "shim" / "uvloop", run / "uvloop",
                    ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(src / prefix / "uvloop" / "_testbase.py", run / "uvloop" / "_testbase.py")
    # Our own ini keeps pytest from climbing to a project's configuration.
    (run / "pytest.ini").write_text("[pytest]\naddopts = -p no:cacheprovider\n")
    return run


def run_pytest(run: Path, loop: str, ids: list[str] | None, timeout: int, tag: str) -> RunResult:
    report = run / f"{tag}.xml"
    env = dict(os.environ, RL_UVLOOP_SHIM_LOOP=loop, PYTHONPATH=str(run),
               PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "-q", "-rN", "--no-header", f"--timeout={timeout}",
           "--continue-on-collection-errors",
           # (pytest's own tracebacks parse source with the AST, which CPython 3.11
           # refuses after one of uvloop's TLS tests: INTERNALERROR, run cut short)
           "--tb=native",
           f"--junitxml={report}", "-o", "junit_family=xunit1"]
    cmd += ids if ids else ["tests"]
    started = time.monotonic()
    log = run / f"{tag}.log"
    with open(log, "w") as out:
        # SIGINT back to its default: a shell starts background jobs with it
        # ignored, and uvloop's signal tests send it to children that inherit that.
        subprocess.run(cmd, cwd=run, env=env, stdout=out, stderr=subprocess.STDOUT, check=False,
                       preexec_fn=_default_sigint)
    seconds = time.monotonic() - started
    if not report.exists():
        raise SuiteError(f"pytest wrote no report; see {log}")
    return parse_junit(report, seconds)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def parse_junit(report: Path, seconds: float) -> RunResult:
    outcome: dict[str, str] = {}
    for case in ET.parse(report).iter("testcase"):
        classname, name = case.get("classname", ""), case.get("name", "")
        if not name or (classname, name) == ("pytest", "internal"):
            # pytest's own crash (INTERNALERROR): the tests after it did not run,
            # so they count as neither passed nor failed here.
            print(f"uvloop-suite: pytest stopped early (INTERNALERROR), see {report.with_suffix('.log')}")
            continue
        mod, _, cls = classname.rpartition(".")
        if not classname:   # a module that failed to collect: the id is the module
            test_id = name.replace(".", "/") + ".py"
        elif not mod:       # a module-level function: classname is the module itself
            test_id = cls.replace(".", "/") + ".py::" + name
        else:
            test_id = mod.replace(".", "/") + ".py::" + cls + "::" + name
        if case.find("failure") is not None or case.find("error") is not None:
            state = "failed"
        elif case.find("skipped") is not None:
            state = "skipped"
        else:
            state = "passed"
        # A teardown error adds a second record for the same test: failing wins.
        if outcome.get(test_id) != "failed":
            outcome[test_id] = state
    by = lambda s: frozenset(t for t, o in outcome.items() if o == s)  # noqa: E731
    return RunResult(by("passed"), by("failed"), by("skipped"), seconds)


def load_expectations(path: Path) -> dict[str, Expectation]:
    found: dict[str, Expectation] = {}
    for n, line in enumerate(path.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [p.strip() for p in line.split("|")]
        if len(parts) != 3 or parts[1] not in KINDS or not parts[2]:
            raise SuiteError(f"{path.name}:{n}: want 'test id | kind | reason' with kind in {sorted(KINDS)}")
        if parts[0] in found:
            raise SuiteError(f"{path.name}:{n}: {parts[0]} listed twice")
        found[parts[0]] = Expectation(*parts)
    return found


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--loop", choices=("ringleader", "asyncio"), default="ringleader",
                    help="loop for the main run (asyncio: the reference counts, no verdict)")
    ap.add_argument("--timeout", type=int, default=60, help="per-test timeout, seconds")
    ap.add_argument("-k", dest="ids", action="append", default=[],
                    help="run only this test id (repeatable)")
    ap.add_argument("--differences-only", action="store_true",
                    help="exit 1 only for a real difference (fails here, passes on asyncio's loop) "
                         "or a failure the asyncio rerun did not reach; an unlisted failure that "
                         "asyncio's loop shares (e.g. a subprocess timeout on a starved machine) is "
                         "reported, not fatal (what ./scripts/test uses)")
    args = ap.parse_args(argv)
    cache = cache_dir()
    try:
        sdist = fetch_sdist(cache)
        if sdist is None:
            return 0
        expected = load_expectations(HERE / "expected.txt")
        run = prepare_run_dir(sdist, cache)
        first = run_pytest(run, args.loop, args.ids or None, args.timeout, f"{args.loop}-1")
        print(f"uvloop {VERSION} suite on {args.loop}: {len(first.passed)} passed, {len(first.failed)} failed, "
              f"{len(first.skipped)} skipped in {first.seconds:.0f} s (log {run}/{args.loop}-1.log)")
        if args.loop == "asyncio":
            for t in sorted(first.failed):
                print(f"  failed on asyncio: {t}")
            return 0
        return verdict(run, first, expected, args.timeout, bool(args.ids), args.differences_only)
    except SuiteError as exc:
        print(f"uvloop-suite: ERROR: {exc}")
        return 2


def unexpected_failures(still: set[str], real: list[str], unchecked: set[str],
                        expected: dict[str, Expectation], differences_only: bool) -> list[str]:
    """The failures that fail the run.  ``still``: failed on ringleader twice;
    ``real``: of those, the ones that pass on asyncio's loop; ``unchecked``:
    the ones the asyncio rerun did not reach.  A test listed as
    uvloop-only/asyncio-too that passes on asyncio is a real difference under
    the wrong label: as bad as an unlisted one.  Strict (the default), every
    unlisted failure counts too; ``differences_only`` lets an unlisted one
    through when asyncio's loop fails it as well (the loop is held to what
    asyncio passes, not to what this machine's load allows)."""
    wrong_label = {t for t in real if t in expected and expected[t].kind != "difference"}
    if differences_only:
        bad = {t for t in real if t not in expected} | (unchecked - expected.keys())
    else:
        bad = still - expected.keys()
    return sorted(bad | wrong_label)


def verdict(run: Path, first: RunResult, expected: dict[str, Expectation], timeout: int,
            partial: bool, differences_only: bool = False) -> int:
    unlisted_first = sorted(first.failed - expected.keys())
    flaky: set[str] = set()
    still = set(first.failed)
    if unlisted_first:
        # Retried once: on the shared machine a test can time out from starvation alone.
        again = run_pytest(run, "ringleader", unlisted_first, timeout, "ringleader-2")
        flaky = set(again.passed)
        still -= flaky
    on_asyncio = run_pytest(run, "asyncio", sorted(still), timeout, "asyncio-ref") if still else None
    real = sorted(t for t in still if on_asyncio and t in on_asyncio.passed)
    unchecked = (still - on_asyncio.passed - on_asyncio.failed - on_asyncio.skipped
                 if on_asyncio is not None else set())
    unexpected = unexpected_failures(still, real, unchecked, expected, differences_only)
    for t in sorted(flaky):
        print(f"  flaky: {t} failed once, passed on retry")
    for t in sorted(unchecked):
        print(f"  not checked on asyncio (the reference run did not reach it): {t}")
    for t in real:
        note = f"listed: {expected[t].kind}" if t in expected else "NOT LISTED"
        print(f"  REAL DIFFERENCE (passes on asyncio): {t} ({note})")
    for t in unexpected:
        ref = "passes" if t in real else "not checked" if t in unchecked else "also fails"
        print(f"  UNEXPECTED failure: {t} ({ref} on asyncio)")
    for t in sorted(still - expected.keys() - set(unexpected)):
        print(f"  unlisted, fails on asyncio's loop too (not fatal with --differences-only): {t}")
    if not partial:
        for t in sorted(set(expected) - first.failed):
            if t in first.passed:
                print(f"  now passes, remove from expected.txt: {t}")
            elif t not in first.skipped:
                print(f"  listed but not run: {t}")
    counts = {k: sum(1 for t in still if t in expected and expected[t].kind == k) for k in KINDS}
    print(f"uvloop-suite: {len(real)} real differences; failures by kind: "
          + ", ".join(f"{k} {v}" for k, v in counts.items())
          + f"; {len(unexpected)} unexpected; {len(flaky)} flaky")
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
