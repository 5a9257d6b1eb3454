"""The operator's side of the debug socket: a blocking client.

:class:`DebugClient` speaks protocol ``ringleader-debug`` v1 (see
:mod:`ringleader.runtime.debug`) over a blocking Unix socket: ``request(cmd,
**args)`` returns the result or raises :class:`DebugCommandError`;
``watch(...)`` yields pushed snapshots.  What ``ringleader`` prints from the
results is in :mod:`ringleader.runtime.debug_render` (its views are
re-exported here for existing callers).

Nothing here uses the runtime's workers or rings: the CLI runs in another
process, usually as another program than the service.
"""
from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any, Iterator

from .debug_protocol import PROTOCOL, VERSION, DebugCommandError, DebugProtocolError, DebugSocketError

__all__ = ["DebugClient"]

_MAX_LINE = 64 * 1024 * 1024


class DebugClient:
    """A blocking connection to one runtime's debug socket."""

    def __init__(self, path: str | Path, timeout: float = 10.0):
        self.path = Path(path)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.settimeout(timeout)
        self._buf = bytearray()
        self._ids = 0
        try:
            self._sock.connect(str(self.path))
        except OSError as exc:
            self._sock.close()
            hint = " (is the runtime still running?)" if isinstance(
                exc, (FileNotFoundError, ConnectionRefusedError)) else ""
            raise DebugSocketError(f"cannot connect to {self.path}: {exc}{hint}") from exc
        try:
            self.hello = self._read()
        except BaseException:
            self._sock.close()
            raise
        if self.hello.get("ok") is False:
            self._sock.close()
            err = self.hello.get("error") or {}
            raise DebugCommandError(err.get("code", "failed"), err.get("message", "refused"))
        if self.hello.get("protocol") != PROTOCOL or self.hello.get("version") != VERSION:
            self._sock.close()
            raise DebugProtocolError(f"{self.path} speaks {self.hello.get('protocol')!r} version "
                                     f"{self.hello.get('version')!r}; this client speaks "
                                     f"{PROTOCOL!r} version {VERSION}")

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> "DebugClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _read(self) -> dict:
        while True:
            nl = self._buf.find(b"\n")
            if nl >= 0:
                line = bytes(self._buf[:nl])
                del self._buf[:nl + 1]
                try:
                    msg = json.loads(line)
                except ValueError as exc:
                    raise DebugProtocolError(f"the server sent a line that is not JSON: {exc}") from exc
                if not isinstance(msg, dict):
                    raise DebugProtocolError("the server sent a JSON value that is not an object")
                return msg
            if len(self._buf) > _MAX_LINE:
                raise DebugProtocolError("the server sent an over-long line")
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError as exc:
                raise DebugSocketError(f"no answer from {self.path} in time") from exc
            except OSError as exc:
                raise DebugSocketError(f"lost the connection to {self.path}: {exc}") from exc
            if not data:
                raise DebugSocketError(f"{self.path} closed the connection")
            self._buf += data

    def send(self, cmd: str, **args: Any) -> int:
        self._ids += 1
        req = {"id": self._ids, "cmd": cmd}
        if args:
            req["args"] = args
        self._sock.sendall(json.dumps(req).encode() + b"\n")
        return self._ids

    def request(self, cmd: str, **args: Any) -> Any:
        """Send one request and return its result (raises :class:`DebugCommandError`)."""
        rid = self.send(cmd, **args)
        while True:
            msg = self._read()
            if msg.get("id") == rid and "event" not in msg:
                return _result(msg)
            if msg.get("id") is None and msg.get("ok") is False:
                _result(msg)  # a connection-level error (too_large, idle, ...)

    def watch(self, what: list[str], interval: float = 1.0, count: int | None = None,
              n: int = 10) -> Iterator[dict]:
        """Yield ``{cmd: result}`` snapshots until ``count`` arrived (or forever)."""
        args: dict[str, Any] = {"what": what, "interval": interval, "n": n}
        if count is not None:
            args["count"] = count
        rid = self.send("watch", **args)
        while True:
            msg = self._read()
            if msg.get("id") != rid:
                if msg.get("ok") is False:
                    _result(msg)
                continue
            if "event" not in msg:
                _result(msg)  # the watch's acknowledgement, or its error
                continue
            if msg.get("event") == "end":
                return
            yield msg["result"]


def _result(msg: dict) -> Any:
    if msg.get("ok"):
        return msg.get("result")
    err = msg.get("error") or {}
    raise DebugCommandError(str(err.get("code", "failed")), str(err.get("message", "")))


def __getattr__(name: str):
    # The views (which need rich, the "cli" extra) for callers that imported
    # them from here; the client itself needs no extra.
    if name in ("TopView", "decisions_view", "stats_view"):
        from . import debug_render
        return getattr(debug_render, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
