"""Hypothesis on the Postgres message layer: arbitrary bytes, fed in arbitrary
pieces, never raise anything but ProtocolViolation, whether they go to the
framer, to each body parser, or to the start-up state machine."""
import struct

from hypothesis import given, settings, strategies as st

from ringleader.drivers.postgres import messages as m
from ringleader.drivers.postgres.errors import ProtocolViolation
from ringleader.drivers.postgres.startup import Startup

TYPES = sorted(bytes([t]) for t in m.BACKEND_TYPES)


def frames():
    """Mostly well-framed messages with random bodies, to reach the parsers."""
    return st.lists(st.tuples(st.sampled_from(TYPES), st.binary(max_size=64)), max_size=8)


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300), st.lists(st.integers(0, 300), max_size=5))
def test_reader_and_parsers_raw_bytes(data, cuts):
    r = m.MessageReader()
    pieces, prev = [], 0
    for c in sorted(cuts) + [len(data)]:
        pieces.append(data[prev:c])
        prev = max(prev, c)
    try:
        for p in pieces:
            r.feed(p)
            for kind, body in r:
                m.parse_message(kind, body)
    except ProtocolViolation:
        pass


@settings(max_examples=400, deadline=None)
@given(frames())
def test_parsers_framed_random_bodies(msgs):
    stream = b"".join(k + struct.pack("!i", len(b) + 4) + b for k, b in msgs)
    r = m.MessageReader()
    r.feed(stream)
    got = []
    for kind, body in r:
        got.append((kind, body))
        try:
            m.parse_message(kind, body)
        except ProtocolViolation:
            pass
    assert got == msgs


@settings(max_examples=300, deadline=None)
@given(frames())
def test_startup_never_crashes_on_junk(msgs):
    from ringleader.drivers.postgres.errors import AuthenticationUnsupported
    import psycopg
    s = Startup("u", "pw", {})
    try:
        for kind, body in msgs:
            s.feed(kind, body)
    except (ProtocolViolation, AuthenticationUnsupported, psycopg.Error):
        # server errors (E) become psycopg errors; auth the client refuses
        # is AuthenticationUnsupported; everything else a ProtocolViolation
        pass


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.none(), st.binary(max_size=20)), max_size=10))
def test_data_row_roundtrip(values):
    body = struct.pack("!h", len(values)) + b"".join(
        struct.pack("!i", -1) if v is None else struct.pack("!i", len(v)) + v for v in values)
    assert m.parse_data_row(body) == values


class PyReader(m.MessageReader):
    """The reader with the pure-Python DataRow splitter."""
    _split = None


def test_the_compiled_splitter_is_installed():
    # Installs compile drivers/postgres/_pgwire.c; a silent fallback to the
    # Python splitter would cost a third of a FETCH's client CPU.
    assert m.MessageReader._split is not None


def _rows_body(cells):
    """A DataRow body from (length, payload) cells: length -1 is NULL, other
    negative lengths and lengths that disagree with the payload are malformed."""
    return struct.pack("!H", len(cells)) + b"".join(
        struct.pack("!i", ln) + v for ln, v in cells)


_cells = st.lists(st.one_of(
    st.binary(max_size=12).map(lambda v: (len(v), v)),  # well-formed value
    st.just((-1, b"")),  # NULL
    st.tuples(st.integers(-3, 16), st.binary(max_size=12))), max_size=6)  # anything


@settings(max_examples=400, deadline=None)
@given(st.lists(st.one_of(
           st.tuples(st.sampled_from([b"D", b"D", b"C", b"Z"]), st.binary(max_size=40)),
           st.tuples(st.just(b"D"), _cells.map(_rows_body))), max_size=8),
       st.lists(st.integers(0, 400), max_size=4),
       st.sampled_from(["compiled", "python"]))
def test_data_row_fast_path_agrees_with_parser(msgs, cuts, impl):
    """The connection's DataRow fast path (read_rows, compiled or Python) and
    the general path (read + parse_data_row) accept and reject exactly the
    same rows and split them into the same values."""
    reader = m.MessageReader if impl == "compiled" else PyReader
    stream = b"".join(k + struct.pack("!i", len(b) + 4) + b for k, b in msgs)

    def general():
        r, out = m.MessageReader(), []
        r.feed(stream)
        try:
            for kind, body in r:
                out.append(m.parse_data_row(body) if kind == b"D" else kind)
        except ProtocolViolation:
            out.append("error")
        return out

    def fast():
        r, out = reader(), []
        prev = 0
        try:
            for c in sorted(cuts) + [len(stream)]:
                r.feed(stream[prev:max(prev, c)])
                prev = max(prev, c)
                while True:
                    if r.at_data_row() and r.read_rows(out):
                        continue
                    msg = r.read()
                    if msg is None:
                        break
                    if msg[0] == b"D":
                        out.append(m.parse_data_row(msg[1]))
                    else:
                        out.append(msg[0])
        except ProtocolViolation:
            out.append("error")
        return out

    assert fast() == general()
