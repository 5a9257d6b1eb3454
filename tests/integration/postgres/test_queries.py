"""Queries, pipelining, the statement cache, transactions, cursors, COPY,
LISTEN/NOTIFY and notices against the real server."""
import asyncio

import psycopg
import pytest
from psycopg import errors as pe

from ringleader.drivers import postgres as pg


def with_conn(pg_server, run, body, **kw):
    async def main():
        conn = await pg.connect(pg_server.dsn(), **kw)
        try:
            return await body(conn)
        finally:
            await conn.close()
    return run(main())


def test_execute_fetch_api(pg_server, run):
    async def body(c):
        assert await c.execute("create temp table t (id int primary key, name text)") == "CREATE TABLE"
        assert await c.execute("insert into t values ($1, $2)", 1, "a") == "INSERT 0 1"
        await c.executemany("insert into t values ($1, $2)", [(2, "b"), (3, None), (2**20, "big")])
        rows = await c.fetch("select id, name from t order by id")
        assert rows == [(1, "a"), (2, "b"), (3, None), (2**20, "big")]
        assert rows[0]["name"] == "a" and rows[1].keys() == ("id", "name")
        assert rows[0]._asdict() == {"id": 1, "name": "a"}
        assert await c.fetchrow("select * from t where id = $1", 99) is None
        assert (await c.fetchrow("select * from t where id = $1", 2))["name"] == "b"
        assert await c.fetchval("select count(*) from t") == 4
        assert await c.fetchval("select 1, 2", column=1) == 2
        # a script of several statements through the simple protocol
        assert await c.execute("update t set name = 'x' where id = 1; delete from t where id = 3") == "DELETE 1"
        assert await c.fetch("select 1 where false") == []
        assert await c.execute("") == ""
        with pytest.raises(pe.UniqueViolation) as ei:
            await c.execute("insert into t values ($1, $2)", 1, "dup")
        e = ei.value
        assert e.sqlstate == "23505" and e.constraint_name == "t_pkey"
        assert e.diag.table_name == "t" and "already exists" in e.detail
        # executemany is atomic: one bad row, none inserted
        with pytest.raises(pe.UniqueViolation):
            await c.executemany("insert into t values ($1, $2)", [(10, "ok"), (1, "dup")])
        assert await c.fetchval("select count(*) from t where id = 10") == 0
        with pytest.raises(pe.SyntaxError) as ei:
            await c.fetch("selec 1")
        assert ei.value.position == "1"
        with pytest.raises(pg.InterfaceError, match="query must be a str"):
            await c.fetch(b"select 1")
    with_conn(pg_server, run, body)


def test_pipelining_isolates_failures_and_orders_results(pg_server, run):
    async def body(c):
        async def q(i):
            if i % 7 == 3:
                return await c.fetchval("select 1/($1::int - $1::int)", i)
            return await c.fetchval("select $1::int * 2", i)
        results = await asyncio.gather(*(q(i) for i in range(60)), return_exceptions=True)
        for i, r in enumerate(results):
            if i % 7 == 3:
                assert isinstance(r, pe.DivisionByZero)
            else:
                assert r == i * 2
        assert c.transaction_status == "I"
    with_conn(pg_server, run, body)


def test_pipelining_sends_back_to_back(pg_server, run):
    # 20 queries of 50 ms each, pipelined: the server runs them in sequence,
    # so total ≈ 1 s either way; what pipelining saves is the wait between
    # them, visible as every query being written before the first answer.
    async def body(c):
        loop = asyncio.get_running_loop()
        writes = []
        orig = c._transport.write

        def spy(data):
            writes.append(loop.time())
            orig(data)
        c._transport.write = spy
        tasks = [asyncio.ensure_future(c.fetchval("select pg_sleep(0.05)::text || $1", str(i)))
                 for i in range(5)]
        first_done = []
        for t in tasks:
            t.add_done_callback(lambda _: first_done.append(loop.time()))
        await asyncio.gather(*tasks)
        # After the one Parse round trip, all five Binds go out before any
        # result: every write happened before the first query finished (each
        # waits 0.05 s on the server, so a write that waited for an answer
        # would come after it).
        assert sum(1 for w in writes if w < first_done[0]) >= 5
    with_conn(pg_server, run, body)


def test_statement_cache_lru_and_stale_plan(pg_server, run):
    async def body(c):
        for i in range(5):
            assert await c.fetchval(f"select {i} + $1::int", 1) == i + 1
        assert len(c._stmts) == 2  # LRU kept the last two
        names = await c.fetch("select name from pg_prepared_statements order by name")
        assert len(names) <= 3  # the evicted ones were closed on the server
        await c.execute("create temp table s (a int)")
        await c.execute("insert into s values (1)")
        assert await c.fetch("select * from s where a = $1", 1) == [(1,)]
        await c.execute("alter table s add column b text default 'x'")
        # cached plan changes result type: dropped and retried once
        assert await c.fetch("select * from s where a = $1", 1) == [(1, "x")]
        await c.execute("deallocate all")  # the cache follows
        assert c._stmts == {} or all(st.ready for st in c._stmts.values())
        assert await c.fetch("select * from s where a = $1", 1) == [(1, "x")]
        # a statement dropped behind the cache's back: 26000, re-prepared
        (name,) = [st.name.decode() for st in c._stmts.values()]
        await c.execute(f"deallocate {name}")
        assert await c.fetch("select * from s where a = $1", 1) == [(1, "x")]
        async with c.transaction():
            await c.execute("alter table s add column c int")
            with pytest.raises(pe.FeatureNotSupported):
                await c.fetch("select * from s where a = $1", 1)
        assert await c.fetch("select * from s where a = $1", 1) == [(1, "x")]  # rolled back
    with_conn(pg_server, run, body, statement_cache_size=2)


def test_no_statement_cache(pg_server, run):
    async def body(c):
        got = await asyncio.gather(*(c.fetchrow("select $1::int, $2::text, now()::date", i, str(i))
                                     for i in range(10)))
        assert [g[:2] for g in got] == [(i, str(i)) for i in range(10)]
        assert await c.fetch("select name from pg_prepared_statements") == []
    with_conn(pg_server, run, body, statement_cache_size=0)


def test_transactions_and_savepoints(pg_server, run):
    async def body(c):
        await c.execute("create temp table tx (v int)")
        async with c.transaction():
            await c.execute("insert into tx values (1)")
            with pytest.raises(ZeroDivisionError):
                async with c.transaction():
                    await c.execute("insert into tx values (2)")
                    raise ZeroDivisionError
            async with c.transaction():
                await c.execute("insert into tx values (3)")
                with pytest.raises(pe.DivisionByZero):
                    async with c.transaction():
                        await c.execute("select 1/0")
            assert c.transaction_status == "T"
        assert await c.fetch("select v from tx order by v") == [(1,), (3,)]
        with pytest.raises(RuntimeError):
            async with c.transaction():
                await c.execute("insert into tx values (4)")
                raise RuntimeError
        assert await c.fetchval("select count(*) from tx") == 2
        async with c.transaction(isolation="serializable", readonly=True):
            assert await c.fetchval("show transaction_isolation") == "serializable"
            with pytest.raises(pe.ReadOnlySqlTransaction):
                await c.execute("create table never_made (a int)")
        assert c.transaction_status == "I"
        with pytest.raises(ValueError):
            c.transaction(isolation="bogus")
    with_conn(pg_server, run, body)


def test_cursor_streams_in_batches(pg_server, run):
    async def body(c):
        # outside a transaction: the cursor holds the connection
        seen = []
        async with c.cursor("select g from generate_series(1, $1::int) g", 1000, prefetch=64) as cur:
            async for (g,) in cur:
                seen.append(g)
        assert seen == list(range(1, 1001))
        with pytest.raises(psycopg.InterfaceError, match="async with"):
            async for _ in c.cursor("select 1"):
                pass
        # stopping early gives the connection back
        async with c.cursor("select g from generate_series(1, 100000) g", prefetch=10) as cur:
            assert await cur.fetch(25) == [(i,) for i in range(1, 26)]
        assert await c.fetchval("select 42") == 42
        # a query error in the middle of a stream
        with pytest.raises(pe.DivisionByZero):
            async with c.cursor("select 1/(g - 50) from generate_series(1, 100) g", prefetch=10) as cur:
                async for _ in cur:
                    pass
        assert await c.fetchval("select 43") == 43
        # a timeout while streaming: cancelled on the server, connection given back
        with pytest.raises(pg.QueryTimeout):
            async with c.cursor("select pg_sleep(30)", timeout=0.3) as cur:
                await cur.fetch(1)
        assert await c.fetchval("select 44") == 44
        # inside a transaction: named portal, other queries can interleave
        async with c.transaction():
            n = 0
            async for (g,) in c.cursor("select g from generate_series(1, 300) g", prefetch=50):
                n += 1
                if g % 100 == 0:
                    assert await c.fetchval("select $1::int + 1", g) == g + 1
            assert n == 300
    with_conn(pg_server, run, body)


def test_copy_in_and_out(pg_server, run):
    async def body(c):
        await c.execute("create temp table cp (id int, t text)")

        async def gen():
            for i in range(1000):
                yield f"{i}\trow {i}\n".encode()
        assert await c.copy_from("copy cp from stdin", gen()) == "COPY 1000"
        assert await c.copy_from("copy cp from stdin", b"2000\tbytes\n") == "COPY 1"
        assert await c.fetchval("select count(*) from cp") == 1001
        # bad data: the server's error, and the connection still works
        with pytest.raises(pe.InvalidTextRepresentation):
            await c.copy_from("copy cp from stdin", ["x\ty\n"])
        # the source failing: CopyFail, the source's error propagates
        async def bad():
            yield b"1\ta\n"
            raise KeyError("source broke")
        with pytest.raises(KeyError):
            await c.copy_from("copy cp from stdin", bad())
        assert await c.fetchval("select count(*) from cp") == 1001
        out = []
        async with c.copy_to("copy (select * from cp order by id) to stdout") as chunks:
            async for chunk in chunks:
                out.append(chunk)
        assert chunks.tag == "COPY 1001"
        assert out[0] == b"0\trow 0\n" and len(out) == 1001
        # stop reading a large COPY early
        async with c.copy_to("copy (select g from generate_series(1, 2000000) g) to stdout") as chunks:
            async for chunk in chunks:
                break
        assert await c.fetchval("select 7") == 7
        with pytest.raises(pe.UndefinedTable):
            async with c.copy_to("copy nope to stdout"):
                pass
        # not a COPY at all: the caller's error, the connection lives on
        with pytest.raises(psycopg.ProgrammingError, match="did not start a COPY"):
            await c.copy_from("select g from generate_series(1, 3) g", b"")
        with pytest.raises(psycopg.ProgrammingError, match="did not start a COPY"):
            async with c.copy_to("select 1"):
                pass
        assert await c.fetchval("select 8") == 8
    with_conn(pg_server, run, body)


def test_listen_notify_and_notices(pg_server, run):
    async def main():
        a = await pg.connect(pg_server.dsn())
        b = await pg.connect(pg_server.dsn())
        notices = []
        a.add_notice_handler(notices.append)
        try:
            async with a.listen("chan one", "other") as notes:
                await b.execute("select pg_notify('chan one', 'hello')")
                await b.execute("notify other, 'x'")
                n1 = await asyncio.wait_for(notes.__anext__(), 5)
                n2 = await asyncio.wait_for(notes.__anext__(), 5)
                assert (n1.channel, n1.payload, n1.pid) == ("chan one", "hello", b.backend_pid)
                assert (n2.channel, n2.payload) == ("other", "x")
            await a.execute("do $$ begin raise notice 'careful: %', 42; end $$")
            assert len(notices) == 1
            assert notices[0].message == "careful: 42" and notices[0].severity == "NOTICE"
            assert notices[0].sqlstate == "00000" and notices[0].diag.message_primary == "careful: 42"
        finally:
            await a.close()
            await b.close()
    run(main())


def test_timezone_change_reloads_adapters(pg_server, run):
    async def body(c):
        import datetime as dt
        v = await c.fetchval("select '2020-01-01 12:00:00+00'::timestamptz")
        assert v.utcoffset() == dt.timedelta(hours=1)  # server TimeZone Europe/Rome
        await c.execute("set timezone to 'UTC'")
        v = await c.fetchval("select '2020-01-01 12:00:00+00'::timestamptz")
        assert v.utcoffset() == dt.timedelta(0)
    with_conn(pg_server, run, body)


def test_big_results_are_decoded_on_the_way_and_loader_errors_reach_the_caller(pg_server, run):
    """A result over ops.DECODE_BATCH rows is decoded while it arrives; the
    values are the same, and a value whose loader fails raises in the caller
    (not as a broken connection), which stays usable."""
    from psycopg.types.numeric import Int4BinaryLoader

    class Picky(Int4BinaryLoader):
        def load(self, data):
            v = super().load(data)
            if v == 1500:
                raise ValueError("no 1500 here")
            return v

    async def main():
        conn = await pg.connect(pg_server.dsn())
        try:
            q = "SELECT g, g::text || 'x', NULL::int FROM generate_series(1, $1::int) g"
            rows = await conn.fetch(q, 3000)
            assert [tuple(r) for r in rows] == [(g, f"{g}x", None) for g in range(1, 3001)]
            conn.adapters.register_loader("int4", Picky)
            conn.reset_type_cache()
            assert len(await conn.fetch(q, 1499)) == 1499
            with pytest.raises(ValueError, match="no 1500 here"):
                await conn.fetch(q, 3000)
            assert await conn.fetchval("SELECT 41 + 1") == 42
        finally:
            await conn.close()
    run(main())
