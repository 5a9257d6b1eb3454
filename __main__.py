"""``ringleader`` / ``python -m ringleader``: inspect running runtimes over their debug socket.

Commands: ``list`` (runtimes of this user on this machine), ``stats``
(everything once), ``top`` (a live view; ``--frames N`` stops after N),
``workers``, ``hot``, ``pools``, ``supervisor``, ``decisions`` (one part
each), ``metrics`` (the Prometheus metrics as a table; ``--prom`` for the
exposition text), and, against a runtime started with ``control=True``,
``pause-supervisor``, ``resume-supervisor``, ``resize-pool NAME MIN MAX`` and
``migrate CONN_ID WORKER``.  The runtime is chosen with ``--socket PATH`` or
``--pid PID``; without either, the only running one is used.  The global
options (``--socket``, ``--pid``, ``--timeout``, ``--json``) go before or
after the command, as with git.  Every command prints a table or a sentence
written for 80 columns; ``--json`` prints the runtime's answer for machines.

This module only parses arguments and prints; the protocol lives in
:mod:`ringleader.runtime.debug` and :mod:`ringleader.runtime.debug_cli`, what
is printed in :mod:`ringleader.runtime.debug_render`.  Exit status: 0 on
success, 1 when the runtime answered with an error or the connection failed,
2 for bad usage.
"""
from __future__ import annotations

import argparse
import json
import sys
import time

CONTROL = ("pause-supervisor", "resume-supervisor", "resize-pool", "migrate")


def _global_options(p: argparse.ArgumentParser, after_command: bool) -> None:
    # After the command the defaults are SUPPRESS: an option given there sets
    # the value, one left out keeps what was given before the command.
    def d(value):
        return argparse.SUPPRESS if after_command else value
    g = p.add_argument_group("where and how (before or after the command)")
    g.add_argument("--socket", metavar="PATH", default=d(None), help="the runtime's debug socket")
    g.add_argument("--pid", type=int, default=d(None), help="the runtime's process id")
    g.add_argument("--timeout", type=float, default=d(10.0), metavar="S",
                   help="seconds to wait for an answer (default 10)")
    g.add_argument("--json", action="store_true", default=d(False),
                   help="print the runtime's answer as JSON (for machines)")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ringleader", description="Inspect a running ringleader "
                                "runtime through its debug socket.")
    _global_options(p, after_command=False)
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def cmd(name: str, help_: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, help=help_, description=help_)
        _global_options(sp, after_command=True)
        return sp

    cmd("list", "the runtimes on this machine (this user's; every user's for root)").add_argument(
        "--all", action="store_true", help="also sockets whose process is gone")
    s = cmd("stats", "everything once: workers, hot connections, pools, supervisor")
    s.add_argument("--hot", type=int, default=5, metavar="N", help="hot connections per worker")
    s.add_argument("--hist", action="store_true", help="add the batch and flush histograms")
    s.add_argument("--wide", action="store_true",
                   help="add counter tables and the decision inputs")
    t = cmd("top", "a live view, redrawn every interval (Ctrl-C quits)")
    t.add_argument("--interval", type=float, default=1.0, metavar="S",
                   help="seconds between frames (default 1)")
    t.add_argument("--frames", type=int, default=None, metavar="N", help="stop after N frames")
    t.add_argument("--hot", type=int, default=8, metavar="N", help="hot connection rows at most")
    w = cmd("workers", "ring and loop figures per worker, since start")
    w.add_argument("--hist", action="store_true", help="add the batch and flush histograms")
    w.add_argument("--wide", action="store_true",
                   help="add a table of iteration, CQE and slot counts")
    h = cmd("hot", "the busiest connections of each worker")
    h.add_argument("-n", type=int, default=5, help="per worker (default 5)")
    cmd("pools", "the registered pools").add_argument(
        "--wide", action="store_true", help="add a table of request and connection counts")
    cmd("supervisor", "the supervisor's state, config and targets")
    d = cmd("decisions", "the supervisor's recent decisions, with their inputs")
    d.add_argument("-n", type=int, default=10, help="how many (default 10)")
    m = cmd("metrics", "the Prometheus metrics as a table")
    m.add_argument("--prom", action="store_true", help="the Prometheus text exposition instead")
    m.add_argument("--wide", action="store_true", help="include histogram buckets")
    cmd("pause-supervisor", "(control) pause the supervisor's actions")
    cmd("resume-supervisor", "(control) resume the supervisor's actions")
    r = cmd("resize-pool", "(control) set a registered pool's size limits")
    r.add_argument("name")
    r.add_argument("min", type=int)
    r.add_argument("max", type=int)
    mg = cmd("migrate", "(control) move a connection to another worker")
    mg.add_argument("conn_id", type=int)
    mg.add_argument("worker", type=int)
    return p


def _console():
    from .extras import require
    rich_console = require("rich.console", "cli", "the ringleader command")
    return rich_console.Console(highlight=False, soft_wrap=False)


def _print_json(value) -> None:
    print(json.dumps(value, indent=2, sort_keys=True))


def _list(args, console) -> int:
    from .runtime.debug_protocol import list_sockets
    from .runtime.debug_render import list_view
    infos = list_sockets()
    if args.json:
        _print_json([{"pid": i.pid, "running": i.running, "socket": str(i.path)} for i in infos
                     if args.all or i.running])
    else:
        console.print(list_view(infos, args.all))
    return 0


def _run(args, console) -> int:
    from .runtime import debug_render as view
    from .runtime.debug_cli import DebugClient
    from .runtime.debug_protocol import find_socket

    path = args.socket or find_socket(args.pid)
    with DebugClient(path, timeout=args.timeout) as c:
        cmd = args.command
        if cmd == "top":
            return _top(c, args, console, view.TopView(max(1, args.hot)))
        if cmd == "stats":
            res = {k: c.request(k, **({"n": max(1, args.hot)} if k == "hot" else {}))
                   for k in ("summary", "workers", "hot", "pools", "supervisor")}
            out = res if args.json else view.stats_view(**res, hot_per_worker=args.hot,
                                                        hist=args.hist, wide=args.wide)
        elif cmd == "workers":
            res = c.request("workers")
            out = res if args.json else view.workers_view(res, args.hist, args.wide)
        elif cmd == "hot":
            res = c.request("hot", n=max(1, args.n))
            out = res if args.json else view.hot_view(res, per_worker=args.n)
        elif cmd == "pools":
            res = c.request("pools")
            out = res if args.json else view.pools_view(res, args.wide)
        elif cmd == "supervisor":
            res = c.request("supervisor")
            out = res if args.json else view.supervisor_view(res)
        elif cmd == "decisions":
            res = c.request("decisions", n=max(1, args.n))
            out = res if args.json else view.decisions_view(
                res, now=c.request("summary")["monotonic"])
        elif cmd == "metrics":
            res = c.request("metrics")
            if args.prom and not args.json:
                sys.stdout.write(res["text"])
                return 0
            out = res if args.json else view.metrics_view(res["text"], args.wide)
        elif cmd in CONTROL:
            if cmd == "resize-pool":
                res = c.request("resize_pool", name=args.name, min=args.min, max=args.max)
            elif cmd == "migrate":
                res = c.request("migrate", conn_id=args.conn_id, worker=args.worker)
            else:
                res = c.request(cmd.replace("-", "_"))
            out = res if args.json else view.control_sentence(cmd, res)
        else:  # pragma: no cover - argparse only lets known commands through
            raise AssertionError(cmd)
        if args.json:
            _print_json(out)
        else:
            console.print(out)
    return 0


def _top(client, args, console, view) -> int:
    if args.interval < 0.05:
        raise SystemExit("ringleader top: --interval must be at least 0.05 s")
    snaps = client.watch(view.WHAT, interval=args.interval, count=args.frames, n=64)
    if args.json:
        for snap in snaps:  # one JSON object per line per frame
            print(json.dumps(snap, sort_keys=True), flush=True)
        return 0
    if not console.is_terminal:
        # Output to a pipe or file: a log of frames one after another, since
        # there is no screen to redraw.
        for k, snap in enumerate(snaps):
            if k:
                console.rule()
            console.print(view.frame(snap, time.monotonic(), height=console.height))
        return 0
    from rich.live import Live
    try:
        # Full screen when it runs until Ctrl-C; in place (and left on the
        # terminal) when it stops after --frames.
        with Live(console=console, screen=args.frames is None, auto_refresh=False,
                  vertical_overflow="crop") as live:
            for snap in snaps:
                live.update(view.frame(snap, time.monotonic(), height=console.height),
                            refresh=True)
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.socket is not None and args.pid is not None:
        print("ringleader: give --socket or --pid, not both", file=sys.stderr)
        return 2
    from .extras import MissingExtraError
    try:
        console = _console()
    except MissingExtraError as exc:
        print(f"ringleader: {exc}", file=sys.stderr)
        return 1
    if args.command == "list":
        return _list(args, console)
    from .runtime.debug_protocol import DebugError
    try:
        return _run(args, console)
    except (DebugError, MissingExtraError) as exc:
        print(f"ringleader {args.command}: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
