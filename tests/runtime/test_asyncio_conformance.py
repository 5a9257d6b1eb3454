"""asyncio conformance: CPython's own test_asyncio suites, run against RingEventLoop.

The issue asks us to check the loop against asyncio's semantics, not only our
own tests, so this module reuses CPython's test classes (shipped in the
interpreter's ``test`` package) the way CPython itself runs them per loop
flavour: the event-loop mixins get ``create_event_loop()`` returning our loop;
suites that build loops through ``asyncio.new_event_loop()`` /
``IsolatedAsyncioTestCase`` run under :class:`RingEventLoopPolicy`, and every
class asserts afterwards that it really created ring loops (so a policy that
silently fell back to the selector loop would fail here, not pass).

Signals, UDP, pipes and subprocesses run here too (test_events' datagram,
pipe, pty and signal tests, test_sock_lowlevel's recvfrom/sendto,
test_subprocess's whole SubprocessMixin, test_unix_events' unix-socket
argument checks).  What is still skipped says why in its reason: each is an
internal of asyncio's selector loop or a mock aimed at asyncio's own module.
"""
from __future__ import annotations

import asyncio
import socket
import unittest
from unittest import mock

import pytest

from ringleader.runtime import RingEventLoop, RingEventLoopPolicy

pytestmark = pytest.mark.ring_only("CPython's asyncio tests run against RingEventLoop itself")

try:
    from test.test_asyncio import test_buffered_proto, test_events, test_locks
    from test.test_asyncio import test_queues, test_server, test_sock_lowlevel, test_streams
    from test.test_asyncio import test_sendfile, test_sslproto, test_subprocess, test_taskgroups
    from test.test_asyncio import test_unix_events
    from test.test_asyncio import test_tasks, test_threads
    from test.test_asyncio import test_timeouts, test_waitfor
    from test import test_asyncgen
    from test.support import socket_helper
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


NO_NATIVE_SENDFILE = ("native sendfile is not implemented: RingTransport uses asyncio's "
                      "read-and-send fallback (_SendfileMode.FALLBACK)")


class RingEventLoopTests(test_events.EventLoopTestsMixin, test_utils.TestCase):
    """CPython's generic event-loop tests (as SelectEventLoopTests runs them)."""

    def create_event_loop(self):
        return RingEventLoop()

    def setUp(self):
        super().setUp()
        assert isinstance(self.loop, RingEventLoop)

    test_internal_fds = _skip("selector-loop internals (_internal_fds counts the self-pipe); "
                              "the ring loop wakes through an eventfd the ring reads")

    def test_timeout_rounding(self):
        # CPython's test formats its failure message from loop._selector (evaluated
        # even when the assertion holds); the ring loop has no selector, so give
        # it a placeholder and let the real check (<= 20 iterations) decide.
        self.loop._selector = None
        super().test_timeout_rounding()

    def test_create_connection_local_addr_skip_different_family(self):
        # CPython's test takes port1 from find_unused_port(), which closes the
        # port again, and expects the connect to it to be refused.  A released
        # port can be connected to anyway: by TCP self-connect if the kernel
        # hands the same port to the bind(port 0) the test asks for, or by a
        # listener on [::1] (find_unused_port checks 127.0.0.1 only).  This
        # happened once in CI ("OSError not raised").  Run CPython's test body
        # with every port it asks for held bound, not listening, on both
        # families: connects to it are refused, as the test means, every time.
        held: list[socket.socket] = []

        def held_port(family=socket.AF_INET, socktype=socket.SOCK_STREAM):
            for _ in range(50):
                s4 = socket.socket(socket.AF_INET, socktype)
                s4.bind(("127.0.0.1", 0))
                port = s4.getsockname()[1]
                try:
                    s6 = socket.socket(socket.AF_INET6, socktype)
                except OSError:  # no IPv6 here: 127.0.0.1 alone is the test
                    held.append(s4)
                    return port
                try:
                    s6.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                    s6.bind(("::1", port))
                except OSError:  # [::1]:port is taken: try another port
                    s4.close()
                    s6.close()
                    continue
                held.extend((s4, s6))
                return port
            raise OSError("no port free on both 127.0.0.1 and ::1 in 50 tries")

        try:
            with mock.patch.object(socket_helper, "find_unused_port", held_port):
                super().test_create_connection_local_addr_skip_different_family()
        finally:
            for s in held:
                s.close()


class RingSockTests(test_sock_lowlevel.BaseSockTestsMixin, test_utils.TestCase):
    """loop.sock_* coroutines (recv, sendall, connect, accept, racing, huge content)."""

    def create_event_loop(self):
        return RingEventLoop()

    test_sendto_blocking = _skip(
        "patches sock.sendto() to raise BlockingIOError, the selector loop's path; the ring "
        "loop sends with a ring sendmsg and never calls sock.sendto (the test itself calls the "
        "case 'not relevant' to asyncio's completion-based proactor loop)")



class RingSubprocessTests(test_subprocess.SubprocessMixin, test_utils.TestCase):
    """The whole asyncio.subprocess API; exits seen through pidfds on the ring
    (no child watcher is set: the loop must not need one)."""

    def setUp(self):
        super().setUp()
        self.loop = RingEventLoop()
        self.set_event_loop(self.loop)


class RingUnixSocketTests(test_unix_events.SelectorEventLoopUnixSocketTests):
    """create_unix_server/connection: asyncio's argument checks, stale socket files, wording."""

    def setUp(self):
        test_utils.TestCase.setUp(self)
        self.loop = RingEventLoop()
        self.set_event_loop(self.loop)

    test_create_unix_server_bind_error = _skip(
        "mocks asyncio.unix_events.socket, the selector loop's module; the ring loop's "
        "bind-error close is covered by tests/runtime/test_loop_features.py")


class RingUnixFunctionalTests(test_unix_events.TestFunctional):
    def setUp(self):
        self.loop = RingEventLoop()
        asyncio.set_event_loop(self.loop)


class RingStartServerTests(test_server.BaseStartServer, unittest.TestCase):
    def new_loop(self):
        return RingEventLoop()


class RingBufferedProtocolTests(test_buffered_proto.BaseTestBufferedProtocol, unittest.TestCase):
    def new_loop(self):
        return RingEventLoop()


class RingStreamTests(OnRingPolicy, test_streams.StreamTests):
    pass


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

