"""Sans-I/O tests of the Redis driver: RESP encoding, reply parsing, URL parsing,
and the reply transforms of the typed helpers (driven through a recording
pipeline, no socket)."""
import pytest

from ringleader.drivers import errors as base
from ringleader.drivers.redis import errors as E
from ringleader.drivers.redis.commands import Commands, _pop_scored, _scored
from ringleader.drivers.redis.pipeline import Pipeline
from ringleader.drivers.redis.protocol import (Parser, Push, encode_command, encode_commands,
                                               pubsub_kind)
from ringleader.drivers.redis.url import ConnectParams, parse_url


def test_encode_command_types():
    assert encode_command(("SET", b"k", 1)) == b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n1\r\n"
    assert encode_command(["GET", "é"]) == b"*2\r\n$3\r\nGET\r\n$2\r\n\xc3\xa9\r\n"
    assert encode_command(("X", 1.5, memoryview(b"ab"))).endswith(b"$3\r\n1.5\r\n$2\r\nab\r\n")
    assert encode_commands([("PING",), ("PING",)]) == b"*1\r\n$4\r\nPING\r\n" * 2


@pytest.mark.parametrize("bad, hint", [(None, "NoneType"), (True, "bool"), ([1], "list"),
                                       (bytearray(b"x"), "bytes(...)"), ({}, "dict")])
def test_encode_refuses_bad_arguments_clearly(bad, hint):
    with pytest.raises(E.InterfaceError, match="argument 2") as info:
        encode_command(("SET", "k", bad))
    assert hint in str(info.value)
    assert isinstance(info.value, base.InterfaceError) and isinstance(info.value, ValueError)
    with pytest.raises(E.InterfaceError, match="empty"):
        encode_command(())


def test_parser_resp2_incremental():
    p = Parser()
    data = b"+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n*2\r\n$1\r\na\r\n*-1\r\n-ERR boom\r\n"
    out = []
    for i in range(len(data)):  # one byte at a time
        out += p.feed(data[i:i + 1])
    assert out[:5] == [b"OK", 42, b"hello", None, [b"a", None]]
    err = out[5]
    assert isinstance(err, E.ReplyError) and err.code == "ERR" and err.message == "ERR boom"


def test_parser_resp3_types():
    p = Parser()
    out = p.feed(b"%2\r\n+a\r\n:1\r\n+b\r\n,1.5\r\n_\r\n#t\r\n#f\r\n~2\r\n:1\r\n:2\r\n"
                 b">3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$2\r\nhi\r\n,inf\r\n")
    assert out[0] == {b"a": 1, b"b": 1.5}
    assert out[1:4] == [None, True, False]  # False is a reply, not "need more"
    assert out[4] == [1, 2]
    assert type(out[5]) is Push and out[5] == [b"message", b"ch", b"hi"]
    assert out[6] == float("inf")


def test_parser_decode_keeps_invalid_utf8():
    p = Parser(decode=True)
    assert p.feed(b"$2\r\n\xff\xfe\r\n+ok\r\n") == ["\udcff\udcfe", "ok"]


@pytest.mark.parametrize("junk", [b"?what\r\n", b":12x\r\n", b"$abc\r\n",
                                  b"%1\r\n*1\r\n:1\r\n:2\r\n", b"!5\r\nERR x\r\n"])
def test_parser_malformed_is_terminal(junk):
    p = Parser()
    out = p.feed(b"+before\r\n" + junk + b"+after\r\n")
    assert out[0] == b"before"
    assert isinstance(out[-1], E.ProtocolError) and len(out) == 2
    with pytest.raises(E.ProtocolError):
        p.feed(b"+OK\r\n")  # never resynchronised


def test_pubsub_kind():
    assert pubsub_kind([b"message", b"c", b"d"]) == b"message"
    assert pubsub_kind(["pmessage", "p", "c", "d"]) == "pmessage"
    assert pubsub_kind([b"other"]) is None and pubsub_kind(b"message") is None
    assert pubsub_kind([]) is None


def test_reply_error_codes():
    assert E.ReplyError("WRONGTYPE Operation against a key").code == "WRONGTYPE"
    assert E.ReplyError("something lowercase").code == "ERR"
    assert issubclass(E.ConnectionError, base.ConnectionError)
    assert issubclass(E.TimeoutError, TimeoutError) and issubclass(E.ProtocolError, base.DriverError)


def test_parse_url_forms():
    assert parse_url() == ConnectParams()
    p = parse_url("redis://al%40ice:p%3Ass@example.org:7000/3?protocol=3&name=svc&timeout=2.5")
    assert (p.username, p.password, p.host, p.port, p.db) == ("al@ice", "p:ss", "example.org", 7000, 3)
    assert (p.protocol, p.client_name, p.timeout) == (3, "svc", 2.5)
    p = parse_url("redis://:secret@h")
    assert p.username is None and p.password == "secret" and p.port == 6379
    p = parse_url("unix:///run/redis.sock?db=2&decode_responses=yes")
    assert p.path == "/run/redis.sock" and p.db == 2 and p.decode_responses and p.address == p.path
    assert parse_url("redis://h/1", db=4, protocol=3).db == 4  # keywords win


@pytest.mark.parametrize("url, match", [
    ("http://h", "redis://, rediss:// or unix://"), ("redis://h:99999", "port"),
    ("rediss://h?ssl_cert_reqs=maybe", "ssl_cert_reqs must be one of"),
    ("rediss://h?ssl_ca_certs=/nonexistent/ca.pem", "cannot load TLS files"),
    ("rediss://h?ssl_keyfile=k.pem", "ssl_keyfile given without ssl_certfile"),
    ("redis://h?ssl_context=x", "keyword option"), ("unix:///s?ssl=1", "unix socket"),
    ("redis://h/x", "db"), ("redis://h?protocol=4", "protocol"), ("redis://h?bogus=1", "unknown"),
    ("unix://", "socket path"), ("redis://h?timeout=-1", "timeout"), ("redis://h?port=2", "URL itself"),
])
def test_parse_url_rejects(url, match):
    with pytest.raises(E.InterfaceError, match=match):
        parse_url(url)


def test_tls_options():
    import ssl
    p = parse_url("rediss://h:6380/0")
    assert p.ssl and p.ssl_context.verify_mode == ssl.CERT_REQUIRED and p.ssl_context.check_hostname
    p = parse_url("rediss://h?ssl_cert_reqs=none")
    assert p.ssl_context.verify_mode == ssl.CERT_NONE and not p.ssl_context.check_hostname
    p = parse_url("rediss://h?ssl_check_hostname=false")
    assert p.ssl_context.verify_mode == ssl.CERT_REQUIRED and not p.ssl_context.check_hostname
    assert parse_url("redis://h").ssl_context is None
    own = ssl.create_default_context()
    p = parse_url("redis://h", ssl_context=own)
    assert p.ssl and p.ssl_context is own
    with pytest.raises(E.InterfaceError, match="ssl_context"):
        parse_url("redis://h", ssl_context="yes")


def test_parse_url_rejects_bad_keywords():
    with pytest.raises(E.InterfaceError, match="unknown"):
        parse_url(None, colour="red")
    with pytest.raises(E.InterfaceError, match="db"):
        parse_url(None, db=True)
    with pytest.raises(E.InterfaceError, match="str"):
        parse_url(b"redis://h")


def test_helpers_build_commands_and_validate():
    pipe = Pipeline(client=None)
    pipe.set("k", "v", ex=10, nx=True).hset("h", mapping={"a": 1}).zadd("z", {"m": 1.5})
    pipe.blpop(["a", "b"], timeout=2)
    assert [a for a, _ in pipe._queued] == [
        ("SET", "k", "v", "EX", 10, "NX"), ("HSET", "h", "a", 1), ("ZADD", "z", 1.5, "m"),
        ("BLPOP", "a", "b", 2)]
    with pytest.raises(E.InterfaceError):
        pipe.set("k", "v", ex=1, px=5)
    with pytest.raises(E.InterfaceError):
        pipe.set("k", None)
    with pytest.raises(E.InterfaceError):
        pipe.blpop("k", timeout=-1)
    with pytest.raises(E.InterfaceError):
        pipe.zadd("z", {})
    assert len(pipe) == 4


def test_transforms_accept_resp2_and_resp3_shapes():
    assert _scored([b"a", b"1", b"b", b"2.5"]) == [(b"a", 1.0), (b"b", 2.5)]
    assert _scored([[b"a", 1.0], [b"b", 2.5]]) == [(b"a", 1.0), (b"b", 2.5)]
    assert _pop_scored([b"a", b"1"]) == (b"a", 1.0) and _pop_scored([]) is None
    assert _pop_scored([b"a", 1.0]) == (b"a", 1.0)


def test_commands_base_is_abstract():
    with pytest.raises(NotImplementedError):
        Commands().get("k")
