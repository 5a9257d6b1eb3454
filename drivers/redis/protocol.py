"""Sans-I/O RESP: encode commands to bytes, turn received bytes into replies.

Nothing here touches a socket, a loop or a clock; the connection module feeds
it.  Encoding uses ``hiredis.pack_command`` (C), parsing ``hiredis.Reader`` (C,
RESP2 and RESP3).

Replies come out as Python values: bytes (or str with ``decode=True``), int,
float (RESP3 doubles), bool (RESP3 booleans), None (nil/null), list (arrays and
RESP3 sets), dict (RESP3 maps), :class:`~.errors.ReplyError` *instances* for
error replies (returned, not raised: inside a pipeline or ``EXEC`` result they
are values), and :data:`Push` (a list subclass) for RESP3 out-of-band pushes.

What it does not do: hiredis-py 3.x's reader has no RESP3 blob-error (``!``)
type — it reports a protocol error — and returns a RESP3 attribute (``|``) as a
reply of its own.  Redis 7 sends neither in normal operation (attributes only
under ``DEBUG PROTOCOL attrib``), so they are not worked around here; the
blob-error case surfaces as :class:`~.errors.ProtocolError`, which discards the
connection rather than misparse.  hiredis also does not check the CRLF after a
bulk string's payload (it skips two bytes), so that one kind of corruption is
not detected; a wrong length or type byte is.
"""
from __future__ import annotations

from typing import Any, Iterable, Sequence

import hiredis

from .errors import InterfaceError, ProtocolError, ReplyError

__all__ = ["Parser", "Push", "encode_command", "encode_commands", "pubsub_kind", "PUBSUB_KINDS"]

#: RESP3 out-of-band data (pub/sub messages, client-side-caching invalidations).
Push = hiredis.PushNotification

#: First elements of pub/sub frames; in RESP2 these arrive as plain arrays.
PUBSUB_KINDS = frozenset({
    b"message", b"pmessage", b"smessage", b"subscribe", b"unsubscribe",
    b"psubscribe", b"punsubscribe", b"ssubscribe", b"sunsubscribe",
})
_PUBSUB_KINDS_STR = frozenset(k.decode() for k in PUBSUB_KINDS)

# gets() returns this when it needs more bytes: RESP3 ``#f`` parses to False, so
# hiredis' default "no reply yet" value (False) would be ambiguous.
_NEED_MORE = object()

_ARG_TYPES = (bytes, str, int, float, memoryview)


def _bad_argument(args: Sequence[Any]) -> InterfaceError:
    for i, a in enumerate(args):
        if isinstance(a, bool) or not isinstance(a, _ARG_TYPES):
            hint = " (use bytes(...))" if isinstance(a, bytearray) else ""
            return InterfaceError(
                f"argument {i} of {args[0]!r}... is a {type(a).__name__} ({a!r:.40}); Redis "
                f"arguments must be bytes, str, int or float{hint}")
    return InterfaceError(f"cannot encode command {args!r:.80}")


def encode_command(args: Sequence[Any]) -> bytes:
    """One command as a RESP array of bulk strings.  bool and None are refused
    (Redis has no such types; silently sending b"True" hides bugs)."""
    if not args:
        raise InterfaceError("empty command")
    if not isinstance(args, tuple):
        args = tuple(args)
    try:
        # pack_command itself refuses bool/None/containers with a TypeError.
        return hiredis.pack_command(args)
    except TypeError:
        raise _bad_argument(args) from None


def encode_commands(commands: Iterable[Sequence[Any]]) -> bytes:
    """Several commands back to back (a pipeline's single write)."""
    return b"".join([encode_command(c) for c in commands])


def pubsub_kind(reply: Any) -> bytes | str | None:
    """The kind of a pub/sub frame (``b"message"`` ...), or None if ``reply`` is not one."""
    if isinstance(reply, list) and reply:
        head = reply[0]
        if (head in PUBSUB_KINDS if isinstance(head, bytes) else head in _PUBSUB_KINDS_STR):
            return head
    return None


class Parser:
    """Incremental reply parser.  ``feed(data)`` returns the replies completed by
    ``data`` (possibly none).  If the stream is malformed, the last element is a
    :class:`ProtocolError` instance and every later ``feed`` raises it: a stream
    is never resynchronised, the connection has to go."""

    __slots__ = ("_reader", "error")

    #: what ``reader.gets()`` returns while no reply is complete
    NEED_MORE = _NEED_MORE

    def __init__(self, decode: bool = False) -> None:
        kwargs: dict[str, Any] = dict(protocolError=ProtocolError, replyError=ReplyError,
                                      notEnoughData=_NEED_MORE)
        if decode:
            # surrogateescape: a non-UTF-8 value still round-trips instead of
            # breaking the stream mid-reply.
            kwargs.update(encoding="utf-8", errors="surrogateescape")
        self._reader = hiredis.Reader(**kwargs)
        self.error: ProtocolError | None = None

    @property
    def reader(self) -> Any:
        """The hiredis reader, for a transport that feeds it and takes the
        replies itself (``runtime.contract.ReplyMatchingTransport``); its
        state is this parser's, so ``feed`` carries on where it left off."""
        return self._reader

    def feed(self, data: bytes) -> list[Any]:
        if self.error is not None:
            raise self.error
        self._reader.feed(data)
        out: list[Any] = []
        gets = self._reader.gets
        try:
            while True:
                reply = gets()
                if reply is _NEED_MORE:
                    return out
                out.append(reply)
        except (ProtocolError, TypeError, ValueError) as exc:
            out.append(self.failed(exc))
        return out

    def failed(self, exc: BaseException) -> ProtocolError:
        """The reader raised ``exc``: the stream is broken from here on (the
        ProtocolError to report is returned and every later ``feed`` raises
        it).  Anything but a parse error is raised again."""
        if isinstance(exc, ProtocolError):
            self.error = exc
        elif isinstance(exc, (TypeError, ValueError)):
            # e.g. a RESP3 map with an aggregate (unhashable) key, a bad double
            self.error = ProtocolError(f"unparseable reply: {exc}")
        else:
            raise exc
        return self.error
