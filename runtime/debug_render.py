"""What ``ringleader`` prints: the debug socket's results as text for a person.

80 columns is the design width.  Tables are compact (no vertical rules),
carry their units in the headers, and hold the few columns an operator
reads first; numbers are rounded to what a person needs (three significant
digits, compact counts like ``158k``, durations like ``4m12s``); peers print
as ``host:port``.  Wider detail -- the batch-size and flush-depth histograms,
iteration and CQE counts, decision inputs -- is behind a flag (``--hist``,
``--wide``) or in ``--json``.  :class:`TopView` also fits a frame to the
terminal's height, trimming the hot-connection and decision rows first.

Nothing here talks to a socket or reads the runtime: the renderers take the
JSON results of :mod:`ringleader.runtime.debug` (fetched by
:class:`ringleader.runtime.debug_cli.DebugClient`) and return rich
renderables.
"""
from __future__ import annotations

import datetime
import math
import textwrap
from typing import Any, Iterable

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from .debug_protocol import format_peer

__all__ = ["stats_view", "workers_view", "hot_view", "pools_view", "supervisor_view",
           "decisions_view", "metrics_view", "list_view", "control_sentence", "TopView",
           "compact_table", "num", "count", "duration"]

WIDTH = 80


# --------------------------------------------------------------- numbers
def num(x: Any) -> str:
    """A measured value to three significant digits (``-`` when absent)."""
    if x is None or isinstance(x, bool):
        return "-" if x is None else str(x).lower()
    if isinstance(x, int):
        return count(x)
    if not isinstance(x, float):
        return str(x)
    if not math.isfinite(x):
        return "-"
    a = abs(x)
    if a == 0:
        return "0"
    if a >= 10_000:
        return count(round(x))
    if a >= 100:
        return f"{x:.0f}"
    if a >= 10:
        return f"{x:.1f}"
    if a >= 1:
        return f"{x:.2f}"
    return f"{x:.3g}"


def count(n: int | None) -> str:
    """An integer count, compact past 9999 (``158k``, ``1.2M``)."""
    if n is None:
        return "-"
    if abs(n) < 10_000:
        return str(n)
    for div, unit in ((10**9, "G"), (10**6, "M"), (10**3, "k")):
        if abs(n) >= div:
            v = n / div
            return (f"{v:.1f}" if abs(v) < 100 else f"{v:.0f}") + unit
    return str(n)


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else num(seconds * 1e3)


def _pct(ratio: float | None) -> str:
    if ratio is None:
        return "-"
    p = ratio * 100
    return f"{p:.0f}%" if p >= 9.95 or p == 0 else f"{p:.1f}%"


def _bytes(n: float | None) -> str:
    if n is None:
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{num(float(n))} {unit}"
        n /= 1024
    return "-"


def duration(s: float | None) -> str:
    """Seconds as ``4.2s``, ``3m12s``, ``2h05m``, ``3d04h``."""
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.1f}s"
    m, sec = divmod(int(s), 60)
    if m < 60:
        return f"{m}m{sec:02d}s"
    h, m = divmod(m, 60)
    if h < 24:
        return f"{h}h{m:02d}m"
    d, h = divmod(h, 24)
    return f"{d}d{h:02d}h"


# ---------------------------------------------------------------- tables
def compact_table(title: str | None, columns: Iterable[tuple[str, str]]) -> Table:
    """A compact table: a rule under the header, no vertical rules or edges."""
    t = Table(title=title, title_justify="left", title_style="bold", box=box.SIMPLE_HEAD,
              show_edge=False, pad_edge=False, expand=False, collapse_padding=True)
    for header, justify in columns:
        t.add_column(header, justify=justify, no_wrap=justify == "right",
                     overflow="ellipsis" if justify == "right" else "fold")
    return t


def _lines(title: str, items: Iterable[str], indent: int = 2) -> Text:
    """``title`` then each item wrapped to the design width with a hanging indent."""
    out = [title]
    pad = " " * indent
    for item in items:
        out += textwrap.wrap(item, WIDTH, initial_indent=pad, subsequent_indent=pad + "  ",
                             break_on_hyphens=False) or [pad]
    return Text("\n".join(out))


def setting(x: Any) -> str:
    """A configured value as the operator wrote it (``1.2``, ``60``, ``true``)."""
    if x is None:
        return "-"
    if isinstance(x, bool):
        return str(x).lower()
    if isinstance(x, float):
        return f"{x:g}"
    return str(x)


def _pairs(d: dict, fmt=num) -> str:
    """``{"a": 1.23456, "b": None}`` as ``a 1.23 · b -`` (nested dicts inline);
    ``fmt`` formats the numbers (:func:`num` for measurements, :func:`setting`
    for configuration)."""
    parts = []
    for k, v in d.items():
        if isinstance(v, dict):
            v = "{" + _pairs(v, fmt) + "}" if v else "{}"
        elif isinstance(v, (list, tuple)):
            v = "[" + ", ".join(fmt(x) if isinstance(x, (int, float)) else str(x) for x in v) + "]"
        elif isinstance(v, (int, float)) or v is None:
            v = fmt(v)
        else:
            v = str(v)
        parts.append(f"{k} {v}")
    return " · ".join(parts)


# ---------------------------------------------------------------- header
def header(summary: dict, clock: str | None = None) -> Text:
    """Two lines: the runtime, then the supervisor, control and socket (the
    socket's path cut from the left if the line would pass 80 columns; with
    ``clock``, that time instead of the socket)."""
    sup = summary.get("supervisor") or {}
    sup_s = "not registered" if not sup.get("registered") else \
        ("paused" if sup.get("paused") else "running")
    conns = summary["connections"]
    line1 = (f"ringleader pid {summary['pid']} · v{summary['version']} · up "
             f"{duration(summary.get('uptime_s'))} · {summary['workers']} workers · "
             f"{conns} connection{'' if conns == 1 else 's'}")
    line2 = f"supervisor {sup_s} · control {'on' if summary['control'] else 'off'} · "
    if clock:  # top: the time of the frame instead of the socket it was asked for
        line2 += clock
    else:
        sock = summary["socket"]
        if len(line2) + len(sock) > WIDTH:
            sock = "…" + sock[-(WIDTH - len(line2) - 1):]
        line2 += sock
    return Text(line1 + "\n" + line2, style="bold")


# --------------------------------------------------------------- workers
def worker_row(w: dict, prev: dict | None) -> dict:
    """One worker's figures; with ``prev`` (an earlier snapshot) the ratios are
    over the interval between the two rather than since start."""
    ring = w["ring"]
    row = {k: w[k] for k in ("worker", "connections", "lag_ewma_s", "lag_max_s", "iterations",
                             "migrations_in", "migrations_out", "enobufs")}
    row["backend"] = w.get("backend", "uring")
    row["backend_reason"] = w.get("backend_reason", "")
    row.update(busy=w["busy_ratio"], batch=w["mean_batch"], flush_depth=w["mean_flush_depth"])
    # On the epoll fallback there is no ring: its figures are absent ("n/a").
    if ring is not None:
        row.update(fixed_in_use=ring["fixed_in_use"], fixed_capacity=ring["fixed_capacity"],
                   cqes=ring["cqes_reaped"])
    else:
        row.update(fixed_in_use=None, fixed_capacity=None, cqes=None)
    if prev is not None:
        busy, idle = w["busy_s"] - prev["busy_s"], w["idle_s"] - prev["idle_s"]
        row["busy"] = busy / (busy + idle) if busy + idle > 0 else 0.0
    if prev is not None and ring is not None and prev["ring"] is not None:
        pr = prev["ring"]
        harvests = sum(ring["batch_hist"]) - sum(pr["batch_hist"])
        row["batch"] = (ring["cqes_reaped"] - pr["cqes_reaped"]) / harvests if harvests else 0.0
        flushes = ring["flushes"] - pr["flushes"]
        row["flush_depth"] = (ring["sqes_submitted"] - pr["sqes_submitted"]) / flushes \
            if flushes else 0.0
    return row


def workers_table(rows: list[dict], title: str) -> Table:
    cols = [("worker", "right"), ("conns", "right"), ("busy", "right"), ("lag ms", "right"),
            ("max ms", "right"), ("CQE/enter", "right"), ("SQE/flush", "right"),
            ("fixed", "right"), ("moved in/out", "right")]
    t = compact_table(title, cols)
    for r in rows:
        t.add_row(str(r["worker"]), count(r["connections"]), _pct(r["busy"]),
                  _ms(r["lag_ewma_s"]), _ms(r["lag_max_s"]), _na(num, r["batch"]),
                  _na(num, r["flush_depth"]), _na(count, r["fixed_in_use"]),
                  f"{r['migrations_in']}/{r['migrations_out']}")
    return t


def _na(fmt, value) -> str:
    """Ring-only figures: absent on the epoll fallback, shown as ``n/a`` (not ``0``)."""
    return "n/a" if value is None else fmt(value)


def backend_line(rows: list[dict]) -> Text | None:
    """Which backend the workers run on and why, when it is not io_uring."""
    off = [r for r in rows if r.get("backend", "uring") != "uring"]
    if not off:
        return None
    ids = "every worker" if len(off) == len(rows) else \
        "workers " + ", ".join(str(r["worker"]) for r in off)
    why = off[0].get("backend_reason") or ""
    return Text(f"backend: {off[0]['backend']} on {ids}" + (f" ({why})" if why else ""),
                style="yellow")


def workers_counts_table(rows: list[dict]) -> Table:
    """The counters behind the ratios (``--wide``)."""
    t = compact_table("worker counters (since start)",
               [("worker", "right"), ("iterations", "right"), ("CQEs", "right"),
                ("fixed slots", "right"), ("ENOBUFS", "right")])
    for r in rows:
        fixed = "n/a" if r["fixed_in_use"] is None else \
            f"{count(r['fixed_in_use'])} of {count(r['fixed_capacity'])}"
        t.add_row(str(r["worker"]), count(r["iterations"]), _na(count, r["cqes"]), fixed,
                  _na(count, r["enobufs"]))
    return t


def hist_table(workers: list[dict], bounds: list[list[int]], field: str, title: str) -> Table:
    """A histogram with one row per bucket and one column per worker (so that
    it stays narrow however many buckets are used)."""
    workers = [w for w in workers if w["ring"] is not None]   # (none on epoll)
    used = [k for k in range(len(bounds)) if any(w["ring"][field][k] for w in workers)]
    t = compact_table(title, [("bucket", "right")] + [(f"worker {w['worker']}", "right")
                                              for w in workers])
    for k in used:
        lo, hi = bounds[k]
        label = str(lo) if lo == hi else (f"{lo}+" if hi >= 2**63 else f"{lo}-{hi}")
        t.add_row(label, *(count(w["ring"][field][k]) for w in workers))
    return t


def workers_view(workers: dict, hist: bool = False, wide: bool = False) -> Group:
    """``ringleader workers``: per-worker ring and loop figures since start."""
    rows = [worker_row(w, None) for w in workers["workers"]]
    parts: list = [workers_table(rows, "workers (since start)")]
    line = backend_line(rows)
    if line is not None:
        parts.append(line)
    if wide:
        parts.append(workers_counts_table(rows))
    elif any(r["enobufs"] for r in rows):
        per = ", ".join(f"worker {r['worker']}: {count(r['enobufs'])}" for r in rows)
        parts.append(Text(f"receives that ran out of buffers (ENOBUFS): {per}", style="yellow"))
    if hist:
        parts += [hist_table(workers["workers"], workers["hist_bounds"], "batch_hist",
                             "CQEs per enter"),
                  hist_table(workers["workers"], workers["hist_bounds"], "flush_hist",
                             "SQEs per flush")]
    else:
        parts.append(Text("(--hist: the batch-size and flush-depth histograms)", style="dim"))
    return Group(*parts)


# ------------------------------------------------------ hot connections
def hot_view(hot: dict, per_worker: int | None = None, rates: dict | None = None,
             limit: int | None = None) -> Table:
    """The hottest connections, per worker (``per_worker``) or overall
    (``limit`` rows, busiest first); with ``rates`` a bytes-per-second column."""
    rows = [(w["worker"], c) for w in hot["workers"] for c in w["connections"][:per_worker]]
    if limit is not None:
        rows.sort(key=lambda r: -(rates or {}).get(r[1]["conn_id"],
                                                   r[1]["bytes_in"] + r[1]["bytes_out"]))
        rows = rows[:limit]
    cols = [("worker", "right"), ("conn", "right"), ("peer", "left")]
    cols += [("in+out", "right"), ("rate", "right")] if rates is not None else \
        [("in", "right"), ("out", "right")]
    cols += [("ops", "right"), ("moved", "right")]
    t = compact_table("hottest connections", cols)
    for wid, c in rows:
        cells = [str(wid), f"#{c['conn_id']}", format_peer(c["peer"])]
        if rates is not None:
            rate = rates.get(c["conn_id"])
            cells += [_bytes(c["bytes_in"] + c["bytes_out"]),
                      "-" if rate is None else _bytes(rate) + "/s"]
        else:
            cells += [_bytes(c["bytes_in"]), _bytes(c["bytes_out"])]
        cells += [count(c["ops"]), str(c["migrations"])]
        t.add_row(*cells)
    if not rows:
        t.add_row("-", "", "no connections", *([""] * (len(cols) - 3)))
    return t


# ----------------------------------------------------------------- pools
def _wait(ms: float | None) -> str:
    return "-" if ms is None else num(ms) + " ms"


def pools_view(pools: dict, wide: bool = False) -> Table | Text | Group:
    """The pools; ``wide`` adds a second table of request and connection counts."""
    if not pools["pools"]:
        return Text("pools: none registered")
    t = compact_table("pools", [("pool", "left"), ("worker", "right"), ("size", "right"),
                         ("in use", "right"), ("waiting", "right"), ("min-max", "right"),
                         ("wait p99", "right"), ("timeouts", "right"), ("errors", "right")])
    more = compact_table("pool counters (requests: window of the pool's stats)",
                  [("pool", "left"), ("requests", "right"), ("wait p50", "right"),
                   ("use p99", "right"), ("conns made", "right"), ("lost", "right"),
                   ("errors by kind", "left")])
    for p in pools["pools"]:
        s = p.get("stats")
        name = p["name"] + (" (closed)" if p.get("closed") else "")
        if s is None:
            t.add_row(name, str(p["worker"]), Text(p.get("error", "?"), style="red"))
            continue
        t.add_row(name, str(p["worker"]), count(s["pool_size"]), count(s["pool_in_use"]),
                  count(s["requests_waiting"]), f"{s['pool_min']}-{s['pool_max']}",
                  _wait(s.get("acquire_wait_p99_ms")), count(s["requests_timeouts"]),
                  count(s["connections_errors"]))
        more.add_row(name, count(s["requests_num"]), _wait(s.get("acquire_wait_p50_ms")),
                     _wait(s.get("usage_p99_ms")), count(s["connections_num"]),
                     count(s.get("connections_lost")),
                     _pairs(s.get("errors_by_kind") or {}) or "none")
    return Group(t, more) if wide else t


# ------------------------------------------------------------ supervisor
def _flatten(prefix: str, d: dict, fmt=setting) -> list[str]:
    """One line per section of a nested config: scalars of a level together,
    each nested mapping as its own ``prefix.key:`` line."""
    scalars = {k: v for k, v in d.items() if not isinstance(v, dict)}
    out = [f"{prefix}: {_pairs(scalars, fmt)}" if prefix else _pairs(scalars, fmt)] \
        if scalars else []
    for k, v in d.items():
        if isinstance(v, dict):
            name = f"{prefix}.{k}" if prefix else k
            out += _flatten(name, v, fmt) if v else [f"{name}: none"]
    return out


def supervisor_view(sup: dict) -> Text:
    """The supervisor's state, config and targets, every setting shown, wrapped."""
    if not sup.get("registered"):
        return Text("supervisor: not registered")
    counts = sup.get("counts") or {}
    acted = ", ".join(f"{count(v)} {k}" for k, v in sorted(counts.items())) or "none"
    state = (f"supervisor {'paused' if sup.get('paused') else 'running'} · "
             f"{count(sup.get('ticks'))} ticks · {count(sup.get('errors'))} errors · "
             f"actions: {acted}")
    parts = [Text(state, style="bold"),
             _lines("config", _flatten("", sup.get("config") or {})),
             _lines("targets", _flatten("", sup.get("targets") or {}, num) or ["none"])]
    skipped = sup.get("skipped_pools") or {}
    if skipped:
        parts.append(_lines("pools not managed", [f"{k}: {v}" for k, v in skipped.items()]))
    return Text("\n").join(parts)


def _change(d: dict) -> str:
    if d.get("old") is not None or d.get("new") is not None:
        return f"{d.get('old', '?')} -> {d.get('new', '?')}"
    if d.get("src") is not None or d.get("dst") is not None:
        return f"w{d.get('src', '?')} -> w{d.get('dst', '?')}"
    return ""


def decisions_view(dec: dict, title: str = "supervisor decisions", now: float | None = None,
                   last: int | None = None, inputs: bool = True,
                   one_line: bool = False) -> Table | Text:
    """The decisions, newest last; with ``now`` (the runtime's monotonic clock)
    times are ages; ``inputs`` adds each decision's inputs under its reason;
    ``one_line`` cuts each reason to one line (for ``top``'s fixed height)."""
    if not dec.get("registered"):
        return Text("supervisor: not registered (no decisions)")
    rows = dec.get("decisions") or []
    if last is not None:
        rows = rows[-last:] if last > 0 else []
    t = compact_table(title + (" (paused)" if dec.get("paused") else ""),
               [("t" if now is None else "age", "right"), ("kind", "left"),
                ("target", "left"), ("change", "left"), ("reason", "left")])
    for col in t.columns[:-1]:
        col.no_wrap = True  # the reason column takes what is left, and folds
    for d in rows:
        when = d.get("t")
        if now is not None and isinstance(when, (int, float)):
            when = duration(max(0.0, now - when))
        elif isinstance(when, (int, float)):
            when = num(when)
        reason = Text(str(d.get("reason", "")), no_wrap=one_line,
                      overflow="ellipsis" if one_line else "fold")
        if d.get("applied") is False or d.get("error"):
            reason.append(f" [not applied{': ' + str(d['error']) if d.get('error') else ''}]",
                          style="yellow")
        if inputs and d.get("inputs"):
            reason.append("\n" + _pairs(d["inputs"]), style="dim")
        t.add_row(str(when if when is not None else "-"), str(d.get("kind", "?")),
                  str(d.get("target", "")), _change(d), reason)
    if not rows:
        t.add_row("", "none yet", "", "", "")
    return t


# ---------------------------------------------------------------- stats
def stats_view(summary: dict, workers: dict, hot: dict, pools: dict, supervisor: dict,
               hot_per_worker: int = 5, hist: bool = False, wide: bool = False) -> Group:
    """``ringleader stats``: everything once, counters since start."""
    parts: list = [header(summary), workers_view(workers, hist, wide),
                   hot_view(hot, per_worker=hot_per_worker), pools_view(pools, wide),
                   supervisor_view(supervisor)]
    if supervisor.get("registered"):
        parts.append(decisions_view(supervisor, "last supervisor decisions",
                                    now=summary.get("monotonic"), last=5, inputs=wide))
    return Group(*parts)


# ---------------------------------------------------------------- others
def metrics_view(text: str, wide: bool = False) -> Table:
    """The Prometheus exposition as a table, names without the ``ringleader_``
    prefix: one row per metric and label set, with a column per worker when
    there are at most 4 of them (one row per sample otherwise).  Histogram
    buckets only with ``wide``."""
    from ..extras import require
    parser = require("prometheus_client.parser", "metrics",
                     "the metrics table of 'ringleader metrics' (--prom needs no extra)")
    rows: dict[str, dict] = {}
    workers: list[str] = []
    for fam in parser.text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.endswith("_created") or (s.name.endswith("_bucket") and not wide):
                continue
            labels = dict(s.labels)
            w = labels.pop("worker", None)
            if w is not None and w not in workers:
                workers.append(w)
            key = s.name.removeprefix("ringleader_") + (
                "{" + ",".join(f"{k}={v}" for k, v in labels.items()) + "}" if labels else "")
            value = s.value
            if float(value).is_integer() and abs(value) < 2**53:
                value = int(value)
            rows.setdefault(key, {})[w] = value
    pivot = 0 < len(workers) <= 4
    cols = [("metric", "left")]
    cols += [(f"worker {w}", "right") for w in workers] + [("value", "right")] if pivot else \
        [("worker", "right"), ("value", "right")]
    t = compact_table(None, cols)
    for name, values in rows.items():
        if pivot:
            t.add_row(name, *(num(values[w]) if w in values else "" for w in workers),
                      num(values[None]) if None in values else "")
        else:
            for w, v in values.items():
                t.add_row(name, "" if w is None else w, num(v))
    return t


def list_view(infos: list, show_all: bool) -> Group:
    stale = [i for i in infos if not i.running]
    shown = infos if show_all else [i for i in infos if i.running]
    if not shown:
        parts: list = [Text("no ringleader runtimes found")]
    else:
        t = compact_table(None, [("pid", "right"), ("state", "left"), ("debug socket", "left")])
        for i in shown:
            t.add_row(str(i.pid if i.pid is not None else "?"),
                      "running" if i.running else "stale", str(i.path))
        parts = [t]
    if stale and not show_all:
        parts.append(Text(f"({len(stale)} stale socket{'s' if len(stale) > 1 else ''} of "
                          f"processes that are gone: --all lists them; the next runtime "
                          f"started removes them)", style="dim"))
    return Group(*parts)


def control_sentence(cmd: str, result: dict) -> str:
    """What a control command did, as a sentence."""
    if cmd == "pause-supervisor":
        return "supervisor paused: it observes but acts no more until resume-supervisor"
    if cmd == "resume-supervisor":
        return "supervisor resumed"
    if cmd == "resize-pool":
        return (f"pool {result['name']} resized to min {result['min']}, max {result['max']} "
                f"connections")
    if cmd == "migrate":
        return (f"connection #{result['conn_id']} moved from worker {result['from']} to worker "
                f"{result['to']}")
    return _pairs(result, setting)


# ------------------------------------------------------------------ top
class TopView:
    """Turns consecutive watch snapshots into one ``ringleader top`` frame each,
    fitted to ``height`` lines (the hot connections and decisions are trimmed
    first).  Rates are over the interval between two snapshots, measured on
    the runtime's clock (``summary.monotonic``)."""

    WHAT = ["summary", "workers", "hot", "pools", "decisions"]

    def __init__(self, hot_rows: int = 8):
        self.hot_rows = hot_rows
        self._prev: dict | None = None
        self._rates: tuple[dict, dict] | None = None

    def _advance(self, snap: dict) -> tuple[dict, dict] | None:
        prev = self._prev
        if prev is not None:
            dt = snap["summary"]["monotonic"] - prev["summary"]["monotonic"]
            if dt <= 0:  # the same snapshot again: keep the last rates
                return self._rates
            pw = {w["worker"]: w for w in prev["workers"]["workers"]}
            pc = {c["conn_id"]: c for w in prev["hot"]["workers"] for c in w["connections"]}
            workers = {w["worker"]: worker_row(w, pw.get(w["worker"]))
                       for w in snap["workers"]["workers"]}
            conns = {}
            for w in snap["hot"]["workers"]:
                for c in w["connections"]:
                    p = pc.get(c["conn_id"])
                    if p is not None:
                        conns[c["conn_id"]] = (c["bytes_in"] + c["bytes_out"] - p["bytes_in"]
                                               - p["bytes_out"]) / dt
            self._rates = (workers, conns)
        self._prev = snap
        return self._rates

    def frame(self, snap: dict, now: float | None = None, height: int = 24) -> Group:
        del now  # rates use the runtime's clock; kept for callers passing their time
        rates = self._advance(snap)
        if rates is None:
            rows = [worker_row(w, None) for w in snap["workers"]["workers"]]
            title, conn_rates = "workers (since start)", None
        else:
            rows = [rates[0].get(w["worker"]) or worker_row(w, None)
                    for w in snap["workers"]["workers"]]
            title, conn_rates = "workers (last interval)", rates[1]
        head = header(snap["summary"], datetime.datetime.now().strftime("%H:%M:%S"))
        pools = pools_view(snap["pools"])
        dec = snap["decisions"]
        # Lines: the header 2, each table its title, header and rule (3) and
        # its rows; what is left goes to the hot connections and decisions.
        fixed = 2 + 3 + len(rows) + (1 if isinstance(pools, Text) else 3 + len(snap["pools"]["pools"]))
        avail = height - fixed - 1  # the last line stays free for the cursor (and the prompt)
        n_dec = len(dec.get("decisions") or []) if dec.get("registered") else 0
        d = min(3, n_dec, max(0, avail - 4 - 3))  # keeps room for one hot row
        k = max(1, min(self.hot_rows, avail - (3 + d if d else 1) - 3))
        if d:
            decisions = decisions_view(dec, "last supervisor decisions",
                                       now=snap["summary"].get("monotonic"), last=d,
                                       inputs=False, one_line=True)
        elif dec.get("registered"):
            decisions = Text(f"supervisor {'paused' if dec.get('paused') else 'running'}: "
                             f"{n_dec or 'no'} decisions (ringleader decisions lists them)")
        else:
            decisions = Text("supervisor: not registered")
        return Group(head, workers_table(rows, title),
                     hot_view(snap["hot"], rates=conn_rates if conn_rates is not None else {},
                              limit=k),
                     pools, decisions)
