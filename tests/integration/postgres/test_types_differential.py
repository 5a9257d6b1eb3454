"""Differential tests against psycopg: the same queries and parameters through
psycopg.AsyncConnection and this driver must give equal Python values (same
types, same float bits, same Decimal scale, same tzinfo), or the same error
class, for every type psycopg adapts; hand-picked edge values and nulls, then
hypothesis-generated values."""
import datetime as dt
import math
import uuid
from decimal import Decimal

import psycopg
from hypothesis import HealthCheck, given, settings, strategies as st
from psycopg.types.json import Json, Jsonb

from ringleader.drivers import postgres as pg


def norm(v):
    """A comparable, strict form of a value: type, float bits, decimal scale,
    tz all count."""
    if isinstance(v, float):
        return ("float", "nan" if math.isnan(v) else repr(v))
    if isinstance(v, Decimal):
        return ("dec", str(v))
    if isinstance(v, (dt.datetime, dt.time)):
        return (type(v).__name__, repr(v))
    if isinstance(v, (list, tuple)):
        return (type(v).__name__ if not hasattr(v, "_asdict") else "row", [norm(x) for x in v])
    if isinstance(v, dict):
        return ("dict", sorted((k, norm(x)) for k, x in v.items()))
    return (type(v).__name__, v)


class Pair:
    """One psycopg connection and one of ours on the same server."""

    def __init__(self, dsn):
        self.dsn = dsn

    async def __aenter__(self):
        self.p = await psycopg.AsyncConnection.connect(self.dsn, autocommit=True)
        self.r = await pg.connect(self.dsn)
        return self

    async def __aexit__(self, *exc):
        await self.p.close()
        await self.r.close()

    async def both(self, sql: str, *args):
        """Runs ``sql`` ({} marks each parameter) on both; returns (ours, theirs)
        as values or as exception classes."""
        n = sql.count("{}")
        ours_sql = sql.format(*[f"${i + 1}" for i in range(n)]) if n else sql
        theirs_sql = sql.format(*["%s"] * n) if n else sql
        try:
            ours = await self.r.fetch(ours_sql, *args)
            ours = [tuple(r) for r in ours]
        except psycopg.Error as e:
            ours = type(e)
        try:
            cur = await self.p.execute(theirs_sql, args or None)
            theirs = await cur.fetchall()
        except psycopg.Error as e:
            theirs = type(e)
        return ours, theirs

    async def check(self, sql: str, *args):
        ours, theirs = await self.both(sql, *args)
        if isinstance(ours, type) or isinstance(theirs, type):
            assert ours == theirs, (sql, args)
        else:
            assert norm(ours) == norm(theirs), (sql, args, ours, theirs)
        return ours


ROME = dt.timezone(dt.timedelta(hours=1))
PARAMS = [
    # (sql cast, values)
    ("{}::int2", [0, -32768, 32767, None]),
    ("{}::int4", [0, -2**31, 2**31 - 1]),
    ("{}::int8", [0, -2**63, 2**63 - 1]),
    ("{}", [0, 1, -1, 2**15, 2**31, 2**63 - 1, 2**63, -2**70, True, False, None]),
    ("{}::float4", [0.0, -0.0, 1.5, float("inf"), float("-inf"), float("nan"), 3.4e38]),
    ("{}::float8", [0.0, -0.0, 1e308, 5e-324, float("nan"), float("-inf"), 0.1]),
    ("{}", [0.1, -2.5e-10, float("nan")]),
    ("{}::numeric", [Decimal("0"), Decimal("-1.50"), Decimal("NaN"), Decimal("Infinity"),
                     Decimal("-Infinity"), Decimal("1e-30"), Decimal("123456789012345678901234567890.0123456789"),
                     Decimal("1E+20"), 12, None]),
    ("{}", [Decimal("3.14159"), Decimal("-0.000")]),
    ("{}::text", ["", "héllo", "emoji 🎉", "x" * 10000, "quote ' \" \\", None]),
    ("{}", ["plain", ""]),
    ("{}::varchar(3)", ["abc"]),
    ("{}::bytea", [b"", b"\x00\xff\x01", bytes(range(256)) * 40, bytearray(b"ba"), memoryview(b"mv")]),
    ("{}", [b"\x00raw"]),
    ("{}::bool", [True, False, None]),
    ("{}::uuid", [uuid.UUID(int=0), uuid.UUID("12345678-1234-5678-1234-567812345678")]),
    ("{}", [uuid.uuid4()]),
    ("{}::json", [Json({"a": [1, None, "x"], "b": {"c": 1.5}}), Json([]), Json("s"), Json(None)]),
    ("{}::jsonb", [Jsonb({"a": [1, None, "x"], "é": True}), Jsonb(3), Jsonb([{"k": "v"}])]),
    ("{}", [Jsonb({"auto": 1})]),
    ("{}::date", [dt.date(1, 1, 1), dt.date(9999, 12, 31), dt.date(2000, 2, 29)]),
    ("{}", [dt.date(2024, 1, 2)]),
    ("{}::time", [dt.time(0, 0), dt.time(23, 59, 59, 999999), dt.time(12, 30, 1, 5)]),
    ("{}::timetz", [dt.time(1, 2, 3, tzinfo=dt.timezone.utc), dt.time(1, 2, 3, tzinfo=ROME),
                    dt.time(1, 2, tzinfo=dt.timezone(dt.timedelta(hours=-9, minutes=-30)))]),
    ("{}::timestamp", [dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31, 23, 59, 59, 999999),
                       dt.datetime(2020, 2, 29, 12, 0, 0, 1)]),
    ("{}::timestamptz", [dt.datetime(2020, 1, 1, 12, tzinfo=dt.timezone.utc),
                         dt.datetime(2020, 7, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-7))),
                         dt.datetime(1900, 1, 1, tzinfo=dt.timezone.utc)]),
    ("{}", [dt.datetime(2021, 5, 6, 7, 8, 9), dt.datetime(2021, 5, 6, 7, 8, 9, tzinfo=ROME)]),
    ("{}::interval", [dt.timedelta(0), dt.timedelta(days=-1, seconds=1), dt.timedelta(days=999999999),
                      dt.timedelta(microseconds=1), dt.timedelta(days=-3, microseconds=-5)]),
    ("{}", [dt.timedelta(hours=5)]),
    ("{}::int[]", [[], [1, None, 3], [[1, 2], [3, 4]]]),
    ("{}", [[1, 2, 3], [2**40], ["a", None, "c"], [1.5, float("nan")], [True], [[None]]]),
    ("{}::text[]", [["", "a b", '"q"', "NULL", None, "é"]]),
    ("{}::numeric[]", [[Decimal("1.1"), None]]),
    ("{}::timestamptz[]", [[dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc), None]]),
    ("{}::uuid[]", [[uuid.UUID(int=5)]]),
    ("{}::jsonb[]", [[Jsonb({"a": 1}), Jsonb(None)]]),
    ("{}::bytea[]", [[b"\x00", None]]),
    ("{}::int8range", []),
]

LITERALS = [
    "select null", "select null::int", "select 'infinity'::date", "select '-infinity'::timestamp",
    "select 'infinity'::timestamptz", "select 'NaN'::numeric", "select '1.000'::numeric(10,3)",
    "select '{}'::int[]", "select '{{1,2},{3,4}}'::int[]", "select array[1,null]::int2[]",
    "select '{\"a\":1}'::json", "select 'null'::jsonb", "select interval '1 year 2 mons 3 days 04:05:06.7'",
    "select interval '-1 mons'", "select '12:34:56+05:30'::timetz", "select 'abc'::name",
    "select 'x'::char", "select 'abc'::bpchar(5)", "select 1::oid", "select 'a'::\"char\"",
    "select '192.168.0.1/24'::inet", "select '10.0.0.0/8'::cidr", "select '08:00:2b:01:02:03'::macaddr",
    "select '[1,5)'::int4range", "select '(,)'::numrange", "select 'empty'::tsrange",
    "select '{[1,2],[5,6)}'::int4multirange", "select '(1,2)'::point", "select 'a=>1'::text",
    "select 12.5::money", "select B'101'::bit(3)", "select '<a/>'::xml", "select 'fat & rat'::tsquery",
    "select row(1, 'a')", "select 1::regtype", "select 'public'::regnamespace",
    "select 0.1::float4::float8", "select 1e-310::float8", "select '0001-01-01 BC'::date",
    "select generate_series(1, 3) as g, 'x' as g",
]


def test_params_match_psycopg(pg_server, run):
    async def main():
        async with Pair(pg_server.dsn()) as p:
            for sql, values in PARAMS:
                for v in values:
                    await p.check(f"select {sql}", v)
                    # the same value as an array element and beside a null
                    if v is not None and not isinstance(v, list):
                        await p.check(f"select {sql}, null::text, {sql}", v, v)
    run(main(), timeout=120)


def test_literals_match_psycopg(pg_server, run):
    async def main():
        async with Pair(pg_server.dsn()) as p:
            for sql in LITERALS:
                await p.check(sql)
            # a different session time zone
            await p.r.execute("set timezone to 'America/New_York'")
            await p.p.execute("set timezone to 'America/New_York'")
            await p.check("select '2020-06-01 12:00+00'::timestamptz")
            await p.check("select {}::timestamptz", dt.datetime(2020, 1, 1, tzinfo=dt.timezone.utc))
            # psycopg's text loader cannot read iso_8601 intervals; binary can
            await p.r.execute("set intervalstyle to 'iso_8601'")
            assert await p.r.fetchval("select interval '1 day -2 hours'") == dt.timedelta(hours=22)
    run(main())


def test_custom_types_registered_the_psycopg_way(pg_server, run):
    from psycopg.types.composite import CompositeInfo, register_composite
    from psycopg.types.enum import EnumInfo, register_enum

    async def main():
        async with Pair(pg_server.dsn()) as p:
            await p.p.execute("drop type if exists rl_mood cascade; drop type if exists rl_pair cascade")
            await p.p.execute("create type rl_mood as enum ('sad', 'ok', 'happy')")
            await p.p.execute("create type rl_pair as (n int, label text, at date)")
            enum_info = await EnumInfo.fetch(p.p, "rl_mood")
            comp_info = await CompositeInfo.fetch(p.p, "rl_pair")
            register_enum(enum_info, p.p)
            register_composite(comp_info, p.p)
            # ours fetches the same TypeInfo with psycopg's query, over our wire
            our_enum = await p.r.type_info("rl_mood", EnumInfo)
            our_comp = await p.r.type_info("rl_pair", CompositeInfo)
            fields = ("name", "oid", "array_oid", "regtype", "labels")
            assert [getattr(our_enum, f) for f in fields] == [getattr(enum_info, f) for f in fields]
            assert (our_comp.field_names, our_comp.field_types) == (
                comp_info.field_names, comp_info.field_types)
            assert await p.r.type_info("no_such_type") is None
            register_enum(our_enum, p.r, enum=enum_info.enum)
            # the same python class on both sides, so values compare equal
            register_composite(our_comp, p.r, factory=comp_info.python_type)
            ours = await p.check("select 'happy'::rl_mood, array['sad', 'ok']::rl_mood[]")
            assert ours[0][0].name == "happy"
            mood = type(ours[0][0])
            await p.check("select {}::rl_mood", mood["ok"])
            ours = await p.check("select row(1, 'x', '2020-01-02')::rl_pair")
            assert ours[0][0].label == "x"
            await p.check("select {}", comp_info.python_type(7, None, dt.date(1999, 1, 1)))
            await p.check("select array[row(2, 'y', null)::rl_pair, null]")
    run(main())


text_st = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\0"), max_size=50)
values_st = st.one_of(
    st.integers(-2**63, 2**63 - 1), st.integers(-10**30, 10**30), st.floats(),
    st.decimals(allow_nan=True, places=None).filter(lambda d: not d.is_snan()),
    text_st, st.binary(max_size=64), st.booleans(), st.none(), st.uuids(),
    st.dates(), st.datetimes(), st.times(),
    st.datetimes(timezones=st.just(dt.timezone.utc)),
    st.timedeltas(min_value=dt.timedelta(days=-10**6), max_value=dt.timedelta(days=10**6)),
    st.lists(st.integers(-2**31, 2**31 - 1) | st.none(), max_size=5),
    st.lists(text_st, max_size=4),
    st.builds(Jsonb, st.recursive(st.none() | st.booleans() | st.integers(-2**53, 2**53) | text_st,
                                  lambda c: st.lists(c, max_size=3) | st.dictionaries(text_st, c, max_size=3),
                                  max_leaves=6)),
)


def test_hypothesis_values_match_psycopg(pg_server, run):
    async def setup():
        p = Pair(pg_server.dsn())
        return await p.__aenter__()
    p = run(setup())
    try:
        @settings(max_examples=150, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(values_st)
        def one(v):
            run(p.check("select {}", v))
        one()
    finally:
        run(p.__aexit__(None, None, None))
