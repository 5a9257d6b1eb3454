"""One worker of the runtime: a thread running one loop on the runtime's backend.

What it does: :class:`Worker` makes its loop on its own thread (a ring is
SINGLE_ISSUER: the thread that makes it runs it), a :class:`RingEventLoop` or,
on the epoll fallback, an :class:`~.epoll.EpollEventLoop`
(:mod:`.backend` chose which, once, for the whole runtime), runs it until
stopped, then cancels what is left and closes it.  On a ring it also routes the
two kinds of MSG_RING messages the runtime uses (a socket from the acceptor, a
migrating connection) to the runtime.

What it does not do: decide when to start or stop (the :class:`~.runtime.Runtime` does).
"""
from __future__ import annotations

import asyncio
import resource
import threading
from typing import TYPE_CHECKING

from .backend import Backend

if TYPE_CHECKING:
    from .runtime import Runtime

__all__ = ["Worker"]


def raise_nofile_limit() -> None:
    # Fixed-file tables are bounded by RLIMIT_NOFILE, and a server wants many
    # sockets: lift the soft limit to the hard one, as most servers do.
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass


class Worker:
    """One thread, one loop (on a ring, or on epoll where io_uring is denied)."""

    def __init__(self, runtime: "Runtime", wid: int):
        self.id = wid
        self.runtime = runtime
        self.loop = None
        self.thread: threading.Thread | None = None
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.ring_fd = -1
        self.draining = False

    @property
    def backend(self) -> str:
        return self.runtime.choice.name

    def make_loop(self):
        rt = self.runtime
        if rt.choice.backend is Backend.EPOLL:
            from .epoll import EpollEventLoop
            self.loop = EpollEventLoop(worker_id=self.id, runtime=rt, choice=rt.choice,
                                       **rt.loop_options)
            return self.loop
        from .loop import TAG_MIGRATE, TAG_NEWFD, RingEventLoop
        loop = RingEventLoop(worker_id=self.id, runtime=rt, **rt.loop_options)
        self.loop = loop
        self.ring_fd = loop.ring_fd
        loop.register_message_handler(TAG_MIGRATE, rt._on_migrate_in)
        loop.register_message_handler(TAG_NEWFD, rt._on_new_fd)
        return loop

    def _thread_main(self) -> None:
        try:
            loop = self.make_loop()
        except BaseException as exc:
            self.error = exc
            self.ready.set()
            return
        asyncio.set_event_loop(loop)
        self.ready.set()
        try:
            loop.run_forever()
        finally:
            try:
                cancel_all(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
                loop.run_until_complete(loop.shutdown_default_executor())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    def start_thread(self) -> None:
        self.thread = threading.Thread(target=self._thread_main, name=f"ringleader-worker-{self.id}",
                                       daemon=True)
        self.thread.start()
        self.ready.wait()
        if self.error is not None:
            raise self.error


def cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for t in tasks:
        t.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
