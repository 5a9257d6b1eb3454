"""Benchmark registry and command line for ``scripts/bench``.

Two kinds of sub-commands, both found here:

- modules of this package listed in :data:`BENCHMARKS`, each with ``NAME``, ``HELP``,
  ``add_arguments(parser)`` and ``run(args) -> report`` (a :class:`benchlib.report.Report`,
  printed as a table and written with ``--json``);
- modules ``scripts/bench_<name>.py`` with ``register(subparsers)``, which add their own
  sub-commands and set ``func(args) -> exit code`` as the parser default.

A module that fails to import still gets its sub-command, which then explains the
failure, so one benchmark's missing dependency does not break the others.

Not here: the measurements themselves (each module) or statistics (``report``).
"""
from __future__ import annotations

import argparse
import glob
import importlib
import os

BENCHMARKS = ["ring", "redis", "postgres", "loops"]
SCRIPTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _report_command(mod):
    def func(args) -> int:
        report = mod.run(args)
        print(report.table())
        if args.json:
            report.write_json(args.json)
            print(f"\nwrote {args.json}")
        return 0
    return func


def _broken(name: str, err: Exception):
    def func(args) -> int:
        raise SystemExit(f"bench: {name} cannot run: {type(err).__name__}: {err}")
    return func


def _add_package_benchmarks(sub) -> None:
    for name in BENCHMARKS:
        try:
            mod = importlib.import_module(f"benchlib.{name}")
        except Exception as e:  # see the module docstring
            sub.add_parser(name, help=f"(unavailable: {e})").set_defaults(func=_broken(name, e))
            continue
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        p.add_argument("--reps", type=int, default=5, help="repetitions of each contender (default 5)")
        p.add_argument("--seconds", type=float, default=0.25,
                       help="measured time per contender per repetition (default 0.25)")
        p.add_argument("--json", metavar="PATH", help="also write the results as JSON here")
        mod.add_arguments(p)
        p.set_defaults(func=_report_command(mod))


def _add_script_benchmarks(sub) -> None:
    for path in sorted(glob.glob(os.path.join(SCRIPTS, "bench_*.py"))):
        modname = os.path.basename(path)[:-3]
        try:
            mod = importlib.import_module(modname)
            mod.register(sub)
        except Exception as e:  # see the module docstring
            name = modname[len("bench_"):]
            sub.add_parser(name, help=f"(unavailable: {e})").set_defaults(func=_broken(modname, e))


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench", description="ringleader benchmarks: contenders interleaved, "
        "repeated, reported as medians with spread and ratios")
    sub = parser.add_subparsers(dest="bench", metavar="<benchmark>")
    _add_package_benchmarks(sub)
    _add_script_benchmarks(sub)
    args = parser.parse_args(argv)
    if not args.bench:
        parser.print_help()
        return 0
    return args.func(args)
