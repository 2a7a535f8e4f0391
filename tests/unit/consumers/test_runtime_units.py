"""Pure parts of the consumers: batch cutting, DLQ headers, decoding, migrations, CLI helpers."""

from __future__ import annotations

import io
import math
from typing import Any

import pytest

from consumers.clickhouse import Migration
from consumers.runtime.batch import Rejected
from consumers.runtime.decoding import fast_decoder, validate_row
from consumers.runtime.dlq import dlq_headers
from consumers.runtime.loop import _Builder
from consumers.settings import ConsumerSettings
from consumers.sink.cli import parse_time_ms, print_rows
from consumers.sink.handler import to_arrow
from schemas.codec import metric_point_codec
from schemas.exceptions import ConfigError, DecodeError, InvalidRecordError

REC = {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": "mark_price", "value": 1.5,
       "event_time": 1_760_000_000_000, "ingest_time": 1_760_000_000_003}


class Msg:
    """The few confluent_kafka.Message accessors the builder reads."""

    def __init__(self, partition: int, offset: int, value: bytes | None) -> None:
        self._p, self._o, self._v = partition, offset, value

    def error(self) -> None:
        return None

    def topic(self) -> str:
        return "t"

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes:
        return b"k"

    def headers(self) -> list[tuple[str, bytes]]:
        return [("h", b"v")]


def _decode() -> Any:
    return fast_decoder(metric_point_codec())


def test_builder_cuts_at_the_journaled_end_and_carries_the_rest() -> None:
    data = metric_point_codec().encode(REC)
    cuts = {("t", 0): [99, 104]}  # journaled range [100, 104]
    b = _Builder(_decode(), validate_row, cuts)
    carry: list[Any] = []
    b.add([Msg(0, o, data) for o in range(100, 110)] + [Msg(1, 7, data)], carry)
    pb = b.parts[("t", 0)]
    assert (pb.first_offset, pb.last_offset) == (100, 104)
    assert pb.offsets == [100, 101, 102, 103, 104]
    assert [m.offset() for m in carry] == [105, 106, 107, 108, 109]
    assert b.parts[("t", 1)].offsets == [7]
    assert cuts == {}
    assert not b.waiting_for_cut()


def test_builder_waits_for_an_unreached_cut_and_drops_obsolete_ones() -> None:
    data = metric_point_codec().encode(REC)
    cuts = {("t", 0): [99, 104], ("t", 1): [9, 19]}
    b = _Builder(_decode(), None, cuts)
    b.add([Msg(0, 100, data), Msg(0, 101, data), Msg(1, 30, data)], [])
    assert b.waiting_for_cut() == [("t", 0)]
    assert ("t", 1) not in cuts  # already committed past it


def test_builder_rejects_with_reason_and_keeps_offsets_in_the_range() -> None:
    codec = metric_point_codec()
    nan = codec.encode(dict(REC, value=math.nan))
    b = _Builder(_decode(), validate_row, {})
    b.add([Msg(0, 1, codec.encode(REC)), Msg(0, 2, b"junk"), Msg(0, 3, nan), Msg(0, 4, None)], [])
    pb = b.parts[("t", 0)]
    assert (pb.first_offset, pb.last_offset, pb.offsets) == (1, 4, [1])
    assert [(r.offset, r.reason) for r in b.rejected] == [(2, "bad_magic"), (3, "invalid"),
                                                          (4, "undecodable")]
    assert b.rejected[0].value == b"junk" and b.rejected[0].headers == [("h", b"v")]


def test_dlq_headers_keep_the_originals_first() -> None:
    rej = Rejected("t", 3, 42, b"k", b"v", [("x", b"1")], "boom", "truncated")
    h = dict(dlq_headers(rej, "g"))
    assert h["x"] == b"1"
    assert h["perpstream.reason"] == b"truncated"
    assert h["perpstream.partition"] == b"3" and h["perpstream.offset"] == b"42"
    assert h["perpstream.group"] == b"g" and h["perpstream.topic"] == b"t"


def test_fast_decoder_matches_the_codec_and_raises_typed_errors() -> None:
    codec = metric_point_codec()
    data = codec.encode(REC)
    dec = fast_decoder(codec)
    assert dec(data) == codec.decode(data) == REC
    with pytest.raises(DecodeError) as exc:
        dec(data[:-3])
    assert exc.value.reason == "truncated"
    with pytest.raises(DecodeError):
        dec(data + b"\x00")


def test_validate_row_rejects_what_the_columns_cannot_hold() -> None:
    validate_row(REC)
    with pytest.raises(InvalidRecordError):
        validate_row(dict(REC, ingest_time=-1))
    with pytest.raises(InvalidRecordError):
        validate_row(dict(REC, metric="unknown"))
    t = to_arrow([REC])
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
    assert out.getvalue().splitlines() == ["metric      points  v", "mark_price  3       1.25"]


def test_consumer_config_is_accepted_by_librdkafka(monkeypatch: pytest.MonkeyPatch) -> None:
    from confluent_kafka import Consumer

    monkeypatch.setenv("PERPSTREAM_FETCH_QUEUE_BACKOFF_MS", "25")
    cfg = ConsumerSettings(kafka_bootstrap_servers="127.0.0.1:1", group_id="g").consumer_config()
    # the short fetch pause is what lets one member drain a backlog (librdkafka waits 1 s by default)
    assert cfg["fetch.queue.backoff.ms"] == 25
    Consumer(cfg).close()  # raises on a property this librdkafka does not know
    with pytest.raises(ValueError, match="fetch_queue_backoff_ms"):
        ConsumerSettings(fetch_queue_backoff_ms=5_000)
