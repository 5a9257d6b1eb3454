"""The traffic rig's command line (``scripts/rig``): runs the skewed-traffic
patterns against the pool contenders, in simulation (virtual clock) and/or for
real (PostgreSQL + Redis + a ringleader service + an open-loop load generator),
shows progress, and writes run records, plots and the benchstat-style summary.

    scripts/rig                         short profile: sim (all patterns x contenders,
                                        4 seeds) + a short real run; a few minutes
    scripts/rig --profile full          hour-long virtual patterns, more seeds, longer real runs
    scripts/rig --mode sim --seeds 3    only the simulation
    scripts/rig --mode real --pg-dsn DSN --redis-url URL   against existing servers
    scripts/rig --debug-demo            the demo service under load, read through the debug socket

Modules: :mod:`.simmode` (virtual-time runs), :mod:`.realmode` (real runs),
:mod:`.servers` (temporary PostgreSQL / Redis), :mod:`.service` (the demo
service), :mod:`.loadgen` (skewed open-loop load), :mod:`.stats`,
:mod:`.summary`, :mod:`.plots`.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from . import plots, simmode, summary

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PROFILES = {
    # sim: every pattern x every contender; real: a few of each, short
    "short": {"scale": 1.0, "seeds": 4, "real_patterns": ["burst", "retry_storm", "hot_spot"],
              "real_contenders": ["static-4", "static-16", "grow-on-wait", "supervisor-littles"],
              "real_per_pattern": {"retry_storm": ["static-16", "supervisor-littles"],
                                   "hot_spot": ["static-16", "supervisor-littles"]},
              "real_seconds": 15.0, "real_repeats": 1},
    "full": {"scale": 10.0, "seeds": 8,
             "real_patterns": ["steady", "diurnal", "burst", "drift", "retry_storm", "hot_spot"],
             "real_contenders": ["static-4", "static-16", "static-32", "grow-on-wait",
                                 "supervisor-littles", "supervisor-threshold", "supervisor-ewma",
                                 "supervisor-pid"],
             "real_seconds": 60.0, "real_repeats": 2},
}


def _csv(s: str | None) -> list[str] | None:
    return [x.strip() for x in s.split(",") if x.strip()] if s else None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="scripts/rig", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--profile", choices=sorted(PROFILES), default="short")
    p.add_argument("--mode", choices=("sim", "real", "both"), default="both")
    p.add_argument("--out", default=os.path.join(ROOT, "results", "rig"),
                   help="output directory (default results/rig)")
    g = p.add_argument_group("simulation")
    g.add_argument("--patterns", help=f"comma list (default all: {','.join(simmode.SIM_PATTERNS)})")
    g.add_argument("--contenders", help=f"comma list (default all: {','.join(simmode.contender_names())})")
    g.add_argument("--seeds", type=int, help="repeats per contender (seeds 1..N)")
    g.add_argument("--scale", type=float, help="time stretch of the patterns (1 = a minute each)")
    g.add_argument("--procs", type=int, default=min(2, os.cpu_count() or 1),
                   help="simulation processes (default 2)")
    g = p.add_argument_group("real mode")
    g.add_argument("--real-patterns", help="comma list (steady,diurnal,burst,drift,retry_storm,hot_spot)")
    g.add_argument("--real-contenders", help="comma list, as for --contenders")
    g.add_argument("--real-seconds", type=float, help="length of each real run")
    g.add_argument("--real-repeats", type=int, help="repeats per real contender")
    g.add_argument("--workers", type=int, default=2, help="ringleader workers of the demo service")
    g.add_argument("--pg-dsn", help="use this PostgreSQL instead of starting one")
    g.add_argument("--redis-url", help="use this Redis instead of starting one")
    g.add_argument("--from-runs", metavar="RUNS",
                   help="comma list of runs.json files (or their directories) from earlier real "
                        "runs: judge them together (twin, summary, plots) without running anything; "
                        "a campaign split into short locked runs is summed up this way")
    g.add_argument("--debug-demo", action="store_true",
                   help="run the demo service under load for --real-seconds and show what the "
                        "debug socket reports (ringleader stats/decisions), then exit")
    return p


def main(argv: list[str]) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:
        # servers, children and temp dirs were released on the way out (finally)
        print("rig: interrupted; servers and temp dirs cleaned up", file=sys.stderr)
        return 130


def _main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    prof = PROFILES[args.profile]
    console = Console(width=max(140, Console().width))
    os.makedirs(args.out, exist_ok=True)
    if args.debug_demo:
        from . import realmode
        return realmode.debug_demo(args, console)
    records: list[dict] = []
    t0 = time.monotonic()
    if args.mode in ("sim", "both") and not args.from_runs:
        try:
            records += run_sim(args, prof, console)
        except ValueError as exc:
            console.print(f"[red]rig: {exc}")
            return 2
    if args.from_runs:
        records += _load_real(_csv(args.from_runs))
    elif args.mode in ("real", "both"):
        from . import realmode
        try:
            records += realmode.run(args, prof, console)
        except (ValueError, realmode.RigError) as exc:
            console.print(f"[red]rig: {exc}")
            return 2
    real = [r for r in records if r["mode"] == "real"]
    if real:
        from . import twin
        # minutes of real runs: on disk before anything else can fail
        with open(os.path.join(args.out, "runs.json"), "w") as f:
            json.dump(summary.clean(records), f)
        # the simulator's prediction of the same runs, beside what they measured
        twins = twin.run(real)
        path = os.path.join(args.out, "sim-vs-real.md")
        with open(path, "w") as f:
            f.write(twin.side_by_side(real, twins))
        ok, n = twin.agreement(real, twins)
        console.print(f"sim vs real: {ok} of {n} figures predicted inside the real spread ({path})")
        records += twins
    finish(records, args.out, console)
    console.print(f"rig: done in {time.monotonic() - t0:.0f} s; results in {args.out}")
    return 0


def _load_real(paths: list[str]) -> list[dict]:
    """The real records of earlier runs (``runs.json`` files or their directories)."""
    out = []
    for path in paths:
        if os.path.isdir(path):
            path = os.path.join(path, "runs.json")
        with open(path) as f:
            out += [r for r in json.load(f) if r.get("mode") == "real"]
    return out


def run_sim(args, prof, console) -> list[dict]:
    patterns = _csv(args.patterns) or list(simmode.SIM_PATTERNS)
    seeds = list(range(1, (args.seeds or prof["seeds"]) + 1))
    scale = args.scale or prof["scale"]
    jobs = simmode.plan(patterns, _csv(args.contenders), seeds)
    console.print(f"[bold]simulation[/]: {len(patterns)} patterns, {len(seeds)} seeds, "
                  f"{len(jobs)} runs of {60 * scale:.0f} virtual s each on {args.procs} processes")
    with _progress(console) as prog:
        task = prog.add_task("sim", total=len(jobs))

        def done(rec):
            prog.update(task, advance=1, description=f"sim {rec['pattern']} {rec['contender']} "
                                                     f"seed {rec['seed']}")
        return simmode.run_all(jobs, scale, args.procs, done)


def _progress(console) -> Progress:
    return Progress(TextColumn("{task.description:<52}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console)


def finish(records: list[dict], out: str, console: Console) -> dict:
    with open(os.path.join(out, "runs.json"), "w") as f:
        json.dump(summary.clean(records), f)
    groups: dict = {}
    for r in records:
        groups.setdefault((r["mode"], r["pattern"]), []).append(r)
    for (mode, pat), recs in groups.items():
        plots.plot_pattern(recs, os.path.join(out, f"{mode}-{pat}.png"))
    s = summary.summarise(records)
    md, js = summary.write(s, out)
    show(s, console)
    console.print(f"wrote {md}, {js}, runs.json and {len(groups)} plots")
    return s


SHORT = {"slo>=99%": "slo", "conn-s<=1.2x oracle": "conn-s", "reversals<=2/period": "rev",
         "first grow<=2 periods": "grow", "0 grows while guard trips": "guard",
         "max/mean<=1.17": "balance", "no ping-pong": "ping-pong", "recovers<=2 periods": "recover"}


def show(s: dict, console: Console) -> None:
    """The acceptance figures on the terminal: one table per mode (check names
    shortened; the summary.md columns spell them out)."""
    for mode in dict.fromkeys(g["mode"] for g in s["groups"]):
        t = Table(title=f"{mode}: acceptance (runs passing / runs) and medians", show_lines=False)
        for col in ("pattern", "contender", "SLO win", "good", "acq p99 ms", "req p99 ms", "conn-s",
                    "opened", "conn-s/oracle", "adj", "rev", "checks"):
            t.add_column(col)
        for g in s["groups"]:
            if g["mode"] != mode:
                continue
            for r in g["rows"]:
                m = r["metrics"]

                def med(k, fmt):
                    return fmt.format(m[k]["median"]) if k in m else "-"
                checks = []
                for c, a in r["acceptance"].items():
                    ok = a["passed"] == a["runs"]
                    checks.append(f"[{'green' if ok else 'red'}]{SHORT.get(c, c)} {summary.mark(a)}[/]")
                if g["pattern"] == "hot_spot":
                    t.add_row(g["pattern"], r["contender"], "-", "-", "-", "-", "-", "-",
                              f"max/mean {m['hot_max_over_mean']['median']:.2f}", "-",
                              f"moves {m['migrations']['median']:.0f}", " ".join(checks))
                    continue
                t.add_row(g["pattern"], r["contender"].replace("supervisor-", "sup-"), med("slo_windows", "{:.1%}"),
                          med("good_share", "{:.1%}"),
                          med("acquire_wait_p99_ms", "{:.1f}"), med("request_p99_ms", "{:.1f}"),
                          med("conn_seconds", "{:.0f}"), med("opened", "{:.0f}"),
                          med("conn_vs_oracle", "{:.2f}"), med("adjustments", "{:.0f}"),
                          med("reversals", "{:.0f}"), " ".join(checks))
        console.print(t)
        for g in s["groups"]:
            v = summary.verdict(g) if g["mode"] == mode else None
            if v:
                console.print(f"[bold]verdict[/] {v}")
    miss = summary.misses(s)
    if miss:
        console.print("[bold]where the adaptive contenders miss:[/]")
        for m in miss:
            console.print(f"  [red]{m}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
