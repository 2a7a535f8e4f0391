"""MetricPoint v3 (``funding_interval_hours``) next to v1 and v2 (``schemas/history/``).

- v3 only appends an enum symbol after v2's ``funding_rate_settled``: every
  older symbol keeps its Avro index, and the default stays ``unknown``;
- a v1 or v2 reader reads the new metric as ``unknown`` and its consumers
  reject the record (the DLQ), while the older metrics of a v3 writer still
  decode to what was written: nothing is stored under a wrong metric;
- the current reader reads v1 and v2 records (both framings);
- Apache Avro's checker finds v3 backward and forward compatible with v1 and
  v2, and the three versions register under one subject;
- a funding interval must be finite and > 0, at every boundary alike.
"""

from __future__ import annotations

import json
import math
from typing import Any

import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse as avro_parse
from pydantic import ValidationError

from perpstream.consumers.runtime.builder import BatchBuilder
from perpstream.consumers.runtime.decoding import ROW_FIELDS, row_decoder
from perpstream.schemas import rules
from perpstream.schemas.avro_binary import enum_symbols
from perpstream.schemas.codec import (
    AvroCodec,
    AvroSchema,
    load_schema,
    metric_point_codec,
    metric_point_writers,
    registry_client,
)
from perpstream.schemas.exceptions import DecodeError, InvalidRecordError
from perpstream.schemas.models import KNOWN_METRICS, Metric, MetricPoint, check_metric_point
from tests.unit.consumers.test_builder import Msg

V1 = load_schema("history/metric_point.v1")
V2 = load_schema("history/metric_point.v2")
V3 = load_schema("metric_point")
OLD = {"v1": V1, "v2": V2}
POINT = {"source": "bybit_linear", "symbol": "BTCUSDT", "metric": "funding_interval_hours",
         "value": 8.0, "event_time": 1_790_000_000_000, "ingest_time": 1_790_000_000_123}


def _reader(schema: AvroSchema) -> AvroCodec:
    """A consumer on ``schema`` that can learn the v3 fingerprint (as through a registry)."""
    return AvroCodec(schema, writers=metric_point_writers(), resolve_fingerprint={V3.fingerprint: V3}.get)


def test_v3_appends_one_symbol_and_keeps_every_older_index() -> None:
    v1, v2, v3 = (enum_symbols(s.definition, "metric") for s in (V1, V2, V3))
    assert v2 == (*v1, "funding_rate_settled")
    assert v3 == (*v2, "funding_interval_hours")
    assert V3.definition["fields"][2]["type"]["default"] == "unknown"
    assert Metric.FUNDING_INTERVAL_HOURS == "funding_interval_hours"
    assert Metric.FUNDING_INTERVAL_HOURS in KNOWN_METRICS
    assert metric_point_writers()[0].fingerprint == V3.fingerprint
    assert {V1.fingerprint, V2.fingerprint, V3.fingerprint} == {w.fingerprint for w in metric_point_writers()}


def test_v2_history_is_the_v2_that_shipped() -> None:
    """The v2 file is the schema v2 producers wrote with: its fingerprint is the one they put in
    every single-object header (tests/unit/test_codec.py pins those bytes too)."""
    assert V2.fingerprint.hex() == "9dcb635b37fdd2be"
    assert V1.fingerprint.hex() == "d1ab127ac359f539"


@pytest.mark.parametrize("old", sorted(OLD))
def test_older_readers_read_the_new_metric_as_unknown_and_dead_letter_it(old: str) -> None:
    data = AvroCodec(V3).encode(POINT)
    reader = _reader(OLD[old])
    rec = reader.decode(data)
    assert rec == {**POINT, "metric": "unknown"}
    old_known = frozenset(enum_symbols(OLD[old].definition, "metric")) - {"unknown"}
    assert "unknown to this reader" in str(rules.metric_point_problem(rec, old_known))
    # the consumers' decoder on the old reader rejects it: the runtime sends it to the DLQ
    with pytest.raises(InvalidRecordError, match="unknown to this reader"):
        row_decoder(reader)(data)
    # a v2 metric written by a v3 writer still reads as itself (the indices did not move)
    mark = AvroCodec(V3).encode({**POINT, "metric": "mark_price", "value": 64_000.5})
    assert row_decoder(reader)(mark) == ("bybit_linear", "BTCUSDT", "mark_price", POINT["event_time"],
                                         64_000.5, POINT["ingest_time"])


def test_an_older_consumers_batch_rejects_the_new_metric_and_keeps_the_rest() -> None:
    """What an un-upgraded consumer does with a topic a v3 producer writes to: the interval
    record is rejected with reason ``invalid`` (dead-lettered), the others become rows."""
    v3 = AvroCodec(V3)
    msgs = [Msg(0, 1, v3.encode({**POINT, "metric": "funding_rate", "value": 1e-4})),
            Msg(0, 2, v3.encode(POINT)),
            Msg(0, 3, v3.encode({**POINT, "metric": "funding_rate_settled", "value": 2e-4}))]
    builder = BatchBuilder(row_decoder(_reader(V2)), {})
    builder.add(msgs, [])
    assert [(r.offset, r.reason) for r in builder.rejected] == [(2, "invalid")]
    assert [row[2] for row in builder.parts[("t", 0)].rows] == ["funding_rate", "funding_rate_settled"]


@pytest.mark.parametrize("old", sorted(OLD))
def test_current_reader_reads_older_records(old: str) -> None:
    codec = metric_point_codec()
    decode = row_decoder(codec)
    rec = {**POINT, "metric": "open_interest", "value": 12.5}
    data = AvroCodec(OLD[old]).encode(rec)
    assert codec.decode(data) == rec
    assert decode(data) == tuple(rec[f] for f in ROW_FIELDS)
    registry = registry_client(f"mock://v3-reads-{old}")
    confluent = AvroCodec(OLD[old], registry=registry, subject="m-value").encode(rec)
    assert metric_point_codec(registry).decode(confluent) == rec


def test_current_reader_stores_the_new_metric() -> None:
    codec = metric_point_codec()
    data = codec.encode(POINT)
    assert row_decoder(codec)(data) == tuple(POINT[f] for f in ROW_FIELDS)
    check_metric_point(codec.decode(data))


def _avro(schema: dict[str, Any]) -> Any:
    return avro_parse(json.dumps(schema))


@pytest.mark.parametrize("old", sorted(OLD))
def test_v3_is_backward_and_forward_compatible(old: str) -> None:
    checker = ReaderWriterCompatibilityChecker()
    older, v3 = _avro(OLD[old].definition), _avro(V3.definition)
    backward = checker.get_compatibility(v3, older)  # new reader, old data
    forward = checker.get_compatibility(older, v3)  # old reader, new data (the enum default)
    assert backward.compatibility is SchemaCompatibilityType.compatible, backward
    assert forward.compatibility is SchemaCompatibilityType.compatible, forward


def test_three_versions_register_under_one_subject() -> None:
    registry = registry_client("mock://schema-v3")
    subject = "perpstream.metrics.v1-value"
    v1_bytes = AvroCodec(V1, registry=registry, subject=subject).encode({**POINT, "metric": "mark_price"})
    v2_bytes = AvroCodec(V2, registry=registry, subject=subject).encode(
        {**POINT, "metric": "funding_rate_settled", "value": 1e-4})
    v3_bytes = metric_point_codec(registry, subject).encode(POINT)
    assert sorted(registry.get_versions(subject)) == [1, 2, 3]
    current = metric_point_codec(registry)
    assert [current.decode(b)["metric"] for b in (v1_bytes, v2_bytes, v3_bytes)] == [
        "mark_price", "funding_rate_settled", "funding_interval_hours"]
    for old in (V1, V2):
        assert AvroCodec(old, registry=registry).decode(v3_bytes)["metric"] == "unknown"


# -- the value rule of funding_interval_hours ------------------------------------------------

GOOD_INTERVALS = (8.0, 4.0, 1.0, 0.5, 5e-324)
BAD_INTERVALS = (0.0, -0.0, -8.0, math.nan, math.inf, -math.inf)


def _outcome(data: bytes, decode: Any) -> tuple[Any, ...]:
    try:
        return ("row", decode(data))
    except DecodeError as exc:
        return (type(exc), exc.reason, str(exc))


@pytest.mark.parametrize("value", GOOD_INTERVALS + BAD_INTERVALS)
def test_an_interval_is_finite_and_positive_at_every_boundary(value: float) -> None:
    rec = {**POINT, "value": value}
    good = value in GOOD_INTERVALS
    assert (rules.value_problem(value, "funding_interval_hours") is None) is good
    if good:
        MetricPoint.from_record(rec)
    else:
        with pytest.raises(ValidationError, match=r"funding_interval_hours must be > 0|not finite"):
            MetricPoint.from_record(rec)
    codec = metric_point_codec()
    data = codec.encode(rec)
    fast = row_decoder(codec)
    for _ in range(2):  # the second read takes the decoder's cached prefix
        got = _outcome(data, fast)
        assert got == _outcome(data, lambda d: (check_metric_point(codec.decode(d)),
                                                 tuple(codec.decode(d)[f] for f in ROW_FIELDS))[1])
        assert (got[0] == "row") is good


def test_other_metrics_keep_zero_and_negative_values() -> None:
    """Only the interval has a sign rule: a funding rate is often negative, open interest may be 0."""
    codec = metric_point_codec()
    decode = row_decoder(codec)
    for metric, value in (("funding_rate", -1e-4), ("open_interest", 0.0), ("funding_rate_settled", -0.0)):
        rec = {**POINT, "metric": metric, "value": value}
        assert decode(codec.encode(rec))[4] == value
        MetricPoint.from_record(rec)
    # the same symbol's interval and funding rate share the cache keyed by prefix bytes, not by symbol
    assert decode(codec.encode({**POINT, "value": 4.0}))[4] == 4.0
    with pytest.raises(InvalidRecordError, match="must be > 0"):
        decode(codec.encode({**POINT, "value": -4.0}))
