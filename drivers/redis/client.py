"""The Redis pool's former module: it lives in :mod:`.pool` now; this name
stays importable for code written against it."""
from .pool import READ_ONLY, STATEFUL, Pool

__all__ = ["Pool", "READ_ONLY", "STATEFUL"]
