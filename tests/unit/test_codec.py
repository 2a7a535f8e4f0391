"""The Avro codec: both framings, golden bytes, evolution, and clear errors on bad input."""

from __future__ import annotations

import copy
import json
import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpstream.schemas import (
    BadMagicError,
    DecodeError,
    EncodeError,
    InvalidRecordError,
    MarketSnapshot,
    Metric,
    MetricPoint,
    TruncatedRecordError,
    UnknownSchemaError,
    check_metric_point,
    load_schema,
)
from perpstream.schemas.codec import (
    AvroCodec,
    AvroSchema,
    Framing,
    market_snapshot_codec,
    metric_point_codec,
    registry_client,
    subject_for,
)
from perpstream.schemas.topics import METRICS_TOPIC
from tests.strategies import valid_records

POINT = {
    "source": "binance_usdm",
    "symbol": "BTCUSDT",
    "metric": "mark_price",
    "value": 1.5,
    "event_time": 1781419401002,
    "ingest_time": 1781419401010,
}

# Golden bytes: if these change, the wire format changed and every deployed
# consumer would stop reading new events. Bump the schema deliberately instead.
# MetricPoint v3 (funding_interval_hours appended to the enum): a new fingerprint, the same body.
POINT_SINGLE_OBJECT = bytes.fromhex(
    "c301fe34a312c41194c91862696e616e63655f7573646d0e4254435553445400000000000000f83f"
    "d4fcf6cdd867e4fcf6cdd867"
)
#: The same point written by v2 (schemas/history/metric_point.v2.avsc), as deployed producers wrote it.
POINT_SINGLE_OBJECT_V2 = bytes.fromhex(
    "c3019dcb635b37fdd2be1862696e616e63655f7573646d0e4254435553445400000000000000f83f"
    "d4fcf6cdd867e4fcf6cdd867"
)
#: The same point written by v1 (schemas/history/metric_point.v1.avsc), as deployed producers wrote it.
POINT_SINGLE_OBJECT_V1 = bytes.fromhex(
    "c301d1ab127ac359f5391862696e616e63655f7573646d0e4254435553445400000000000000f83f"
    "d4fcf6cdd867e4fcf6cdd867"
)
POINT_BODY = POINT_SINGLE_OBJECT[10:]


def crc64_avro(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification writes it."""
    empty = 0xC15D213AA4D7A795
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (empty & -(fp & 1))
        table.append(fp)
    fp = empty
    for b in data:
        fp = (fp >> 8) ^ table[(fp ^ b) & 0xFF]
    return fp


# -- framings ------------------------------------------------------------------


def test_single_object_header_is_magic_plus_little_endian_crc64_of_canonical_form() -> None:
    schema = load_schema("metric_point")
    expected_fp = struct.pack("<Q", crc64_avro(schema.canonical.encode()))
    data = metric_point_codec().encode(POINT)
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == expected_fp
    assert schema.fingerprint == expected_fp


def test_single_object_golden_bytes() -> None:
    codec = metric_point_codec()
    assert codec.framing is Framing.SINGLE_OBJECT
    assert codec.encode(POINT) == POINT_SINGLE_OBJECT
    assert codec.decode(POINT_SINGLE_OBJECT) == POINT
    assert codec.decode(POINT_SINGLE_OBJECT_V1) == POINT
    assert codec.decode(POINT_SINGLE_OBJECT_V2) == POINT
    assert POINT_SINGLE_OBJECT_V1[10:] == POINT_SINGLE_OBJECT_V2[10:] == POINT_SINGLE_OBJECT[10:]


def test_canonical_form_ignores_logical_types_and_docs() -> None:
    schema = load_schema("metric_point")
    assert "logicalType" not in schema.canonical
    assert "doc" not in schema.canonical
    assert schema.canonical.startswith('{"name":"perpstream.MetricPoint","type":"record"')


def test_confluent_golden_bytes_with_mock_registry() -> None:
    registry = registry_client("mock://golden")
    codec = metric_point_codec(registry, subject_for(METRICS_TOPIC))
    assert codec.framing is Framing.CONFLUENT
    data = codec.encode(POINT)
    schema_id = registry.get_latest_version(subject_for(METRICS_TOPIC)).schema_id
    assert data == b"\x00" + struct.pack(">I", schema_id) + POINT_BODY
    assert codec.decode(data) == POINT


def test_decoder_auto_detects_both_framings() -> None:
    registry = registry_client("mock://both")
    confluent = metric_point_codec(registry, subject_for(METRICS_TOPIC))
    single = metric_point_codec()
    reader = metric_point_codec(registry)
    assert reader.decode(confluent.encode(POINT)) == POINT
    assert reader.decode(single.encode(POINT)) == POINT


def test_confluent_record_without_registry_is_unknown_schema() -> None:
    data = metric_point_codec(registry_client("mock://x"), "s-value").encode(POINT)
    with pytest.raises(UnknownSchemaError, match="no schema registry"):
        metric_point_codec().decode(data)


def test_unknown_confluent_schema_id() -> None:
    reader = metric_point_codec(registry_client("mock://ids"))
    with pytest.raises(UnknownSchemaError, match="schema id 4242"):
        reader.decode(b"\x00" + struct.pack(">I", 4242) + POINT_BODY)


# -- bad input: one typed error, never garbage -----------------------------------


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"", TruncatedRecordError),
        (b"\xc3", BadMagicError),
        (b"\xc3\x01\xd1\xab", TruncatedRecordError),
        (b"\x00\x00\x01", TruncatedRecordError),
        (b"\x7b\x22json\x22", BadMagicError),
        (b"\xc3\x02" + POINT_SINGLE_OBJECT[2:], BadMagicError),
        (b"\xc3\x01" + b"\x00" * 8 + POINT_BODY, UnknownSchemaError),
        (POINT_SINGLE_OBJECT[:-1], TruncatedRecordError),
        (POINT_SINGLE_OBJECT[:12], TruncatedRecordError),
        (POINT_SINGLE_OBJECT + b"\x00", TruncatedRecordError),
    ],
    ids=[
        "empty", "one-byte", "short-header", "short-confluent-header", "json", "wrong-version",
        "unknown-fingerprint", "truncated-body", "body-cut-short", "trailing-byte",
    ],
)
def test_bad_bytes_raise_one_typed_error(data: bytes, error: type[DecodeError]) -> None:
    with pytest.raises(error) as info:
        metric_point_codec().decode(data)
    assert info.value.reason == error.reason


def test_corrupt_enum_index_is_a_decode_error() -> None:
    body = bytearray(POINT_BODY)
    # source (13 bytes) + symbol (8 bytes), then the enum index as a zig-zag varint
    body[21] = 0x40  # index 32: no such symbol
    with pytest.raises(DecodeError):
        metric_point_codec().decode(POINT_SINGLE_OBJECT[:10] + bytes(body))


@given(st.binary(max_size=64))
@settings(max_examples=300, deadline=None)
def test_random_bytes_never_decode_to_garbage_silently(data: bytes) -> None:
    codec = metric_point_codec()
    try:
        rec = codec.decode(data)
    except DecodeError:
        return
    # Only bytes carrying our header and a complete body may decode.
    assert data[:10] == POINT_SINGLE_OBJECT[:10]
    assert set(rec) == set(POINT)


def test_encode_rejects_records_that_do_not_fit() -> None:
    with pytest.raises(EncodeError):
        metric_point_codec().encode({**POINT, "metric": "volume"})
    with pytest.raises(EncodeError):
        metric_point_codec().encode({k: v for k, v in POINT.items() if k != "value"})


# -- round trips -------------------------------------------------------------------

finite = st.floats(allow_nan=False, allow_infinity=False)
metric_points = valid_records.map(MetricPoint.model_validate)


@given(metric_points)
@settings(max_examples=300, deadline=None)
def test_metric_point_round_trips_exactly_in_both_framings(point: MetricPoint) -> None:
    rec = point.as_record()
    single = metric_point_codec()
    confluent = metric_point_codec(registry_client("mock://rt"), "rt-value")
    for codec in (single, confluent):
        out = codec.decode(codec.encode(rec))
        assert out == rec
        assert MetricPoint.from_record(out) == point
        check_metric_point(out)


optional_float = st.none() | finite
snapshots = st.builds(
    MarketSnapshot,
    source=st.just("binance_usdm"),
    symbol=st.sampled_from(["BTCUSDT", "ETHUSDT"]),
    window_s=st.sampled_from([60, 300, 3600]),
    snapshot_time=st.integers(min_value=0, max_value=4_102_444_799_999),
    mark_last=optional_float, index_last=optional_float, funding_last=optional_float,
    oi_last=optional_float, mark_return=optional_float, mark_volatility=optional_float,
    basis_last=optional_float, basis_mean=optional_float, funding_mean=optional_float,
    oi_change_pct=optional_float,
    n_mark=st.integers(0, 10_000), n_oi=st.integers(0, 10_000),
    mark_age_ms=st.none() | st.integers(0, 2**40), oi_age_ms=st.none() | st.integers(0, 2**40),
    stale=st.booleans(),
)


@given(snapshots)
@settings(max_examples=200, deadline=None)
def test_market_snapshot_round_trips(snapshot: MarketSnapshot) -> None:
    codec = market_snapshot_codec()
    assert MarketSnapshot.model_validate(codec.decode(codec.encode(snapshot.as_record()))) == snapshot


# -- NaN / inf policy ------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_values_are_rejected_by_the_model(bad: float) -> None:
    with pytest.raises(ValueError, match="finite"):
        MetricPoint(**{**POINT, "value": bad})


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_value_on_the_wire_is_invalid_for_consumers(bad: float) -> None:
    # The wire format can carry NaN (Avro double); consumers reject it as invalid -> DLQ.
    codec = metric_point_codec()
    rec = codec.decode(codec.encode({**POINT, "value": bad}))
    with pytest.raises(InvalidRecordError, match="finite"):
        check_metric_point(rec)


@pytest.mark.parametrize(
    ("field", "value", "match"),
    [
        ("symbol", "btcusdt", "symbol"),
        ("symbol", "", "symbol"),
        ("event_time", 12, "event_time"),
        ("event_time", 5_000_000_000_000, "event_time"),
        ("metric", "unknown", "unknown to this reader"),
    ],
)
def test_contract_violations_are_invalid(field: str, value: object, match: str) -> None:
    with pytest.raises(InvalidRecordError, match=match):
        check_metric_point({**POINT, field: value})


# -- schema evolution ----------------------------------------------------------------------


def _evolved(extra_field: dict[str, object] | None = None, extra_metric: str | None = None) -> AvroSchema:
    d = copy.deepcopy(load_schema("metric_point").definition)
    if extra_field:
        d["fields"].append(extra_field)
    if extra_metric:
        enum = next(f for f in d["fields"] if f["name"] == "metric")["type"]
        enum["symbols"].insert(len(enum["symbols"]) - 1, extra_metric)
    return AvroSchema.from_definition(d)


def test_newer_reader_with_defaulted_field_reads_old_single_object_bytes() -> None:
    v1 = load_schema("metric_point")
    v2 = _evolved({"name": "exchange_seq", "type": "long", "default": -1})
    assert v2.fingerprint != v1.fingerprint
    reader = AvroCodec(v2, writers=[v1])
    assert reader.decode(POINT_SINGLE_OBJECT) == {**POINT, "exchange_seq": -1}


def test_newer_reader_reads_old_confluent_bytes_through_the_registry() -> None:
    registry = registry_client("mock://evolve")
    old = metric_point_codec(registry, "evolve-value").encode(POINT)
    v2 = _evolved({"name": "venue", "type": "string", "default": "fapi"})
    reader = AvroCodec(v2, registry=registry)
    assert reader.decode(old) == {**POINT, "venue": "fapi"}


def test_older_reader_reads_a_metric_added_later_as_unknown() -> None:
    """The enum default: a reader on today's schema survives tomorrow's metric."""
    registry = registry_client("mock://enum")
    v2 = _evolved(extra_metric="premium_index")
    writer = AvroCodec(v2, registry=registry, subject="enum-value")
    new_bytes = writer.encode({**POINT, "metric": "premium_index"})
    old_reader = metric_point_codec(registry)
    rec = old_reader.decode(new_bytes)
    assert rec["metric"] == "unknown"
    assert {k: v for k, v in rec.items() if k != "metric"} == {
        k: v for k, v in POINT.items() if k != "metric"
    }
    # ... and consumers send it to the DLQ instead of storing a wrong identity.
    with pytest.raises(InvalidRecordError, match="unknown to this reader"):
        check_metric_point(rec)


def test_single_object_reader_resolves_unknown_fingerprints_through_a_schema_store() -> None:
    v2 = _evolved(extra_metric="premium_index")
    store = {v2.fingerprint: v2}
    old_reader = AvroCodec(load_schema("metric_point"), resolve_fingerprint=store.get)
    data = AvroCodec(v2).encode({**POINT, "metric": "premium_index"})
    assert old_reader.decode(data)["metric"] == "unknown"
    with pytest.raises(UnknownSchemaError):
        metric_point_codec().decode(data)


def test_avsc_files_are_valid_json_with_the_contract_fields() -> None:
    mp = load_schema("metric_point").definition
    assert [f["name"] for f in mp["fields"]] == [
        "source", "symbol", "metric", "value", "event_time", "ingest_time"
    ]
    enum = mp["fields"][2]["type"]
    assert enum["default"] in enum["symbols"]
    assert {m.value for m in Metric} == set(enum["symbols"])
    ms = load_schema("market_snapshot").definition
    assert set(MarketSnapshot.model_fields) == {f["name"] for f in ms["fields"]}
    json.dumps(ms)


def test_hand_written_paths_take_the_shipped_layout() -> None:
    """The fast encoder and decoder are written for one field layout; the
    shipped schema must have it, or they would silently fall back to the
    (slower) reference codec."""
    from perpstream.schemas.avro_binary import METRIC_POINT_LAYOUT, field_layout
    from perpstream.schemas.models import METRIC_SYMBOLS

    assert field_layout(load_schema("metric_point").definition) == METRIC_POINT_LAYOUT
    assert tuple(m.value for m in Metric) == METRIC_SYMBOLS
