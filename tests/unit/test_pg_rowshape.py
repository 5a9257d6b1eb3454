"""The Python DataRow splitter's shape cache (the fallback when the compiled
splitter is missing): a DataRow with the same size as the
previous one is split by one Struct only if its column count and every column
length match; anything else (other lengths of the same total, a NULL, another
column count, a truncated or overlong row) takes the general path and parses
or fails exactly as it would without the cache."""
import struct

import pytest

from ringleader.drivers.postgres import messages as m
from ringleader.drivers.postgres.errors import ProtocolViolation


def data_row(*vals) -> bytes:
    body = struct.pack("!H", len(vals)) + b"".join(
        struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v for v in vals)
    return b"D" + struct.pack("!i", len(body) + 4) + body


class PyReader(m.MessageReader):
    _split = None


def rows_of(*chunks) -> list:
    r = PyReader()
    out: list = []
    for c in chunks:
        r.feed(c)
        r.read_rows(out)
    assert r.pending() == 0
    return out


def test_same_size_rows_with_other_splits_parse_exactly():
    rows = [(b"abcd", b"ef"), (b"ab", b"cdef"), (b"abcd", b"ef"), (b"abcdef", b""),
            (b"", b"abcdef"), (b"wxyz", b"uv")]
    assert rows_of(b"".join(data_row(*r) for r in rows)) == [list(r) for r in rows]


def test_nulls_and_other_column_counts_after_a_learned_shape():
    rows = [(b"1234", b"ab"), (b"5678", None), (b"9999", b"cd"), (b"1234ab",),
            (b"12", b"34", b""), (None, None), (b"4321", b"zz")]
    got = rows_of(b"".join(data_row(*r) for r in rows))
    assert got == [list(r) for r in rows]


def test_shape_survives_across_feeds():
    a, b = data_row(b"0001", b"x"), data_row(b"0002", b"y")
    assert rows_of(a, b, a[:3], a[3:] + b) == [[b"0001", b"x"], [b"0002", b"y"],
                                               [b"0001", b"x"], [b"0002", b"y"]]


def test_malformed_row_of_a_learned_size_still_fails():
    good = data_row(b"abcd", b"ef")
    # same total size, but the first length points past the row's end
    bad = bytearray(good)
    struct.pack_into("!i", bad, 7, 9)
    r = PyReader()
    r.feed(good + bytes(bad))
    with pytest.raises(ProtocolViolation):
        r.read_rows([])
