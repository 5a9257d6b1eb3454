"""The runtime works on the core install alone (cffi): with every optional
dependency unimportable, a 2-worker runtime serves echo traffic and its debug
socket answers; the one command that needs an extra (metrics) says which."""
import os

from ..tutil import REPO, python_without

TESTS = os.path.join(REPO, "tests")

OPTIONAL = ["psycopg", "hiredis", "rich", "prometheus_client"]


def test_runtime_serves_and_reports_without_extras():
    p = python_without(OPTIONAL, """
        import asyncio, json, socket, sys
        import ringleader
        sys.path.insert(0, %r)
        from tutil import Echo

        def ask(path, cmd):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(30)
                s.connect(str(path))
                f = s.makefile("rwb")
                f.readline()  # the greeting
                f.write(json.dumps({"id": 1, "cmd": cmd}).encode() + b"\\n"); f.flush()
                return json.loads(f.readline())

        async def main(rt):
            g = await rt.serve(Echo, "127.0.0.1", 0)
            for _ in range(4):
                r, w = await asyncio.open_connection("127.0.0.1", g.port)
                w.write(b"ping")
                assert await r.readexactly(4) == b"ping"
                w.close()
            loop = asyncio.get_running_loop()
            summary = await loop.run_in_executor(None, ask, rt.debug_server.path, "summary")
            metrics = await loop.run_in_executor(None, ask, rt.debug_server.path, "metrics")
            g.close()
            return summary, metrics

        summary, metrics = ringleader.run(main, workers=2)
        assert summary.get("ok") and summary["result"]["workers"] == 2, summary
        assert not metrics.get("ok"), metrics
        print(metrics["error"]["message"])
        assert not [m for m in %r if m in sys.modules]
        """ % (TESTS, OPTIONAL))
    assert p.returncode == 0, p.stderr
    assert "pip install 'ringleader[metrics]'" in p.stdout
