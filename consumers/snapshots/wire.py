"""Hand-written Avro for the snapshot member's output hot path.

fastavro costs ~18 µs to write a MarketSnapshot on this machine class, more
than the whole window aggregation of a point. The record is flat and fixed,
so a direct encoder of the Avro binary encoding is several times cheaper.
(MetricPoints are read by the runtime's shared row decoder,
:func:`consumers.runtime.decoding.row_decoder`.)

Safety: the fast path is used only when the schema has the field layout it
was written for (:data:`~schemas.avro_binary.MARKET_SNAPSHOT_LAYOUT`); anything
else goes through :class:`~schemas.codec.AvroCodec`. Property tests check byte
equality with fastavro over the whole value space.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from perpstream.schemas.avro_binary import (
    MARKET_SNAPSHOT_DOUBLES,
    MARKET_SNAPSHOT_LAYOUT,
    MARKET_SNAPSHOT_TAIL_DOUBLES,
    field_layout,
    zigzag_varint,
)
from perpstream.schemas.codec import AvroCodec

_DOUBLE = struct.Struct("<d")


def snapshot_encoder(codec: AvroCodec) -> Callable[[dict[str, Any]], bytes]:
    """``dict -> bytes`` equal to ``codec.encode`` for MarketSnapshot records."""
    if field_layout(codec.reader.definition) != MARKET_SNAPSHOT_LAYOUT:
        return codec.encode
    header = codec.header()
    pack = _DOUBLE.pack
    strings: dict[str, bytes] = {}
    small: dict[int, bytes] = {}

    def s(v: str) -> bytes:
        enc = strings.get(v)
        if enc is None:
            raw = v.encode()
            enc = zigzag_varint(len(raw)) + raw
            if len(strings) < 100_000:
                strings[v] = enc
        return enc

    def i(v: int) -> bytes:
        enc = small.get(v)
        if enc is None:
            enc = zigzag_varint(v)
            if -1024 <= v <= 100_000:
                small[v] = enc
        return enc

    def encode(r: dict[str, Any]) -> bytes:
        parts = [header, s(r["source"]), s(r["symbol"]), i(r["window_s"]), zigzag_varint(r["snapshot_time"])]
        for name in MARKET_SNAPSHOT_DOUBLES:
            v = r[name]
            parts.append(b"\x00" if v is None else b"\x02" + pack(v))
        parts.append(i(r["n_mark"]))
        parts.append(i(r["n_oi"]))
        for name in ("mark_age_ms", "oi_age_ms"):
            v = r[name]
            parts.append(b"\x00" if v is None else b"\x02" + i(v))
        parts.append(b"\x01" if r["stale"] else b"\x00")
        for name in MARKET_SNAPSHOT_TAIL_DOUBLES:
            v = r[name]
            parts.append(b"\x00" if v is None else b"\x02" + pack(v))
        return b"".join(parts)

    return encode
