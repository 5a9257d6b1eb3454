"""scripts/uvloop_suite/run.py's own logic: the expectation file and the reading of pytest's reports.

The suite itself (uvloop's tests from PyPI, ~5 minutes) is run by hand; what
decides its verdict is checked here without the network.
"""
from __future__ import annotations

import importlib.util
import os
import sys

import pytest

RUNNER = os.path.join(os.path.dirname(__file__), "..", "..", "scripts", "uvloop_suite", "run.py")


@pytest.fixture(scope="module")
def runner():
    spec = importlib.util.spec_from_file_location("uvloop_suite_run", RUNNER)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod    # (its dataclasses look their module up)
    try:
        spec.loader.exec_module(mod)
        yield mod
    finally:
        del sys.modules[spec.name]


def test_the_committed_expectations_are_well_formed(runner):
    found = runner.load_expectations(runner.HERE / "expected.txt")
    assert len(found) >= 1
    for test_id, exp in found.items():
        assert test_id.startswith("tests/test_") and exp.kind in runner.KINDS and exp.reason


@pytest.mark.parametrize("line, why", [
    ("tests/test_x.py::T::t | nonsense-kind | reason", "kind"),
    ("tests/test_x.py::T::t | uvloop-only |", "kind"),
    ("tests/test_x.py::T::t | uvloop-only | a\ntests/test_x.py::T::t | asyncio-too | b", "twice"),
])
def test_a_malformed_expectation_is_refused(runner, tmp_path, line, why):
    p = tmp_path / "expected.txt"
    p.write_text("# comment\n" + line + "\n")
    with pytest.raises(runner.SuiteError, match=why):
        runner.load_expectations(p)


def test_junit_outcomes_by_test_id(runner, tmp_path):
    report = tmp_path / "r.xml"
    report.write_text("""<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite>
<testcase classname="" name="tests.test_fs_event"><error message="collection failure"/></testcase>
<testcase classname="tests.test_tcp.Test_UV_TCP" name="test_ok"/>
<testcase classname="tests.test_tcp.Test_UV_TCP" name="test_torn"/>
<testcase classname="tests.test_tcp.Test_UV_TCP" name="test_torn"><error message="teardown"/></testcase>
<testcase classname="tests.test_tcp.Test_UV_TCP" name="test_skip"><skipped message="no"/></testcase>
<testcase classname="tests.test_tcp.Test_UV_TCP" name="test_bad"><failure message="x"/></testcase>
<testcase classname="pytest" name="internal"><error message="internal error"/></testcase>
</testsuite></testsuites>""")
    got = runner.parse_junit(report, 1.0)
    assert got.passed == {"tests/test_tcp.py::Test_UV_TCP::test_ok"}
    assert got.failed == {"tests/test_fs_event.py", "tests/test_tcp.py::Test_UV_TCP::test_torn",
                          "tests/test_tcp.py::Test_UV_TCP::test_bad"}
    assert got.skipped == {"tests/test_tcp.py::Test_UV_TCP::test_skip"}


def test_which_failures_fail_the_run(runner):
    E = runner.Expectation
    expected = {"tests/test_a.py::T::listed_diff": E("tests/test_a.py::T::listed_diff", "difference", "r"),
                "tests/test_a.py::T::listed_too": E("tests/test_a.py::T::listed_too", "asyncio-too", "r")}
    still = {"tests/test_a.py::T::listed_diff", "tests/test_a.py::T::listed_too",
             "tests/test_a.py::T::new_shared", "tests/test_a.py::T::new_real", "tests/test_a.py::T::unreached"}
    # passes on asyncio: the two listed-as-difference/new ones and the mislabelled asyncio-too one
    real = ["tests/test_a.py::T::listed_diff", "tests/test_a.py::T::listed_too", "tests/test_a.py::T::new_real"]
    unchecked = {"tests/test_a.py::T::unreached"}
    strict = runner.unexpected_failures(still, real, unchecked, expected, False)
    assert strict == ["tests/test_a.py::T::listed_too", "tests/test_a.py::T::new_real",
                      "tests/test_a.py::T::new_shared", "tests/test_a.py::T::unreached"]
    lenient = runner.unexpected_failures(still, real, unchecked, expected, True)
    # an unlisted failure asyncio's loop shares is let through; a real or unverified one is not
    assert lenient == ["tests/test_a.py::T::listed_too", "tests/test_a.py::T::new_real",
                       "tests/test_a.py::T::unreached"]
