"""MetricPoint v2 (``funding_rate_settled``, ``schemas/history/metric_point.v2.avsc``) next to v1
(``schemas/history/metric_point.v1.avsc``). v3 and its readers: ``test_schema_v3.py``.

- v2 only appends an enum symbol: every v1 symbol keeps its Avro index;
- a v1 reader reads the new metric as ``unknown`` (the enum default) and the
  consumers send it to the DLQ; a v2 reader stores it;
- a v2 reader reads v1 records (both framings);
- Apache Avro's compatibility checker (the rules of Java Avro, which the
  Confluent Schema Registry applies) finds v2 backward and forward compatible
  with v1, and both versions register under one subject.
"""

from __future__ import annotations

import json

import pytest
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse as avro_parse

from perpstream.consumers.runtime.decoding import row_decoder
from perpstream.schemas.avro_binary import enum_symbols
from perpstream.schemas.codec import (
    AvroCodec,
    load_schema,
    metric_point_codec,
    metric_point_writers,
    registry_client,
)
from perpstream.schemas.exceptions import InvalidRecordError, UnknownSchemaError
from perpstream.schemas.models import KNOWN_METRICS, Metric, check_metric_point

V1 = load_schema("history/metric_point.v1")
V2 = load_schema("history/metric_point.v2")
POINT = {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": "funding_rate_settled",
         "value": 0.0001, "event_time": 1_790_000_000_000, "ingest_time": 1_790_000_000_123}


def test_v2_appends_one_symbol_and_keeps_every_v1_index() -> None:
    v1 = enum_symbols(V1.definition, "metric")
    v2 = enum_symbols(V2.definition, "metric")
    assert v2 == (*v1, "funding_rate_settled")
    assert Metric.FUNDING_RATE_SETTLED in KNOWN_METRICS
    assert {V1.fingerprint, V2.fingerprint} <= {w.fingerprint for w in metric_point_writers()}
    assert V1.fingerprint != V2.fingerprint


def test_v1_reader_maps_the_new_metric_to_unknown_and_rejects_it() -> None:
    data = AvroCodec(V2).encode(POINT)
    old = AvroCodec(V1, resolve_fingerprint={V2.fingerprint: V2}.get)
    rec = old.decode(data)
    assert rec == {**POINT, "metric": "unknown"}
    old_known = frozenset(enum_symbols(V1.definition, "metric")) - {"unknown"}
    from perpstream.schemas import rules

    assert "unknown to this reader" in str(rules.metric_point_problem(rec, old_known))
    # without a way to learn the v2 fingerprint, a v1 reader refuses the record outright (DLQ too)
    with pytest.raises(UnknownSchemaError):
        AvroCodec(V1).decode(data)


def test_current_reader_stores_the_v2_metric_and_reads_v1_records() -> None:
    codec = metric_point_codec()
    decode = row_decoder(codec)
    row = decode(codec.encode(POINT))
    assert row[2] == "funding_rate_settled" and row[4] == 0.0001
    check_metric_point(codec.decode(codec.encode(POINT)))
    assert decode(AvroCodec(V2).encode(POINT)) == row
    old = AvroCodec(V1).encode({**POINT, "metric": "funding_rate"})
    assert codec.decode(old) == {**POINT, "metric": "funding_rate"}
    assert decode(old)[2] == "funding_rate"
    with pytest.raises(InvalidRecordError):
        check_metric_point({**POINT, "metric": "unknown"})


def _avro(schema: dict[str, object]) -> object:
    return avro_parse(json.dumps(schema))


def test_v2_is_backward_and_forward_compatible_with_v1() -> None:
    checker = ReaderWriterCompatibilityChecker()
    v1, v2 = _avro(V1.definition), _avro(V2.definition)
    backward = checker.get_compatibility(v2, v1)  # new reader, old data
    forward = checker.get_compatibility(v1, v2)  # old reader, new data (the enum default)
    assert backward.compatibility is SchemaCompatibilityType.compatible, backward
    assert forward.compatibility is SchemaCompatibilityType.compatible, forward
    # removing the default would break forward compatibility: the check has teeth
    no_default = json.loads(V1.json)
    no_default["fields"][2]["type"].pop("default")
    broken = checker.get_compatibility(_avro(no_default), v2)
    assert broken.compatibility is SchemaCompatibilityType.incompatible


def test_both_versions_register_under_one_subject_and_old_records_still_decode() -> None:
    registry = registry_client("mock://schema-v2")
    subject = "perpstream.metrics.v1-value"
    old_bytes = AvroCodec(V1, registry=registry, subject=subject).encode({**POINT, "metric": "mark_price"})
    new_codec = AvroCodec(V2, registry=registry, subject=subject)
    new_bytes = new_codec.encode(POINT)
    assert sorted(registry.get_versions(subject)) == [1, 2]
    assert new_codec.decode(old_bytes)["metric"] == "mark_price"
    assert new_codec.decode(new_bytes)["metric"] == "funding_rate_settled"
    assert AvroCodec(V1, registry=registry).decode(new_bytes)["metric"] == "unknown"
