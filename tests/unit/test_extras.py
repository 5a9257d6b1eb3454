"""The install is split into extras: each optional part fails at import with
MissingExtraError naming its extra when the dependency is missing (simulated
in a child interpreter whose import system refuses the module), and the core
(loop, runtime, supervisor) imports without any of them."""
import re
import tomllib

import pytest

from ringleader import extras

from ..tutil import REPO, python_without

OPTIONAL = ["psycopg", "hiredis", "rich", "prometheus_client"]


def test_extras_table_matches_pyproject():
    with open(f"{REPO}/pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    assert project["dependencies"] == ["cffi>=1.16"]
    declared = project["optional-dependencies"]
    dist = {"psycopg": "psycopg", "hiredis": "hiredis", "rich": "rich",
            "prometheus_client": "prometheus-client"}
    for extra, modules in extras.EXTRAS.items():
        names = [re.split(r"[\[<>=]", r)[0] for r in declared[extra]]
        assert names == [dist[m] for m in modules], extra
    assert declared["all"] == ["ringleader[postgres,redis,cli,metrics]"]
    assert set(extras.EXTRAS) == {"postgres", "redis", "cli", "metrics"}


@pytest.mark.parametrize("module, missing, extra", [
    ("ringleader.drivers.postgres", "psycopg", "postgres"),
    ("ringleader.drivers.postgres.dsn", "psycopg", "postgres"),
    ("ringleader.drivers.redis", "hiredis", "redis"),
    ("ringleader.drivers.redis.protocol", "hiredis", "redis"),
    ("ringleader.runtime.metrics", "prometheus_client", "metrics"),
])
def test_missing_extra_names_itself(module, missing, extra):
    p = python_without([missing], f"""
        import importlib
        from ringleader.extras import MissingExtraError
        try:
            importlib.import_module({module!r})
        except MissingExtraError as e:
            assert isinstance(e, ModuleNotFoundError) and e.name == {missing!r}, e
            print("extra:", e.extra)
            print(e)
        else:
            raise SystemExit("imported without {missing}")
        """)
    assert p.returncode == 0, p.stderr
    assert f"extra: {extra}\n" in p.stdout
    assert f"pip install 'ringleader[{extra}]'" in p.stdout


def test_cli_without_rich_says_which_extra():
    p = python_without(["rich"], """
        import sys
        from ringleader.__main__ import main
        sys.exit(main(["list"]))
        """)
    assert p.returncode == 1
    assert "pip install 'ringleader[cli]'" in p.stderr and "Traceback" not in p.stderr


def test_core_imports_without_any_extra():
    p = python_without(OPTIONAL, """
        import ringleader.runtime, ringleader.supervisor, ringleader.uring
        import ringleader.drivers.pool, ringleader.drivers.errors, ringleader.testing
        import sys
        leaked = [m for m in ("psycopg", "hiredis", "rich", "prometheus_client") if m in sys.modules]
        assert not leaked, leaked
        print("ok")
        """)
    assert p.returncode == 0 and p.stdout == "ok\n", p.stderr


def test_require_passes_other_import_errors_through():
    # An error inside an installed dependency is not a missing extra.
    p = python_without(["some_inner_module"], """
        from ringleader.extras import MissingExtraError, require
        try:
            require("some_inner_module", "redis", "x")
        except MissingExtraError:
            print("missing")
        try:
            require("json.nonexistent_sub", "redis", "x")
        except MissingExtraError:
            print("wrong")
        except ModuleNotFoundError:
            print("passed through")
        """)
    assert p.stdout.split() == ["missing", "passed", "through"], p.stderr
