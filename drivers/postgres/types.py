"""Glue between the driver and psycopg's adapters.

Values are converted only by psycopg: its ``Transformer``, dumpers and loaders
(the C ones when psycopg-binary is installed).  Those expect a libpq
connection to ask for the server's TimeZone, DateStyle, IntervalStyle and
encoding; ``ServerParams`` is a ``psycopg.pq.PGconn`` subclass without a libpq
connection behind it that answers ``parameter_status`` from the ParameterStatus
messages this driver received.  Nothing else of PGconn works on it, and
nothing else is called by the adapters this driver uses (binary bytea; no
client-side literal quoting).

``AdaptContext`` is what ``Transformer(context)`` and ``register_*``
functions take: an ``adapters`` map (a per-connection copy of psycopg's
global one, so custom types register the psycopg way) and a ``connection``
with ``pgconn``.  ``fetch_type_info`` runs psycopg's own TypeInfo catalog
queries over a driver connection, for ``register_enum``/``register_composite``.
"""
from __future__ import annotations

from typing import Any, Callable

from psycopg import postgres, pq
from psycopg.adapt import AdaptersMap, PyFormat, Transformer

from .messages import Field

try:  # compiled at install (_pgwire.c); the list comprehension is the fallback
    from ._pgwire import make_records as _make_records
except ImportError:  # pragma: no cover - only on a build without a C compiler
    _make_records = None

BINARY = pq.Format.BINARY
TEXT = pq.Format.TEXT
# Settings whose change must rebuild loaders: they cache tz/styles on creation.
ADAPTER_SETTINGS = frozenset({"TimeZone", "DateStyle", "IntervalStyle", "client_encoding"})
# Result types read as text although psycopg has binary loaders for them:
# float4 in binary is the exact float32 widened (0.1 -> 0.10000000149011612),
# in text the shortest decimal that round-trips (0.1), which is what psycopg
# returns by default and what users expect.  Anonymous records in binary
# carry fields of types psycopg may not load (bytes come back); in text they
# are strings, psycopg's default again.
TEXT_RESULTS = frozenset({700, 1021, 2249, 2287})  # float4, float4[], record, record[]


class ServerParams(pq.PGconn):
    """A PGconn stand-in exposing only the server's ParameterStatus values."""

    def __init__(self, params: dict[str, str]):
        # The Python pq implementation's finaliser looks at _pgconn_ptr; the C
        # one keeps a NULL pointer and never touches libpq for this object.
        self._pgconn_ptr = None
        self._params = params

    def parameter_status(self, name: bytes) -> bytes | None:
        v = self._params.get(name.decode("ascii", "replace"))
        return v.encode() if v is not None else None

    @property
    def _encoding(self) -> str:  # psycopg's conn_encoding() reads this
        return "utf-8"

    def __repr__(self) -> str:
        return f"<ServerParams {len(self._params)} parameters>"

    def __del__(self) -> None:
        pass  # nothing to free: never call PQfinish on it


class AdaptContext:
    """The psycopg ``AdaptContext`` of one driver connection."""

    def __init__(self, params: dict[str, str], adapters: AdaptersMap | None = None):
        self.adapters = AdaptersMap(adapters or postgres.adapters)
        self.pgconn = ServerParams(params)

    @property
    def connection(self) -> "AdaptContext":
        return self


class RowCodec:
    """Result decoding for one row shape: the per-column wire formats to ask
    for in Bind, and the psycopg load functions for them."""

    __slots__ = ("formats", "names", "_loads", "_tx", "record")

    def __init__(self, ctx: AdaptContext, fields: tuple[Field, ...], binary: bool = True):
        adapters = ctx.adapters
        tx = Transformer(ctx)
        fmts = []
        for f in fields:
            # Binary wherever psycopg has a binary loader for the type; text
            # otherwise (the server can always produce text).
            use_bin = (binary and f.type_oid not in TEXT_RESULTS
                       and adapters.get_loader(f.type_oid, BINARY) is not None)
            fmts.append(BINARY if use_bin else TEXT)
        self.formats = tuple(int(f) for f in fmts)
        self.names = tuple(f.name for f in fields)
        oids = [f.type_oid for f in fields]
        if fmts and all(f == fmts[0] for f in fmts):
            tx.set_loader_types(oids, fmts[0])
            self._tx = tx
            self._loads = None
        else:
            self._tx = None
            self._loads = [tx.get_loader(o, f).load for o, f in zip(oids, fmts)]
        self.record = record_class(self.names)

    def load(self, raw: list[bytes | None]) -> tuple:
        if self._tx is not None:
            return self.record(self._tx.load_sequence(raw))
        loads = self._loads
        return self.record(
            loads[i](v) if v is not None else None for i, v in enumerate(raw))

    def load_all(self, rows: list[list[bytes | None]]) -> list:
        if self._tx is not None:
            if _make_records is not None:
                return _make_records(rows, self._tx.load_sequence, self.record)
            ls, rec = self._tx.load_sequence, self.record
            return [rec(ls(r)) for r in rows]
        return [self.load(r) for r in rows]


class Dumper:
    """Parameter encoding through one psycopg Transformer per connection
    (it caches a dumper per Python type)."""

    __slots__ = ("_tx",)

    def __init__(self, ctx: AdaptContext):
        self._tx = Transformer(ctx)

    def dump(self, args) -> tuple[list, tuple[int, ...], tuple[int, ...]]:
        """(encoded values, type oids, formats) for a parameter sequence."""
        n = len(args)
        if not n:
            return [], (), ()
        tx = self._tx
        values = tx.dump_sequence(args, [PyFormat.AUTO] * n)
        return values, tuple(tx.types), tuple(int(f) for f in tx.formats)


_record_classes: dict[tuple[str, ...], type] = {}


def record_class(names: tuple[str, ...]) -> Callable[[Any], tuple]:
    """A tuple subclass for rows with these column names: it compares and
    unpacks as a tuple, and also answers ``row["name"]``, ``keys()``,
    ``get()`` and ``_asdict()``."""
    cls = _record_classes.get(names)
    if cls is not None:
        return cls
    index = {}
    for i, n in enumerate(names):
        index.setdefault(n, i)  # duplicate names: the first wins, as in asyncpg

    class Record(tuple):
        __slots__ = ()
        _names = names
        _index = index

        def __getitem__(self, k):
            if isinstance(k, str):
                try:
                    k = self._index[k]
                except KeyError:
                    raise KeyError(f"no column {k!r} in {self._names}") from None
            return tuple.__getitem__(self, k)

        def keys(self):
            return self._names

        def get(self, k, default=None):
            i = self._index.get(k)
            return default if i is None else tuple.__getitem__(self, i)

        def _asdict(self) -> dict:
            return dict(zip(self._names, self))

        def __repr__(self) -> str:
            inner = " ".join(f"{n}={v!r}" for n, v in zip(self._names, self))
            return f"<Record {inner}>"

    if len(_record_classes) < 4096:  # bounded: ad-hoc shapes must not leak memory
        _record_classes[names] = Record
    return Record


class _InfoContext:
    """What psycopg's TypeInfo queries ask of a connection: ``info.vendor``
    and ``info.server_version`` (as libpq's PQserverVersion would give it)."""

    vendor = "PostgreSQL"

    def __init__(self, conn):
        self.info = self
        v = conn.get_parameter("server_version") or "0"
        nums = [int(x) for x in v.split()[0].split(".")[:2] if x.isdigit()] + [0]
        # 15.4 -> 150004; before version 10 the second number was major: 9.6 -> 90600
        self.server_version = nums[0] * 10000 + nums[1] * (1 if nums[0] >= 10 else 100)


async def fetch_type_info(conn, name: str, cls=None):
    """psycopg's ``TypeInfo`` subclass ``cls`` for ``name``, fetched with
    psycopg's own catalog query (its ``%(name)s`` placeholder as ``$1``)."""
    from psycopg.types import TypeInfo
    cls = cls or TypeInfo
    query = cls._get_info_query(_InfoContext(conn)).as_string(None)
    rows = await conn.fetch(query.replace("%(name)s", "$1"), name)
    return cls._from_records(name, [r._asdict() for r in rows])
