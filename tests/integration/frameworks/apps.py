"""Applications the framework tests run in child processes (one per test).

Each prints ``READY <port>`` once it serves and ``<EVENT>`` lines for what
the test checks afterwards (lifespan and cleanup hooks, pools closed, the
loop class).  Run as ``python apps.py <name> [args]``.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import sys
import threading


def say(*words) -> None:
    print(*words, flush=True)


def run_and_say(main) -> None:
    """ringleader.run(main, workers=2), saying how it ended: as asyncio.run,
    it raises KeyboardInterrupt after the drain when stopped by SIGINT."""
    import ringleader

    try:
        ringleader.run(main, workers=2, debug_socket=False)
    except KeyboardInterrupt:
        say("RUN-INTERRUPTED")
    else:
        say("RUN-RETURNED")


# ---------------------------------------------------------------- Starlette

def starlette_app():
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    @contextlib.asynccontextmanager
    async def lifespan(app):
        say("LIFESPAN-STARTUP", threading.current_thread().name)
        yield
        say("LIFESPAN-SHUTDOWN", threading.current_thread().name)

    async def hello(request):
        return JSONResponse({"loop": type(asyncio.get_running_loop()).__name__,
                             "thread": threading.current_thread().name})

    async def echo(request):
        body = await request.body()

        async def chunks():
            for i in range(0, len(body), 65536):
                yield body[i:i + 65536]
        return StreamingResponse(chunks())

    return Starlette(routes=[Route("/", hello), Route("/echo", echo, methods=["POST"])],
                     lifespan=lifespan)


app = starlette_app() if os.environ.get("RL_TEST_APP") == "starlette" else None


def serve_uvicorn_everywhere(port: int) -> None:
    """ringleader.run + serve_uvicorn: one app over two workers."""
    from ringleader.runtime.asgi import serve_uvicorn

    async def main(rt):
        loop = asyncio.get_running_loop()
        loop.call_later(0.5, say, "READY", port)
        await serve_uvicorn(rt, app=starlette_app(), port=port, log_level="warning")

    run_and_say(main)


def uvicorn_server_in_run(port: int) -> None:
    """The issue's case: uvicorn.Server.serve() inside ringleader.run(workers=2)."""
    import uvicorn

    async def main(rt):
        config = uvicorn.Config(starlette_app(), port=port, log_level="warning")
        server = uvicorn.Server(config)
        asyncio.get_running_loop().call_later(0.5, say, "READY", port)
        await server.serve()

    run_and_say(main)


# ------------------------------------------------------------------ aiohttp

def aiohttp_app():
    from aiohttp import ClientSession, web

    async def hello(request):
        return web.json_response({"loop": type(asyncio.get_running_loop()).__name__})

    async def pool(app):
        # A client pool the app owns: closed by the cleanup context.
        app["pool"] = ClientSession()
        say("POOL-OPEN")
        yield
        await app["pool"].close()
        say("POOL-CLOSED", app["pool"].closed)

    async def on_cleanup(app):
        say("ON-CLEANUP")

    async def on_startup(app):
        asyncio.get_running_loop().call_later(0.3, say, "READY", app["port"])

    app = web.Application()
    app.router.add_get("/", hello)
    app.cleanup_ctx.append(pool)
    app.on_startup.append(on_startup)
    app.on_cleanup.append(on_cleanup)
    return app


def aiohttp_run_app(port: int) -> None:
    from aiohttp import web

    import ringleader

    app = aiohttp_app()
    app["port"] = port
    web.run_app(app, host="127.0.0.1", port=port, loop=ringleader.new_event_loop(),
                print=None, handle_signals=True)
    say("RUN-APP-RETURNED")


def aiohttp_app_runner(port: int) -> None:
    """AppRunner inside ringleader.run: SIGTERM drains through ringleader."""
    from aiohttp import web

    async def main(rt):
        app = aiohttp_app()
        app["port"] = port
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        try:
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()
            say("RUNNER-CLEANED")

    run_and_say(main)


if __name__ == "__main__":
    name, *args = sys.argv[1:]
    globals()[name](*(int(a) for a in args))
