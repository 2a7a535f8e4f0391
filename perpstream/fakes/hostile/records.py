"""Hostile MetricPoint records from a seed, and two readings of them.

- :func:`reference`: the generic path, ``metric_point_codec().decode`` (fastavro)
  and :func:`schemas.models.check_metric_point`: the row (in the decoder's
  ``ROW_FIELDS`` order), or the error's type and reason. The row decoder must
  give exactly this (docs/sink.md).
- :func:`strict`: an Avro reader written from the Avro specification for the
  shipped schema (single-object framing, strings as length + UTF-8, the enum
  index within the symbols, no trailing bytes) followed by the contract rules.
  It judges the *reference* too: where the two disagree, the reference accepts
  bytes the schema does not allow.

Records are built with the codec where the schema can express them and by
hand (``schemas.avro_binary`` primitives) where it cannot: lying lengths,
enum indexes past the symbols, varints of 10+ bytes, invalid UTF-8.
"""

from __future__ import annotations

import math
import random
import struct
from collections.abc import Callable
from functools import cache
from typing import Any, Final

from perpstream.consumers.runtime.decoding import ROW_FIELDS
from perpstream.fakes.hostile.frames import T0, valid_symbol
from perpstream.fakes.hostile.outcomes import Case, bits, blob
from perpstream.schemas import rules
from perpstream.schemas.avro_binary import zigzag_varint
from perpstream.schemas.codec import AvroCodec, load_schema, metric_point_codec
from perpstream.schemas.exceptions import DecodeError
from perpstream.schemas.models import Metric, check_metric_point

_SCHEMA = load_schema("metric_point")
HEADER: Final = b"\xc3\x01" + _SCHEMA.fingerprint
METRICS: Final = tuple(
    next(f for f in _SCHEMA.definition["fields"] if f["name"] == "metric")["type"]["symbols"])
KNOWN: Final = frozenset(METRICS) - {Metric.UNKNOWN}
_symbol_problem: Callable[[str], str | None] = rules.symbol_problem
_source_problem: Callable[[str], str | None] = rules.source_problem

Row = tuple[Any, ...]
#: A row, or the (exception type, reason) a reader rejected the bytes with.
Result = Row | tuple[type, str]


@cache
def codec() -> AvroCodec:
    return metric_point_codec()


def valid_record(rng: random.Random, symbol: str | None = None) -> dict[str, Any]:
    """A record the contract accepts, edge values included."""
    value = rng.choice([rng.uniform(0, 1e5), -0.0, 0.0, 5e-324, -5e-324, 1.7976931348623157e308,
                        -1.7976931348623157e308, 64240.38272864, -6.042e-05, float(2**53 + 1)])
    et = rng.choice([T0 + rng.randrange(10**9), rules.MIN_EVENT_TIME_MS, rules.MAX_EVENT_TIME_MS - 1])
    it = rng.choice([et + rng.randrange(100), rules.MIN_INGEST_TIME_MS, rules.MAX_INGEST_TIME_MS, et])
    rec = {"source": rng.choice(["binance_usdm", "binance_usdm", "sim", "a", "x" * 64, "s.1-_"]),
           "symbol": symbol if symbol is not None else valid_symbol(rng),
           "metric": rng.choice(sorted(KNOWN)), "value": value, "event_time": et, "ingest_time": it}
    if rec["metric"] in rules.POSITIVE_METRICS:  # a funding interval is > 0 (docs/contract.md, "Rules")
        rec["value"] = abs(value) or 8.0
    return rec


def body(source: bytes, symbol: bytes, metric: bytes, value: bytes, event_time: bytes,
         ingest_time: bytes) -> bytes:
    """A MetricPoint body from already-encoded fields (any of them may lie)."""
    return source + symbol + metric + value + event_time + ingest_time


def _string(b: bytes) -> bytes:
    return zigzag_varint(len(b)) + b


def _fields(rec: dict[str, Any]) -> list[bytes]:
    return [_string(rec["source"].encode()), _string(rec["symbol"].encode()),
            zigzag_varint(METRICS.index(rec["metric"])), struct.pack("<d", rec["value"]),
            zigzag_varint(rec["event_time"]), zigzag_varint(rec["ingest_time"])]


def overlong_varint(n: int, extra: int) -> bytes:
    """The varint of ``n`` padded with ``extra`` redundant continuation groups (same value)."""
    v = bytearray(zigzag_varint(n))
    v[-1] |= 0x80
    v += b"\x80" * (extra - 1) + b"\x00"
    return bytes(v)


def record_case(rng: random.Random, *, known_bugs: bool = True) -> Case:
    r = rng
    family = r.choices(FAMILIES, _WEIGHTS)[0]
    data, bug = _MAKERS[family](r, known_bugs)
    return Case(data, family, bug)


Maker = Callable[[random.Random, bool], tuple[bytes, str | None]]


def _valid(r: random.Random, _kb: bool) -> tuple[bytes, str | None]:
    return codec().encode(valid_record(r)), None


def _contract(r: random.Random, _kb: bool) -> tuple[bytes, str | None]:
    """Valid Avro that breaks a rule of the contract."""
    rec = valid_record(r)
    field, value = r.choice([
        ("value", math.nan), ("value", math.inf), ("value", -math.inf),
        ("symbol", ""), ("symbol", "btcusdt"), ("symbol", "BTC USDT"), ("symbol", "BTC\x00USDT"),
        ("symbol", "X" * 65), ("symbol", "币" * 22), ("symbol", "BTC\u200b"), ("symbol", "🚀"),
        ("symbol", "\n"), ("source", ""), ("source", "BINANCE"), ("source", "x" * 65),
        ("source", "binance usdm"), ("source", "币"),
        ("metric", Metric.UNKNOWN),
        ("event_time", rules.MIN_EVENT_TIME_MS - 1), ("event_time", rules.MAX_EVENT_TIME_MS),
        ("event_time", 0),
        ("event_time", -(2**63)), ("event_time", 2**63 - 1),
        ("ingest_time", -1), ("ingest_time", rules.MAX_INGEST_TIME_MS + 1), ("ingest_time", 2**63 - 1),
        ("ingest_time", -(2**63)),
    ])
    rec[field] = value
    return codec().encode(rec), None


def _nan_payloads(r: random.Random, _kb: bool) -> tuple[bytes, str | None]:
    """NaNs and infinities with every sign and payload bit pattern the double can carry."""
    f = _fields(valid_record(r))
    f[3] = struct.pack("<Q", r.choice([0x7FF8000000000000, 0xFFF8000000000000, 0x7FF0000000000001,
                                       0x7FFFFFFFFFFFFFFF, 0xFFFFFFFFFFFFFFFF, 0x7FF0000000000000,
                                       0xFFF0000000000000, 0x7FEFFFFFFFFFFFFF, 0x8000000000000000]))
    return HEADER + body(*f), None


def _enum(r: random.Random, kb: bool) -> tuple[bytes, str | None]:
    f = _fields(valid_record(r))
    negative = [-1, -2, -3, -7, -8, -(2**63)] if kb else []
    idx = r.choice([6, 7, 8, 63, 64, 2**31, 2**40, 2**63 - 1, *negative])
    f[2] = zigzag_varint(idx)
    return HEADER + body(*f), ("negative_enum_index" if idx < 0 else None)


def _lying_length(r: random.Random, _kb: bool) -> tuple[bytes, str | None]:
    f = _fields(valid_record(r))
    i = r.choice([0, 1])
    s = f[i][1:] if f[i][0] < 0x80 else f[i][2:]
    payload = s[1:] if s and r.random() < 0.2 else s
    n = r.choice([len(payload) + 1, len(payload) + 100, 2**31, 2**62, 2**63 - 1, -1, -2**62, -len(payload)])
    f[i] = zigzag_varint(n) + payload
    return HEADER + body(*f), None


def _bad_utf8(r: random.Random, _kb: bool) -> tuple[bytes, str | None]:
    f = _fields(valid_record(r))
    bad = r.choice([b"\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"BTC\xe4\xb8", b"\x80USDT", b"\xf4\x90\x80\x80",
                    "币".encode()[:2] + b"USDT"])
    f[r.choice([0, 1])] = _string(bad)
    return HEADER + body(*f), None


def _varints(r: random.Random, _kb: bool) -> tuple[bytes, str | None]:
    """Times as 10- and 11-byte varints, redundant groups (same value), more than 64 bits."""
    rec = valid_record(r)
    f = _fields(rec)
    i = r.choice([4, 5])
    n = rec["event_time" if i == 4 else "ingest_time"]
    f[i] = r.choice([
        overlong_varint(n, r.randint(1, 4)), overlong_varint(n, 10 - len(zigzag_varint(n))),
        overlong_varint(n, 11 - len(zigzag_varint(n))), b"\xff" * 9 + b"\x01", b"\xff" * 10 + b"\x01",
        b"\x80" * 10 + b"\x00", b"\xfe" * 9 + b"\x7f", b"\xff" * 20, zigzag_varint(-(2**63)),
    ])
    return HEADER + body(*f), None


def _truncated(r: random.Random, _kb: bool) -> tuple[bytes, str | None]:
    data = codec().encode(valid_record(r))
    return data[:r.randrange(len(data))], None


def _trailing(r: random.Random, _kb: bool) -> tuple[bytes, str | None]:
    data = codec().encode(valid_record(r))
    n = r.choice([1, 1, 2, 8, 16, 100, 4_096])
    return data + (b"\x00" * n if r.random() < 0.3 else blob(r, n)), None


def _huge(r: random.Random, _kb: bool) -> tuple[bytes, str | None]:
    """Strings of 1 kB .. 1 MB (over the byte bound), unique, or trailing bytes that large."""
    rec = valid_record(r)
    n = r.choice([1_000, 10_000, 100_000, 100_000, 1_000_000])
    k = r.randrange(3)
    if k == 0:
        rec["symbol"] = "X" * n + str(r.getrandbits(64))
        return codec().encode(rec), "symbol_cache_unbounded"
    if k == 1:
        rec["source"] = "x" * n
        return codec().encode(rec), None
    return codec().encode(rec) + blob(r, n), "tail_cache_unbounded"


def _framing(r: random.Random, _kb: bool) -> tuple[bytes, str | None]:
    data = codec().encode(valid_record(r))
    k = r.randrange(7)
    if k == 0:  # neither 0x00 nor C3 01
        first = bytes([r.choice([0x01, 0x7F, 0xC3, 0xC2, 0xFF, 0x7B])])
        second = b"\x02" if first == b"\xc3" else bytes([r.randrange(256)])
        return first + second + data[2:], None
    if k == 1:  # an unknown fingerprint
        return b"\xc3\x01" + blob(r, 8) + data[10:], None
    if k == 2:  # Confluent framing, no registry
        return b"\x00" + struct.pack(">I", r.choice([0, 1, 4242, 2**32 - 1])) + data[10:], None
    if k == 3:  # headers cut short
        return r.choice([b"", b"\x00", b"\x00\x00\x00\x01", b"\xc3", b"\xc3\x01", data[:9]]), None
    if k == 4:  # the header twice
        return HEADER + data, None
    if k == 5:  # JSON where Avro was expected
        return b'{"symbol":"BTCUSDT","value":1.5}', None
    return HEADER, None


def _random(r: random.Random, _kb: bool) -> tuple[bytes, str | None]:
    n = r.choice([0, 1, 5, 20, 40, 80, 200])
    data = blob(r, n)
    return (HEADER + data if r.random() < 0.5 else data), None


def _mutated(r: random.Random, _kb: bool) -> tuple[bytes, str | None]:
    raw = bytearray(codec().encode(valid_record(r)))
    for _ in range(r.randint(1, 3)):
        i = r.randrange(10, len(raw))
        k = r.randrange(4)
        if k == 0:
            raw[i] ^= 1 << r.randrange(8)
        elif k == 1:
            raw[i] = r.randrange(256)
        elif k == 2:
            del raw[i]
        else:
            raw.insert(i, r.randrange(256))
        if len(raw) <= 11:
            break
    return bytes(raw), None


def _cjk(r: random.Random, _kb: bool) -> tuple[bytes, str | None]:
    sym = r.choice(["币安人生USDT", "我踏马来了USDT", "币" * 21, "ÄÖÜUSDT", "E\u0301USDT",
                    "\uff22\uff34\uff23USDT"])
    return codec().encode(valid_record(r, sym)), None


_TABLE: dict[str, tuple[int, Maker]] = {
    "valid": (20, _valid), "cjk": (5, _cjk), "contract": (16, _contract), "nan_bits": (4, _nan_payloads),
    "enum": (5, _enum), "lying_length": (6, _lying_length), "bad_utf8": (4, _bad_utf8),
    "varints": (5, _varints), "truncated": (10, _truncated), "trailing": (5, _trailing), "huge": (1, _huge),
    "framing": (6, _framing), "random": (5, _random), "mutated": (8, _mutated),
}
FAMILIES = list(_TABLE)
_WEIGHTS = [w for w, _ in _TABLE.values()]
_MAKERS = {k: f for k, (_, f) in _TABLE.items()}


# -- the two readings ---------------------------------------------------------------------------

def reference(data: bytes, c: AvroCodec | None = None) -> Result:
    """The generic path: codec decode + contract check."""
    try:
        rec = (c or codec()).decode(data)
        check_metric_point(rec)
    except DecodeError as exc:
        return (type(exc), exc.reason)
    return tuple(rec[f] for f in ROW_FIELDS)


class _End(Exception):
    pass


def _long(data: bytes, pos: int) -> tuple[int, int]:
    n = shift = 0
    while True:
        if pos >= len(data):
            raise _End
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return (n >> 1) ^ -(n & 1), pos


def strict(data: bytes) -> Row | str:
    """The row the Avro spec and the contract allow, or why not (a short text)."""
    if not data.startswith(HEADER):
        return "not single-object framing of the shipped schema"
    try:
        pos = len(HEADER)
        strings = []
        for _ in range(2):
            n, pos = _long(data, pos)
            if n < 0 or pos + n > len(data):
                return "string length outside the record"
            try:
                strings.append(data[pos:pos + n].decode("utf-8"))
            except UnicodeDecodeError:
                return "string is not UTF-8"
            pos += n
        idx, pos = _long(data, pos)
        if not 0 <= idx < len(METRICS):
            return f"enum index {idx} outside the {len(METRICS)} symbols"
        if pos + 8 > len(data):
            raise _End
        (value,) = struct.unpack_from("<d", data, pos)
        pos += 8
        et, pos = _long(data, pos)
        it, pos = _long(data, pos)
    except _End:
        return "ends early"
    if pos != len(data):
        return "trailing bytes"
    source, symbol = strings
    metric = METRICS[idx]
    if not math.isfinite(value):
        return "value not finite"
    if _symbol_problem(symbol) is not None or _source_problem(source) is not None:
        return "bad symbol or source"
    if metric not in KNOWN:
        return "metric unknown to this reader"
    if metric in rules.POSITIVE_METRICS and not value > 0.0:
        return "value not > 0 where the metric wants it"
    if not rules.MIN_EVENT_TIME_MS <= et < rules.MAX_EVENT_TIME_MS:
        return "event_time out of range"
    if not rules.MIN_INGEST_TIME_MS <= it <= rules.MAX_INGEST_TIME_MS:
        return "ingest_time does not fit DateTime64(3)"
    rec = {"source": source, "symbol": symbol, "metric": metric, "value": value, "event_time": et,
           "ingest_time": it}
    return tuple(rec[f] for f in ROW_FIELDS)


def same_row(a: Row, b: Row) -> bool:
    """Equal field by field, types included, floats by their bits."""
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if type(x) is not type(y):
            return False
        if isinstance(x, float):
            if bits(x) != bits(y):
                return False
        elif x != y:
            return False
    return True


def triggers(data: bytes) -> frozenset[str]:
    """Known bugs these bytes would set off in the reference (see known_bugs)."""
    s = strict(data)
    if isinstance(s, str) and s.startswith("enum index -"):
        return frozenset({"negative_enum_index"})
    return frozenset()
