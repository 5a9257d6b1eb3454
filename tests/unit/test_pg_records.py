"""The compiled record builder (_pgwire.make_records) against the Python
expression it replaces, and its GC bookkeeping: records of atomic values are
untracked (they cannot be in a cycle), records holding containers are not."""
import gc

import pytest

from ringleader.drivers.postgres import _pgwire
from ringleader.drivers.postgres.types import record_class

Rec = record_class(("a", "b", "c"))


def test_same_records_as_the_python_path():
    rows = [[b"1", b"x", None], [b"2", b"", b"z"]]
    load = lambda r: tuple(None if v is None else v.decode() for v in r)  # noqa: E731
    got = _pgwire.make_records(rows, load, Rec)
    want = [Rec(load(r)) for r in rows]
    assert got == want and all(type(r) is Rec for r in got)
    assert got[0]["b"] == "x" and got[1].get("c") == "z" and got[0]._asdict()["c"] is None
    assert _pgwire.make_records([], load, Rec) == []


def test_untracked_only_when_no_value_can_hold_a_reference():
    atomic, nested = _pgwire.make_records(
        [[1], [2]], lambda r: (r[0], "s", 1.5) if r[0] == 1 else (r[0], [1, 2], {}), Rec)
    assert not gc.is_tracked(atomic)
    assert gc.is_tracked(nested)
    # a cycle through a tracked record is still collected
    nested[1].append(nested)
    del nested
    assert gc.collect() >= 1


def test_errors_propagate_and_bad_arguments_are_refused():
    def boom(r):
        raise ValueError("bad value")
    with pytest.raises(ValueError, match="bad value"):
        _pgwire.make_records([[b"1"]], boom, Rec)
    with pytest.raises(TypeError, match="did not return a tuple"):
        _pgwire.make_records([[b"1"]], list, Rec)
    with pytest.raises(TypeError, match="slotted tuple subclass"):
        _pgwire.make_records([[b"1"]], tuple, dict)
    with pytest.raises(TypeError):
        _pgwire.make_records(([b"1"],), tuple, Rec)


def test_split_rows_lists_are_untracked():
    import struct
    body = struct.pack("!H", 2) + struct.pack("!i", 1) + b"a" + struct.pack("!i", -1)
    out = []
    _pgwire.split_rows(b"D" + struct.pack("!i", len(body) + 4) + body, 0, out)
    assert out == [[b"a", None]] and not gc.is_tracked(out[0])
