"""Avro binary encoding primitives for the hand-written hot paths.

The producer's MetricPoint encoder, the consumers' row decoder and the
snapshot encoder write or read Avro bodies without fastavro (Python time per
record is the pipeline's limit; docs/contract.md, "Fast paths"). They share
these primitives, and property tests hold each of them byte for byte to
fastavro over the whole value space, edge values included.

An Avro ``long`` is zig-zag encoded (so small negative numbers stay short),
then written as a base-128 varint, least significant group first; at most 10
bytes for 64 bits.
"""

from __future__ import annotations

from typing import Any, Final

LONG_MIN: Final = -(1 << 63)
LONG_MAX: Final = (1 << 63) - 1
#: The longest varint of a 64-bit long.
MAX_VARINT_BYTES: Final = 10


def zigzag_varint(n: int) -> bytes:
    """The Avro ``long``/``int`` encoding of ``n`` (``LONG_MIN <= n <= LONG_MAX``)."""
    if not LONG_MIN <= n <= LONG_MAX:
        raise OverflowError(f"{n} does not fit an Avro long")
    z = (n << 1) ^ (n >> 63)  # non-negative for every n in range
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def read_long(data: bytes, pos: int) -> tuple[int, int]:
    """Decode the Avro ``long`` at ``data[pos:]``: ``(value, position after it)``.

    Raises :class:`IndexError` when the bytes end inside the varint and
    :class:`ValueError` for a varint longer than 64 bits; a caller on a fast
    path treats both as "let the reference decoder decide".
    """
    b = data[pos]
    n = b & 0x7F
    shift = 7
    pos += 1
    while b & 0x80:
        if shift >= 7 * MAX_VARINT_BYTES:
            raise ValueError("varint longer than 10 bytes")
        b = data[pos]
        n |= (b & 0x7F) << shift
        shift += 7
        pos += 1
    if n >> 64:
        raise ValueError("varint wider than 64 bits")
    return (n >> 1) ^ -(n & 1), pos


def avro_string(s: str) -> bytes:
    """An Avro ``string``: its UTF-8 length as a ``long``, then the bytes."""
    b = s.encode("utf-8")
    return zigzag_varint(len(b)) + b


def field_layout(definition: dict[str, Any]) -> tuple[tuple[str, str], ...]:
    """``(name, type)`` of each field of a record schema, logical types ignored.

    Named complex types give their kind (``enum``), unions their branches
    (``union:null,double``). The
    hand-written paths compare this to the layout they were written for and
    fall back to the reference codec on any difference.
    """
    out = []
    for f in definition.get("fields", []):
        t = f["type"]
        if isinstance(t, str):
            kind = t
        elif isinstance(t, dict):
            kind = str(t.get("type"))
        else:
            # unions are told apart by their branches: ["null","double"] -> "union:null,double"
            kind = "union:" + ",".join(x if isinstance(x, str) else str(x.get("type")) for x in t)
        out.append((str(f["name"]), kind))
    return tuple(out)


#: The MarketSnapshot layout the snapshot encoder handles ("nullable_*" = ["null", T]).
MARKET_SNAPSHOT_DOUBLES: Final = (
    "mark_last", "index_last", "funding_last", "oi_last", "mark_return", "mark_volatility",
    "basis_last", "basis_mean", "funding_mean", "oi_change_pct",
)
#: The nullable doubles MarketSnapshot v2 appended after ``stale``.
MARKET_SNAPSHOT_TAIL_DOUBLES: Final = ("funding_interval_h", "funding_annualized")
MARKET_SNAPSHOT_LAYOUT: Final = (
    ("source", "string"), ("symbol", "string"), ("window_s", "int"), ("snapshot_time", "long"),
    *[(n, "union:null,double") for n in MARKET_SNAPSHOT_DOUBLES],
    ("n_mark", "int"), ("n_oi", "int"),
    ("mark_age_ms", "union:null,long"), ("oi_age_ms", "union:null,long"), ("stale", "boolean"),
    *[(n, "union:null,double") for n in MARKET_SNAPSHOT_TAIL_DOUBLES],
)

#: The MetricPoint layout the producer's encoder and the consumers' row decoder handle.
METRIC_POINT_LAYOUT: Final = (
    ("source", "string"), ("symbol", "string"), ("metric", "enum"),
    ("value", "double"), ("event_time", "long"), ("ingest_time", "long"),
)


def enum_symbols(definition: dict[str, Any], field: str) -> tuple[str, ...]:
    """The symbols, by index, of the enum-typed ``field`` of a record schema."""
    f = next(f for f in definition["fields"] if f["name"] == field)
    return tuple(f["type"]["symbols"])
