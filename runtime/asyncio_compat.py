"""Where asyncio's private or deprecated surface differs between the CPython
versions ringleader runs on, each difference resolved once, here, by probing
the running interpreter (not by comparing version numbers).

What it does: how a transport tells its ``asyncio.base_events.Server`` that
it serves one more or one fewer connection (3.13 made ``Server._attach`` /
``_detach`` take the transport, which it keeps in a ``WeakSet`` for
``close_clients()``; 3.11 and 3.12 take no argument), and which class the
ring loop's policy derives from (3.14 deprecates ``asyncio.DefaultEventLoopPolicy``,
a module ``__getattr__`` that warns and returns ``asyncio._DefaultEventLoopPolicy``).
docs/cpython-internals.md lists every private the loop relies on and
tests/unit/test_cpython_internals.py pins them.

What it does not do: paper over anything else; a new difference gets its
own probe here and a line in the docs.
"""
from __future__ import annotations

import asyncio
import inspect
from asyncio import base_events
from typing import Any

__all__ = ["SERVER_TRACKS_CLIENTS", "server_attach", "server_detach", "DefaultPolicyBase"]

#: Server._attach/_detach take the transport (CPython >= 3.13).
SERVER_TRACKS_CLIENTS = "transport" in inspect.signature(base_events.Server._attach).parameters

if SERVER_TRACKS_CLIENTS:
    def server_attach(server: Any, transport: Any) -> None:
        """``server`` serves one more connection (``transport``)."""
        server._attach(transport)

    def server_detach(server: Any, transport: Any) -> None:
        """``server`` serves one fewer connection; the last one after close()
        wakes its ``wait_closed()``."""
        server._detach(transport)
else:
    def server_attach(server: Any, transport: Any) -> None:
        """``server`` serves one more connection (``transport``)."""
        server._attach()

    def server_detach(server: Any, transport: Any) -> None:
        """``server`` serves one fewer connection; the last one after close()
        wakes its ``wait_closed()``."""
        server._detach()

# The default policy's class without the deprecation warning 3.14 attaches to
# the public name (the same class either way).
DefaultPolicyBase: type = (vars(asyncio).get("_DefaultEventLoopPolicy")
                           or asyncio.DefaultEventLoopPolicy)
