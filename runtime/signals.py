"""Signal handlers on the ring loop (a mixin of RingEventLoop).

``add_signal_handler`` / ``remove_signal_handler`` keep asyncio's contract:
main thread only (``RuntimeError`` elsewhere, from ``signal.set_wakeup_fd``),
``RuntimeError`` for signals that cannot be caught, ``TypeError`` for
coroutines, and handlers run as ordinary loop callbacks.  Delivery uses
Python's wake-up fd: CPython's C-level handler writes the signal number into
a socketpair whose read end the ring watches with a multishot poll, so a
signal wakes the loop even when the kernel delivered it to another thread
while the main thread was blocked in ``io_uring_enter``.

One deliberate refinement over asyncio: a signal whose Python-level handler
was replaced with ``signal.signal`` after ``add_signal_handler`` (uvicorn
does this while it serves, and restores ours afterwards) is left to that
handler; the loop's callback runs again once its handler is back.  asyncio
would run both, which makes a server's graceful shutdown and the loop
owner's race.

This module does not touch the ring beyond one poll on its own socket; the
ring, handler table and ready queue are the loop's.
"""
from __future__ import annotations

import errno
import signal
import socket
from asyncio import coroutines, events

from ..uring import consts
from .contract import UD_IGNORE

_F_MORE = consts.CQE_F_MORE


def _sighandler_noop(signum, frame) -> None:
    """Python-level handler of a signal the loop owns: the wake-up fd does the work."""


def owns(sig: int) -> bool:
    """Whether ``sig``'s Python-level handler is still a ring loop's."""
    return signal.getsignal(sig) is _sighandler_noop


class SignalMixin:
    """add_signal_handler/remove_signal_handler for RingEventLoop."""

    _signal_handlers: dict
    _sig_socks: tuple | None = None
    _sig_ud = 0
    _sig_prev_wakeup = -1

    def add_signal_handler(self, sig, callback, *args) -> None:
        if coroutines.iscoroutine(callback) or coroutines.iscoroutinefunction(callback):
            raise TypeError("coroutines cannot be used with add_signal_handler()")
        _check_signal(sig)
        self._check_closed()
        self._open_signal_channel()
        handle = events.Handle(callback, args, self, None)
        self._signal_handlers[sig] = handle
        try:
            # SA_RESTART semantics: a signal must not make other threads'
            # blocking calls fail with EINTR.
            signal.signal(sig, _sighandler_noop)
            signal.siginterrupt(sig, False)
        except OSError as exc:
            del self._signal_handlers[sig]
            if not self._signal_handlers:
                self._close_signal_channel()
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise

    def remove_signal_handler(self, sig) -> bool:
        _check_signal(sig)
        try:
            del self._signal_handlers[sig]
        except KeyError:
            return False
        handler = signal.default_int_handler if sig == signal.SIGINT else signal.SIG_DFL
        try:
            signal.signal(sig, handler)
        except OSError as exc:
            if exc.errno == errno.EINVAL:
                raise RuntimeError(f"sig {sig:d} cannot be caught") from None
            raise
        if not self._signal_handlers:
            self._close_signal_channel()
        return True

    # ------------------------------------------------------------ delivery
    def _open_signal_channel(self) -> None:
        if self._sig_socks is not None:
            return
        rsock, wsock = socket.socketpair()
        rsock.setblocking(False)
        wsock.setblocking(False)
        try:
            # Raises ValueError outside the main thread: asyncio's RuntimeError.
            prev = signal.set_wakeup_fd(wsock.fileno(), warn_on_full_buffer=False)
        except (ValueError, OSError) as exc:
            rsock.close()
            wsock.close()
            raise RuntimeError(str(exc)) from None
        self._sig_prev_wakeup = prev
        self._sig_socks = (rsock, wsock)
        self._sig_ud = self._alloc_ud(self._on_signal_bytes)
        self._ring.poll(rsock.fileno(), consts.POLLIN, self._sig_ud, multishot=True)
        self._kick()

    def _close_signal_channel(self) -> None:
        socks, self._sig_socks = self._sig_socks, None
        if socks is None:
            return
        try:
            current = signal.set_wakeup_fd(self._sig_prev_wakeup)
            if current != socks[1].fileno():
                # Someone set their own wake-up fd after us: leave theirs.
                signal.set_wakeup_fd(current)
        except (ValueError, OSError):
            pass
        self._sig_prev_wakeup = -1
        ud, self._sig_ud = self._sig_ud, 0
        # (The ring may be closed already though the loop is not: a loop never
        # closed, freed with its Ring in one garbage collection at exit, whose
        # Ring.__del__ ran first; an SQE on it would touch unmapped memory.)
        if not self.is_closed() and self._ring is not None and not self._ring.closed:
            # The poll holds the socket's file until its cancel is reaped.
            self._ring.poll_remove(ud, UD_IGNORE)
        self._free_ud(ud)
        for s in socks:
            s.close()

    def _on_signal_bytes(self, res: int, flags: int) -> None:
        socks = self._sig_socks
        if socks is None:
            return
        if res >= 0:
            self._read_signal_bytes(socks)
        if not flags & _F_MORE and self._sig_socks is socks and not self.is_closed():
            self._ring.poll(socks[0].fileno(), consts.POLLIN, self._sig_ud, multishot=True)

    def _read_signal_bytes(self, socks) -> None:
        while True:
            try:
                data = socks[0].recv(4096)
            except (BlockingIOError, InterruptedError):
                break
            if not data:
                break
            for signum in data:
                self._dispatch_signal(signum)

    def deliver_pending_signals(self) -> None:
        """Queue the handlers of signals already raised whose wake-up bytes the
        ring has not reported yet (they run in the next iteration).  For a
        caller about to remove its handlers (ringleader.run after its drain)."""
        socks = self._sig_socks
        if socks is not None:
            self._read_signal_bytes(socks)

    def _dispatch_signal(self, sig: int) -> None:
        handle = self._signal_handlers.get(sig)
        if handle is None or not owns(sig):
            return
        if handle._cancelled:
            self.remove_signal_handler(sig)
        else:
            self._ready.append(handle)

    def _close_signals(self) -> None:
        """Remove every handler (the loop is closing), as asyncio's close does."""
        for sig in list(self._signal_handlers):
            try:
                self.remove_signal_handler(sig)
            except (RuntimeError, ValueError):
                # From a thread other than the main one at interpreter exit.
                self._signal_handlers.pop(sig, None)
        self._close_signal_channel()


def _check_signal(sig) -> None:
    if not isinstance(sig, int):
        raise TypeError(f"sig must be an int, not {sig!r}")
    if sig not in signal.valid_signals():
        raise ValueError(f"invalid signal number {sig}")
