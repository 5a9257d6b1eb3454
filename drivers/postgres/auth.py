"""Client side of PostgreSQL password authentication, sans-I/O.

``ScramSHA256`` runs the SCRAM-SHA-256 exchange of RFC 5802 / RFC 7677 as
PostgreSQL does it (no channel binding: this driver does not do TLS), and
verifies the server's signature; ``md5_password`` computes the reply to an
MD5 challenge.  Nothing here sends or receives bytes on its own.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
import os
import stringprep
import unicodedata

from .errors import AuthenticationUnsupported


def md5_password(user: str, password: str, salt: bytes) -> bytes:
    inner = hashlib.md5(password.encode() + user.encode()).hexdigest().encode()
    return b"md5" + hashlib.md5(inner + salt).hexdigest().encode()


def saslprep(s: str) -> str:
    """RFC 4013 SASLprep, returning the input unchanged when it is not valid
    (PostgreSQL itself then uses the raw password, so must we)."""
    mapped = "".join(
        " " if stringprep.in_table_c12(c) else c
        for c in s if not stringprep.in_table_b1(c))
    norm = unicodedata.normalize("NFKC", mapped)
    if not norm:
        return s
    prohibited = (stringprep.in_table_c12, stringprep.in_table_c21_c22,
                  stringprep.in_table_c3, stringprep.in_table_c4,
                  stringprep.in_table_c5, stringprep.in_table_c6,
                  stringprep.in_table_c7, stringprep.in_table_c8,
                  stringprep.in_table_c9, stringprep.in_table_a1)
    for c in norm:
        if any(t(c) for t in prohibited):
            return s
    ral = [stringprep.in_table_d1(c) for c in norm]
    if any(ral):
        if any(stringprep.in_table_d2(c) for c in norm) or not (ral[0] and ral[-1]):
            return s
    return norm


def _attrs(msg: bytes) -> dict[str, str]:
    try:
        text = msg.decode("utf-8")
    except UnicodeDecodeError:
        raise AuthenticationUnsupported("SCRAM: server message is not UTF-8") from None
    out = {}
    for part in text.split(","):
        if len(part) < 2 or part[1] != "=":
            raise AuthenticationUnsupported(f"SCRAM: malformed server message {text!r}")
        out.setdefault(part[0], part[2:])
    return out


class ScramSHA256:
    """One SCRAM-SHA-256 exchange: ``client_first()``, then
    ``client_final(server_first)``, then ``verify(server_final)``."""

    mechanism = "SCRAM-SHA-256"

    def __init__(self, password: str, *, user: str = "", nonce: str | None = None):
        # PostgreSQL ignores the SCRAM user name (it uses the startup user), so
        # libpq sends an empty one; tests pass RFC 7677's "user" explicitly.
        self._password = saslprep(password).encode("utf-8")
        self._user = user.replace("=", "=3D").replace(",", "=2C")
        self._nonce = nonce or base64.b64encode(os.urandom(18)).decode()
        self._client_first_bare = f"n={self._user},r={self._nonce}"
        self._auth_message = b""
        self._server_key = b""

    def client_first(self) -> bytes:
        return ("n,," + self._client_first_bare).encode()

    def client_final(self, server_first: bytes) -> bytes:
        a = _attrs(server_first)
        if "m" in a:
            raise AuthenticationUnsupported("SCRAM: server requires an extension")
        try:
            nonce, salt_b64, iters = a["r"], a["s"], int(a["i"])
            salt = base64.b64decode(salt_b64, validate=True)
        except (KeyError, ValueError):
            raise AuthenticationUnsupported(
                f"SCRAM: bad server-first-message {server_first!r}") from None
        if not nonce.startswith(self._nonce) or len(nonce) <= len(self._nonce):
            raise AuthenticationUnsupported("SCRAM: server nonce does not extend ours")
        if not 0 < iters <= 10_000_000:
            raise AuthenticationUnsupported(f"SCRAM: bad iteration count {iters}")
        salted = hashlib.pbkdf2_hmac("sha256", self._password, salt, iters)
        client_key = hmac.digest(salted, b"Client Key", "sha256")
        stored_key = hashlib.sha256(client_key).digest()
        without_proof = f"c=biws,r={nonce}"
        self._auth_message = ",".join(
            (self._client_first_bare, server_first.decode(), without_proof)).encode()
        signature = hmac.digest(stored_key, self._auth_message, "sha256")
        proof = bytes(x ^ y for x, y in zip(client_key, signature))
        self._server_key = hmac.digest(salted, b"Server Key", "sha256")
        return f"{without_proof},p={base64.b64encode(proof).decode()}".encode()

    def verify(self, server_final: bytes) -> None:
        a = _attrs(server_final)
        if "e" in a:
            raise AuthenticationUnsupported(f"SCRAM: server error {a['e']}")
        if not self._server_key:
            raise AuthenticationUnsupported("SCRAM: server-final before server-first")
        expected = hmac.digest(self._server_key, self._auth_message, "sha256")
        try:
            got = base64.b64decode(a.get("v", ""), validate=True)
        except ValueError:
            got = b""
        if not hmac.compare_digest(expected, got):
            raise AuthenticationUnsupported("SCRAM: server signature does not verify")
