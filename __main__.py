"""``ringleader`` / ``python -m ringleader``: inspect running runtimes over their debug socket.

Subcommands: ``list`` (runtimes of this user on this machine), ``stats``
(everything once), ``top`` (a live view; ``--frames N`` stops after N),
``decisions`` (the supervisor's recent decisions), ``metrics`` (Prometheus
text), and, against a runtime started with ``control=True``,
``pause-supervisor``, ``resume-supervisor``, ``resize-pool NAME MIN MAX`` and
``migrate CONN_ID WORKER``.  The runtime is chosen with ``--socket PATH`` or
``--pid PID``; without either, the only running one is used.

This module only parses arguments and prints; the protocol and the views live
in :mod:`ringleader.runtime.debug` and :mod:`ringleader.runtime.debug_cli`.
Exit status: 0 on success, 1 when the runtime answered with an error or the
connection failed, 2 for bad usage.
"""
from __future__ import annotations

import argparse
import json
import sys
import time


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ringleader", description="Inspect a running ringleader runtime "
                                "through its debug socket.")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--socket", metavar="PATH", help="the runtime's debug socket")
    where.add_argument("--pid", type=int, help="the runtime's process id")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for an answer")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    ls = sub.add_parser("list", help="list the runtimes on this machine (this user's; every user's "
                        "for root)")
    ls.add_argument("--all", action="store_true", help="also sockets whose process is gone")
    s = sub.add_parser("stats", help="summary, ring stats, hot connections, pools, supervisor")
    s.add_argument("--json", action="store_true", help="print the raw results as JSON")
    s.add_argument("--hot", type=int, default=5, metavar="N", help="hot connections per worker")
    t = sub.add_parser("top", help="live view (Ctrl-C to quit)")
    t.add_argument("--interval", type=float, default=1.0, help="seconds between frames")
    t.add_argument("--frames", type=int, default=None, help="stop after this many frames")
    t.add_argument("--hot", type=int, default=5, metavar="N", help="hot connections per worker")
    d = sub.add_parser("decisions", help="the supervisor's recent decisions")
    d.add_argument("-n", type=int, default=20, help="how many")
    d.add_argument("--json", action="store_true")
    sub.add_parser("metrics", help="Prometheus text exposition")
    sub.add_parser("pause-supervisor", help="(control) pause the supervisor")
    sub.add_parser("resume-supervisor", help="(control) resume the supervisor")
    r = sub.add_parser("resize-pool", help="(control) resize a registered pool")
    r.add_argument("name")
    r.add_argument("min", type=int)
    r.add_argument("max", type=int)
    m = sub.add_parser("migrate", help="(control) move a connection to another worker")
    m.add_argument("conn_id", type=int)
    m.add_argument("worker", type=int)
    return p


def _console():
    from .extras import require
    rich_console = require("rich.console", "cli", "the ringleader command")
    return rich_console.Console(highlight=False, soft_wrap=False)


def _list(console, show_all: bool) -> int:
    from .runtime.debug_protocol import list_sockets
    infos = list_sockets()
    stale = [i for i in infos if not i.running]
    shown = infos if show_all else [i for i in infos if i.running]
    if not shown:
        console.print("no ringleader runtimes found")
    for i in shown:
        state = "running" if i.running else "stale (process gone)"
        console.print(f"pid {i.pid if i.pid is not None else '?':>7}  {state:<22} {i.path}")
    if stale and not show_all:
        console.print(f"({len(stale)} stale sockets of processes that are gone; --all lists them; "
                      f"the next runtime started removes them)")
    return 0


def _run(args, console) -> int:
    from .runtime.debug_protocol import find_socket
    from .runtime.debug_cli import DebugClient, TopView, decisions_view, stats_view

    path = args.socket or find_socket(args.pid)
    with DebugClient(path, timeout=args.timeout) as c:
        if args.command == "stats":
            res = {k: c.request(k, **({"n": max(1, args.hot)} if k == "hot" else {}))
                   for k in ("summary", "workers", "hot", "pools", "supervisor")}
            if args.json:
                print(json.dumps(res, indent=2, sort_keys=True))
            else:
                console.print(stats_view(**res, hot_per_worker=args.hot))
        elif args.command == "decisions":
            res = c.request("decisions", n=args.n)
            if args.json:
                print(json.dumps(res, indent=2, sort_keys=True))
            else:
                console.print(decisions_view(res, now=c.request("summary")["monotonic"]))
        elif args.command == "metrics":
            sys.stdout.write(c.request("metrics")["text"])
        elif args.command == "top":
            return _top(c, args, console, TopView(args.hot))
        elif args.command in ("pause-supervisor", "resume-supervisor"):
            console.print(c.request(args.command.replace("-", "_")))
        elif args.command == "resize-pool":
            console.print(c.request("resize_pool", name=args.name, min=args.min, max=args.max))
        elif args.command == "migrate":
            console.print(c.request("migrate", conn_id=args.conn_id, worker=args.worker))
    return 0


def _top(client, args, console, view) -> int:
    if args.interval < 0.05:
        raise SystemExit("ringleader top: --interval must be at least 0.05 s")
    snaps = client.watch(view.WHAT, interval=args.interval, count=args.frames, n=max(1, args.hot))
    if not console.is_terminal:
        # Output to a pipe or file: a log of frames one after another, since
        # there is no screen to redraw.
        for k, snap in enumerate(snaps):
            if k:
                console.rule()
            console.print(view.frame(snap, time.monotonic()))
        return 0
    from rich.live import Live
    try:
        # Full screen when it runs until Ctrl-C; in place (and left on the
        # terminal) when it stops after --frames.
        with Live(console=console, screen=args.frames is None, auto_refresh=False) as live:
            for snap in snaps:
                live.update(view.frame(snap, time.monotonic()), refresh=True)
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from .extras import MissingExtraError
    try:
        console = _console()
    except MissingExtraError as exc:
        print(f"ringleader: {exc}", file=sys.stderr)
        return 1
    if args.command == "list":
        return _list(console, args.all)
    from .runtime.debug_protocol import DebugError
    try:
        return _run(args, console)
    except DebugError as exc:
        print(f"ringleader {args.command}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
