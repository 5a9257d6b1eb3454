"""ringleader.runningloop: the drivers' per-request loop lookup names exactly the loop
asyncio.get_running_loop() names, on the ring loop (published, no getpid) and on any
other loop (asyncio's own lookup), and never outlives the run or a fork."""
import asyncio
import os
import threading

import pytest

import ringleader
from ringleader.runningloop import running_loop
from ringleader.runtime import EpollEventLoop, RingEventLoop


def test_outside_any_loop_it_raises_like_asyncio():
    with pytest.raises(RuntimeError):
        running_loop()


def test_on_asyncios_loop_it_is_asyncios_answer():
    async def main():
        return running_loop() is asyncio.get_running_loop()
    assert asyncio.run(main())


def test_the_ring_loop_is_published_only_while_it_runs():
    seen = {}

    async def main():
        seen["inside"] = running_loop()
        seen["asyncio"] = asyncio.get_running_loop()

    loop = ringleader.new_event_loop()
    try:
        loop.run_until_complete(main())
        # (the epoll fallback's loop publishes itself likewise)
        assert isinstance(seen["inside"], (RingEventLoop, EpollEventLoop))
        assert seen["inside"] is seen["asyncio"]
        with pytest.raises(RuntimeError):  # stopped: no longer published
            running_loop()
    finally:
        loop.close()


def test_a_refused_reentrant_run_keeps_the_loop_published(ring_run):
    async def main():
        loop = asyncio.get_running_loop()
        with pytest.raises(RuntimeError):
            loop.run_forever()  # already running: refused by asyncio
        return running_loop() is loop
    assert ring_run(main())


def test_each_thread_sees_its_own_loop(ring_run):
    other = {}
    ready = threading.Event()

    def elsewhere():
        async def main():
            other["loop"] = running_loop()
            other["same"] = other["loop"] is asyncio.get_running_loop()
        with asyncio.Runner(loop_factory=ringleader.new_event_loop) as r:
            r.run(main())
        ready.set()

    async def main():
        t = threading.Thread(target=elsewhere)
        t.start()
        await asyncio.get_running_loop().run_in_executor(None, ready.wait, 60)
        t.join(60)
        return running_loop()

    mine = ring_run(main())
    assert other["same"] and other["loop"] is not mine


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_does_not_see_its_parents_loop(ring_run):
    async def main():
        assert running_loop() is asyncio.get_running_loop()
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report, then leave without running any cleanup
            try:
                running_loop()
                verdict = b"stale"
            except RuntimeError:
                verdict = b"clean"
            except BaseException:
                verdict = b"error"
            os.write(w, verdict)
            os._exit(0)
        os.close(w)
        try:
            got = os.read(r, 16)
        finally:
            os.close(r)
            os.waitpid(pid, 0)
        return got
    assert ring_run(main()) == b"clean"
