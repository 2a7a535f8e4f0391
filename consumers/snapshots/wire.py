"""Hand-written Avro for the snapshot member's output hot path.

fastavro costs ~18 µs to write a MarketSnapshot on this machine class, more
than the whole window aggregation of a point. The record is flat and fixed,
so a direct encoder of the Avro binary encoding is several times cheaper.
(MetricPoints are read by the runtime's shared row decoder,
:func:`consumers.runtime.decoding.row_decoder`.)

Safety: the fast path is used only when the schema is exactly the one it was
written for (compared by Parsing Canonical Form); anything else goes through
:class:`~schemas.codec.AvroCodec`. Tests check byte equality with fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from schemas.codec import AvroCodec

_DOUBLE = struct.Struct("<d")

_SNAPSHOT_DOUBLES = ("mark_last", "index_last", "funding_last", "oi_last", "mark_return",
                     "mark_volatility", "basis_last", "basis_mean", "funding_mean", "oi_change_pct")
_SNAPSHOT_FIELDS = (
    ("source", "string"), ("symbol", "string"), ("window_s", "int"), ("snapshot_time", "long"),
    *[(n, "nullable_double") for n in _SNAPSHOT_DOUBLES],
    ("n_mark", "int"), ("n_oi", "int"),
    ("mark_age_ms", "nullable_long"), ("oi_age_ms", "nullable_long"), ("stale", "boolean"),
)


def _snapshot_pcf() -> str:
    types = {"string": '"string"', "int": '"int"', "long": '"long"', "boolean": '"boolean"',
             "nullable_double": '["null","double"]', "nullable_long": '["null","long"]'}
    fields = ",".join(f'{{"name":"{n}","type":{types[t]}}}' for n, t in _SNAPSHOT_FIELDS)
    return f'{{"name":"perpstream.MarketSnapshot","type":"record","fields":[{fields}]}}'


def _zigzag(n: int) -> bytes:
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


def snapshot_encoder(codec: AvroCodec) -> Callable[[dict[str, Any]], bytes]:
    """``dict -> bytes`` equal to ``codec.encode`` for MarketSnapshot records."""
    if codec.reader.canonical != _snapshot_pcf():
        return codec.encode
    header = codec.header()
    pack = _DOUBLE.pack
    strings: dict[str, bytes] = {}
    small: dict[int, bytes] = {}

    def s(v: str) -> bytes:
        enc = strings.get(v)
        if enc is None:
            raw = v.encode()
            enc = _zigzag(len(raw)) + raw
            if len(strings) < 100_000:
                strings[v] = enc
        return enc

    def i(v: int) -> bytes:
        enc = small.get(v)
        if enc is None:
            enc = _zigzag(v)
            if -1024 <= v <= 100_000:
                small[v] = enc
        return enc

    def encode(r: dict[str, Any]) -> bytes:
        parts = [header, s(r["source"]), s(r["symbol"]), i(r["window_s"]), _zigzag(r["snapshot_time"])]
        for name in _SNAPSHOT_DOUBLES:
            v = r[name]
            parts.append(b"\x00" if v is None else b"\x02" + pack(v))
        parts.append(i(r["n_mark"]))
        parts.append(i(r["n_oi"]))
        for name in ("mark_age_ms", "oi_age_ms"):
            v = r[name]
            parts.append(b"\x00" if v is None else b"\x02" + i(v))
        parts.append(b"\x01" if r["stale"] else b"\x00")
        return b"".join(parts)

    return encode
