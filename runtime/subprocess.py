"""Subprocesses on the ring loop: ``subprocess_exec`` / ``subprocess_shell``.

The transport is asyncio's own ``BaseSubprocessTransport`` (so the whole
``asyncio.subprocess`` API — ``Process``, ``communicate``, ``wait``,
``send_signal``, the stream readers — behaves as on asyncio's loop) started
with ``subprocess.Popen``; its stdin/stdout/stderr are the ring's pipe
transports (:mod:`ringleader.runtime.pipes`).

Process exit is watched on the ring itself: a ``pidfd`` of the child
(``os.pidfd_open``) is polled on the loop's ring and becomes readable when
the child exits; ``Popen.poll()`` then reaps it.  No child-watcher thread,
no SIGCHLD handler, nothing shared between loops: every worker of
``ringleader.run`` can run subprocesses.  A child still running when the
loop closes has its pidfd closed (it is not killed: asyncio's transport
does that when it is closed or collected).
"""
from __future__ import annotations

import contextvars
import logging
import os
import subprocess
from asyncio import base_subprocess

from ..uring import consts
from .contract import UD_IGNORE

logger = logging.getLogger("ringleader.runtime")


class RingSubprocessTransport(base_subprocess.BaseSubprocessTransport):
    def _start(self, args, shell, stdin, stdout, stderr, bufsize, **kwargs):
        self._proc = subprocess.Popen(
            args, shell=shell, stdin=stdin, stdout=stdout, stderr=stderr,
            universal_newlines=False, bufsize=bufsize, **kwargs)


class _ExitWatch:
    """One child's pidfd, polled on the ring until the child exits.

    The exit is reported in the context of the code that started the child, so
    ``process_exited`` and ``connection_lost`` run there like the pipes'
    callbacks do (uvloop does; asyncio's child watchers use their own context).
    """

    __slots__ = ("loop", "transport", "pidfd", "ud", "context")

    def __init__(self, loop, transport):
        self.loop = loop
        self.transport = transport
        self.pidfd = -1
        self.ud = 0
        self.context = contextvars.copy_context()
        try:
            self.pidfd = os.pidfd_open(transport.get_pid())
        except ProcessLookupError:
            # Already reaped (by someone's waitpid): report what Popen knows.
            loop.call_soon(self._reap, context=self.context)
            return
        self.ud = loop.oneshot(self._on_exit)
        loop.ring.poll(self.pidfd, consts.POLLIN, self.ud)
        loop._children[self.pidfd] = self

    def _on_exit(self, res: int, flags: int) -> None:
        self.ud = 0
        if res < 0:
            return  # cancelled: the loop is closing
        self.context.run(self._reap)

    def _reap(self) -> None:
        transport = self.transport
        self.close()
        proc = transport._proc
        if proc is None:
            return  # the transport was closed and forgot its process meanwhile
        returncode = proc.poll()
        if returncode is None:
            # The pidfd said it exited, so the status is there; only a
            # foreign waitpid on the same pid could have taken it first.
            logger.warning("child process pid %d exited but could not be reaped; "
                           "reporting returncode 255", proc.pid)
            returncode = 255
        transport._process_exited(returncode)

    def close(self) -> None:
        if self.pidfd >= 0:
            self.loop._children.pop(self.pidfd, None)
            if self.ud and not self.loop.is_closed():
                self.loop.ring.poll_remove(self.ud, UD_IGNORE)
            os.close(self.pidfd)
            self.pidfd = -1


class SubprocessMixin:
    """The loop's ``_make_subprocess_transport`` (asyncio's subprocess_exec/_shell call it)."""

    async def _make_subprocess_transport(self, protocol, args, shell, stdin, stdout, stderr,
                                         bufsize, extra=None, **kwargs):
        waiter = self.create_future()
        transp = RingSubprocessTransport(self, protocol, args, shell, stdin, stdout, stderr,
                                         bufsize, waiter=waiter, extra=extra, **kwargs)
        _ExitWatch(self, transp)
        try:
            await waiter
        except (SystemExit, KeyboardInterrupt):
            raise
        except BaseException:
            transp.close()
            await transp._wait()
            raise
        return transp

    def _close_children(self) -> None:
        """The loop is closing: stop watching (close the pidfds of) running children."""
        for watch in list(self._children.values()):
            watch.close()
