"""PNG plots per (mode, pattern), matplotlib on the Agg backend (no display).

Panels, shared time axis, the first seed of at most four contenders (the
supervisor, grow-on-wait and the static sizes, in that order; the summary has
them all), each in the same colour in every plot (:data:`COLOURS`), one legend
above the panels: offered load (black) and each contender's completed
requests per second on the same 1-s windows; the cap of each pool (driver)
with the supervisor's decisions as markers inside the axes (^ grow, v shrink,
x guard cut/hold); where the runs recorded pool sizes, the connections held
(all pools summed) with the rails' floor dashed and the connection-seconds
goal (issue 16: 0.5x or 0.7x grow-on-wait's mean) dotted, so a MISS under the
floor shows as such (:mod:`.floor`); acquire-wait p99 (symlog); request p99; and, where the run
recorded them (real mode), per-worker busy ratio and batch size (CQEs per
io_uring enter) and migrations.  The hot-spot pattern gets
max/mean ring load and the per-worker loads of the rebalancing run, with moves
marked.

Reads run records; writes only the PNG files it is asked to.
"""
from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from . import floor  # noqa: E402
from .summary import CONN_VS_GROW  # noqa: E402


# One colour per contender, the same in every plot.
COLOURS = {"supervisor-littles": "#2ca02c", "supervisor-threshold": "#8172b3",
           "supervisor-ewma": "#c44e52", "supervisor-pid": "#937860",
           "supervisor-littles-noguard": "#da8bc3", "grow-on-wait": "#dd8452",
           "static-4": "#9e9e9e", "static-16": "#4c72b0", "static-32": "#17becf",
           "rebalance-off": "#9e9e9e", "rebalance-on": "#2ca02c"}
PRIORITY = ("supervisor-littles", "grow-on-wait", "static-16", "static-32", "static-4",
            "supervisor-threshold", "supervisor-ewma", "supervisor-pid", "supervisor-littles-noguard")
MAX_PER_PANEL = 4


def colour(contender: str) -> str:
    if contender in COLOURS:
        return COLOURS[contender]
    return f"C{sum(map(ord, contender)) % 10}"  # stable across runs and plots


def _first_seed(records):
    seen = {}
    for r in records:
        seen.setdefault(r["contender"], r)
    rank = {c: i for i, c in enumerate(PRIORITY)}
    order = sorted(seen, key=lambda c: (rank.get(c, len(rank)), c))
    return [seen[c] for c in order[:MAX_PER_PANEL]]


def _markers(ax, rec, target, t_end, col):
    ups = [(d["t"], d["new"]) for d in rec["decisions"]
           if d["kind"] == "resize_pool" and d.get("target", target) == target and d["new"] > d["old"]]
    downs = [(d["t"], d["new"]) for d in rec["decisions"]
             if d["kind"] == "resize_pool" and d.get("target", target) == target and d["new"] < d["old"]
             and "guard" not in d.get("reason", "")]
    guard = [(d["t"], d.get("new") or d.get("old")) for d in rec["decisions"]
             if d.get("target", target) == target and "guard" in d.get("reason", "")]
    for pts, m in ((ups, "^"), (downs, "v"), (guard, "x")):
        # decisions just before the first window or after the last are drawn at
        # the edge, inside the axes
        pts = [(min(max(t, 0.0), t_end), y) for t, y in pts if y is not None]
        if pts:
            ax.scatter([p[0] for p in pts], [p[1] for p in pts], marker=m, s=18, zorder=3, color=col)


def panels_for(recs: list[dict]) -> list[str]:
    """The panels of a pattern's plot, in order: offered, each pool's cap, each
    pool's wait, request p99, and only where the runs recorded them, worker
    telemetry and moves.  The overload harness has no per-worker telemetry and
    most patterns make no moves; an empty panel reads as "zero", which it is
    not."""
    drivers = []
    for r in recs:
        for d in r["series"].get("pools", {}):
            if d not in drivers:
                drivers.append(d)
    has_workers = any(any(row for row in r["series"].get("workers", {}).get("busy", [])) for r in recs)
    has_moves = any(d["kind"] in ("migrate", "add_worker", "remove_worker") for r in recs for d in r["decisions"])
    has_sizes = any(p.get("size") for r in recs for p in r["series"].get("pools", {}).values())
    panels = (["offered"] + [f"cap:{d}" for d in drivers] + (["held"] if has_sizes else [])
              + [f"wait:{d}" for d in drivers] + ["req"])
    if has_workers:
        panels += ["busy", "batch"]
    if has_moves:
        panels += ["migrations"]
    return panels


FLOOR_COLOUR = "#7f0000"


def draw_held(ax, recs: list[dict], records: list[dict]) -> None:
    """The connections held (every pool's size summed) per window and
    contender, the rails' floor of the adaptive contenders (dashed, the
    supervisor's where it ran) and the connection-seconds goal, ``target`` x
    grow-on-wait's mean over all its runs (dotted).  The y axis is sized to
    the adaptive contenders: a static size far above them is named at the top
    edge instead of flattening the lines that matter."""
    adaptive = [r for r in recs if not r["contender"].startswith("static-")] or recs
    base = next((r for r in adaptive if r["contender"].startswith("supervisor-")), adaptive[0])
    fl = floor.floor_held(base)
    ymax = 1.5 * max([y for r in adaptive for y in floor.held(r)] + fl + [1]) + 1
    above = 0
    for r in recs:
        ys = floor.held(r)
        if not ys:
            continue
        ax.step(r["series"]["t"][:len(ys)], ys, where="post", color=colour(r["contender"]), lw=1.1)
        if max(ys) > ymax:
            span = f"{min(ys)}" if min(ys) == max(ys) else f"{min(ys)}-{max(ys)}"
            ax.annotate(f"{r['contender']} holds {span}: above the scale",
                        xy=(0.01, 0.96 - 0.12 * above),
                        xycoords="axes fraction", va="top", fontsize=7, color=colour(r["contender"]))
            above += 1
    target = CONN_VS_GROW.get(recs[0]["pattern"])
    runs = [floor.held(r) for r in records if r["contender"] == "grow-on-wait"]
    grow = [y for ys in runs for y in ys]
    goal = target * sum(grow) / len(grow) if target and grow else None
    # labels: the floor's at the left, the goal's at the right, each on the
    # side of its line away from the other line (they are often a connection apart)
    if fl:
        ts = base["series"]["t"][:len(fl)]
        ax.step(ts, fl, where="post", color=FLOOR_COLOUR, ls="--", lw=1.4)
        # under the floor: where no contender on these rails can be
        ax.fill_between(ts, 0, fl, step="post", color=FLOOR_COLOUR, alpha=0.07, lw=0)
        up = goal is None or fl[-1] >= goal
        ax.annotate(f"rails' floor {fl[-1]}", xy=(0.0, fl[-1]), xycoords=("axes fraction", "data"),
                    xytext=(3, 3 if up else -9), textcoords="offset points", fontsize=7,
                    color=FLOOR_COLOUR)
    if goal is not None:
        ax.axhline(goal, color="k", ls=":", lw=1.2)
        under = bool(fl) and goal < min(fl)
        ax.annotate(f"goal: {target}x grow-on-wait's mean over {len(runs)} run{'s' * (len(runs) > 1)}"
                    f" = {goal:.1f}" + (", under the floor: unreachable" if under else ""),
                    xy=(1.0, goal), xycoords=("axes fraction", "data"), xytext=(-3, -9 if under else 3),
                    textcoords="offset points", ha="right", fontsize=7)
    ax.set_ylim(0, ymax)
    ax.set_ylabel("connections held\n(all pools)")


def plot_pattern(records: list[dict], path: str) -> str:
    recs = _first_seed(records)
    if recs[0]["pattern"] == "hot_spot" and "max_over_mean" in recs[0]["series"]:
        return _plot_hot(recs, path)
    panels = panels_for(recs)
    fig, axes = plt.subplots(len(panels), 1, figsize=(11, 2.1 * len(panels)), sharex=True)
    title = f"{recs[0]['mode']} mode: {recs[0]['pattern']} (seed {recs[0]['seed']})"
    fig.suptitle(title, y=1.0 - 0.08 / fig.get_figheight())
    for ax, panel in zip(axes, panels):
        for i, r in enumerate(recs):
            s = r["series"]
            t = s["t"]
            col = colour(r["contender"])
            if panel == "offered":
                if i == 0:
                    ax.plot(t, s["offered"], color="k", lw=1.2, label="offered")
                if "achieved" in s:
                    ax.plot(t, s["achieved"], color=col, lw=0.9, alpha=0.8)
                ax.set_ylabel("req/s: offered (black),\ncompleted")
            elif panel.startswith("cap:"):
                d = panel[4:]
                if d in s.get("pools", {}):
                    ax.step(t, s["pools"][d]["cap"], where="post", color=col, lw=1, label=r["contender"])
                    _markers(ax, r, d, t[-1] if t else 0.0, col)
                    if i == 0 and "oracle" in s["pools"][d]:
                        ax.step(t, s["pools"][d]["oracle"], where="post", color="k", ls="--", lw=0.8,
                                label="oracle (Erlang C)")
                ax.set_ylabel(f"{d}\npool cap")
            elif panel == "held":
                if i == 0:
                    draw_held(ax, recs, records)
            elif panel.startswith("wait:"):
                d = panel[5:]
                if d in s.get("pools", {}):
                    ax.plot(t, s["pools"][d]["wait_p99_ms"], color=col, lw=1)
                ax.set_yscale("symlog", linthresh=1.0)
                ax.axhline(10.0, color="r", ls=":", lw=0.8)
                ax.set_ylabel(f"{d}\nacq-wait p99 ms")
            elif panel == "req":
                ax.plot(t, s["request_p99_ms"], color=col, lw=1)
                ax.set_yscale("symlog", linthresh=1.0)
                ax.set_ylabel("request p99 ms")
            elif panel == "busy" and "workers" in s:
                for w, ys in enumerate(zip(*s["workers"]["busy"])):
                    ax.plot(t, ys, color=col, lw=0.8, ls=("-", "--", ":", "-.")[w % 4])
                ax.set_ylabel("worker busy\n(line style = worker)")
            elif panel == "batch" and "workers" in s:
                for w, ys in enumerate(zip(*s["workers"]["batch"])):
                    ax.plot(t, ys, color=col, lw=0.8, ls=("-", "--", ":", "-.")[w % 4])
                ax.set_ylabel("CQEs / enter")
            elif panel == "migrations":
                mv = [d["t"] for d in r["decisions"] if d["kind"] == "migrate"]
                wk = [d["t"] for d in r["decisions"] if d["kind"] in ("add_worker", "remove_worker")]
                ax.scatter(mv, [i] * len(mv), marker="|", color=col, s=60)
                ax.scatter(wk, [i + 0.3] * len(wk), marker="*", color=col, s=40)
                ax.set_ylabel("moves |\nworkers *")
                ax.set_yticks([])
    for ax in axes:
        ax.grid(alpha=0.3)
    # one legend for the figure, above the panels: never over the data
    from matplotlib.lines import Line2D
    handles = [Line2D([], [], color=colour(r["contender"]), lw=2, label=r["contender"]) for r in recs]
    handles += [Line2D([], [], color="k", lw=1.2, label="offered"),
                Line2D([], [], color="k", ls="--", lw=0.8, label="oracle cap (Erlang C)"),
                Line2D([], [], color="r", ls=":", lw=0.8, label="SLO 10 ms"),
                Line2D([], [], color="0.3", marker="^", ls="", label="grow"),
                Line2D([], [], color="0.3", marker="v", ls="", label="shrink"),
                Line2D([], [], color="0.3", marker="x", ls="", label="guard")]
    if "held" in panels:
        handles.append(Line2D([], [], color=FLOOR_COLOUR, ls="--", lw=1.4, label="rails' floor"))
        if CONN_VS_GROW.get(recs[0]["pattern"]) and any(r["contender"] == "grow-on-wait"
                                                        for r in records):
            handles.append(Line2D([], [], color="k", ls=":", lw=1.2,
                                  label="conn-s goal (x grow-on-wait)"))
    fig.legend(handles=handles, loc="upper center", ncol=5, fontsize=7, frameon=False,
               bbox_to_anchor=(0.5, 1.0 - 0.35 / fig.get_figheight()))
    axes[-1].set_xlabel("time (s" + (", virtual" if recs[0]["mode"] == "sim" else "") + ")")
    fig.tight_layout(rect=(0, 0, 1, 1.0 - 1.0 / fig.get_figheight()))
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_hot(recs, path):
    fig, axes = plt.subplots(2, 1, figsize=(11, 5.5), sharex=True)
    fig.suptitle(f"{recs[0]['mode']} mode: hot spot (seed {recs[0]['seed']})")
    for i, r in enumerate(recs):
        s = r["series"]
        axes[0].plot(s["t"], s["max_over_mean"], color=colour(r["contender"]), lw=1, label=r["contender"])
    axes[0].axhline(1.17, color="r", ls=":", lw=0.8, label="1.17")
    axes[0].set_ylabel("max / mean\nring load")
    axes[0].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    on = next((r for r in recs if r["decisions"]), recs[-1])
    loads = on["series"]["worker_load"]
    for w, ys in enumerate(zip(*loads)):
        axes[1].plot(on["series"]["t"], [y / 1e3 for y in ys], lw=1, label=f"worker {w}")
    for d in on["decisions"]:
        axes[1].axvline(d["t"], color="0.6", lw=0.6, ls="--")
    axes[1].set_ylabel(f"{on['contender']}\nload kB/s (| = move)")
    axes[1].set_xlabel("time (s, virtual)")
    axes[1].legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
