"""SCRAM-SHA-256 (RFC 7677 vectors, and a server computed here), MD5, and the
start-up state machine driven with plain bytes."""
import base64
import hashlib
import hmac
import struct

import pytest

from ringleader.drivers.postgres import messages as m
from ringleader.drivers.postgres.auth import ScramSHA256, md5_password, saslprep
from ringleader.drivers.postgres.errors import AuthenticationUnsupported, ProtocolViolation
from ringleader.drivers.postgres.startup import Startup

RFC_NONCE = "rOprNGfwEbeRWgbNEkqO"
RFC_SERVER_FIRST = (b"r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
                    b"s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096")


def test_rfc7677_vector():
    s = ScramSHA256("pencil", user="user", nonce=RFC_NONCE)
    assert s.client_first() == b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO"
    assert s.client_final(RFC_SERVER_FIRST) == (
        b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,"
        b"p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
    s.verify(b"v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=")


def test_rfc7677_wrong_server_signature():
    s = ScramSHA256("pencil", user="user", nonce=RFC_NONCE)
    s.client_final(RFC_SERVER_FIRST)
    with pytest.raises(AuthenticationUnsupported, match="signature"):
        s.verify(b"v=" + base64.b64encode(b"\0" * 32))
    with pytest.raises(AuthenticationUnsupported, match="server error"):
        s.verify(b"e=invalid-proof")


@pytest.mark.parametrize("server_first", [
    b"r=otherNonce,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096",  # does not extend ours
    b"r=rOprNGfwEbeRWgbNEkqOx,s=***,i=4096",  # bad base64
    b"r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=0",
    b"r=rOprNGfwEbeRWgbNEkqOx,i=4096",  # no salt
    b"garbage",
    b"\xff\xfe",
])
def test_bad_server_first(server_first):
    s = ScramSHA256("pencil", user="user", nonce=RFC_NONCE)
    with pytest.raises(AuthenticationUnsupported):
        s.client_final(server_first)


class ScramServer:
    """The server side of SCRAM-SHA-256, computed independently from the
    stored verifier the way PostgreSQL stores it."""

    def __init__(self, password: str, salt=b"0123456789abcdef", iters=4096):
        salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iters)
        self.stored = hashlib.sha256(hmac.digest(salted, b"Client Key", "sha256")).digest()
        self.server_key = hmac.digest(salted, b"Server Key", "sha256")
        self.salt, self.iters = salt, iters

    def first(self, client_first: bytes) -> bytes:
        self.client_first_bare = client_first.split(b",", 2)[2]
        cnonce = dict(p.split(b"=", 1) for p in self.client_first_bare.split(b","))[b"r"]
        self.nonce = cnonce + b"SERVERPART"
        self.server_first = (b"r=" + self.nonce + b",s=" + base64.b64encode(self.salt)
                             + b",i=" + str(self.iters).encode())
        return self.server_first

    def final(self, client_final: bytes) -> bytes:
        without, proof = client_final.rsplit(b",p=", 1)
        auth = b",".join((self.client_first_bare, self.server_first, without))
        sig = hmac.digest(self.stored, auth, "sha256")
        client_key = bytes(a ^ b for a, b in zip(base64.b64decode(proof), sig))
        if hashlib.sha256(client_key).digest() != self.stored:
            return b"e=invalid-proof"
        return b"v=" + base64.b64encode(hmac.digest(self.server_key, auth, "sha256"))


def auth(code: int, data: bytes = b"") -> tuple[bytes, bytes]:
    return b"R", struct.pack("!i", code) + data


def run_startup(password, server_password):
    st = Startup("alice", password, {"database": "db"})
    assert b"user\0alice\0database\0db\0" in st.start()
    server = ScramServer(server_password)
    out = st.feed(*auth(10, b"SCRAM-SHA-256\0\0"))
    assert out[:1] == b"p" and b"SCRAM-SHA-256\0" in out
    client_first = out[5 + len(b"SCRAM-SHA-256\0") + 4:]
    out = st.feed(*auth(11, server.first(client_first)))
    final = server.final(out[5:])
    return st, final


def test_startup_scram_against_server_computation():
    st, final = run_startup("sécret", "sécret")
    assert st.feed(*auth(12, final)) == b""
    st.feed(*auth(0))
    st.feed(b"S", b"TimeZone\0UTC\0")
    st.feed(b"K", b"\0\0\0\x2aKEY!")
    st.feed(b"N", b"SNOTICE\0Mhi\0\0")
    assert not st.done
    st.feed(b"Z", b"I")
    assert st.done and st.parameters == {"TimeZone": "UTC"}
    assert st.backend_key == m.BackendKeyData(42, b"KEY!") and len(st.notices) == 1


def test_startup_scram_wrong_password():
    st, final = run_startup("wrong", "right")
    assert final == b"e=invalid-proof"
    with pytest.raises(AuthenticationUnsupported):
        st.feed(*auth(12, final))


def test_startup_scram_server_skipping_final_is_refused():
    st, _ = run_startup("pw", "pw")
    with pytest.raises(AuthenticationUnsupported, match="skipped"):
        st.feed(*auth(0))


def test_startup_md5_and_cleartext():
    st = Startup("bob", "pw", {})
    out = st.feed(*auth(5, b"salt"))
    assert out == b"p" + struct.pack("!i", 4 + 36) + md5_password("bob", "pw", b"salt") + b"\0"
    inner = hashlib.md5(b"pwbob").hexdigest().encode()
    assert md5_password("bob", "pw", b"salt") == b"md5" + hashlib.md5(inner + b"salt").hexdigest().encode()
    st2 = Startup("bob", "pw", {})
    assert st2.feed(*auth(3)) == b"p\0\0\0\x07pw\0"


def test_startup_errors():
    from psycopg import errors as pe
    st = Startup("bob", None, {})
    with pytest.raises(AuthenticationUnsupported, match="no password"):
        st.feed(*auth(5, b"salt"))
    with pytest.raises(AuthenticationUnsupported, match="GSSAPI"):
        Startup("bob", "x", {}).feed(*auth(7))
    with pytest.raises(pe.InvalidPassword):
        Startup("bob", "x", {}).feed(b"E", b"SFATAL\0C28P01\0Mpassword authentication failed\0\0")
    with pytest.raises(ProtocolViolation):
        Startup("bob", "x", {}).feed(b"Z", b"I")  # ready before authentication
    with pytest.raises(AuthenticationUnsupported, match="SASL mechanism"):
        Startup("bob", "x", {}).feed(*auth(10, b"SCRAM-SHA-256-PLUS\0\0"))


def test_saslprep():
    assert saslprep("I\u00adX") == "IX"  # soft hyphen mapped to nothing
    assert saslprep("a\u00a0b") == "a b"  # non-ASCII space to space
    assert saslprep("\u2168") == "IX"  # NFKC
    assert saslprep("a\u0007b") == "a\u0007b"  # prohibited: used raw, as PostgreSQL does
