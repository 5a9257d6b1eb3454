"""The costs of "the repository root is the package": the installed package
holds every subpackage of the clone (the list is computed, not kept by hand)
and not setup.py; importing the clone's source tree (Python started in the
clone's parent directory) fails with a message that names the fix."""
import importlib.util
import os
import shutil
import subprocess
import sys

import ringleader

from ..tutil import REPO

INSTALLED = os.path.dirname(os.path.abspath(ringleader.__file__))
NOT_PACKAGED = {"tests", "scripts", "docs", "build", "dist"}


def _source_packages():
    found = []
    for root, dirs, files in os.walk(REPO):
        rel = os.path.relpath(root, REPO)
        dirs[:] = [d for d in dirs if not d.startswith(".")
                   and (rel != "." or d not in NOT_PACKAGED)]
        if "__init__.py" in files:
            found.append(rel)
        else:
            dirs[:] = []
    return sorted(found)


def test_the_installed_package_is_not_the_source_tree():
    assert os.path.realpath(INSTALLED) != os.path.realpath(REPO), \
        "the tests must run against the installed package (./scripts/bootstrap)"


def test_every_subpackage_is_installed():
    src = _source_packages()
    assert "." in src and "drivers/postgres" in src
    for rel in src:
        assert os.path.isfile(os.path.join(INSTALLED, rel, "__init__.py")), f"{rel} not installed"


def test_setup_py_is_not_a_module_of_the_package():
    assert os.path.exists(os.path.join(REPO, "setup.py"))
    assert importlib.util.find_spec("ringleader.setup") is None
    assert not os.path.exists(os.path.join(INSTALLED, "setup.py"))


def test_importing_the_source_tree_names_the_fix(tmp_path):
    # The clone's parent directory: a folder in which `ringleader` is the source
    # tree (a copy of the tracked sources, without any built parts).
    tree = tmp_path / "ringleader"
    shutil.copytree(REPO, tree, ignore=shutil.ignore_patterns(
        ".*", "*.so", "build", "dist", "tests", "scripts", "docs", "__pycache__", "*.egg-info"))
    p = subprocess.run([sys.executable, "-c", "import ringleader.runtime"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode != 0
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith("ringleader.extras.NotBuiltError: ringleader.uring._liburing is not built")
    assert str(tree) in last and "pip install -e" in last and "./scripts/bootstrap" in last
    assert "No module named" not in p.stderr
