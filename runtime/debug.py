"""The debug socket: a live, read-only view of a running runtime for operators.

What it does: :class:`DebugServer` listens on a Unix stream socket (mode 0600,
default ``$XDG_RUNTIME_DIR/ringleader/ringleader-<pid>.sock``, else under
``/run/ringleader`` for root or ``/tmp/ringleader-<uid>``), lets in only peers
whose uid (SO_PEERCRED) is the runtime's own or root, and answers requests
from its own thread with the frozen snapshots (``loop.stats()``,
``hot_connections()``, each registered pool's ``stats()``, the supervisor's
``snapshot()``; see :mod:`ringleader.runtime.registry`).  It never runs code
on a worker except for the control commands, which exist only with
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

Limits that keep a bad client from hurting anyone: a request line over
``max_request`` bytes gets ``too_large`` and the connection is closed; a
client whose unread output exceeds ``max_outbuf`` is cut off; past
``max_clients`` new clients get ``too_many_clients`` and are closed; a
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

from ..uring import RingStats
from .debug_protocol import (COMMANDS, PROTOCOL, VERSION, DebugCommandError, DebugError,
                             DebugProtocolError, DebugSocketError, _alive, _release_claim,
                             default_socket_path, find_socket, jsonable, list_sockets,
                             socket_dirs)
from .debug_protocol import encode as _line
from .debug_protocol import parse_args as _parse_args
from .errors import RuntimeLayerError
from .registry import RegistryError

__all__ = ["DebugServer", "DebugError", "DebugSocketError", "DebugProtocolError",
           "DebugCommandError", "PROTOCOL", "VERSION", "default_socket_path", "socket_dirs",
           "list_sockets", "find_socket", "jsonable"]

logger = logging.getLogger("ringleader.debug")


def _worker_dict(st) -> dict:
    d = jsonable(st)
    d["busy_ratio"] = st.busy_ratio
    d["mean_batch"] = st.ring.mean_batch()
    d["mean_flush_depth"] = st.ring.mean_flush_depth()
    return d


class _Client:
    __slots__ = ("sock", "inbuf", "outbuf", "watch", "last", "closing", "close_by", "events")

    def __init__(self, sock: socket.socket, now: float):
        self.sock = sock
        self.inbuf = bytearray()
        self.outbuf = bytearray()
        self.watch: dict | None = None
        self.last = now
        self.closing = False
        self.close_by = math.inf
        self.events = selectors.EVENT_READ


class DebugServer:
    """Serves the debug protocol for ``runtime`` from one thread (see module docstring)."""

    def __init__(self, runtime, path: str | os.PathLike | None = None, *, control: bool = False,
                 max_clients: int = 64, max_request: int = 64 * 1024,
                 max_outbuf: int = 4 * 1024 * 1024, idle_timeout: float = 300.0):
        self.runtime = runtime
        self.control = bool(control)
        self.path = Path(path) if path is not None else default_socket_path()
        self.max_clients = max_clients
        self.max_request = max_request
        self.max_outbuf = max_outbuf
        self.idle_timeout = idle_timeout
        self.started_at = time.time()
        self._t0 = time.monotonic()
        self._sock: socket.socket | None = None
        self._sel: selectors.DefaultSelector | None = None
        self._wake_r = self._wake_w = -1
        self._thread: threading.Thread | None = None
        self._stopping = False
        self._clients: dict[int, _Client] = {}
        self._done: collections.deque = collections.deque()   # (client, id, future)
        self.counters = dict.fromkeys(("accepted", "requests", "errors", "refused", "cut_off"), 0)

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
            c = _Client(conn, time.monotonic())
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
            while not c.closing and c.sock.fileno() >= 0:
                nl = c.inbuf.find(b"\n")
                if nl < 0:
                    break
                line = bytes(c.inbuf[:nl])
                del c.inbuf[:nl + 1]
                if len(line) > self.max_request:
                    self._too_large(c)
                    return
                self._request(c, line)
            if len(c.inbuf) > self.max_request and not c.closing:
                self._too_large(c)

    def _too_large(self, c: _Client) -> None:
        self._error(c, None, "too_large", f"a request is at most {self.max_request} bytes; "
                                          f"closing this connection")
        self._close_after_flush(c)

    def _tick(self, now: float) -> None:
        memo: dict = {}
        for c in list(self._clients.values()):
            if c.sock.fileno() < 0:
                continue
            if c.closing and now >= c.close_by:
                self._drop(c)
                continue
            w = c.watch
            if w is not None and now >= w["due"]:
                self._push_watch(c, w, now, memo)
            elif w is None and not c.closing and now - c.last > self.idle_timeout:
                self._error(c, None, "bad_request", f"idle for {self.idle_timeout:.0f}s; closing")
                self._close_after_flush(c)

    # ------------------------------------------------------------- output
    def _send(self, c: _Client, msg: dict) -> None:
        if c.sock.fileno() < 0:
            return
        c.outbuf += _line(msg)
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
        if c.closing and not c.outbuf:
            self._drop(c)
            return
        want = (0 if c.closing else selectors.EVENT_READ) | (selectors.EVENT_WRITE if c.outbuf else 0)
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
                c.watch = {"id": rid, "interval": args["interval"], "what": list(args["what"]),
                           "n": args["n"], "left": args["count"], "seq": 0, "due": 0.0}
                self._reply(c, rid, {"watching": c.watch["what"], "interval": args["interval"],
                                     "count": args["count"]})
                if c.watch is not None:
                    self._push_watch(c, c.watch, time.monotonic(), {})
                return
            if cmd == "unwatch":
                stopped = c.watch is not None
                c.watch = None
                self._reply(c, rid, {"stopped": stopped})
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

    def _push_watch(self, c: _Client, w: dict, now: float, memo: dict) -> None:
        snap = {}
        for cmd in w["what"]:
            key = (cmd, w["n"])
            if key not in memo:
                args = {"n": w["n"]} if cmd in ("hot",) else {}
                try:
                    memo[key] = self._command(cmd, args)
                except Exception as exc:
                    memo[key] = {"error": f"{type(exc).__name__}: {exc}"}
            snap[cmd] = memo[key]
        w["seq"] += 1
        w["due"] = now + w["interval"]
        self._send(c, {"id": w["id"], "ok": True, "event": "snapshot", "seq": w["seq"],
                       "result": snap})
        if w["left"] is not None:
            w["left"] -= 1
            if w["left"] <= 0 and c.watch is w:
                c.watch = None
                self._send(c, {"id": w["id"], "ok": True, "event": "end", "seq": w["seq"]})

    def _visible_commands(self) -> list[str]:
        return [n for n, (_, _, ctl) in COMMANDS.items() if self.control or not ctl]

    # ----------------------------------------------------------- snapshots
    def _command(self, cmd: str, args: dict) -> Any:
        return getattr(self, f"_cmd_{cmd}")(**args)

    def _cmd_help(self) -> dict:
        return {"protocol": PROTOCOL, "version": VERSION, "commands": {
            n: {"args": {a: {"type": k, "default": d, "min": lo, "max": hi}
                         for a, (k, d, lo, hi) in spec.items()}, "doc": doc, "control": ctl}
            for n, (spec, doc, ctl) in COMMANDS.items() if self.control or not ctl}}

    def _loops(self) -> list:
        return [(w.id, w.loop) for w in list(self.runtime.workers)
                if w.loop is not None and not w.loop.is_closed()]

    def _cmd_summary(self) -> dict:
        from .. import __version__
        stats = self.runtime.stats()
        sup = self.runtime.registry.supervisor
        sup_info: dict = {"registered": sup is not None}
        if sup is not None:
            try:
                snap = _retry_snapshot(sup)
                sup_info.update(paused=bool(snap.get("paused")),
                                decisions=len(snap.get("decisions") or ()))
            except Exception as exc:
                sup_info["error"] = f"{type(exc).__name__}: {exc}"
        return {
            "pid": os.getpid(), "version": __version__, "protocol": VERSION,
            "started_at": self.started_at, "uptime_s": time.monotonic() - self._t0,
            # The clock of loop.time() and of the supervisor's decision times,
            # so a client can show how long ago something happened.
            "monotonic": time.monotonic(),
            "socket": str(self.path), "control": self.control,
            "workers": len(stats), "connections": sum(s.connections for s in stats),
            "per_worker": [{"worker": s.worker, "connections": s.connections,
                            "busy_ratio": s.busy_ratio, "lag_ewma_s": s.lag_ewma_s,
                            "lag_max_s": s.lag_max_s, "mean_batch": s.ring.mean_batch(),
                            "mean_flush_depth": s.ring.mean_flush_depth()} for s in stats],
            "pools": [e.name for e in self.runtime.registry.pools()],
            "supervisor": sup_info,
            "debug": {"clients": len(self._clients), **self.counters},
        }

    def _cmd_workers(self) -> dict:
        return {"hist_bounds": [list(RingStats.bucket_bounds(k)) for k in range(RingStats.HIST_BUCKETS)],
                "workers": [_worker_dict(s) for s in self.runtime.stats()]}

    def _cmd_hot(self, n: int) -> dict:
        return {"n": n, "workers": [{"worker": wid, "connections": jsonable(loop.hot_connections(n))}
                                    for wid, loop in self._loops()]}

    def _cmd_pools(self) -> dict:
        out = []
        for e in self.runtime.registry.pools():
            item = {"name": e.name, "worker": e.worker, "closed": bool(getattr(e.pool, "closed", False))}
            try:
                item["stats"] = jsonable(e.pool.stats())
            except Exception as exc:
                item["error"] = f"{type(exc).__name__}: {exc}"
            out.append(item)
        return {"pools": out}

    def _supervisor_snapshot(self) -> dict | None:
        sup = self.runtime.registry.supervisor
        if sup is None:
            return None
        snap = jsonable(_retry_snapshot(sup))
        if not isinstance(snap, dict):
            raise DebugCommandError("failed", f"the supervisor's snapshot() returned "
                                              f"{type(snap).__name__}, not a mapping")
        return snap

    def _cmd_supervisor(self) -> dict:
        snap = self._supervisor_snapshot()
        return {"registered": False} if snap is None else {"registered": True, **snap}

    def _cmd_decisions(self, n: int = 20) -> dict:
        snap = self._supervisor_snapshot()
        if snap is None:
            return {"registered": False, "decisions": []}
        return {"registered": True, "paused": bool(snap.get("paused")),
                "decisions": list(snap.get("decisions") or [])[-n:]}

    def _cmd_metrics(self) -> dict:
        from .metrics import CONTENT_TYPE, render
        return {"content_type": CONTENT_TYPE, "text": render(self.runtime, self)}

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
        for wid, loop in self._loops():
            t = loop._conns.get(conn_id)
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
        for key in ("requests", "errors", "refused", "cut_off"):
            yield CounterMetricFamily(f"ringleader_debug_{key}", f"Debug socket {key.replace('_', ' ')}.",
                                      value=self.counters[key])


# Servers whose socket file exists: a process that exits without stopping its
# runtime (the workers are daemon threads) still removes the files.
_bound: "weakref.WeakSet[DebugServer]" = weakref.WeakSet()


@atexit.register
def _unlink_at_exit() -> None:
    for srv in list(_bound):
        srv._unlink()


def _retry_snapshot(sup) -> Any:
    # snapshot() runs on this thread while the supervisor appends decisions on
    # its worker; copying a deque that grows meanwhile raises RuntimeError
    # ("mutated during iteration").  A retry sees a settled copy.
    for attempt in range(3):
        try:
            return sup.snapshot()
        except RuntimeError:
            if attempt == 2:
                raise
