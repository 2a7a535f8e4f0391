"""Hostile records on the metrics topic at the consumers' row decoder (boundary 3).

``row_decoder(metric_point_codec())`` turns bytes into a row or raises
``DecodeError`` (whose ``reason`` labels the DLQ record). For every generated
record (perpstream/fakes/hostile/records.py) it must give exactly what the reference
gives, ``metric_point_codec().decode`` plus ``check_metric_point`` (the row,
types and float bits included, or the same error class and reason), and what
a reader written from the Avro specification and the contract allows; and a
valid record decoded after every input must still come out exactly. The
product bugs this suite found first are fixed and pinned by the regression
tests at the end.
"""

from __future__ import annotations

import gc
import math
import random
import struct
import tracemalloc
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpstream.consumers.runtime.decoding import ROW_FIELDS, row_decoder
from perpstream.fakes.hostile.frames import T0
from perpstream.fakes.hostile.harness import DecoderHarness, Tally
from perpstream.fakes.hostile.outcomes import Case, Verdict
from perpstream.fakes.hostile.records import FAMILIES, HEADER, overlong_varint, record_case, reference, strict
from perpstream.schemas import rules
from perpstream.schemas.avro_binary import zigzag_varint
from perpstream.schemas.codec import metric_point_codec
from perpstream.schemas.exceptions import (
    BadMagicError,
    DecodeError,
    InvalidRecordError,
    TruncatedRecordError,
    UnknownSchemaError,
)
from perpstream.schemas.models import Metric

CODEC = metric_point_codec()
DECODER = DecoderHarness()
REC: dict[str, Any] = {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": Metric.INDEX_PRICE,
                       "value": 64261.21012245, "event_time": T0, "ingest_time": T0 + 3}


def ci(examples: int) -> Any:
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))


def check(v: Verdict, case: Case) -> None:
    assert v.failure is None or v.explained, f"{v.failure}\n  input ({case.family}): {case.short(600)}"


def run(data: bytes) -> Verdict:
    return DECODER.run(Case(data, "pinned"))


def string(b: bytes) -> bytes:
    return zigzag_varint(len(b)) + b


def body(source: bytes = b"binance_usdm", symbol: bytes = b"BTCUSDT", metric: int | bytes = 1,
         value: float = 1.5, event_time: int | bytes = T0, ingest_time: int | bytes = T0 + 3) -> bytes:
    """A single-object MetricPoint built field by field; bytes arguments are written as they are."""
    m = zigzag_varint(metric) if isinstance(metric, int) else metric
    et = zigzag_varint(event_time) if isinstance(event_time, int) else event_time
    it = zigzag_varint(ingest_time) if isinstance(ingest_time, int) else ingest_time
    return HEADER + string(source) + string(symbol) + m + struct.pack("<d", value) + et + it


# -- generated records --------------------------------------------------------------------------

@ci(600)
@given(st.randoms(use_true_random=False))
def test_generated_records_decode_exactly_like_the_reference(rng: random.Random) -> None:
    case = record_case(rng)
    check(DECODER.run(case), case)


def test_seeded_records_cover_every_family_and_reason() -> None:
    tally = Tally("records")
    for i in range(2000):
        case = record_case(random.Random(f"ci:{i}"))
        tally.add(case, DECODER.run(case), f"ci:{i}")
    assert tally.new == 0, tally.report()
    assert set(tally.families) == set(FAMILIES), tally.families
    assert {"truncated", "unknown_schema", "bad_magic", "undecodable", "invalid"} <= set(tally.reasons)
    assert {"accepted", "rejected"} <= set(tally.outcomes)


EDGE_RECORDS = [
    REC,
    dict(REC, symbol="币安人生USDT", metric=Metric.FUNDING_RATE, value=-6.042e-05),
    dict(REC, symbol="A" * 64, source="x" * 64, value=-0.0),
    dict(REC, symbol="币" * 21, metric=Metric.OPEN_INTEREST, value=5e-324),
    dict(REC, metric=Metric.NEXT_FUNDING_TIME, event_time=rules.MIN_EVENT_TIME_MS,
         ingest_time=rules.MIN_INGEST_TIME_MS),
    dict(REC, event_time=rules.MAX_EVENT_TIME_MS - 1, ingest_time=rules.MAX_INGEST_TIME_MS,
         value=1.7976931348623157e308),
]


@pytest.mark.parametrize("rec", EDGE_RECORDS, ids=lambda r: f"{r['symbol'][:8]}-{r['metric']}")
def test_every_truncation_and_extension_of_a_valid_record_is_rejected(rec: dict[str, Any]) -> None:
    data = CODEC.encode(rec)
    whole = run(data)
    assert whole.failure is None and whole.outcome == "accepted", whole.failure
    for n in range(len(data)):
        v = run(data[:n])
        assert v.failure is None and v.outcome == "rejected", (n, v.failure)
    for b in range(0, 256, 7):
        v = run(data + bytes([b]))
        assert v.failure is None and dict(v.reasons) == {"truncated": 1}, (b, v.failure)


@pytest.mark.parametrize("rec", EDGE_RECORDS[:3], ids=lambda r: f"{r['symbol'][:8]}-{r['metric']}")
def test_every_single_bit_flip_of_a_valid_record(rec: dict[str, Any]) -> None:
    data = bytearray(CODEC.encode(rec))
    for i in range(len(data)):
        for bit in range(8):
            flipped = bytearray(data)
            flipped[i] ^= 1 << bit
            case = Case(bytes(flipped), "bit_flip")
            check(DECODER.run(case), case)


# -- pinned records -----------------------------------------------------------------------------

VALID = CODEC.encode(REC)


@pytest.mark.parametrize(("data", "error"), [
    (b"", TruncatedRecordError), (b"\x00", TruncatedRecordError), (b"\xc3", BadMagicError),
    (b"\xc3\x01\x00", TruncatedRecordError), (VALID[:10], TruncatedRecordError),
    (b"\x00" + struct.pack(">I", 4242) + VALID[10:], UnknownSchemaError),  # Confluent framing, no registry
    (b"\xc3\x01" + b"\x01" * 8 + VALID[10:], UnknownSchemaError), (b"\x7b" + VALID[1:], BadMagicError),
    (b'{"symbol":"BTCUSDT"}', BadMagicError), (VALID + b"\x00", TruncatedRecordError),
    (HEADER + zigzag_varint(2**62) + b"binance_usdm", TruncatedRecordError),  # a length that lies
    (HEADER + zigzag_varint(-5) + VALID[10:], TruncatedRecordError),
    (body(metric=9), TruncatedRecordError), (body(metric=2**40), TruncatedRecordError),  # 9: past v3's enum
    (body(event_time=b"\xff" * 20), TruncatedRecordError),
    (body(symbol=b"\xff\xfe"), DecodeError), (body(symbol=b"\xed\xa0\x80"), DecodeError),
    (body(source=b"binance\xc0\xafusdm"), DecodeError),
    (CODEC.encode(dict(REC, value=math.nan)), InvalidRecordError),
    (CODEC.encode(dict(REC, value=-math.inf)), InvalidRecordError),
    (body(value=struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000001))[0]), InvalidRecordError),
    (CODEC.encode(dict(REC, symbol="btcusdt")), InvalidRecordError),
    (CODEC.encode(dict(REC, symbol="")), InvalidRecordError),
    (CODEC.encode(dict(REC, symbol="BTC\x00USDT")), InvalidRecordError),
    (CODEC.encode(dict(REC, symbol="X" * 65)), InvalidRecordError),
    (CODEC.encode(dict(REC, symbol="X" * 1_000_000)), InvalidRecordError),
    (CODEC.encode(dict(REC, source="Binance")), InvalidRecordError),
    (CODEC.encode(dict(REC, metric=Metric.UNKNOWN)), InvalidRecordError),
    (CODEC.encode(dict(REC, metric=Metric.FUNDING_INTERVAL_HOURS, value=0.0)), InvalidRecordError),
    (CODEC.encode(dict(REC, metric=Metric.FUNDING_INTERVAL_HOURS, value=-8.0)), InvalidRecordError),
    (CODEC.encode(dict(REC, event_time=rules.MAX_EVENT_TIME_MS)), InvalidRecordError),
    (CODEC.encode(dict(REC, event_time=rules.MIN_EVENT_TIME_MS - 1)), InvalidRecordError),
    (CODEC.encode(dict(REC, ingest_time=rules.MAX_INGEST_TIME_MS + 1)), InvalidRecordError),
    (CODEC.encode(dict(REC, ingest_time=-1)), InvalidRecordError),
    (body(ingest_time=b"\xff" * 9 + b"\x01"), InvalidRecordError),  # a 10-byte varint: the 64-bit minimum
])
def test_pinned_rejections(data: bytes, error: type[DecodeError]) -> None:
    v = run(data)
    assert v.failure is None, v.failure
    with pytest.raises(DecodeError) as exc:
        DECODER.decode(data)
    assert type(exc.value) is error


@pytest.mark.parametrize("data", [
    VALID, CODEC.encode(dict(REC, symbol="我踏马来了USDT")),
    CODEC.encode(dict(REC, symbol="\uff22\uff34\uff23USDT")), CODEC.encode(dict(REC, symbol="E\u0301USDT")),
    body(value=-0.0),
    body(event_time=overlong_varint(T0, 4)), body(ingest_time=overlong_varint(T0, 4)),  # same values, longer
])
def test_pinned_acceptances(data: bytes) -> None:
    v = run(data)
    assert v.failure is None and v.outcome == "accepted", v.failure


def test_a_cjk_record_decodes_to_its_exact_row() -> None:
    rec = dict(REC, symbol="币安人生USDT", value=-0.0)
    row = dict(zip(ROW_FIELDS, row_decoder(CODEC)(CODEC.encode(rec)), strict=True))
    assert row == rec
    assert math.copysign(1.0, row["value"]) == -1.0


# -- regressions: the bugs this suite found first, each fixed and kept fixed here ----------------

@pytest.mark.parametrize("index", [-2, -3, -7])  # -1 is "unknown": rejected by luck
def test_a_negative_metric_enum_index_is_rejected(index: int) -> None:
    data = body(metric=index)
    assert isinstance(strict(data), str)  # outside the enum: not a MetricPoint
    with pytest.raises(DecodeError):
        DECODER.decode(data)


def test_one_flipped_bit_does_not_store_a_point_under_another_metric() -> None:
    data = bytearray(CODEC.encode(dict(REC, metric=Metric.INDEX_PRICE)))  # enum index 1: byte 0x02
    i = 10 + 1 + len(b"binance_usdm") + 1 + len(b"BTCUSDT")
    assert data[i] == 0x02
    data[i] = 0x03  # one bit: index -2
    assert reference(bytes(data)) == (DecodeError, "undecodable")  # to the DLQ, not under open_interest


def _retained(make: Any, n: int, *, size: int) -> list[int]:
    """Blocks of at least ``size`` bytes still allocated after ``n`` records were rejected.

    Counting large blocks, not total bytes, keeps the measure to what the records could
    leave behind: other threads of a long test process allocate small objects meanwhile."""
    decode = row_decoder(metric_point_codec())
    decode(VALID)
    gc.collect()
    tracemalloc.start()
    try:
        for i in range(n):
            data = make(i)
            with pytest.raises(DecodeError):
                decode(data)
            del data
        gc.collect()
        return [t.size for t in tracemalloc.take_snapshot().traces if t.size >= size]
    finally:
        tracemalloc.stop()


def test_records_with_large_trailing_bytes_leave_no_memory_behind() -> None:
    large = _retained(lambda i: VALID + i.to_bytes(4, "little") + b"\x00" * 100_000, 200, size=50_000)
    assert len(large) <= 1, f"{len(large)} blocks of 50 kB or more retained after 200 records of 100 kB"


def test_records_with_huge_symbols_leave_no_memory_behind() -> None:
    nonce = uuid.uuid4().hex.upper()  # symbols nothing else in this process has checked
    large = _retained(lambda i: CODEC.encode(dict(REC, symbol=f"{nonce}{i}" + "X" * 100_000)), 200,
                      size=50_000)
    assert len(large) <= 1, f"{len(large)} blocks of 50 kB or more retained after 200 records of 100 kB"
