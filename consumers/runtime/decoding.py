"""Decoding on the consumer hot path.

:func:`fast_decoder` returns a ``bytes -> dict`` that takes a shortcut for the
common case (single-object framing written with the reader's own schema:
header compare, then one fastavro call) and falls back to
``AvroCodec.decode`` for everything else (Confluent framing, older writer
schemas, corrupt bytes), so the errors and their ``reason`` are the codec's.
"""

from __future__ import annotations

from collections.abc import Callable
from io import BytesIO
from typing import Any

import fastavro

from schemas.codec import AvroCodec, Framing

_HEADER_LEN = 10

#: Parsing Canonical Form of the MetricPoint schema that the hand-written
#: decoders (sink rows, snapshot records) are written for; they take their
#: fast path only when the codec's reader schema is exactly this one.
METRIC_POINT_PCF = (
    '{"name":"perpstream.MetricPoint","type":"record","fields":['
    '{"name":"source","type":"string"},{"name":"symbol","type":"string"},'
    '{"name":"metric","type":{"name":"perpstream.Metric","type":"enum","symbols":['
    '"mark_price","index_price","estimated_settle_price","funding_rate","next_funding_time",'
    '"open_interest","unknown"]}},'
    '{"name":"value","type":"double"},{"name":"event_time","type":"long"},'
    '{"name":"ingest_time","type":"long"}]}'
)
#: The enum symbols of that schema, by index.
METRIC_SYMBOLS = ("mark_price", "index_price", "estimated_settle_price", "funding_rate",
                  "next_funding_time", "open_interest", "unknown")


def fast_decoder(codec: AvroCodec) -> Callable[[bytes], dict[str, Any]]:
    if codec.framing is not Framing.SINGLE_OBJECT:
        return codec.decode
    header = codec.header()
    # Re-parse with fastavro's "already parsed" marker: without it schemaless_reader
    # parses the schema again on every call (3x the cost of the read itself).
    parsed = fastavro.parse_schema(codec.reader.parsed)
    reader = fastavro.schemaless_reader
    slow = codec.decode

    def decode(data: bytes) -> dict[str, Any]:
        if data[:_HEADER_LEN] != header:
            return slow(data)
        buf = BytesIO(data)
        buf.seek(_HEADER_LEN)
        try:
            rec = reader(buf, parsed, None)
        except Exception:
            return slow(data)  # raises the typed DecodeError
        if buf.tell() != len(data) or not isinstance(rec, dict):
            return slow(data)
        return rec

    return decode
