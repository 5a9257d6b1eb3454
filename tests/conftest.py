"""Shared fixtures.  Tiers are directories: unit/ (no I/O), ring/ (real io_uring),
integration/ (real servers), fuzz/ (hypothesis)."""
import os

import pytest


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
