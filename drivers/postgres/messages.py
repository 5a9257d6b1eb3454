"""PostgreSQL protocol v3 messages, sans-I/O.

Builds the frontend messages the driver sends (startup, auth, simple and
extended query, COPY, cancel) and frames and parses backend messages from a
byte stream into small Python objects.  It never touches a socket, a loop or
a clock: the connection layer feeds it bytes and writes what it returns.

Every malformed input (bad length, unknown type, truncated or overlong body,
field values out of range) raises :class:`ProtocolViolation`, and nothing
else; the fuzz tests hold it to that.
"""
from __future__ import annotations

import struct
from typing import NamedTuple

from .errors import InterfaceError, ProtocolViolation

try:  # compiled at install (setup.py); the pure-Python path is the fallback
    from ._pgwire import split_rows as _split_rows
except ImportError:  # pragma: no cover - only on a build without a C compiler
    _split_rows = None

PROTOCOL_VERSION = 196608  # 3.0
CANCEL_REQUEST_CODE = 80877102
SSL_REQUEST_CODE = 80877103

# The server refuses messages over 1 GiB, so anything longer is a corrupt stream
# rather than a message worth buffering.
MAX_MESSAGE = 0x40000000 + 1024

_i16 = struct.Struct("!h")
_u16 = struct.Struct("!H")
_i32 = struct.Struct("!i")
_ii = struct.Struct("!ii")
_ci = struct.Struct("!ci")
_field = struct.Struct("!IhIhih")


# ---------------------------------------------------------------- frontend

def _cstr(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    if b"\0" in b:
        raise InterfaceError(f"NUL byte not allowed in protocol string {s!r}")
    return b + b"\0"


def _msg(kind: bytes, body: bytes) -> bytes:
    return _ci.pack(kind, len(body) + 4) + body


def startup(params: dict[str, str]) -> bytes:
    body = _i32.pack(PROTOCOL_VERSION)
    body += b"".join(_cstr(k) + _cstr(v) for k, v in params.items() if v is not None)
    body += b"\0"
    return _i32.pack(len(body) + 4) + body


def ssl_request() -> bytes:
    """SSLRequest: the server answers one byte, S (go on with TLS) or N."""
    return _ii.pack(8, SSL_REQUEST_CODE)


def cancel_request(pid: int, key: bytes) -> bytes:
    body = _i32.pack(CANCEL_REQUEST_CODE) + _i32.pack(pid) + key
    return _i32.pack(len(body) + 4) + body


def password(data: bytes) -> bytes:
    return _msg(b"p", data + b"\0")


def sasl_initial(mechanism: str, data: bytes) -> bytes:
    return _msg(b"p", _cstr(mechanism) + _i32.pack(len(data)) + data)


def sasl_response(data: bytes) -> bytes:
    return _msg(b"p", data)


def query(sql: bytes) -> bytes:
    return _msg(b"Q", _cstr(sql))


def parse(name: bytes, sql: bytes, oids: tuple[int, ...]) -> bytes:
    if len(oids) > 65535:
        raise InterfaceError(f"too many query parameters: {len(oids)} (at most 65535)")
    return _msg(b"P", _cstr(name) + _cstr(sql) + _i16.pack(len(oids))
                + struct.pack(f"!{len(oids)}I", *[o & 0xFFFFFFFF for o in oids]))


def bind(portal: bytes, stmt: bytes, formats, params, result_formats) -> bytes:
    parts = [_cstr(portal), _cstr(stmt), _i16.pack(len(formats)),
             struct.pack(f"!{len(formats)}h", *formats), _i16.pack(len(params))]
    for p in params:
        if p is None:
            parts.append(b"\xff\xff\xff\xff")
        else:
            parts.append(_i32.pack(len(p)))
            parts.append(p)
    parts.append(_i16.pack(len(result_formats)))
    parts.append(struct.pack(f"!{len(result_formats)}h", *result_formats))
    return _msg(b"B", b"".join(parts))


def describe(kind: bytes, name: bytes) -> bytes:
    return _msg(b"D", kind + _cstr(name))


def execute(portal: bytes, max_rows: int = 0) -> bytes:
    return _msg(b"E", _cstr(portal) + _i32.pack(max_rows))


def close(kind: bytes, name: bytes) -> bytes:
    return _msg(b"C", kind + _cstr(name))


def copy_data(data: bytes) -> bytes:
    return _msg(b"d", bytes(data))


def copy_fail(reason: str) -> bytes:
    return _msg(b"f", _cstr(reason.replace("\0", " ")))


SYNC = b"S\0\0\0\4"
FLUSH = b"H\0\0\0\4"
TERMINATE = b"X\0\0\0\4"
COPY_DONE = b"c\0\0\0\4"


# ----------------------------------------------------------------- backend

class Field(NamedTuple):
    name: str
    table_oid: int
    column: int
    type_oid: int
    type_size: int
    type_mod: int
    format: int


class Auth(NamedTuple):
    code: int
    data: bytes  # md5 salt, SASL mechanism list or SASL payload


class ParameterStatus(NamedTuple):
    name: str
    value: str


class BackendKeyData(NamedTuple):
    pid: int
    key: bytes


class Notification(NamedTuple):
    pid: int
    channel: str
    payload: str


class CopyResponse(NamedTuple):
    format: int
    column_formats: tuple[int, ...]


class _Body:
    """Bounds-checked reads over one message body."""

    __slots__ = ("b", "pos", "kind")

    def __init__(self, kind: bytes, b: bytes):
        self.kind, self.b, self.pos = kind, b, 0

    def _need(self, n: int) -> None:
        if self.pos + n > len(self.b):
            raise ProtocolViolation(f"truncated {self.kind!r} message")

    def i16(self) -> int:
        self._need(2)
        v = _i16.unpack_from(self.b, self.pos)[0]
        self.pos += 2
        return v

    def i32(self) -> int:
        self._need(4)
        v = _i32.unpack_from(self.b, self.pos)[0]
        self.pos += 4
        return v

    def count(self, what: str) -> int:
        n = self.i16()
        if n < 0:
            raise ProtocolViolation(f"negative {what} count {n} in {self.kind!r} message")
        return n

    def take(self, n: int) -> bytes:
        self._need(n)
        v = self.b[self.pos:self.pos + n]
        self.pos += n
        return v

    def cstr(self) -> bytes:
        end = self.b.find(b"\0", self.pos)
        if end < 0:
            raise ProtocolViolation(f"unterminated string in {self.kind!r} message")
        v = self.b[self.pos:end]
        self.pos = end + 1
        return v

    def text(self) -> str:
        raw = self.cstr()
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolViolation(f"invalid UTF-8 in {self.kind!r} message") from None

    def rest(self) -> bytes:
        v = self.b[self.pos:]
        self.pos = len(self.b)
        return v

    def end(self):
        if self.pos != len(self.b):
            raise ProtocolViolation(
                f"{len(self.b) - self.pos} trailing bytes in {self.kind!r} message")


def parse_data_row(body: bytes) -> list[bytes | None]:
    """The hot path: a DataRow body into column values (None for NULL)."""
    n = len(body)
    if n < 2:
        raise ProtocolViolation("truncated 'D' message")
    ncols = _u16.unpack_from(body, 0)[0]
    pos = 2
    out: list[bytes | None] = [None] * ncols
    unpack = _i32.unpack_from
    try:
        for i in range(ncols):
            ln = unpack(body, pos)[0]
            pos += 4
            if ln >= 0:
                end = pos + ln
                if end > n:
                    raise ProtocolViolation("truncated 'D' message")
                out[i] = body[pos:end]
                pos = end
            elif ln != -1:
                raise ProtocolViolation(f"negative column length {ln} in 'D' message")
    except struct.error:
        raise ProtocolViolation("truncated 'D' message") from None
    if pos != n:
        raise ProtocolViolation(f"{n - pos} trailing bytes in 'D' message")
    return out


def parse_row_description(body: bytes) -> tuple[Field, ...]:
    r = _Body(b"T", body)
    n = r.count("field")
    fields = []
    for _ in range(n):
        name = r.text()
        r._need(18)
        tab, col, oid, size, mod, fmt = _field.unpack_from(body, r.pos)
        r.pos += 18
        if fmt not in (0, 1):
            raise ProtocolViolation(f"bad format code {fmt} in 'T' message")
        fields.append(Field(name, tab, col, oid, size, mod, fmt))
    r.end()
    return tuple(fields)


def parse_error_fields(kind: bytes, body: bytes) -> dict[int, bytes]:
    """ErrorResponse/NoticeResponse fields keyed by their code byte, the shape
    psycopg's ``Diagnostic`` accepts as its info."""
    r = _Body(kind, body)
    fields: dict[int, bytes] = {}
    while True:
        r._need(1)
        code = r.b[r.pos]
        r.pos += 1
        if code == 0:
            break
        fields[code] = r.cstr()
    r.end()
    return fields


def parse_auth(body: bytes) -> Auth:
    r = _Body(b"R", body)
    code = r.i32()
    if code in (0, 3):
        r.end()
        return Auth(code, b"")
    if code == 5:
        salt = r.take(4)
        r.end()
        return Auth(code, salt)
    if code in (10, 11, 12):
        return Auth(code, r.rest())
    # Kerberos, GSS, SSPI: we cannot do them, but the frame itself is fine.
    return Auth(code, r.rest())


def parse_sasl_mechanisms(data: bytes) -> list[str]:
    r = _Body(b"R", data)
    out = []
    while True:
        m = r.text()
        if not m:
            break
        out.append(m)
    r.end()
    return out


def parse_parameter_status(body: bytes) -> ParameterStatus:
    r = _Body(b"S", body)
    p = ParameterStatus(r.text(), r.text())
    r.end()
    return p


def parse_backend_key(body: bytes) -> BackendKeyData:
    r = _Body(b"K", body)
    pid = r.i32()
    key = r.rest()
    # Protocol 3.0 keys are 4 bytes; 3.2 allows up to 256.  Accept both.
    if not 4 <= len(key) <= 256:
        raise ProtocolViolation(f"bad cancel key length {len(key)}")
    return BackendKeyData(pid, key)


def parse_ready(body: bytes) -> str:
    if len(body) != 1 or body not in (b"I", b"T", b"E"):
        raise ProtocolViolation(f"bad ReadyForQuery status {body!r}")
    return body.decode()


def parse_command_complete(body: bytes) -> str:
    r = _Body(b"C", body)
    tag = r.text()
    r.end()
    return tag


def parse_parameter_description(body: bytes) -> tuple[int, ...]:
    r = _Body(b"t", body)
    n = r.count("parameter")
    r._need(4 * n)
    oids = struct.unpack_from(f"!{n}I", body, r.pos)
    r.pos += 4 * n
    r.end()
    return oids


def parse_notification(body: bytes) -> Notification:
    r = _Body(b"A", body)
    n = Notification(r.i32(), r.text(), r.text())
    r.end()
    return n


def parse_copy_response(kind: bytes, body: bytes) -> CopyResponse:
    r = _Body(kind, body)
    r._need(1)
    fmt = r.b[0]
    r.pos = 1
    n = r.i16()
    if fmt not in (0, 1) or n < 0:
        raise ProtocolViolation(f"bad {kind!r} message")
    cols = tuple(r.i16() for _ in range(n))
    r.end()
    return CopyResponse(fmt, cols)


def parse_empty(kind: bytes, body: bytes) -> None:
    if body:
        raise ProtocolViolation(f"{kind!r} message should have no body")


# Message types a v3 backend may send; anything else is a corrupt stream.
BACKEND_TYPES = frozenset(b"RSKZTDCEINAtn123scdGHWv")

_PARSERS = {
    b"R": parse_auth,
    b"S": parse_parameter_status,
    b"K": parse_backend_key,
    b"Z": parse_ready,
    b"T": parse_row_description,
    b"D": parse_data_row,
    b"C": parse_command_complete,
    b"E": lambda b: parse_error_fields(b"E", b),
    b"N": lambda b: parse_error_fields(b"N", b),
    b"A": parse_notification,
    b"t": parse_parameter_description,
    b"G": lambda b: parse_copy_response(b"G", b),
    b"H": lambda b: parse_copy_response(b"H", b),
    b"W": lambda b: parse_copy_response(b"W", b),
    b"d": lambda b: b,
    b"v": lambda b: b,
}


def parse_message(kind: bytes, body: bytes):
    """The parsed form of one backend message (see the parse_* functions)."""
    p = _PARSERS.get(kind)
    if p is None:
        parse_empty(kind, body)
        return None
    return p(body)


class MessageReader:
    """Frames a backend byte stream into ``(type, body)`` pairs.

    ``feed`` appends bytes; ``read`` returns the next complete message or None;
    ``read_rows`` takes a run of DataRow messages at once (the hot path of big
    results: one tight loop instead of a call chain per row).  The type byte
    is a one-byte ``bytes``; the body excludes the length word.
    """

    __slots__ = ("_buf", "_pos", "_parts", "_parts_len", "_want", "_shape", "_shapes")

    # A partial message longer than this is collected as a list of chunks and
    # joined once complete, so a huge message costs O(n), not O(n^2) copying.
    BIG = 1 << 18

    # The compiled DataRow splitter (_pgwire.c), None where it was not built.
    _split = staticmethod(_split_rows) if _split_rows is not None else None

    def __init__(self) -> None:
        self._buf = b""
        self._pos = 0
        self._parts: list[bytes] | None = None
        self._parts_len = 0
        self._want = 0
        # Recent DataRow shapes by message size: size -> (column count,
        # lengths, Struct).  A row whose size names a known shape (fixed-width
        # columns, equal-length texts) is split by one unpack_from instead of
        # two calls per column, and checked against the shape's lengths.
        # Keyed by size rather than "the last row" because a result often
        # alternates between a few shapes (texts of 1 and 2 digits).
        # _shapes keeps the Structs by lengths.
        self._shape: dict[int, tuple] = {}
        self._shapes: dict[tuple, struct.Struct] = {}

    def feed(self, data: bytes) -> None:
        if self._parts is not None:
            self._parts.append(bytes(data))
            self._parts_len += len(data)
            if self._parts_len < self._want:
                return
            data, self._parts = b"".join(self._parts), None
        buf, pos = self._buf, self._pos
        self._buf = bytes(data) if pos >= len(buf) else buf[pos:] + data
        self._pos = 0

    def read(self) -> tuple[bytes, bytes] | None:
        if self._parts is not None:
            return None
        buf, pos = self._buf, self._pos
        if len(buf) - pos < 5:
            return None
        t = buf[pos]
        if t not in BACKEND_TYPES:
            raise ProtocolViolation(f"unknown backend message type {bytes([t])!r}")
        ln = _i32.unpack_from(buf, pos + 1)[0]
        if ln < 4 or ln > MAX_MESSAGE:
            raise ProtocolViolation(f"bad message length {ln} for type {bytes([t])!r}")
        end = pos + 1 + ln
        if len(buf) < end:
            if ln > self.BIG:
                self._buf, self._pos = buf[pos:], 0
                self._parts, self._parts_len = [], 0
                self._want = end - len(buf)
            return None
        self._pos = end
        return bytes((t,)), buf[pos + 5:end]

    def at_data_row(self) -> bool:
        return self._parts is None and self._pos < len(self._buf) and self._buf[self._pos] == 68

    def read_rows(self, out: list) -> bool:
        """Appends the values of consecutive complete DataRow messages to
        ``out``; False if there was none complete."""
        split = self._split
        if split is None:
            return self._read_rows_py(out)
        start = self._pos
        try:
            self._pos = pos = split(self._buf, start, out)
        except ValueError as e:
            raise ProtocolViolation(str(e)) from None
        return pos != start

    def _read_rows_py(self, out: list) -> bool:
        # The reference implementation, used when the compiled splitter is
        # missing (and by the tests that hold the two to the same answers).
        buf, pos = self._buf, self._pos
        start = pos
        n = len(buf)
        i32, u16 = _i32.unpack_from, _u16.unpack_from
        shape = self._shape
        try:
            while pos + 7 <= n and buf[pos] == 68:  # b"D"
                end = pos + 1 + i32(buf, pos + 1)[0]
                if end > n:
                    break
                if end < pos + 7:
                    raise ProtocolViolation("truncated 'D' message")
                known = shape.get(end - pos) if shape else None
                if known is not None:
                    # t = (ncols, len0, val0, len1, val1, ...): the row has the
                    # shape iff its column count and every length match.
                    t = known[2].unpack_from(buf, pos + 5)
                    if t[0] == known[0] and t[1::2] == known[1]:
                        out.append(list(t[2::2]))
                        pos = end
                        continue
                ncols = u16(buf, pos + 5)[0]
                p = pos + 7
                row: list[bytes | None] = [None] * ncols
                for i in range(ncols):
                    ln = i32(buf, p)[0]
                    p += 4
                    if ln >= 0:
                        row[i] = buf[p:p + ln]
                        p += ln
                    elif ln != -1:
                        raise ProtocolViolation(f"negative column length {ln} in 'D' message")
                # Reads past the message's end (into the next one) are caught
                # here: a well-formed row ends exactly at its length.
                if p > end:
                    raise ProtocolViolation("truncated 'D' message")
                if p < end:
                    raise ProtocolViolation(f"{end - p} trailing bytes in 'D' message")
                out.append(row)
                if None not in row:
                    self._learn(end - pos, row)
                pos = end
        except struct.error:
            raise ProtocolViolation("truncated 'D' message") from None
        finally:
            self._pos = pos
        return pos != start

    def _learn(self, size: int, row: list) -> None:
        lens = tuple(len(v) for v in row)
        st = self._shapes.get(lens)
        if st is None:
            if len(self._shapes) >= 64:  # bounded: ad-hoc shapes must not pile up
                self._shapes.clear()
            st = self._shapes[lens] = struct.Struct("!H" + "".join(f"i{ln}s" for ln in lens))
        if len(self._shape) >= 16 and size not in self._shape:
            self._shape.clear()
        self._shape[size] = (len(row), lens, st)

    def pending(self) -> int:
        if self._parts is not None:
            return len(self._buf) - self._pos + self._parts_len
        return len(self._buf) - self._pos

    def __iter__(self):
        while (m := self.read()) is not None:
            yield m
