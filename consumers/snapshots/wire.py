"""Hand-written Avro for the snapshot member's two hot paths.

fastavro costs ~8 µs to read a MetricPoint and ~18 µs to write a
MarketSnapshot on this machine class, more than the whole window
aggregation of a point. Both records are flat and fixed, so a direct
encoder/decoder of the Avro binary encoding is 3-4 times cheaper.

Safety: the fast paths are used only when the schema is exactly the one they
were written for (compared by Parsing Canonical Form), and only for
single-object records written with the reader's own schema. Anything else —
Confluent framing, older writer schemas, a newer reader schema, corrupt bytes —
goes through :class:`~schemas.codec.AvroCodec`, which raises the typed
errors the runtime routes to the DLQ. Tests check byte/record equality with
fastavro.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from typing import Any

from consumers.runtime.decoding import METRIC_POINT_PCF, METRIC_SYMBOLS, fast_decoder
from schemas.codec import AvroCodec, Framing
from schemas.models import KNOWN_METRICS, MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS, check_metric_point

_DOUBLE = struct.Struct("<d")
_HEADER_LEN = 10

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


def validating_decoder(codec: AvroCodec) -> Callable[[bytes], dict[str, Any]]:
    """Decode and check the contract (``check_metric_point``) in one call.

    The checks run on the freshly decoded values; only a record that fails one
    goes through ``check_metric_point`` again, for its precise error (raised as
    :class:`InvalidRecordError`, a ``DecodeError``: the runtime sends it to the DLQ).
    """
    decode = metric_point_decoder(codec)
    known = KNOWN_METRICS
    finite = math.isfinite

    def decode_valid(data: bytes) -> dict[str, Any]:
        rec = decode(data)
        sym = rec["symbol"]
        et = rec["event_time"]
        if (
            rec["metric"] not in known or not finite(rec["value"]) or not sym or len(sym) > 64
            or sym != sym.upper() or not rec["source"] or not MIN_EVENT_TIME_MS <= et < MAX_EVENT_TIME_MS
        ):
            check_metric_point(rec)
        return rec

    return decode_valid


def metric_point_decoder(codec: AvroCodec) -> Callable[[bytes], dict[str, Any]]:
    """``bytes -> dict`` equal to ``codec.decode`` (faster for the common case)."""
    if codec.framing is not Framing.SINGLE_OBJECT or codec.reader.canonical != METRIC_POINT_PCF:
        return fast_decoder(codec)
    header = codec.header()
    slow = codec.decode
    unpack = _DOUBLE.unpack_from
    metrics = METRIC_SYMBOLS

    def decode(data: bytes) -> dict[str, Any]:
        if data[:_HEADER_LEN] != header:
            return slow(data)
        try:
            pos = _HEADER_LEN
            fields: list[Any] = []
            for _ in range(2):  # source, symbol
                b = data[pos]
                n = b & 0x7F
                shift = 7
                pos += 1
                while b & 0x80:
                    b = data[pos]
                    n |= (b & 0x7F) << shift
                    shift += 7
                    pos += 1
                n = (n >> 1) ^ -(n & 1)
                if n < 0 or pos + n > len(data):
                    return slow(data)
                fields.append(data[pos:pos + n].decode())
                pos += n
            b = data[pos]  # enum index: < 64, one byte
            if b & 0x80 or (b >> 1) >= len(metrics) or b & 1:
                return slow(data)
            metric = metrics[b >> 1]
            pos += 1
            value = unpack(data, pos)[0]
            pos += 8
            longs = []
            for _ in range(2):  # event_time, ingest_time
                b = data[pos]
                n = b & 0x7F
                shift = 7
                pos += 1
                while b & 0x80:
                    b = data[pos]
                    n |= (b & 0x7F) << shift
                    shift += 7
                    pos += 1
                if shift >= 70:  # 10-byte varints: let fastavro decide how 64 bits wrap
                    return slow(data)
                longs.append((n >> 1) ^ -(n & 1))
        except (IndexError, UnicodeDecodeError, struct.error):
            return slow(data)
        if pos != len(data):
            return slow(data)
        return {"source": fields[0], "symbol": fields[1], "metric": metric, "value": value,
                "event_time": longs[0], "ingest_time": longs[1]}

    return decode


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
