"""Pure parts of the consumers: DLQ headers, validation, migrations, settings, CLI helpers.

The batch builder has its own tests (test_builder.py)."""

from __future__ import annotations

import io

import pytest

from perpstream.consumers.clickhouse import Migration
from perpstream.consumers.runtime.batch import Rejected
from perpstream.consumers.runtime.decoding import ROW_FIELDS
from perpstream.consumers.runtime.dlq import dlq_headers
from perpstream.consumers.settings import ConsumerSettings
from perpstream.consumers.sink.cli import parse_time_ms
from perpstream.consumers.sink.handler import rows_to_arrow
from perpstream.errors import ConfigError
from perpstream.runtime.output import print_rows
from perpstream.schemas.exceptions import InvalidRecordError
from perpstream.schemas.models import check_metric_point as validate_row

REC = {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": "mark_price", "value": 1.5,
       "event_time": 1_760_000_000_000, "ingest_time": 1_760_000_000_003}


def test_dlq_headers_keep_the_originals_first() -> None:
    rej = Rejected("t", 3, 42, b"k", b"v", [("x", b"1")], "boom", "truncated")
    h = dict(dlq_headers(rej, "g"))
    assert h["x"] == b"1"
    assert h["perpstream.reason"] == b"truncated"
    assert h["perpstream.partition"] == b"3" and h["perpstream.offset"] == b"42"
    assert h["perpstream.group"] == b"g" and h["perpstream.topic"] == b"t"


def test_validate_row_rejects_what_the_columns_cannot_hold() -> None:
    validate_row(REC)
    with pytest.raises(InvalidRecordError):
        validate_row(dict(REC, ingest_time=-1))
    with pytest.raises(InvalidRecordError):
        validate_row(dict(REC, metric="unknown"))
    t = rows_to_arrow([tuple(REC[f] for f in ROW_FIELDS)])
    assert t.column("event_time").to_pylist()[0].timestamp() * 1000 == REC["event_time"]


def test_migration_checksum_and_statements() -> None:
    m = Migration(1, "x", "CREATE TABLE {db}.a (x UInt8) ENGINE = Memory;\nSELECT 1")
    assert m.statements("d") == ["CREATE TABLE d.a (x UInt8) ENGINE = Memory", "SELECT 1"]
    assert m.checksum != Migration(1, "x", "SELECT 2").checksum


def test_settings_name_the_missing_bootstrap(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    with pytest.raises(ConfigError, match="kafka_bootstrap_servers"):
        ConsumerSettings().consumer_config()
    cfg = ConsumerSettings(kafka_bootstrap_servers="h:1", group_id="g").consumer_config()
    assert cfg["group.id"] == "g" and cfg["bootstrap.servers"] == "h:1"


def test_time_parsing_and_table_output() -> None:
    assert parse_time_ms("1760000000000") == 1_760_000_000_000
    assert parse_time_ms("2025-10-09T08:53:20Z") == 1_760_000_000_000
    with pytest.raises(ConfigError):
        parse_time_ms("yesterday")
    out = io.StringIO()
    print_rows([{"metric": "mark_price", "points": 3, "v": 1.25}], "table", out)
    assert out.getvalue().splitlines() == [
        "metric      points     v", "----------  ------  ----", "mark_price       3  1.25", "(1 row)"]


def test_consumer_config_is_accepted_by_librdkafka(monkeypatch: pytest.MonkeyPatch) -> None:
    from confluent_kafka import Consumer

    monkeypatch.setenv("PERPSTREAM_FETCH_QUEUE_BACKOFF_MS", "25")
    cfg = ConsumerSettings(kafka_bootstrap_servers="127.0.0.1:1", group_id="g").consumer_config()
    # the short fetch pause is what lets one member drain a backlog (librdkafka waits 1 s by default)
    assert cfg["fetch.queue.backoff.ms"] == 25
    Consumer(cfg).close()  # raises on a property this librdkafka does not know
    with pytest.raises(ValueError, match="fetch_queue_backoff_ms"):
        ConsumerSettings(fetch_queue_backoff_ms=5_000)


def test_failure_bounds_and_the_dlq_size_reach_the_loop() -> None:
    from confluent_kafka import Producer

    from perpstream.consumers.runtime.decoding import row_decoder
    from perpstream.consumers.runtime.loop import ConsumeLoop
    from perpstream.schemas.codec import metric_point_codec

    s = ConsumerSettings(kafka_bootstrap_servers="127.0.0.1:1", store_unclassified_attempts=3,
                         commit_timeout_ms=60_000, dlq_message_max_bytes=65_536)
    opts = s.loop_options()
    assert (opts["unclassified_attempts"], opts["commit_timeout"]) == (3, 60.0)
    assert s.dlq_config() == {"message.max.bytes": 65_536}
    Producer({"bootstrap.servers": "127.0.0.1:1", **s.dlq_config()})  # librdkafka accepts it
    loop = ConsumeLoop(s.consumer_config(), ["t"], "g", handler=None,  # type: ignore[arg-type]
                       decoder=row_decoder(metric_point_codec()), dlq_topic="dlq",
                       dlq_config=s.dlq_config(), **opts)
    assert loop.unclassified_attempts == 3 and loop.commit_timeout == 60.0
    with pytest.raises(ValueError, match="dlq_message_max_bytes"):
        ConsumerSettings(dlq_message_max_bytes=100)


def test_the_assignment_strategy_reaches_the_loop_and_says_how_it_rebalances() -> None:
    from perpstream.consumers.runtime.loop import ConsumeLoop, is_cooperative

    assert is_cooperative("cooperative-sticky")
    assert not is_cooperative("range") and not is_cooperative("roundrobin, range")
    with pytest.raises(ValueError, match="mixes"):
        is_cooperative("range,cooperative-sticky")  # librdkafka refuses the mix too
    with pytest.raises(ValueError, match="unknown"):
        is_cooperative("sticky")

    def loop(**kw: object) -> ConsumeLoop:
        cfg = ConsumerSettings(kafka_bootstrap_servers="127.0.0.1:1", **kw).consumer_config()  # type: ignore[arg-type]
        return ConsumeLoop(cfg, ["t"], "g", handler=None, decoder=lambda v: (v,),  # type: ignore[arg-type]
                           dlq_topic=None)

    assert loop().cooperative  # the default
    eager = loop(partition_assignment_strategy="range")
    assert not eager.cooperative and eager._config["partition.assignment.strategy"] == "range"
    assert ConsumeLoop({"bootstrap.servers": "127.0.0.1:1"}, ["t"], "g", handler=None,  # type: ignore[arg-type]
                       decoder=lambda v: (v,), dlq_topic=None).cooperative
    with pytest.raises(ValueError, match="partition_assignment_strategy"):
        ConsumerSettings(partition_assignment_strategy="sticky")  # type: ignore[arg-type]
