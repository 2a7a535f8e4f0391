"""Ingest counting and the publisher's bounded buffer, without a broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from producer.encoding import MetricPointEncoder
from producer.ingest import Ingest
from producer.publisher import Publisher, producer_config
from schemas.codec import metric_point_codec
from service.telemetry import Telemetry

CODEC = metric_point_codec()


class ListTarget:
    congested = False

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    def publish(self, key: bytes, value: bytes) -> None:
        self.sent.append((key, value))


def make() -> tuple[Ingest, ListTarget, Telemetry]:
    target, telemetry = ListTarget(), Telemetry()
    return Ingest(target, MetricPointEncoder(CODEC).encode, telemetry), target, telemetry


def test_frames_become_encoded_points_keyed_by_symbol(samples_dir: Path) -> None:
    ingest, target, telemetry = make()
    assert ingest.on_ws_frame((samples_dir / "mark_price_combined.json").read_bytes(), 5) is None
    ingest.on_open_interest((samples_dir / "open_interest.json").read_text(), 6)
    ingest.sync()
    assert [k for k, _ in target.sent] == [b"BTCUSDT"] * 6
    decoded = [CODEC.decode(v) for _, v in target.sent]
    assert decoded[0]["metric"] == "mark_price" and decoded[0]["ingest_time"] == 5
    assert decoded[-1] == {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": "open_interest",
                           "value": 10659.509, "event_time": 1589437530011, "ingest_time": 6}
    assert telemetry.get("points_published") == 6
    assert telemetry.get("frames_received", {"kind": "mark_price"}) == 1


def test_control_answers_are_returned_not_counted(samples_dir: Path) -> None:
    ingest, target, _ = make()
    ack = ingest.on_ws_frame((samples_dir / "subscribe_ack.json").read_text(), 1)
    assert ack == {"result": None, "id": 1} and not target.sent and ingest.frames_ws == 0


def test_bad_frames_are_counted_by_reason_and_stream_goes_on(caplog: pytest.LogCaptureFixture) -> None:
    ingest, target, telemetry = make()
    for raw in ("{oops", "[]", '{"stream":"a","data":{"e":"markPriceUpdate"}}', "x" * 5_000_000):
        ingest.on_ws_frame(raw, 1)
    ingest.on_open_interest('{"symbol":"BTCUSDT","openInterest":"nan","time":1589437530011}', 1)
    assert telemetry.get("frames_rejected", {"reason": "bad_json"}) == 1
    assert telemetry.get("frames_rejected", {"reason": "missing_field"}) == 1
    assert telemetry.get("frames_rejected", {"reason": "too_large"}) == 1
    assert telemetry.get("frames_rejected", {"reason": "non_finite"}) == 1
    assert not target.sent
    assert any("frame rejected" in r.message for r in caplog.records)
    assert all(len(getattr(r, "sample", "")) < 300 for r in caplog.records)


def test_same_open_interest_time_is_one_event() -> None:
    ingest, target, telemetry = make()
    body = json.dumps({"symbol": "ETHUSDT", "openInterest": "12.5", "time": 1790000000500})
    ingest.on_open_interest(body, 1)
    ingest.on_open_interest(body, 2)
    ingest.sync()
    assert len(target.sent) == 1 and telemetry.get("open_interest_duplicates") == 1


def test_full_buffer_drops_oldest_and_counts_it() -> None:
    """No broker reachable, tiny buffers: backpressure flag, then counted drops."""
    telemetry = Telemetry()
    cfg = producer_config("127.0.0.1:1", buffer_max_messages=10, extra={"log_level": 0})
    pub = Publisher(cfg, "t", telemetry, overflow_max_points=5)
    for i in range(30):
        pub.publish(b"K", b"v%d" % i)
    assert pub.congested
    dropped = telemetry.get("points_dropped", {"reason": "buffer_full"})
    # every point is queued in librdkafka, held in the overflow, or counted as dropped
    assert dropped >= 10 and dropped + pub.enqueued + len(pub._overflow) == 30
    # The newest points are the ones kept.
    assert [v for _, v in pub._overflow] == [b"v%d" % i for i in range(25, 30)]
    assert telemetry.snapshot()["buffer_fill"][()] >= 1.0
    # librdkafka's queue length counts protocol requests too, so compare with a bound
    held = pub.enqueued + len(pub._overflow)
    left = pub.close(0.5)
    assert left >= held
    assert telemetry.get("points_dropped", {"reason": "undelivered_at_stop"}) == left
