"""The debug socket: a live, read-only view of a running runtime for operators.

What it does: :class:`DebugServer` listens on a Unix stream socket (mode 0600,
default ``$XDG_RUNTIME_DIR/ringleader/ringleader-<pid>.sock``, else under
``/run/ringleader`` for root or ``/tmp/ringleader-<uid>``), lets in only peers
whose uid (SO_PEERCRED) is the runtime's own or root, and answers requests
from its own thread with the views of :mod:`ringleader.runtime.debug_views`
(built from the runtime's frozen snapshots), served through the snapshot
cache and rate limits of :mod:`ringleader.runtime.debug_limits`.  It never
runs code on a worker except for the control commands, which exist only with
``control=True``.

The command table, errors and socket discovery it shares with the client
live in :mod:`ringleader.runtime.debug_protocol` (re-exported here).

What it does not do: listen on the network, authenticate beyond the uid
check, or change anything unless control was enabled by the operator.

Protocol ``ringleader-debug`` version 1, JSON lines (UTF-8, one object per
``\\n``-terminated line, each way):

* on connect the server sends ``{"protocol": "ringleader-debug", "version": 1,
  "pid": ..., "control": bool, "commands": [...]}``;
* a request is ``{"cmd": NAME, "args": {...}, "id": ANY}`` (``args`` and ``id``
  optional; ``id`` is a string, number or null and is echoed back);
* a response is ``{"id": ..., "ok": true, "result": ...}`` or ``{"id": ...,
  "ok": false, "error": {"code": CODE, "message": TEXT}}``; codes are
  ``bad_json``, ``bad_request``, ``unknown_command``, ``control_disabled``,
  ``not_found``, ``failed``, ``too_large``, ``too_many_clients``, ``forbidden``,
  ``shutting_down`` and ``internal``;
* every request gets exactly one response (the messages below carry an
  ``"event"`` key, responses never do);
* a ``watch`` is answered ``{"id": ..., "ok": true, "result": {"watching": [...],
  "interval": ..., "count": ...}}``, then pushes ``{"id": ..., "ok": true,
  "event": "snapshot", "seq": k, "result": {cmd: result, ...}}`` every
  ``interval`` seconds, the first at once, and after ``count`` snapshots (if
  given) ``{"id": ..., "ok": true, "event": "end", "seq": k}``; ``unwatch`` or
  a new ``watch`` replaces it.

Commands (``help`` lists them with their arguments): ``summary``, ``workers``
(ring stats per worker: batch-size and flush-depth histograms, busy ratio,
loop lag, fixed slots), ``hot`` (hottest connections per worker), ``pools``,
``supervisor``, ``decisions``, ``metrics`` (Prometheus text), ``watch``,
``unwatch``, ``help``; with control: ``pause_supervisor``,
``resume_supervisor``, ``resize_pool``, ``migrate``.

Limits that keep a bad client from hurting anyone, the service above all
(:mod:`ringleader.runtime.debug_limits`): each read-only view is computed at
most once per ``snapshot_interval`` and served as a copy, so its cost does not
grow with the number of clients or requests, and a watch pushes at most once
per ``snapshot_interval`` (a shorter interval is raised to it, and the
acknowledgement says so); each client may make ``client_rate`` requests per
second (``client_burst`` at once) and all of them together ``total_rate`` --
past that a client is not read from until it may go on (slowed, never
refused); a watch push is skipped while the client has not read the last one,
and a client that reads nothing for ``stall_timeout`` while output waits is
cut off, as is one whose unread output exceeds ``max_outbuf``; a request line
over ``max_request`` bytes gets ``too_large`` and the connection is closed;
past ``max_clients`` new clients get ``too_many_clients`` and are closed; a
connection idle (no request, no watch) for ``idle_timeout`` is closed.
"""
from __future__ import annotations

import atexit
import collections
import concurrent.futures
import errno
import json
import logging
import math
import os
import selectors
import socket
import stat
import struct
import threading
import time
import weakref
from pathlib import Path
from typing import Any

from .debug_limits import SnapshotCache, TokenBucket
from .debug_protocol import (COMMANDS, PROTOCOL, VERSION, WATCHABLE, DebugCommandError,
                             DebugError, DebugProtocolError, DebugSocketError, _alive,
                             _release_claim, default_socket_path, find_socket, jsonable,
                             list_sockets, socket_dirs)
from .debug_protocol import encode as _line
from .debug_protocol import encode_value
from .debug_protocol import parse_args as _parse_args
from .debug_views import VIEWS, DebugViews
from .errors import RuntimeLayerError
from .registry import RegistryError

__all__ = ["DebugServer", "DebugError", "DebugSocketError", "DebugProtocolError",
           "DebugCommandError", "PROTOCOL", "VERSION", "default_socket_path", "socket_dirs",
           "list_sockets", "find_socket", "jsonable"]

logger = logging.getLogger("ringleader.debug")


# Views served from the snapshot cache (the rest change something or are per client).
_CACHED = frozenset(WATCHABLE) | {"help"}


class _Client:
    __slots__ = ("sock", "inbuf", "outbuf", "watch", "last", "closing", "close_by", "events",
                 "bucket", "paused_until", "stalled_since")

    def __init__(self, sock: socket.socket, now: float, bucket: TokenBucket):
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.watch: dict | None = None
        self.last = now
        self.closing = False
        self.close_by = math.inf
        self.events = selectors.EVENT_READ
        self.bucket = bucket
        self.paused_until = 0.0        # out of tokens: not read from until then
        self.stalled_since = math.inf  # output has waited unread since then


class DebugServer:
    """Serves the debug protocol for ``runtime`` from one thread (see module docstring)."""

    def __init__(self, runtime, path: str | os.PathLike | None = None, *, control: bool = False,
                 max_clients: int = 64, max_request: int = 64 * 1024,
                 max_outbuf: int = 4 * 1024 * 1024, idle_timeout: float = 300.0,
                 snapshot_interval: float = 0.2, client_rate: float = 20.0,
                 client_burst: int = 20, total_rate: float = 100.0,
                 stall_timeout: float = 5.0):
        self.runtime = runtime
        self.control = bool(control)
        self.path = Path(path) if path is not None else default_socket_path()
        self.max_clients = max_clients
        self.max_request = max_request
        self.max_outbuf = max_outbuf
        self.idle_timeout = idle_timeout
        self.snapshot_interval = snapshot_interval
        self.client_rate = client_rate
        self.client_burst = client_burst
        self.stall_timeout = stall_timeout
        self.views = DebugViews(runtime, self)
        self._cache = SnapshotCache(self._command, snapshot_interval)
        self._budget = TokenBucket(total_rate, max(total_rate, client_burst), time.monotonic())
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._sock: socket.socket | None = None
        self._sel: selectors.DefaultSelector | None = None
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._clients: dict[int, _Client] = {}
        self._done: collections.deque = collections.deque()   # (client, id, future)
        self.counters = dict.fromkeys(("accepted", "requests", "errors", "refused", "cut_off",
                                       "throttled", "pushes_skipped"), 0)

    # ----------------------------------------------------------- lifecycle
    def start(self) -> "DebugServer":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            # fchmod before bind: Linux creates the socket file with the socket
            # inode's mode, so there is no window where it is world-connectable.
            os.fchmod(s.fileno(), 0o600)
            self._unlink_stale()
            s.bind(str(self.path))
            os.chmod(self.path, 0o600)
            s.listen(128)
            s.setblocking(False)
            self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
            self._sel = selectors.DefaultSelector()
            self._sel.register(s, selectors.EVENT_READ, "listen")
            self._sel.register(self._wake_r, selectors.EVENT_READ, "wake")
        except BaseException as exc:
            s.close()
            self._close_fds()
            _release_claim(self.path)
            if isinstance(exc, OSError):
                raise DebugSocketError(f"cannot listen on {self.path}: {exc}") from exc
            raise
        self._sock = s
        _bound.add(self)
        self._thread = threading.Thread(target=self._run, name="ringleader-debug", daemon=True)
        self._thread.start()
        return self

    def _unlink_stale(self) -> None:
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        if not stat.S_ISSOCK(st.st_mode):
            raise DebugSocketError(f"{self.path} exists and is not a socket; not touching it")
        if _alive(self.path):
            raise DebugSocketError(f"{self.path} is in use by another runtime")
        os.unlink(self.path)

    def close(self) -> None:
        """Stop serving, close every client, unlink the socket (idempotent)."""
        if self._stopping:
            return
        self._stopping = True
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()
        bye = _line({"id": None, "ok": False, "error": {
            "code": "shutting_down", "message": "the runtime is stopping"}})
        for c in list(self._clients.values()):
            try:  # best effort: a watcher learns why its stream ends
                c.sock.send(bytes(c.outbuf) + bye)
            except OSError:
                pass
            c.sock.close()
        self._clients.clear()
        if self._sock is not None:
            self._sock.close()
            self._unlink()
        self._close_fds()

    def _unlink(self) -> None:
        _bound.discard(self)
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        _release_claim(self.path)

    def _close_fds(self) -> None:
        if self._sel is not None:
            self._sel.close()
            self._sel = None
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:  # full pipe: a wake-up is already pending; closed: stopping
            pass

    # ------------------------------------------------------------ the loop
    def _run(self) -> None:
        sel = self._sel
        while not self._stopping:
            now = time.monotonic()
            deadline = now + 1.0
            for c in self._clients.values():
                if c.watch is not None:
                    deadline = min(deadline, c.watch["due"])
                if c.paused_until:
                    deadline = min(deadline, c.paused_until)
                if c.outbuf:
                    deadline = min(deadline, c.stalled_since + self.stall_timeout)
                deadline = min(deadline, c.close_by)
            try:
                events = sel.select(max(0.0, deadline - now))
            except Exception:  # noqa: BLE001 - the selector itself failing is fatal to the server
                logger.exception("debug socket: selector failed; the debug server stops")
                return
            for key, mask in events:
                if self._stopping:
                    break
                try:
                    if key.data == "listen":
                        self._accept()
                    elif key.data == "wake":
                        self._drain_wake()
                    else:
                        self._on_client(key.data, mask)
                except Exception:
                    logger.exception("debug socket: error while serving; closing that client")
                    if isinstance(key.data, _Client):
                        self._drop(key.data)
            try:
                self._tick(time.monotonic())
            except Exception:
                logger.exception("debug socket: error in periodic work")

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    logger.warning("debug socket: accept: %s", exc)
                return
            conn.setblocking(False)
            self.counters["accepted"] += 1
            pid, uid, gid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET,
                                                                socket.SO_PEERCRED, 12))
            if uid not in (os.geteuid(), 0):
                self._refuse(conn, "forbidden", f"uid {uid} may not use this runtime's debug socket")
                continue
            if len(self._clients) >= self.max_clients:
                self._refuse(conn, "too_many_clients",
                             f"{self.max_clients} clients are connected; try again later")
                continue
            now = time.monotonic()
            c = _Client(conn, now, TokenBucket(self.client_rate, self.client_burst, now))
            self._clients[conn.fileno()] = c
            self._sel.register(conn, selectors.EVENT_READ, c)
            self._send(c, {"protocol": PROTOCOL, "version": VERSION, "pid": os.getpid(),
                           "control": self.control, "commands": self._visible_commands()})

    def _refuse(self, conn: socket.socket, code: str, message: str) -> None:
        self.counters["refused"] += 1
        try:
            conn.send(_line({"id": None, "ok": False, "error": {"code": code, "message": message}}))
        except OSError:
            pass
        conn.close()

    def _drain_wake(self) -> None:
        try:
            while os.read(self._wake_r, 4096):
                pass
        except BlockingIOError:
            pass
        while self._done:
            c, rid, fut = self._done.popleft()
            if c.sock.fileno() < 0:
                continue
            try:
                self._reply(c, rid, jsonable(fut.result()))
            except DebugCommandError as exc:
                self._error(c, rid, exc.code, exc.message)
            except Exception as exc:
                self._error(c, rid, "failed", f"{type(exc).__name__}: {exc}")

    def _on_client(self, c: _Client, mask: int) -> None:
        if mask & selectors.EVENT_WRITE:
            self._flush(c)
        if mask & selectors.EVENT_READ and c.sock.fileno() >= 0 and not c.closing:
            try:
                data = c.sock.recv(65536)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                self._drop(c)
                return
            if not data:
                self._drop(c)
                return
            c.last = time.monotonic()
            c.inbuf += data
            self._serve_lines(c, c.last)

    def _serve_lines(self, c: _Client, now: float) -> None:
        """Answers the complete request lines in ``c.inbuf`` while the client
        and the server have tokens; out of them, stops reading the client
        until it has one again (its lines wait, none is lost)."""
        while not c.closing and c.sock.fileno() >= 0:
            nl = c.inbuf.find(b"\n")
            if nl < 0:
                if len(c.inbuf) > self.max_request:
                    self._too_large(c)
                return
            if nl > self.max_request:
                self._too_large(c)
                return
            if not (c.bucket.ready(now) and self._budget.ready(now)):
                self.counters["throttled"] += 1
                c.paused_until = now + max(c.bucket.wait(now), self._budget.wait(now), 0.001)
                self._flush(c)  # updates the events: no reading while paused
                return
            c.bucket.take()
            self._budget.take()
            line = bytes(c.inbuf[:nl])
            del c.inbuf[:nl + 1]
            self._request(c, line)
        
    def _too_large(self, c: _Client) -> None:
        self._error(c, None, "too_large", f"a request is at most {self.max_request} bytes; "
                                          f"closing this connection")
        self._close_after_flush(c)

    def _tick(self, now: float) -> None:
        for c in list(self._clients.values()):
            if c.sock.fileno() < 0:
                continue
            if c.closing and now >= c.close_by:
                self._drop(c)
                continue
            if c.outbuf and now - c.stalled_since > self.stall_timeout:
                # It has read nothing for that long: a watcher that never
                # reads would otherwise cost a push every interval forever.
                self.counters["cut_off"] += 1
                self._drop(c)
                continue
            if c.paused_until and now >= c.paused_until:
                c.paused_until = 0.0
                self._serve_lines(c, now)
                self._flush(c)
                if c.sock.fileno() < 0:
                    continue
            w = c.watch
            if w is not None and now >= w["due"]:
                if c.outbuf:
                    # The last push is still unread: skip this one rather than
                    # queue snapshots; the client gets a fresh one when it reads.
                    self.counters["pushes_skipped"] += 1
                    w["due"] = self._next_due(now, w["interval"])
                else:
                    self._push_watch(c, w, now)
            elif w is None and not c.closing and now - c.last > self.idle_timeout:
                self._error(c, None, "bad_request", f"idle for {self.idle_timeout:.0f}s; closing")
                self._close_after_flush(c)

    # ------------------------------------------------------------- output
    def _send(self, c: _Client, msg: dict) -> None:
        self._send_raw(c, _line(msg))

    def _send_raw(self, c: _Client, line: bytes) -> None:
        if c.sock.fileno() < 0:
            return
        if not c.outbuf:
            c.stalled_since = time.monotonic()
        c.outbuf += line
        if len(c.outbuf) > self.max_outbuf:
            # A client that does not read would make us buffer without bound.
            self.counters["cut_off"] += 1
            self._drop(c)
            return
        self._flush(c)

    def _flush(self, c: _Client) -> None:
        while c.outbuf:
            try:
                n = c.sock.send(c.outbuf)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self._drop(c)
                return
            del c.outbuf[:n]
            c.stalled_since = time.monotonic() if c.outbuf else math.inf
        if c.closing and not c.outbuf:
            self._drop(c)
            return
        reading = not c.closing and not c.paused_until
        want = (selectors.EVENT_READ if reading else 0) | (selectors.EVENT_WRITE if c.outbuf else 0)
        if want != c.events:
            c.events = want
            self._sel.modify(c.sock, want, c)

    def _close_after_flush(self, c: _Client) -> None:
        if c.sock.fileno() < 0:
            return
        c.closing = True
        c.watch = None
        c.close_by = time.monotonic() + 1.0
        self._flush(c)

    def _drop(self, c: _Client) -> None:
        if c.sock.fileno() < 0:
            return
        self._clients.pop(c.sock.fileno(), None)
        try:
            self._sel.unregister(c.sock)
        except (KeyError, ValueError):
            pass
        c.sock.close()
        c.watch = None

    def _reply(self, c: _Client, rid: Any, result: Any, **extra) -> None:
        self._send(c, {"id": rid, "ok": True, **extra, "result": result})

    def _error(self, c: _Client, rid: Any, code: str, message: str) -> None:
        self.counters["errors"] += 1
        self._send(c, {"id": rid, "ok": False, "error": {"code": code, "message": message}})

    # ------------------------------------------------------------ requests
    def _request(self, c: _Client, line: bytes) -> None:
        self.counters["requests"] += 1
        rid = None
        try:
            try:
                req = json.loads(line)
            except (ValueError, UnicodeDecodeError) as exc:
                raise DebugCommandError("bad_json", f"a request is one JSON object per line: {exc}")
            if not isinstance(req, dict):
                raise DebugCommandError("bad_request", "a request is a JSON object with a 'cmd'")
            rid = req.get("id")
            if not (rid is None or isinstance(rid, (str, int, float))) or isinstance(rid, str) \
                    and len(rid) > 200:
                rid = None
                raise DebugCommandError("bad_request", "'id' must be a string (<= 200 chars), "
                                                       "a number or null")
            extra = set(req) - {"cmd", "args", "id"}
            if extra:
                raise DebugCommandError("bad_request", f"unknown request field(s) {sorted(extra)}")
            cmd = req.get("cmd")
            if not isinstance(cmd, str) or cmd not in COMMANDS:
                raise DebugCommandError("unknown_command", f"unknown command {str(cmd)[:80]!r}; "
                                                           f"try 'help'")
            if COMMANDS[cmd][2] and not self.control:
                raise DebugCommandError("control_disabled", f"{cmd} changes the runtime; it exists "
                                        f"only when the runtime is started with control=True")
            args = _parse_args(cmd, req.get("args"))
            if cmd == "watch":
                # No faster than the snapshots change: each push then shows a
                # newer one, and pushes cost no fresh computation.
                interval = max(args["interval"], self.snapshot_interval)
                c.watch = {"id": rid, "interval": interval, "what": list(args["what"]),
                           "n": args["n"], "left": args["count"], "seq": 0, "due": 0.0,
                           "pushed": -math.inf}
                self._reply(c, rid, {"watching": c.watch["what"], "interval": interval,
                                     "count": args["count"]})
                if c.watch is not None:
                    self._push_watch(c, c.watch, time.monotonic())
                return
            if cmd == "unwatch":
                stopped = c.watch is not None
                c.watch = None
                self._reply(c, rid, {"stopped": stopped})
                return
            if cmd in _CACHED:
                cached = self._cache.get(cmd, args, time.monotonic())
                self._send_raw(c, b'{"id":' + encode_value(rid) + b',"ok":true,"result":'
                               + cached + b"}\n")
                return
            result = self._command(cmd, args)
        except DebugCommandError as exc:
            self._error(c, rid, exc.code, exc.message)
            return
        except RegistryError as exc:
            self._error(c, rid, "not_found", str(exc))
            return
        except RuntimeLayerError as exc:  # e.g. the pool's worker is no longer running
            self._error(c, rid, "failed", f"{type(exc).__name__}: {exc}")
            return
        except Exception as exc:
            logger.exception("debug socket: %s failed", line[:200])
            self._error(c, rid, "internal", f"{type(exc).__name__}: {exc}")
            return
        if isinstance(result, concurrent.futures.Future):
            # A control command running on a worker: answer when it finishes,
            # without holding up other clients.
            def done(fut, c=c, rid=rid):
                self._done.append((c, rid, fut))
                self._wake()
            result.add_done_callback(done)
            return
        self._reply(c, rid, result)

    def _push_watch(self, c: _Client, w: dict, now: float) -> None:
        parts = []
        for cmd in w["what"]:
            args = {"n": w["n"]} if cmd == "hot" else {}
            try:
                cached = self._cache.get(cmd, args, now, w["pushed"])
            except Exception as exc:
                cached = encode_value({"error": f"{type(exc).__name__}: {exc}"})
            parts.append(encode_value(cmd) + b":" + cached)
        w["seq"] += 1
        w["pushed"] = now
        w["due"] = self._next_due(now, w["interval"])
        self._send_raw(c, b'{"id":' + encode_value(w["id"]) + b',"ok":true,"event":"snapshot",'
                       b'"seq":' + str(w["seq"]).encode() + b',"result":{' + b",".join(parts)
                       + b"}}\n")
        if w["left"] is not None:
            w["left"] -= 1
            if w["left"] <= 0 and c.watch is w:
                c.watch = None
                self._send(c, {"id": w["id"], "ok": True, "event": "end", "seq": w["seq"]})

    @property
    def snapshot_counters(self) -> dict:
        """How often a view was computed, and how often a copy was served instead."""
        return dict(self._cache.counters)

    @property
    def uptime_s(self) -> float:
        return time.monotonic() - self._t0

    @property
    def client_count(self) -> int:
        return len(self._clients)

    def _next_due(self, now: float, interval: float) -> float:
        """The next push time: ``interval`` on, rounded up to the grid of
        snapshot intervals, so that one wake-up of this thread serves every
        watcher due then (each wake-up takes the GIL from the workers)."""
        q = self.snapshot_interval
        return math.ceil((now + interval - 1e-6) / q) * q

    def _visible_commands(self) -> list[str]:
        return [n for n, (_, _, ctl) in COMMANDS.items() if self.control or not ctl]

    # ----------------------------------------------------------- snapshots
    def _command(self, cmd: str, args: dict) -> Any:
        if cmd in VIEWS:
            return getattr(self.views, cmd)(**args)
        return getattr(self, f"_cmd_{cmd}")(**args)

    def _cmd_help(self) -> dict:
        return {"protocol": PROTOCOL, "version": VERSION, "commands": {
            n: {"args": {a: {"type": k, "default": d, "min": lo, "max": hi}
                         for a, (k, d, lo, hi) in spec.items()}, "doc": doc, "control": ctl}
            for n, (spec, doc, ctl) in COMMANDS.items() if self.control or not ctl}}

    # ------------------------------------------------------------- control
    def _sup_call(self, method: str):
        sup = self.runtime.registry.supervisor
        if sup is None:
            raise DebugCommandError("not_found", "no supervisor is registered")
        fn = getattr(sup, method, None)
        if not callable(fn):
            raise DebugCommandError("failed", f"the supervisor has no {method}() method")
        fn()
        return {"paused": method == "pause"}

    def _cmd_pause_supervisor(self) -> dict:
        return self._sup_call("pause")

    def _cmd_resume_supervisor(self) -> dict:
        return self._sup_call("resume")

    def _cmd_resize_pool(self, name: str, min: int, max: int):  # noqa: A002 - protocol names
        entry = self.runtime.registry.pool(name)
        if min > max:
            raise DebugCommandError("bad_request", f"min ({min}) must not exceed max ({max})")

        def resize():
            entry.pool.resize(min, max)
            return {"name": name, "min": min, "max": max}
        return self.runtime.call(entry.worker, resize)

    def _cmd_migrate(self, conn_id: int, worker: int):
        rt = self.runtime
        if worker >= len(rt.workers):
            raise DebugCommandError("not_found", f"no worker {worker}: this runtime has "
                                                 f"{len(rt.workers)}")
        for wid, loop in self.views.loops():
            t = loop.connection(conn_id)
            if t is not None:
                break
        else:
            raise DebugCommandError("not_found", f"no open connection #{conn_id}")

        async def move():
            await rt.migrate(t, worker)
            return {"conn_id": conn_id, "from": wid, "to": worker}
        return rt.spawn(move(), worker=wid)

    # -------------------------------------------------------------- metrics
    def metric_families(self):
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
        yield GaugeMetricFamily("ringleader_debug_clients", "Clients connected to the debug socket.",
                                value=len(self._clients))
        for key in ("requests", "errors", "refused", "cut_off", "throttled", "pushes_skipped"):
            yield CounterMetricFamily(f"ringleader_debug_{key}", f"Debug socket {key.replace('_', ' ')}.",
                                      value=self.counters[key])
        for key, value in self._cache.counters.items():
            yield CounterMetricFamily(f"ringleader_debug_snapshots_{key}",
                                      f"Debug socket views {key.replace('_', ' ')}.", value=value)


# Servers whose socket file exists: a process that exits without stopping its
# runtime (the workers are daemon threads) still removes the files.
_bound: "weakref.WeakSet[DebugServer]" = weakref.WeakSet()


@atexit.register
def _unlink_at_exit() -> None:
    for srv in list(_bound):
        srv._unlink()
