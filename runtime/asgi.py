"""One uvicorn app over all of a runtime's workers: :func:`serve_uvicorn`.

uvicorn runs one ``uvicorn.Server`` per event loop.  ``serve_uvicorn`` gives
every worker of a :class:`~ringleader.runtime.Runtime` its own server on its
own SO_REUSEPORT listener for the same ``host:port`` (the kernel spreads
connections over them, as ``uvicorn --workers N`` spreads them over
processes, but in one process with shared pools), using only uvicorn's
public API: ``Config``, ``Server``, ``Server.serve(sockets=)`` and the
``Server.should_exit`` flag.

Stopping is graceful everywhere: the server on the main thread handles
SIGINT/SIGTERM itself (uvicorn installs its handlers there); when any server
ends, the others are asked to exit the same way, and cancelling
``serve_uvicorn`` (``ringleader.run``'s own stop) asks all of them and waits
for their shutdown (lifespan shutdown, connections drained) before it
re-raises.  Lifespan startup/shutdown runs once per worker, as it runs once
per process under ``uvicorn --workers``.

uvicorn is imported only when this is called; ringleader does not depend on it.
"""
from __future__ import annotations

import asyncio
from typing import Any


async def serve_uvicorn(rt, config: Any = None, *, app: Any = None, host: str = "127.0.0.1",
                        port: int = 8000, backlog: int = 2048, **config_kwargs) -> None:
    """Serve ``config`` (a ``uvicorn.Config``; or ``app`` plus Config keyword
    arguments) on every worker of ``rt``; returns once every server stopped."""
    import uvicorn

    if config is None:
        if app is None:
            raise TypeError("serve_uvicorn needs a uvicorn.Config or an app")
        config = uvicorn.Config(app, host=host, port=port, **config_kwargs)
    elif app is not None or config_kwargs:
        raise TypeError("pass either a uvicorn.Config or app= with Config arguments, not both")
    if not config.loaded:
        config.load()  # once, here: the servers share the loaded app
    socks = rt.listen_each(host, port, backlog=backlog)
    servers = [uvicorn.Server(config) for _ in socks]

    def stop_all() -> None:
        for w, server in zip(rt.workers, servers):
            loop = rt.loop(w.id)
            if not loop.is_closed():
                loop.call_soon_threadsafe(setattr, server, "should_exit", True)

    async def one(wid: int) -> None:
        try:
            await servers[wid].serve(sockets=[socks[wid]])
        finally:
            socks[wid].close()
            stop_all()  # one ended (a signal, an error): the rest follow

    everywhere = asyncio.ensure_future(rt.run_everywhere(one))
    try:
        await asyncio.shield(everywhere)
    except asyncio.CancelledError:
        stop_all()
        await asyncio.wait([everywhere])  # the graceful shutdowns finish first
        raise
