"""The operator's side of the debug socket: a client and the views of ``ringleader``.

:class:`DebugClient` speaks protocol ``ringleader-debug`` v1 (see
:mod:`ringleader.runtime.debug`) over a blocking Unix socket: ``request(cmd,
**args)`` returns the result or raises :class:`DebugCommandError`;
``watch(...)`` yields pushed snapshots.  The renderers turn results into
rich renderables: :func:`stats_view` (one-shot ``ringleader stats``),
:func:`decisions_view`, and :class:`TopView`, which turns consecutive watch
snapshots into per-interval rates (busy %, CQEs per enter, SQEs per flush,
bytes/s per connection) for ``ringleader top``.

Nothing here uses the runtime's workers or rings: the CLI runs in another
process, usually as another program than the service.
"""
from __future__ import annotations

import datetime
import json
import socket
import time
from pathlib import Path
from typing import Any, Iterator

from rich.console import Group
from rich.table import Table
from rich.text import Text

from .debug_protocol import PROTOCOL, VERSION, DebugCommandError, DebugProtocolError, DebugSocketError

__all__ = ["DebugClient", "stats_view", "decisions_view", "TopView"]

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


# --------------------------------------------------------------- formatting
def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.2f}"


def _pct(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio * 100:.1f}%"


def _bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB"


def _age(t: float | None) -> str:
    return "-" if t is None else f"{t:.1f}"


def _header(summary: dict) -> Text:
    sup = summary.get("supervisor") or {}
    sup_s = "not registered" if not sup.get("registered") else \
        ("paused" if sup.get("paused") else "running")
    return Text(f"ringleader pid {summary['pid']} · v{summary['version']} · up "
                f"{summary['uptime_s']:.1f}s · {summary['workers']} workers · "
                f"{summary['connections']} connections · supervisor {sup_s} · control "
                f"{'on' if summary['control'] else 'off'} · {summary['socket']}", style="bold")


def _workers_table(rows: list[dict], title: str) -> Table:
    t = Table(title=title, title_justify="left", expand=False)
    for col in ("worker", "conns", "busy", "lag ewma ms", "lag max ms", "batch", "flush depth",
                "iterations", "cqes", "fixed slots", "migr in/out", "enobufs"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(str(r["worker"]), str(r["connections"]), _pct(r["busy"]), _ms(r["lag_ewma_s"]),
                  _ms(r["lag_max_s"]), f"{r['batch']:.2f}", f"{r['flush_depth']:.2f}",
                  str(r["iterations"]), str(r["cqes"]), f"{r['fixed_in_use']}/{r['fixed_capacity']}",
                  f"{r['migrations_in']}/{r['migrations_out']}", str(r["enobufs"]))
    return t


def _worker_row(w: dict, prev: dict | None) -> dict:
    ring = w["ring"]
    row = {k: w[k] for k in ("worker", "connections", "lag_ewma_s", "lag_max_s", "iterations",
                             "migrations_in", "migrations_out", "enobufs")}
    row.update(fixed_in_use=ring["fixed_in_use"], fixed_capacity=ring["fixed_capacity"],
               cqes=ring["cqes_reaped"], busy=w["busy_ratio"], batch=w["mean_batch"],
               flush_depth=w["mean_flush_depth"])
    if prev is not None:
        # Rates over the last interval rather than since start, as top shows.
        pr = prev["ring"]
        busy, idle = w["busy_s"] - prev["busy_s"], w["idle_s"] - prev["idle_s"]
        row["busy"] = busy / (busy + idle) if busy + idle > 0 else 0.0
        harvests = sum(ring["batch_hist"]) - sum(pr["batch_hist"])
        row["batch"] = (ring["cqes_reaped"] - pr["cqes_reaped"]) / harvests if harvests else 0.0
        flushes = ring["flushes"] - pr["flushes"]
        row["flush_depth"] = (ring["sqes_submitted"] - pr["sqes_submitted"]) / flushes \
            if flushes else 0.0
    return row


def _hist_table(workers: list[dict], bounds: list[list[int]], field: str, title: str) -> Table:
    t = Table(title=title, title_justify="left")
    t.add_column("worker", justify="right")
    used = [k for k in range(len(bounds)) if any(w["ring"][field][k] for w in workers)]
    for k in used:
        lo, hi = bounds[k]
        t.add_column(str(lo) if lo == hi else (f"{lo}+" if hi >= 2**63 else f"{lo}-{hi}"),
                     justify="right")
    for w in workers:
        t.add_row(str(w["worker"]), *(str(w["ring"][field][k]) for k in used))
    return t


def _hot_table(hot: dict, per_worker: int, rates: dict | None = None) -> Table:
    t = Table(title="hottest connections", title_justify="left")
    for col in ("worker", "conn", "peer", "in", "out", "ops", "migrations"):
        t.add_column(col, justify="left" if col == "peer" else "right")
    if rates is not None:
        t.add_column("in+out /s", justify="right")
    rows = 0
    for w in hot["workers"]:
        for c in w["connections"][:per_worker]:
            cells = [str(w["worker"]), f"#{c['conn_id']}", str(c["peer"]), _bytes(c["bytes_in"]),
                     _bytes(c["bytes_out"]), str(c["ops"]), str(c["migrations"])]
            if rates is not None:
                cells.append(_bytes(rates.get(c["conn_id"])) + "/s" if c["conn_id"] in rates else "-")
            t.add_row(*cells)
            rows += 1
    if not rows:
        t.add_row("-", "no connections", "", "", "", "", "", *([""] if rates is not None else []))
    return t


def _pools_table(pools: dict) -> Table | Text:
    if not pools["pools"]:
        return Text("pools: none registered")
    t = Table(title="pools", title_justify="left")
    for col in ("pool", "worker", "size", "min", "max", "idle", "in use", "waiting", "wait p50 ms",
                "wait p99 ms", "timeouts", "conn errors"):
        t.add_column(col, justify="left" if col == "pool" else "right")
    for p in pools["pools"]:
        s = p.get("stats")
        if s is None:
            t.add_row(p["name"], str(p["worker"]), Text(p.get("error", "?"), style="red"))
            continue
        name = p["name"] + (" (closed)" if p.get("closed") else "")
        p50, p99 = s.get("acquire_wait_p50_ms"), s.get("acquire_wait_p99_ms")
        t.add_row(name, str(p["worker"]), str(s["pool_size"]), str(s["pool_min"]), str(s["pool_max"]),
                  str(s["pool_available"]), str(s["pool_in_use"]), str(s["requests_waiting"]),
                  "-" if p50 is None else f"{p50:.2f}", "-" if p99 is None else f"{p99:.2f}",
                  str(s["requests_timeouts"]), str(s["connections_errors"]))
    return t


def decisions_view(dec: dict, title: str = "supervisor decisions", now: float | None = None,
                   last: int | None = None) -> Table | Text:
    """The decisions table; with ``now`` (the runtime's monotonic clock) times are ages."""
    if not dec.get("registered"):
        return Text("supervisor: not registered (no decisions)")
    rows = dec.get("decisions") or []
    if last is not None:
        rows = rows[-last:]
    t = Table(title=title + (" (paused)" if dec.get("paused") else ""), title_justify="left")
    for col in ("t" if now is None else "age s", "kind", "target", "change", "reason", "inputs"):
        t.add_column(col, justify="right" if col in ("t", "age s") else "left", overflow="fold")
    for d in rows:
        change = ""
        if d.get("old") is not None or d.get("new") is not None:
            change = f"{d.get('old', '?')} -> {d.get('new', '?')}"
        elif d.get("src") is not None or d.get("dst") is not None:
            change = f"w{d.get('src', '?')} -> w{d.get('dst', '?')}"
        when = d.get("t")
        if now is not None and isinstance(when, (int, float)):
            when = now - when
        t.add_row(_age(when), str(d.get("kind", "?")), str(d.get("target", "")), change,
                  str(d.get("reason", "")), json.dumps(d.get("inputs", {}), sort_keys=True)[:200])
    if not rows:
        t.add_row("", "none yet", "", "", "", "")
    return t


def stats_view(summary: dict, workers: dict, hot: dict, pools: dict, supervisor: dict,
               hot_per_worker: int = 5) -> Group:
    """``ringleader stats``: everything once, counters since start."""
    rows = [_worker_row(w, None) for w in workers["workers"]]
    parts: list = [_header(summary),
                   _workers_table(rows, "workers (since start)"),
                   _hist_table(workers["workers"], workers["hist_bounds"], "batch_hist",
                               "CQEs per enter (batch-size histogram)"),
                   _hist_table(workers["workers"], workers["hist_bounds"], "flush_hist",
                               "SQEs per flush (flush-depth histogram)"),
                   _hot_table(hot, hot_per_worker),
                   _pools_table(pools)]
    if supervisor.get("registered"):
        parts.append(Text("supervisor config: " + json.dumps(supervisor.get("config", {}),
                                                             sort_keys=True)[:500]))
        parts.append(Text("supervisor targets: " + json.dumps(supervisor.get("targets", {}),
                                                              sort_keys=True)[:500]))
        parts.append(decisions_view(supervisor, now=summary.get("monotonic"), last=10))
    else:
        parts.append(Text("supervisor: not registered"))
    return Group(*parts)


class TopView:
    """Turns consecutive watch snapshots into one ``ringleader top`` frame each."""

    WHAT = ["summary", "workers", "hot", "pools", "decisions"]

    def __init__(self, hot_per_worker: int = 5):
        self.hot_per_worker = hot_per_worker
        self._prev: dict | None = None
        self._prev_t: float | None = None

    def frame(self, snap: dict, now: float | None = None) -> Group:
        now = time.monotonic() if now is None else now
        prev_workers = {}
        prev_conns = {}
        dt = None
        if self._prev is not None:
            prev_workers = {w["worker"]: w for w in self._prev["workers"]["workers"]}
            prev_conns = {c["conn_id"]: c for w in self._prev["hot"]["workers"]
                          for c in w["connections"]}
            dt = now - self._prev_t
        rows = [_worker_row(w, prev_workers.get(w["worker"])) for w in snap["workers"]["workers"]]
        rates = {}
        if dt:
            for w in snap["hot"]["workers"]:
                for c in w["connections"]:
                    p = prev_conns.get(c["conn_id"])
                    if p is not None:
                        rates[c["conn_id"]] = (c["bytes_in"] + c["bytes_out"]
                                               - p["bytes_in"] - p["bytes_out"]) / dt
        self._prev, self._prev_t = snap, now
        clock = datetime.datetime.now().strftime("%H:%M:%S")
        title = "workers (last interval)" if dt else "workers (since start)"
        return Group(
            Text.assemble(_header(snap["summary"]), f" · {clock}"),
            _workers_table(rows, title),
            _hot_table(snap["hot"], self.hot_per_worker, rates),
            _pools_table(snap["pools"]),
            decisions_view(snap["decisions"], "last supervisor decisions",
                           now=snap["summary"].get("monotonic"), last=6),
        )
