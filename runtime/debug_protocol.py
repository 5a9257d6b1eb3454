"""Protocol ``ringleader-debug`` v1: its constants, errors, commands, and socket discovery.

Shared by the server (:mod:`ringleader.runtime.debug`, which documents the
wire format) and the client (:mod:`ringleader.runtime.debug_cli`): the
command table with each command's arguments and their checks, the error
hierarchy, JSON conversion of frozen snapshots, and where sockets live
(``socket_dirs``, ``default_socket_path``, ``list_sockets``, ``find_socket``).
It opens no listening socket and reads no runtime.
"""
from __future__ import annotations

import collections
import dataclasses
import json
import math
import os
import socket
import stat
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .errors import RuntimeLayerError

__all__ = ["PROTOCOL", "VERSION", "COMMANDS", "WATCHABLE", "DebugError", "DebugSocketError",
           "DebugProtocolError", "DebugCommandError", "SocketInfo", "socket_dirs",
           "default_socket_path", "list_sockets", "find_socket", "jsonable", "parse_args",
           "encode", "encode_value", "format_peer"]

PROTOCOL = "ringleader-debug"
VERSION = 1
SOCKET_PREFIX = "ringleader-"


class DebugError(RuntimeLayerError):
    """Base of debug-socket errors (server and client side)."""


class DebugSocketError(DebugError):
    """The socket could not be created, found or reached."""


class DebugProtocolError(DebugError):
    """The other side broke the protocol (not JSON lines, wrong version, cut off)."""


class DebugCommandError(DebugError):
    """A request failed; ``code`` is the protocol's error code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# --------------------------------------------------------------- socket paths
def socket_dirs() -> list[Path]:
    """Where runtimes of this user put their sockets, preferred first."""
    dirs = []
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if xdg:
        dirs.append(Path(xdg) / "ringleader")
    if os.geteuid() == 0:
        dirs.append(Path("/run/ringleader"))
    dirs.append(Path(f"/tmp/ringleader-{os.geteuid()}"))
    return dirs


def _usable_dir(d: Path) -> bool:
    try:
        d.mkdir(mode=0o700, parents=False, exist_ok=True)
        st = os.lstat(d)
    except OSError:
        return False
    # A directory someone else owns (or a symlink planted in /tmp) could let
    # them replace our socket: refuse it rather than trust it.
    return stat.S_ISDIR(st.st_mode) and st.st_uid == os.geteuid() and not st.st_mode & 0o022


_claimed: set[str] = set()
_claimed_lock = threading.Lock()


def default_socket_path() -> Path:
    """A free ``ringleader-<pid>[-n].sock`` in the first usable directory
    (whose sockets left behind by killed processes are removed on the way)."""
    for d in socket_dirs():
        if not d.parent.is_dir() or not _usable_dir(d):
            continue
        remove_stale(d)
        with _claimed_lock:
            for n in range(1, 1000):
                name = f"{SOCKET_PREFIX}{os.getpid()}{'' if n == 1 else f'-{n}'}.sock"
                p = d / name
                if str(p) in _claimed or _alive(p):
                    continue
                _claimed.add(str(p))
                return p
    raise DebugSocketError(f"no usable directory for the debug socket among "
                           f"{', '.join(map(str, socket_dirs()))}; pass debug_socket=PATH")


def remove_stale(d: Path) -> int:
    """Unlink sockets in ``d`` whose process is gone and that nobody listens on.

    A runtime unlinks its socket when it stops or its interpreter exits; one
    that was killed cannot, and its file would otherwise pile up.
    """
    removed = 0
    try:
        entries = list(d.glob(f"{SOCKET_PREFIX}*.sock"))
    except OSError:
        return 0
    for p in entries:
        pid = _pid_of(p)
        if pid is None or pid == os.getpid() or os.path.exists(f"/proc/{pid}") or _alive(p):
            continue
        try:
            if stat.S_ISSOCK(os.lstat(p).st_mode):
                os.unlink(p)
                removed += 1
        except OSError:
            pass
    return removed


def _release_claim(path: Path) -> None:
    with _claimed_lock:
        _claimed.discard(str(path))


def _alive(path: Path) -> bool:
    """True if something accepts connections on ``path``."""
    if not path.exists():
        return False
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.settimeout(0.5)
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()


@dataclasses.dataclass(frozen=True)
class SocketInfo:
    path: Path
    pid: int | None
    running: bool     # the pid exists


def _pid_of(path: Path) -> int | None:
    stem = path.name[len(SOCKET_PREFIX):].removesuffix(".sock")
    head = stem.split("-", 1)[0]
    return int(head) if head.isdigit() else None


def list_sockets() -> list[SocketInfo]:
    """Debug sockets on this machine that this user may open (live pids first):
    its own, and for root every user's (root may connect to any of them)."""
    seen, out = set(), []
    dirs = socket_dirs()
    if os.geteuid() == 0:
        dirs += sorted(Path("/run/user").glob("*/ringleader")) + sorted(Path("/tmp").glob(
            "ringleader-[0-9]*"))
    for d in dirs:
        try:
            entries = sorted(d.glob(f"{SOCKET_PREFIX}*.sock"))
        except OSError:
            continue
        for p in entries:
            if p in seen:
                continue
            seen.add(p)
            pid = _pid_of(p)
            out.append(SocketInfo(p, pid, pid is not None and os.path.exists(f"/proc/{pid}")))
    out.sort(key=lambda i: (not i.running, i.pid or 0, str(i.path)))
    return out


def find_socket(pid: int | None = None) -> Path:
    """The socket of runtime ``pid``, or of the only runtime running."""
    found = [i for i in list_sockets() if i.running and (pid is None or i.pid == pid)]
    if len(found) == 1:
        return found[0].path
    where = ", ".join(map(str, socket_dirs()))
    if not found:
        who = f"process {pid}" if pid is not None else "any running runtime"
        raise DebugSocketError(f"no debug socket of {who} in {where}")
    raise DebugSocketError("several runtimes are running; pick one with --socket PATH or --pid PID:\n"
                           + "\n".join(f"  pid {i.pid}: {i.path}" for i in found))


# ------------------------------------------------------------------ peers
def format_peer(peer: Any) -> str:
    """A peer address as ``host:port`` (``[v6]:port``; a Unix path as itself).

    Takes the forms the runtime gives: a ``(host, port, ...)`` tuple or list,
    its ``str()`` (``"('127.0.0.1', 5432)"``), a path, or None."""
    if isinstance(peer, str):
        s = peer.strip()
        if s.startswith(("(", "[")) and s.endswith((")", "]")):
            import ast
            try:
                peer = ast.literal_eval(s)
            except (ValueError, SyntaxError):
                return peer
        else:
            return peer or "-"
    if peer is None:
        return "-"
    if isinstance(peer, (tuple, list)) and len(peer) >= 2 and isinstance(peer[1], int):
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return str(peer)


# ------------------------------------------------------------ JSON snapshots
def jsonable(obj: Any) -> Any:
    """Frozen snapshots (dataclasses, mappings, tuples) as plain JSON values.

    Non-finite floats become ``None`` (JSON has no NaN); unknown objects their repr.
    """
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: jsonable(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset, collections.deque)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    return repr(obj)


# ------------------------------------------------------------------ commands
# name -> (arguments {name: (type, default, low, high)}, description, needs control)
_INT, _NUM, _STR, _LIST = "int", "number", "string", "list of strings"
_REQUIRED = "required"
WATCHABLE = ("summary", "workers", "hot", "pools", "supervisor", "decisions", "metrics")
COMMANDS: dict[str, tuple[dict, str, bool]] = {
    "help": ({}, "the commands and their arguments", False),
    "summary": ({}, "pid, uptime, workers, connections, pools, supervisor, this socket", False),
    "workers": ({}, "ring and loop stats per worker (histograms, busy ratio, lag, fixed slots)",
                False),
    "hot": ({"n": (_INT, 10, 1, 1000)}, "the n busiest connections per worker", False),
    "pools": ({}, "stats() of each registered pool", False),
    "supervisor": ({}, "the supervisor's config, targets and recent decisions", False),
    "decisions": ({"n": (_INT, 20, 1, 10000)}, "the supervisor's last n decisions", False),
    "metrics": ({}, "Prometheus text exposition", False),
    "watch": ({"interval": (_NUM, 1.0, 0.05, 3600.0), "count": (_INT, None, 1, 10**9),
               "what": (_LIST, ["summary"], 1, len(WATCHABLE)), "n": (_INT, 10, 1, 1000)},
              "push a snapshot of the 'what' commands every interval seconds", False),
    "unwatch": ({}, "stop this connection's watch", False),
    "pause_supervisor": ({}, "pause the supervisor's actions", True),
    "resume_supervisor": ({}, "resume the supervisor's actions", True),
    "resize_pool": ({"name": (_STR, _REQUIRED, 1, 200), "min": (_INT, _REQUIRED, 0, 10**6),
                     "max": (_INT, _REQUIRED, 1, 10**6)}, "resize a registered pool", True),
    "migrate": ({"conn_id": (_INT, _REQUIRED, 0, 2**63), "worker": (_INT, _REQUIRED, 0, 4096)},
                "move a connection to another worker", True),
}


def parse_args(cmd: str, raw: Any) -> dict:
    spec = COMMANDS[cmd][0]
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise DebugCommandError("bad_request", f"'args' must be an object, got {type(raw).__name__}")
    unknown = set(raw) - set(spec)
    if unknown:
        raise DebugCommandError("bad_request", f"{cmd} takes no argument(s) {sorted(unknown)}; "
                                               f"it takes {sorted(spec) or 'none'}")
    out = {}
    for name, (kind, default, lo, hi) in spec.items():
        if name not in raw or raw[name] is None:
            if default is _REQUIRED:
                raise DebugCommandError("bad_request", f"{cmd} needs argument {name!r} ({kind})")
            out[name] = default
            continue
        v = raw[name]
        bad = DebugCommandError("bad_request", f"{cmd}: {name!r} must be a {kind} in [{lo}, {hi}], "
                                               f"got {json.dumps(v)[:80]}")
        if kind == _INT:
            if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
                raise bad
        elif kind == _NUM:
            if not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) \
                    or not lo <= v <= hi:
                raise bad
            v = float(v)
        elif kind == _STR:
            if not isinstance(v, str) or not lo <= len(v) <= hi:
                raise bad
        else:
            if not isinstance(v, list) or not lo <= len(v) <= hi \
                    or not all(isinstance(x, str) and x in WATCHABLE for x in v):
                raise DebugCommandError("bad_request", f"{cmd}: {name!r} must be a non-empty list "
                                                       f"of {list(WATCHABLE)}")
        out[name] = v
    return out


def encode_value(value: Any) -> bytes:
    """A JSON value in the protocol's compact encoding (no trailing newline)."""
    return json.dumps(value, separators=(",", ":"), allow_nan=False, default=repr).encode()


def encode(msg: dict) -> bytes:
    """One protocol line."""
    return encode_value(msg) + b"\n"
