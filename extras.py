"""What this install of ringleader holds, and the errors for what it lacks.

``pip install ringleader`` brings only what the loop and the runtime need
(cffi).  The rest comes with extras, the way ``psycopg[binary]`` or
``redis[hiredis]`` do it:

=============  ==============================  =====================================
extra          brings                          needed by
=============  ==============================  =====================================
``postgres``   psycopg[binary]                 :mod:`ringleader.drivers.postgres`
``redis``      hiredis                         :mod:`ringleader.drivers.redis`
``cli``        rich                            the ``ringleader`` command's views
``metrics``    prometheus-client               :mod:`ringleader.runtime.metrics`
``all``        all four                        everything above
=============  ==============================  =====================================

A module that needs an extra calls :func:`require` before it imports the
dependency, so a missing one fails at import with :class:`MissingExtraError`
naming the extra to install, not with a bare ``No module named 'hiredis'``.

:class:`NotBuiltError` is the other way an import can fail: Python found the
source tree (a clone) instead of the installed package, and the source tree has
no compiled binding.  This module imports nothing outside the standard library.
"""
from __future__ import annotations

import importlib
import os
from types import ModuleType

__all__ = ["EXTRAS", "MissingExtraError", "NotBuiltError", "require"]

#: extra -> the import names it provides (the distributions are in pyproject.toml).
EXTRAS: dict[str, tuple[str, ...]] = {
    "postgres": ("psycopg",),
    "redis": ("hiredis",),
    "cli": ("rich",),
    "metrics": ("prometheus_client",),
}

# The directory holding this file: the package, installed or a clone.
_HERE = os.path.dirname(os.path.abspath(__file__))


class MissingExtraError(ModuleNotFoundError):
    """A part of ringleader was used whose optional dependency is not installed.
    ``extra`` is the extra that brings it, ``name`` the missing module.  A
    ``ModuleNotFoundError``, so code probing with ``except ImportError`` keeps
    working."""

    def __init__(self, feature: str, module: str, extra: str):
        super().__init__(f"{feature} needs {module!r}, which is not installed: "
                         f"pip install 'ringleader[{extra}]'", name=module)
        self.feature = feature
        self.extra = extra


class NotBuiltError(ImportError):
    """ringleader was imported from a clone whose compiled parts are not built
    (typically: Python was started in the clone's parent directory, so
    ``import ringleader`` found the source tree before the installed package)."""


def require(module: str, extra: str, feature: str) -> ModuleType:
    """Imports ``module`` (an optional dependency brought by ``extra``) and
    returns it; :class:`MissingExtraError` if it is not installed.  Errors raised
    *inside* an installed module (a broken install) pass through unchanged."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as e:
        top = module.partition(".")[0]
        if e.name != top:  # the dependency is there but broken, or lacks a part
            raise
        raise MissingExtraError(feature, top, extra) from None


def is_source_tree() -> bool:
    """True when this package is a clone (it has the build files), not an install."""
    return os.path.exists(os.path.join(_HERE, "pyproject.toml"))


def not_built(what: str) -> NotBuiltError:
    """The error for a compiled module ``what`` that is missing from this package."""
    if is_source_tree():
        return NotBuiltError(
            f"{what} is not built: Python imported ringleader from its source tree "
            f"{_HERE} (the current directory or PYTHONPATH holds the clone), which has no "
            f"compiled parts.  Use the installed package: run ./scripts/bootstrap in the "
            f"clone and use its .venv/bin/python from any directory but the clone's parent; "
            f"or install the clone editable (pip install -e {_HERE}), which builds them in place.")
    return NotBuiltError(f"{what} is missing from the installed package at {_HERE}: the "
                         f"install is broken; reinstall ringleader (it needs liburing-dev "
                         f"and a C compiler to build)")
