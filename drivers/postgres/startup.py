"""Connection start-up and authentication, sans-I/O.

``Startup`` takes parsed backend messages and returns the bytes to send until
the server's first ReadyForQuery: trust, cleartext password, MD5 and
SCRAM-SHA-256 are supported; ParameterStatus and BackendKeyData are
collected, notices are handed back.  Server errors raise the psycopg class
for their SQLSTATE; anything else unexpected raises ProtocolViolation.
"""
from __future__ import annotations

from . import messages as m
from .auth import ScramSHA256, md5_password
from .errors import AuthenticationUnsupported, ProtocolViolation, server_error

_AUTH_NAMES = {2: "Kerberos V5", 6: "SCM credentials", 7: "GSSAPI", 9: "SSPI"}


class Startup:
    def __init__(self, user: str, password: str | None, params: dict[str, str]):
        self.user = user
        self.password = password
        self.params = params
        self.parameters: dict[str, str] = {}
        self.backend_key: m.BackendKeyData | None = None
        self.notices: list[dict[int, bytes]] = []
        self.status = ""  # the first ReadyForQuery's status once done
        self._scram: ScramSHA256 | None = None
        self._authenticated = False
        self._scram_verified = False

    @property
    def done(self) -> bool:
        return bool(self.status)

    def start(self) -> bytes:
        return m.startup({"user": self.user, **self.params})

    def _need_password(self, method: str) -> str:
        if self.password is None:
            raise AuthenticationUnsupported(
                f"the server asks for {method} authentication but no password was given")
        return self.password

    def feed(self, kind: bytes, body: bytes) -> bytes:
        """Handles one backend message; returns bytes to send (maybe empty)."""
        if self.done:
            raise ProtocolViolation(f"message {kind!r} after start-up finished")
        msg = m.parse_message(kind, body)
        if kind == b"E":
            raise server_error(msg)
        if kind == b"N":
            self.notices.append(msg)
            return b""
        if kind == b"R":
            return self._auth(msg)
        if not self._authenticated:
            raise ProtocolViolation(f"message {kind!r} before authentication finished")
        if kind == b"S":
            self.parameters[msg.name] = msg.value
        elif kind == b"K":
            self.backend_key = msg
        elif kind == b"Z":
            self.status = msg
        elif kind == b"v":
            # NegotiateProtocolVersion: the server lacks some option we sent;
            # it carries on with what it has, and so do we.
            pass
        else:
            raise ProtocolViolation(f"unexpected message {kind!r} during start-up")
        return b""

    def _auth(self, a: m.Auth) -> bytes:
        if self._authenticated:
            raise ProtocolViolation("authentication request after AuthenticationOk")
        if a.code == 0:
            if self._scram is not None and not self._scram_verified:
                # A server that skips SCRAM's final message has not proven it
                # knows the password; libpq refuses that too.
                raise AuthenticationUnsupported("SCRAM: server skipped its signature")
            self._authenticated = True
            return b""
        if a.code == 3:
            return m.password(self._need_password("cleartext password").encode())
        if a.code == 5:
            pw = self._need_password("MD5")
            return m.password(md5_password(self.user, pw, a.data))
        if a.code == 10:
            mechs = m.parse_sasl_mechanisms(a.data)
            if ScramSHA256.mechanism not in mechs:
                raise AuthenticationUnsupported(f"no supported SASL mechanism in {mechs}")
            self._scram = ScramSHA256(self._need_password("SCRAM-SHA-256"))
            return m.sasl_initial(ScramSHA256.mechanism, self._scram.client_first())
        if a.code == 11:
            if self._scram is None:
                raise ProtocolViolation("SASLContinue without SASL")
            return m.sasl_response(self._scram.client_final(a.data))
        if a.code == 12:
            if self._scram is None:
                raise ProtocolViolation("SASLFinal without SASL")
            self._scram.verify(a.data)
            self._scram_verified = True
            return b""
        name = _AUTH_NAMES.get(a.code, f"code {a.code}")
        raise AuthenticationUnsupported(f"unsupported authentication method: {name}")
