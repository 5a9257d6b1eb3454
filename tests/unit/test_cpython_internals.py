"""The private asyncio state and helpers ringleader's loop, transport and
virtual-time loop rely on (docs/cpython-internals.md lists them) exist on this
interpreter with the shapes we use.  On a new CPython this fails first, with
every name that moved, instead of a loop that breaks at run time."""
import asyncio
import collections
import inspect
import selectors as selectors_mod
import socket
import ssl
import sys
from asyncio import base_events, base_subprocess, constants, events, protocols, sslproto
from asyncio import transports, trsock

from ringleader.runtime.asyncio_compat import SERVER_TRACKS_CLIENTS, DefaultPolicyBase


def _params(fn) -> list[str]:
    return [p for p in inspect.signature(fn).parameters if p != "self"]


def _problems() -> list[str]:
    out = []

    def need(ok: bool, what: str) -> None:
        if not ok:
            out.append(what)

    loop = asyncio.SelectorEventLoop()
    try:
        need(loop._task_factory is None, "BaseEventLoop._task_factory")
        for name, kind in (("_ready", collections.deque), ("_scheduled", list),
                           ("_timer_cancelled_count", int), ("_stopping", bool),
                           ("_clock_resolution", float)):
            need(isinstance(getattr(loop, name, None), kind), f"BaseEventLoop.{name} ({kind.__name__})")
        for name in ("_debug", "_current_handle"):
            need(hasattr(loop, name), f"BaseEventLoop.{name}")
        for name in ("_run_once", "_make_socket_transport", "_make_ssl_transport",
                     "_write_to_self", "_check_closed", "_ensure_resolved"):
            need(callable(getattr(base_events.BaseEventLoop, name, None)), f"BaseEventLoop.{name}()")
        need(_params(base_events.BaseEventLoop._ensure_resolved)[:1] == ["address"]
             and {"family", "type", "proto"} <= set(_params(base_events.BaseEventLoop._ensure_resolved)),
             "BaseEventLoop._ensure_resolved(address, *, family, type, proto, ...)")
        th = loop.call_later(10, lambda: None)
        for name in ("_when", "_cancelled", "_scheduled", "_run"):
            need(hasattr(th, name), f"TimerHandle.{name}")
        th.cancel()
        need(_params(events.Handle.__init__)[:4] == ["callback", "args", "loop", "context"],
             "events.Handle(callback, args, loop, context)")
        need(callable(getattr(base_events, "_format_handle", None)), "base_events._format_handle")
        # The compiled core fills and reads these slots by offset (docs: "The loop").
        for cls, names in ((events.Handle, ("_callback", "_args", "_cancelled", "_loop",
                                            "_source_traceback", "_repr", "_context")),
                           (events.TimerHandle, ("_when", "_scheduled"))):
            for name in names:
                need(type(cls.__dict__.get(name)).__name__ == "member_descriptor",
                     f"{cls.__name__}.{name} as a __slots__ member")
        # loop._handle_failed copies Handle._run's error report, which formats with this
        from asyncio import format_helpers
        need(callable(getattr(format_helpers, "_format_callback_source", None)),
             "format_helpers._format_callback_source")

        sp = _params(sslproto.SSLProtocol.__init__)
        need(sp[:6] == ["loop", "app_protocol", "sslcontext", "waiter", "server_side",
                        "server_hostname"] and {"ssl_handshake_timeout", "ssl_shutdown_timeout"} <= set(sp),
             "sslproto.SSLProtocol(loop, app_protocol, sslcontext, waiter, server_side, "
             "server_hostname, ssl_handshake_timeout=, ssl_shutdown_timeout=)")
        proto = sslproto.SSLProtocol(loop, asyncio.Protocol(), ssl.create_default_context(),
                                     None, server_hostname="localhost")
        need(hasattr(proto, "_app_transport"), "SSLProtocol._app_transport")
        need(hasattr(proto._app_transport, "_ssl_protocol"), "_SSLProtocolTransport._ssl_protocol")
    finally:
        loop.close()

    # The compiled core (runtime/loopcore/sched.c, timers.c) allocates Handles and
    # TimerHandles itself and fills their slots by offset, bypassing __init__:
    # a slot added by a new CPython would be left empty.
    handle_slots = {n for n in events.Handle.__slots__ if n != "__weakref__"}
    need(handle_slots == {"_callback", "_args", "_cancelled", "_loop", "_source_traceback",
                          "_repr", "_context"},
         f"events.Handle.__slots__ as the compiled core fills them, got {sorted(handle_slots)}")
    need(set(events.TimerHandle.__slots__) == {"_scheduled", "_when"},
         f"events.TimerHandle.__slots__ == _scheduled, _when, got {events.TimerHandle.__slots__}")
    need("_timer_handle_cancelled" in inspect.getsource(events.TimerHandle.cancel),
         "TimerHandle.cancel() reports to loop._timer_handle_cancelled")
    need(_params(base_events.BaseEventLoop.create_task) == ["coro", "name", "context"],
         "BaseEventLoop.create_task(coro, *, name, context) (the core's create_task mirrors it)")
    need(hasattr(base_events.BaseEventLoop, "_timer_handle_cancelled"),
         "BaseEventLoop._timer_handle_cancelled")

    # Subprocesses (runtime/subprocess.py): asyncio's own subprocess transport,
    # started through our _start, told of the exit through _process_exited.
    bst = getattr(base_subprocess, "BaseSubprocessTransport", None)
    need(bst is not None, "base_subprocess.BaseSubprocessTransport")
    if bst is not None:
        need(_params(bst.__init__)[:8] == ["loop", "protocol", "args", "shell", "stdin", "stdout",
                                           "stderr", "bufsize"]
             and {"waiter", "extra"} <= set(_params(bst.__init__)),
             "BaseSubprocessTransport(loop, protocol, args, shell, stdin, stdout, stderr, "
             "bufsize, waiter=, extra=, **kwargs)")
        need(_params(bst._start)[:6] == ["args", "shell", "stdin", "stdout", "stderr", "bufsize"],
             "BaseSubprocessTransport._start(args, shell, stdin, stdout, stderr, bufsize, **kw)")
        need(_params(bst._process_exited) == ["returncode"],
             "BaseSubprocessTransport._process_exited(returncode)")
        need(callable(getattr(bst, "_wait", None)), "BaseSubprocessTransport._wait()")
    # The factory hooks the inherited create_datagram_endpoint, connect_*_pipe and
    # subprocess_exec/_shell call.
    for name, params in (("_make_datagram_transport", ["sock", "protocol", "address", "waiter"]),
                         ("_make_read_pipe_transport", ["pipe", "protocol", "waiter"]),
                         ("_make_write_pipe_transport", ["pipe", "protocol", "waiter"]),
                         ("_make_subprocess_transport", ["protocol", "args", "shell", "stdin",
                                                         "stdout", "stderr", "bufsize"])):
        fn = getattr(base_events.BaseEventLoop, name, None)
        need(fn is not None and _params(fn)[:len(params)] == params,
             f"BaseEventLoop.{name}({', '.join(params)}, ...)")

    fc = getattr(transports, "_FlowControlMixin", None)
    need(fc is not None, "transports._FlowControlMixin")
    if fc is not None:
        for name in ("_maybe_pause_protocol", "_maybe_resume_protocol", "set_write_buffer_limits"):
            need(callable(getattr(fc, name, None)), f"_FlowControlMixin.{name}()")

        class T(fc, transports.Transport):
            def get_write_buffer_size(self):
                return 0
        t = T(loop=object())
        for name in ("_protocol_paused", "_high_water", "_low_water"):
            need(hasattr(t, name), f"_FlowControlMixin.{name}")
    need(callable(getattr(protocols, "_feed_data_to_buffered_proto", None)),
         "protocols._feed_data_to_buffered_proto")
    need(hasattr(getattr(constants, "_SendfileMode", None), "FALLBACK"), "constants._SendfileMode.FALLBACK")
    need(getattr(constants, "LOG_THRESHOLD_FOR_CONNLOST_WRITES", None) == 5,
         "constants.LOG_THRESHOLD_FOR_CONNLOST_WRITES == 5 (runtime/_loopcore.c has it written in)")
    need(callable(getattr(trsock, "TransportSocket", None)), "trsock.TransportSocket")

    need(_params(base_events.Server.__init__)[:7] == [
        "loop", "sockets", "protocol_factory", "ssl_context", "backlog", "ssl_handshake_timeout",
        "ssl_shutdown_timeout"], "base_events.Server(loop, sockets, protocol_factory, ssl_context, "
        "backlog, ssl_handshake_timeout, ssl_shutdown_timeout)")
    # runtime/asyncio_compat.py picks the call by probing; either shape is fine.
    shape = (_params(base_events.Server._attach), _params(base_events.Server._detach))
    need(shape == ([], []) and not SERVER_TRACKS_CLIENTS
         or shape == (["transport"], ["transport"]) and SERVER_TRACKS_CLIENTS,
         f"Server._attach/_detach() (3.11-3.12) or (transport) (3.13+), as "
         f"runtime/asyncio_compat.py probed, got {shape}")
    need(all(callable(getattr(DefaultPolicyBase, n, None))
             for n in ("_loop_factory", "new_event_loop", "get_event_loop")),
         "the default event loop policy class (RingEventLoopPolicy's base) with _loop_factory")
    need(callable(getattr(base_events, "_check_ssl_socket", None)), "base_events._check_ssl_socket")

    # The epoll fallback (runtime/epoll.py, runtime/epoll_transport.py) subclasses
    # asyncio's selector loop and its socket transport.
    from asyncio import selector_events, unix_events
    st = selector_events._SelectorSocketTransport
    for name in ("_read_ready", "_read_ready__on_eof", "_fatal_error",
                 "_force_close", "_call_connection_lost", "_add_reader", "_maybe_pause_protocol",
                 "set_protocol", "write", "write_eof", "close", "pause_reading", "resume_reading"):
        need(callable(getattr(st, name, None)), f"_SelectorSocketTransport.{name}()")
    need(isinstance(getattr(st, "max_size", None), int), "_SelectorSocketTransport.max_size")
    need(_params(st.__init__)[:5] == ["loop", "sock", "protocol", "waiter", "extra"],
         "_SelectorSocketTransport(loop, sock, protocol, waiter, extra, server)")
    for name in ("_add_reader", "_remove_reader", "_add_writer", "_remove_writer",
                 "_handle_signal"):
        need(callable(getattr(unix_events._UnixSelectorEventLoop, name, None)),
             f"_UnixSelectorEventLoop.{name}()")
    need(callable(getattr(unix_events, "_sighandler_noop", None)), "unix_events._sighandler_noop")
    sel_loop = asyncio.SelectorEventLoop()
    a, b = socket.socketpair()
    try:
        t = st(sel_loop, a, asyncio.Protocol())
        for name in ("_sock", "_sock_fd", "_conn_lost", "_closing", "_paused", "_buffer", "_eof",
                     "_server", "_protocol", "_loop"):
            need(hasattr(t, name), f"_SelectorSocketTransport.{name}")
        # (a method up to 3.11; 3.12+ set it per instance to the send or sendmsg variant)
        need(callable(getattr(t, "_write_ready", None)), "_SelectorSocketTransport._write_ready")
        need(sel_loop._transports.get(a.fileno()) is t, "BaseSelectorEventLoop._transports[fd]")
        need(isinstance(getattr(sel_loop, "_selector", None), selectors_mod.BaseSelector),
             "BaseSelectorEventLoop._selector")
        t._sock = None   # (not closed through the loop: no callbacks left behind)
    finally:
        a.close()
        b.close()
        sel_loop.close()

    # What a Server calls on its loop: _start_serving(protocol_factory, sock, ssl_context,
    # server, backlog, ssl_handshake_timeout, ssl_shutdown_timeout), then _stop_serving(sock).
    class FakeLoop:
        calls: list = []

        def _start_serving(self, *args):
            self.calls.append(("start", len(args)))

        def _stop_serving(self, sock):
            self.calls.append(("stop",))

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        fake = FakeLoop()
        server = base_events.Server(fake, [sock], asyncio.Protocol, None, 10, None, None)
        server._start_serving()
        server.close()
        need(fake.calls == [("start", 7), ("stop",)],
             f"Server -> loop._start_serving(7 args) / _stop_serving(sock), got {fake.calls}")
    return out


def test_asyncio_internals_the_loop_uses_are_here():
    problems = _problems()
    assert not problems, (f"CPython {sys.version.split()[0]}: asyncio internals that ringleader "
                          f"uses have moved (docs/cpython-internals.md): " + "; ".join(problems))
