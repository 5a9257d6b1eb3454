"""asyncio conformance: CPython's own test_asyncio suites, run against RingEventLoop.

The issue asks us to check the loop against asyncio's semantics, not only our
own tests, so this module reuses CPython's test classes (shipped in the
interpreter's ``test`` package) the way CPython itself runs them per loop
flavour: the event-loop mixins get ``create_event_loop()`` returning our loop;
suites that build loops through ``asyncio.new_event_loop()`` /
``IsolatedAsyncioTestCase`` run under :class:`RingEventLoopPolicy`, and every
class asserts afterwards that it really created ring loops (so a policy that
silently fell back to the selector loop would fail here, not pass).

Features the loop deliberately does not implement (UDP, pipes, subprocesses,
signal handlers) are skipped by name below with the reason; each has its own
NotImplementedError test in ``test_unsupported.py``.
"""
from __future__ import annotations

import asyncio
import unittest

import pytest

from ringleader.runtime import RingEventLoop, RingEventLoopPolicy

try:
    from test.test_asyncio import test_buffered_proto, test_events, test_locks
    from test.test_asyncio import test_queues, test_server, test_sock_lowlevel, test_streams
    from test.test_asyncio import test_sendfile, test_sslproto, test_taskgroups
    from test.test_asyncio import test_tasks, test_threads
    from test.test_asyncio import test_timeouts, test_waitfor
    from test import test_asyncgen
    from test.test_asyncio import utils as test_utils
except ImportError as exc:  # e.g. a distro Python without the test package
    pytest.skip(f"CPython's test.test_asyncio is not importable ({exc}); install the "
                f"interpreter's test package (Debian: libpython3.11-testsuite) to run the "
                f"asyncio conformance suite", allow_module_level=True)

# Only module attributes are used below (test_events.EventLoopTestsMixin, ...):
# importing CPython's TestCase classes by name would make pytest collect and
# run them a second time on the default loop.


class _CountingPolicy(RingEventLoopPolicy):
    """The ring policy, counting the loops it makes."""

    made = 0

    def _loop_factory(self):
        _CountingPolicy.made += 1
        return RingEventLoop()


class OnRingPolicy:
    """Run a CPython test class with asyncio.new_event_loop() returning ring loops."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls._made0 = _CountingPolicy.made
        asyncio.set_event_loop_policy(_CountingPolicy())

    @classmethod
    def tearDownClass(cls):
        asyncio.set_event_loop_policy(None)
        super().tearDownClass()
        # Whatever the class did, it must have done it on our loop.
        assert _CountingPolicy.made > cls._made0, f"{cls.__name__} never created a RingEventLoop"


def _skip(reason: str):
    def test(self):
        raise unittest.SkipTest(reason)
    return test


NO_UDP = "datagram endpoints (UDP) are not supported by RingEventLoop (NotImplementedError)"
NO_PIPES = "pipe transports are not supported by RingEventLoop (NotImplementedError)"
NO_SUBPROCESS = "subprocesses are not supported by RingEventLoop (NotImplementedError)"
NO_NATIVE_SENDFILE = ("native sendfile is not implemented: RingTransport uses asyncio's "
                      "read-and-send fallback (_SendfileMode.FALLBACK)")
NO_SIGNALS = "add_signal_handler is not supported by RingEventLoop (NotImplementedError)"


class RingEventLoopTests(test_events.EventLoopTestsMixin, test_utils.TestCase):
    """CPython's generic event-loop tests (as SelectEventLoopTests runs them)."""

    def create_event_loop(self):
        return RingEventLoop()

    def setUp(self):
        super().setUp()
        assert isinstance(self.loop, RingEventLoop)

    test_add_signal_handler = _skip(NO_SIGNALS)
    test_signal_handling_while_selecting = _skip(NO_SIGNALS)
    test_signal_handling_args = _skip(NO_SIGNALS)
    test_create_datagram_endpoint = _skip(NO_UDP)
    test_create_datagram_endpoint_ipv6 = _skip(NO_UDP)
    test_create_datagram_endpoint_sock = _skip(NO_UDP)
    test_internal_fds = _skip("selector-loop internals (_internal_fds counts the self-pipe); "
                              "the ring loop wakes through an eventfd the ring reads")
    test_read_pipe = _skip(NO_PIPES)
    test_unclosed_pipe_transport = _skip(NO_PIPES)
    test_read_pty_output = _skip(NO_PIPES)
    test_write_pipe = _skip(NO_PIPES)
    test_write_pipe_disconnect_on_close = _skip(NO_PIPES)
    test_write_pty = _skip(NO_PIPES)
    test_bidirectional_pty = _skip(NO_PIPES)

    def test_timeout_rounding(self):
        # CPython's test formats its failure message from loop._selector (evaluated
        # even when the assertion holds); the ring loop has no selector, so give
        # it a placeholder and let the real check (<= 20 iterations) decide.
        self.loop._selector = None
        super().test_timeout_rounding()


class RingSockTests(test_sock_lowlevel.BaseSockTestsMixin, test_utils.TestCase):
    """loop.sock_* coroutines (recv, sendall, connect, accept, racing, huge content)."""

    def create_event_loop(self):
        return RingEventLoop()

    test_recvfrom = _skip(NO_UDP)
    test_recvfrom_into = _skip(NO_UDP)
    test_sendto_blocking = _skip(NO_UDP)


class RingStartServerTests(test_server.BaseStartServer, unittest.TestCase):
    def new_loop(self):
        return RingEventLoop()


class RingBufferedProtocolTests(test_buffered_proto.BaseTestBufferedProtocol, unittest.TestCase):
    def new_loop(self):
        return RingEventLoop()


class RingStreamTests(OnRingPolicy, test_streams.StreamTests):
    test_read_all_from_pipe_reader = _skip(NO_PIPES)


# Suites that are pure asyncio on top of any loop; they run on ours to catch a
# loop that breaks scheduling, timers, cancellation or wake-ups underneath them.
class RingLockTests(OnRingPolicy, test_locks.LockTests):
    pass


class RingEventTests(OnRingPolicy, test_locks.EventTests):
    pass


class RingConditionTests(OnRingPolicy, test_locks.ConditionTests):
    pass


class RingSemaphoreTests(OnRingPolicy, test_locks.SemaphoreTests):
    pass


class RingBarrierTests(OnRingPolicy, test_locks.BarrierTests):
    pass


class RingQueueGetTests(OnRingPolicy, test_queues.QueueGetTests):
    pass


class RingQueuePutTests(OnRingPolicy, test_queues.QueuePutTests):
    pass


class RingQueueJoinTests(OnRingPolicy, test_queues.QueueJoinTests):
    pass


class RingTaskGroupTests(OnRingPolicy, test_taskgroups.TestTaskGroup):
    pass


class RingTimeoutTests(OnRingPolicy, test_timeouts.TimeoutTests):
    pass


class RingWaitForTests(OnRingPolicy, test_waitfor.AsyncioWaitForTest):
    pass


class RingTaskTests(OnRingPolicy, test_tasks.CTask_CFuture_Tests):
    # Left out for time, not for a failure: 100 forced gc.collect() calls over
    # the whole pytest heap (~15 s here) that exercise Task.__del__, not the loop.
    test_task_del_collect = _skip("time budget: 100 full gc.collect() passes over the test "
                                  "process heap; tests Task.__del__, not the event loop")


class RingRunCoroutineThreadsafeTests(OnRingPolicy, test_tasks.RunCoroutineThreadsafeTests):
    pass


class RingSleepTests(OnRingPolicy, test_tasks.SleepTests):
    pass


class RingCurrentLoopTests(OnRingPolicy, test_tasks.CCurrentLoopTests):
    pass


class RingToThreadTests(OnRingPolicy, test_threads.ToThreadTests):
    """asyncio.to_thread / run_in_executor round trips through call_soon_threadsafe."""


class RingAsyncGenTests(OnRingPolicy, test_asyncgen.AsyncGenAsyncioTest):
    """Async generators: aclose, athrow, and shutdown_asyncgens() finalising them."""


class RingSendfileTests(test_sendfile.SendfileTestsBase, test_utils.TestCase):
    """loop.sendfile / sock_sendfile: the read-and-send fallback over our transport."""

    def create_event_loop(self):
        return RingEventLoop()

    test_sendfile_not_supported = _skip(NO_UDP + "; the test needs a datagram transport")
    # Ring transports declare _SendfileMode.FALLBACK (as asyncio's SSL transport
    # does): there is no native path to force or to guard against bare writes.
    test_sendfile_force_unsupported_native = _skip(NO_NATIVE_SENDFILE)
    test_sendfile_prevents_bare_write = _skip(NO_NATIVE_SENDFILE)


class RingStartTLSTests(test_sslproto.BaseStartTLS, unittest.TestCase):
    """loop.start_tls() upgrading a RingTransport in place (asyncio's SSLProtocol on top).

    (test_ssl.TestSSL, the full TLS suite, passes on this loop too but takes
    ~30 s; it is left out to keep this module under two minutes.  TLS over
    create_server/create_connection is covered by RingEventLoopTests.)"""

    def new_loop(self):
        return RingEventLoop()

