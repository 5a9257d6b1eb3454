"""Fixtures for the migration fault tests, which need Postgres and Redis in one
test: the servers of the two drivers' own conftests (loaded here by path, as
the directories are not packages), and a guard that fails a test when asyncio
logs "exception was never retrieved"."""
import gc
import importlib.util
import logging
import os
import sys

import pytest

_HERE = os.path.dirname(__file__)
sys.path.insert(0, _HERE)  # the tests import the shared workload, migload.py


def _load(name: str, path: str):
    spec = importlib.util.spec_from_file_location(name, os.path.join(_HERE, path))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


_pg = _load("rl_migration_pg_conftest", "../postgres/conftest.py")
_redis = _load("rl_migration_redis_conftest", "../redis/conftest.py")

pg_server = _pg.pg_server
redis_server = _redis.redis_server


class _NeverRetrieved(logging.Handler):
    def __init__(self):
        super().__init__(logging.ERROR)
        self.records: list[str] = []

    def emit(self, record):
        msg = record.getMessage()
        if "never retrieved" in msg:
            self.records.append(msg)


@pytest.fixture
def never_retrieved():
    """Yields the list of "... exception was never retrieved" reports; the test
    fails if any is logged (a collection runs first, so dropped futures report)."""
    gc.collect()  # what earlier tests left behind is theirs, not this test's
    handler = _NeverRetrieved()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler.records
        gc.collect()
    finally:
        root.removeHandler(handler)
    assert handler.records == [], handler.records[:5]
