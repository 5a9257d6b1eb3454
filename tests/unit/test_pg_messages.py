"""The Postgres wire format, sans-I/O: framing, parsing, building."""
import struct

import pytest

from ringleader.drivers.postgres import messages as m
from ringleader.drivers.postgres.errors import ProtocolViolation


def frame(kind: bytes, body: bytes) -> bytes:
    return kind + struct.pack("!i", len(body) + 4) + body


def test_reader_frames_split_and_joined_messages():
    stream = frame(b"Z", b"I") + frame(b"C", b"SELECT 1\0") + frame(b"1", b"")
    for cut in range(len(stream) + 1):
        r = m.MessageReader()
        r.feed(stream[:cut])
        got = list(r)
        r.feed(stream[cut:])
        got += list(r)
        assert got == [(b"Z", b"I"), (b"C", b"SELECT 1\0"), (b"1", b"")]
        assert r.pending() == 0


@pytest.mark.parametrize("data, what", [
    (b"?\0\0\0\4", "unknown backend message type"),
    (b"Z\0\0\0\3", "bad message length"),
    (b"Z\x7f\xff\xff\xff", "bad message length"),
])
def test_reader_rejects_bad_frames(data, what):
    r = m.MessageReader()
    r.feed(data)
    with pytest.raises(ProtocolViolation, match=what):
        r.read()


def test_data_row_values_and_nulls():
    body = struct.pack("!h", 3) + struct.pack("!i", 2) + b"ab" + struct.pack("!i", -1) \
        + struct.pack("!i", 0)
    assert m.parse_data_row(body) == [b"ab", None, b""]


@pytest.mark.parametrize("body", [
    b"\0",  # truncated count
    struct.pack("!hi", 1, 5) + b"abc",  # value shorter than its length
    struct.pack("!hi", 1, -2),  # negative length other than -1
    struct.pack("!hi", 1, 1) + b"ab",  # trailing byte
    struct.pack("!h", 2) + struct.pack("!i", -1),  # missing second column
])
def test_data_row_malformed(body):
    with pytest.raises(ProtocolViolation):
        m.parse_data_row(body)


def test_row_description():
    body = struct.pack("!h", 2)
    body += b"id\0" + struct.pack("!IhIhih", 1234, 1, 23, 4, -1, 1)
    body += b"name\0" + struct.pack("!IhIhih", 0, 0, 25, -1, -1, 0)
    f = m.parse_row_description(body)
    assert [x.name for x in f] == ["id", "name"]
    assert f[0] == m.Field("id", 1234, 1, 23, 4, -1, 1)
    with pytest.raises(ProtocolViolation):
        m.parse_row_description(body[:-1])
    with pytest.raises(ProtocolViolation, match="format"):
        m.parse_row_description(body[:-2] + struct.pack("!h", 7))


def test_error_fields_and_server_error_class():
    from psycopg import errors as pe
    from ringleader.drivers.postgres.errors import server_error
    body = b"SERROR\0VERROR\0C23505\0Mduplicate key\0Dkey (id)=(1) exists\0nt_pkey\0P7\0\0"
    fields = m.parse_error_fields(b"E", body)
    e = server_error(fields)
    assert isinstance(e, pe.UniqueViolation)
    assert e.sqlstate == "23505" and e.diag.sqlstate == "23505"
    assert e.constraint_name == "t_pkey" == e.diag.constraint_name
    assert e.detail == "key (id)=(1) exists" and e.position == "7"
    assert str(e) == "duplicate key"
    # unknown code: psycopg's class for the code's class prefix
    e2 = server_error(m.parse_error_fields(b"E", b"C22ZZZ\0Mx\0\0"))
    assert isinstance(e2, pe.DataError) and e2.sqlstate == "22ZZZ"
    with pytest.raises(ProtocolViolation):
        m.parse_error_fields(b"E", b"Mno terminator")


@pytest.mark.parametrize("kind, body", [
    (b"Z", b"X"), (b"Z", b""), (b"K", b"\0\0\0\1"), (b"A", b"\0\0\0\1ch\0"),
    (b"S", b"name\0"), (b"t", struct.pack("!h", 2) + b"\0\0\0\1"),
    (b"1", b"x"), (b"G", b"\2\0\0"), (b"R", b"\0\0\0\5ab"),
])
def test_malformed_bodies(kind, body):
    with pytest.raises(ProtocolViolation):
        m.parse_message(kind, body)


def test_simple_messages():
    assert m.parse_message(b"Z", b"T") == "T"
    assert m.parse_message(b"K", b"\0\0\0\7abcd") == m.BackendKeyData(7, b"abcd")
    assert m.parse_message(b"A", b"\0\0\0\1ch\0hi\0") == m.Notification(1, "ch", "hi")
    assert m.parse_message(b"S", b"TimeZone\0UTC\0") == m.ParameterStatus("TimeZone", "UTC")
    assert m.parse_message(b"t", struct.pack("!hII", 2, 23, 25)) == (23, 25)
    assert m.parse_message(b"H", b"\0\0\1\0\0") == m.CopyResponse(0, (0,))
    assert m.parse_message(b"R", b"\0\0\0\5salt") == m.Auth(5, b"salt")
    sasl = m.parse_message(b"R", b"\0\0\0\x0aSCRAM-SHA-256\0\0")
    assert m.parse_sasl_mechanisms(sasl.data) == ["SCRAM-SHA-256"]


def test_frontend_messages():
    assert m.query(b"select 1") == b"Q\0\0\0\x0dselect 1\0"
    assert m.SYNC == b"S\0\0\0\4"
    st = m.startup({"user": "u", "database": "d"})
    assert st == struct.pack("!ii", len(st), 196608) + b"user\0u\0database\0d\0\0"
    b = m.bind(b"", b"s1", (1, 0), [b"\0\0\0\1", None], (1,))
    assert b[:1] == b"B" and struct.unpack("!i", b[1:5])[0] == len(b) - 1
    assert b[5:] == (b"\0s1\0" + struct.pack("!hhh", 2, 1, 0) + struct.pack("!h", 2)
                     + struct.pack("!i", 4) + b"\0\0\0\1" + b"\xff\xff\xff\xff"
                     + struct.pack("!hh", 1, 1))
    assert m.cancel_request(5, b"kkkk") == struct.pack("!iii", 16, 80877102, 5) + b"kkkk"
    p = m.parse(b"n", b"select $1", (23,))
    assert p == b"P" + struct.pack("!i", 4 + 2 + 10 + 2 + 4) + b"n\0select $1\0" \
        + struct.pack("!hI", 1, 23)
    with pytest.raises(ValueError, match="NUL"):
        m.query(b"a\0b")


def test_large_message_fed_in_small_chunks():
    # Past MessageReader.BIG the partial message is collected as chunks and
    # joined once: the result must be the same as feeding it whole.
    value = bytes(range(256)) * 8192  # 2 MiB
    body = struct.pack("!hi", 1, len(value)) + value
    stream = frame(b"D", body) + frame(b"C", b"SELECT 1\0") + frame(b"Z", b"I")
    r = m.MessageReader()
    got, rows = [], []
    for i in range(0, len(stream), 4096):
        r.feed(stream[i:i + 4096])
        while True:
            if r.at_data_row() and r.read_rows(rows):
                continue
            msg = r.read()
            if msg is None:
                break
            got.append(msg)
    assert rows == [[value]]
    assert got == [(b"C", b"SELECT 1\0"), (b"Z", b"I")]
    assert r.pending() == 0
