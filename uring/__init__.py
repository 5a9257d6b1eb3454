"""ringleader.uring: our cffi binding of liburing.

This is the only package that calls the C library.  It offers a :class:`Ring`
(one io_uring instance, single-threaded), its registered-file table, its
provided-buffer rings, a kernel probe (:func:`probe`) and frozen stats
snapshots.  It knows nothing about asyncio; the runtime builds on it.
Modules: ``ring`` (the Ring: prepare, flush, harvest), ``resources`` (fixed
files, buffer rings), ``sockaddr`` (addresses to and from the kernel),
``features`` (the probe), ``errors``, ``consts``.
"""
import importlib.util as _util

# The binding is compiled at install (setup.py, cffi API mode); a source tree
# imported in place of the install has none.
if _util.find_spec(__name__ + "._liburing") is None:
    from ..extras import not_built
    raise not_built(__name__ + "._liburing")
from .errors import RingFullError, RingUnavailableError, UringError, check, error_from_result
from .features import Features, probe
from .resources import BufferRing, FixedFiles
from .ring import Completion, Ring, RingStats
from .sockaddr import msg_flags, msg_source, parse_recvmsg_out
from . import consts

__all__ = [
    "BufferRing", "Completion", "Features", "FixedFiles", "Ring", "RingFullError", "RingStats",
    "RingUnavailableError", "UringError", "check", "consts", "error_from_result", "msg_flags",
    "msg_source", "parse_recvmsg_out", "probe",
]
