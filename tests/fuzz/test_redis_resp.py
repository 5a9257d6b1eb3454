"""Hypothesis fuzzing of the sans-I/O RESP layer: encoded commands parse back to
their arguments however the bytes are split, generated RESP2/RESP3 replies parse
to the values they encode, and arbitrary bytes never crash the parser (they
parse, wait for more, or end in a terminal ProtocolError)."""
import math

from hypothesis import HealthCheck, given, settings, strategies as st

from ringleader.drivers.redis import errors as E
from ringleader.drivers.redis.protocol import Parser, encode_command

# Per-test settings (not a global profile: other fuzz modules share the session).
fuzz = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

args_st = st.lists(st.one_of(st.binary(max_size=64), st.text(max_size=16),
                             st.integers(min_value=-(2**70), max_value=2**70)),
                   min_size=1, max_size=8)


def feed_in_chunks(parser, data, cuts):
    out = []
    points = sorted({c % (len(data) + 1) for c in cuts}) + [len(data)]
    start = 0
    for p in points:
        out += parser.feed(data[start:p])
        start = p
    return out


def as_bytes(a):
    return a if isinstance(a, bytes) else str(a).encode()


@fuzz
@given(args_st, st.lists(st.integers(min_value=0), max_size=6))
def test_encoded_command_parses_back(args, cuts):
    # A request is an array of bulk strings: the reply parser reads it back.
    data = encode_command(tuple(args))
    out = feed_in_chunks(Parser(), data, cuts)
    assert out == [[as_bytes(a) for a in args]]


def resp_value(protocol3):
    """(encoded bytes, expected parsed value) pairs."""
    scalars = [
        st.binary(max_size=40).map(lambda b: (b"$%d\r\n%s\r\n" % (len(b), b), b)),
        st.integers(min_value=-(2**63), max_value=2**63 - 1).map(lambda i: (b":%d\r\n" % i, i)),
        st.text(alphabet=st.characters(blacklist_characters="\r\n", codec="ascii"), max_size=20)
          .map(lambda s: (b"+" + s.encode() + b"\r\n", s.encode())),
        st.just((b"$-1\r\n", None)),
    ]
    if protocol3:
        scalars += [
            st.booleans().map(lambda v: (b"#t\r\n" if v else b"#f\r\n", v)),
            st.just((b"_\r\n", None)),
            st.floats(allow_nan=False).map(lambda f: (b",%s\r\n" % repr(f).encode(), f)),
        ]
    leaf = st.one_of(*scalars)

    def containers(children):
        arrays = st.lists(children, max_size=5).map(
            lambda xs: (b"*%d\r\n" % len(xs) + b"".join(x[0] for x in xs), [x[1] for x in xs]))
        if not protocol3:
            return arrays
        maps = st.dictionaries(st.binary(max_size=8), children, max_size=4).map(
            lambda d: (b"%%%d\r\n" % len(d) + b"".join(b"$%d\r\n%s\r\n" % (len(k), k) + v[0]
                                                       for k, v in d.items()),
                       {k: v[1] for k, v in d.items()}))
        return st.one_of(arrays, maps)

    return st.recursive(leaf, containers, max_leaves=12)


def same(a, b):
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isinf(a) and a == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@fuzz
@given(st.lists(st.one_of(resp_value(False), resp_value(True)), min_size=1, max_size=5),
       st.lists(st.integers(min_value=0), max_size=8))
def test_generated_replies_parse_to_their_values(replies, cuts):
    data = b"".join(r[0] for r in replies)
    out = feed_in_chunks(Parser(), data, cuts)
    assert len(out) == len(replies)
    for got, (_, want) in zip(out, replies):
        assert same(got, want), (got, want)


@fuzz
@given(st.binary(max_size=200), st.lists(st.integers(min_value=0), max_size=4))
def test_arbitrary_bytes_never_crash(data, cuts):
    parser = Parser()
    try:
        out = feed_in_chunks(parser, data, cuts)
    except E.ProtocolError:
        # Only after a failure was already reported by an earlier feed().
        assert parser.error is not None
        return
    for i, item in enumerate(out):
        if isinstance(item, E.ProtocolError):
            assert i == len(out) - 1  # terminal


@fuzz
@given(st.lists(resp_value(False), min_size=1, max_size=3), st.binary(min_size=1, max_size=30))
def test_valid_prefix_survives_garbage(replies, junk):
    data = b"".join(r[0] for r in replies)
    out = Parser().feed(data + junk)
    # Replies before the junk always come out intact, whatever follows.
    for got, (_, want) in zip(out, replies):
        assert same(got, want)
