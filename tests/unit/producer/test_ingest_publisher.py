"""Ingest counting and the publisher's bounded buffer, without a broker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perpstream.producer.encoding import MetricPointEncoder
from perpstream.producer.ingest import Ingest
from perpstream.producer.publisher import Publisher, producer_config
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.codec import metric_point_codec
from perpstream.schemas.models import Metric

CODEC = metric_point_codec()


class ListTarget:
    congested = False

    def __init__(self) -> None:
        self.sent: list[tuple[bytes, bytes]] = []

    def publish(self, key: bytes, value: bytes) -> None:
        self.sent.append((key, value))


def make() -> tuple[Ingest, ListTarget, Telemetry]:
    target, telemetry = ListTarget(), Telemetry()
    return Ingest(target, MetricPointEncoder(CODEC), telemetry), target, telemetry


def test_frames_become_encoded_points_keyed_by_symbol(samples_dir: Path) -> None:
    ingest, target, telemetry = make()
    assert ingest.on_ws_frame((samples_dir / "mark_price_combined.json").read_bytes(), 5) is None
    ingest.on_open_interest((samples_dir / "open_interest.json").read_text(), 6)
    ingest.sync()
    assert [k for k, _ in target.sent] == [b"BTCUSDT"] * 6
    decoded = [CODEC.decode(v) for _, v in target.sent]
    assert decoded[0]["metric"] == Metric.MARK_PRICE and decoded[0]["ingest_time"] == 5
    assert decoded[-1] == {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": Metric.OPEN_INTEREST,
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


class BatchTarget(ListTarget):
    """A target taking a frame's points in one call, as the publisher does."""

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def publish_many(self, batch: list[tuple[bytes, list[bytes]]]) -> None:
        self.calls += 1
        self.sent.extend((k, v) for k, vs in batch for v in vs)


def _item(symbol: str, k: int, **changes: object) -> dict[str, object]:
    d: dict[str, object] = {"e": "markPriceUpdate", "E": 1790000000000 + 1000 * k, "s": symbol,
                            "p": f"{100 + k}.25", "i": "99.5", "P": "100.125", "r": "-0.00006042",
                            "T": 1790006400000}
    d.update(changes)
    return d


FRAMES = [
    json.dumps({"stream": "btcusdt@markPrice@1s", "data": _item("BTCUSDT", 1)}),
    json.dumps({"stream": "btcusdt_240628@markPrice@1s", "data": _item("BTCUSDT_240628", 1, r="", T=0)}),
    json.dumps({"stream": "!markPrice@arr@1s", "data": [
        _item("BTCUSDT", 2), _item("ETHUSDT", 2, p="nan"), _item("ETHUSDT", 3), _item("SOLUSDT", 2, T=0),
        {"e": "markPriceUpdate"}, _item("XRPUSDT", 2)]}),
    '{"result":null,"id":7}',
    "{oops",
    json.dumps({"stream": "btcusdt@markPrice@1s", "data": _item("BTCUSDT", 4, p="-1")}),
]


@pytest.mark.parametrize("symbols", [None, frozenset({"BTCUSDT", "ETHUSDT"})])
def test_frame_path_writes_what_the_record_path_writes(symbols: frozenset[str] | None) -> None:
    """Bodies written straight from the parsed fields, handed over once per frame, are the
    records' bytes in the same order, with the same counters and rejections."""
    encoder = MetricPointEncoder(CODEC)
    results = []
    for target, encode in ((ListTarget(), lambda r: CODEC.encode(r)), (ListTarget(), encoder),
                           (BatchTarget(), encoder)):
        telemetry = Telemetry()
        ingest = Ingest(target, encode, telemetry, symbols=symbols)
        answers = [ingest.on_ws_frame(f, 1790000000777) for f in FRAMES]
        ingest.sync()
        results.append((target.sent, answers, telemetry.snapshot()["frames_rejected"],
                        telemetry.get("points_published"), ingest.frames_ws, dict(ingest.last_event)))
    assert results[0] == results[1] == results[2]
    sent = results[0][0]
    assert sent and all(CODEC.decode(v)["symbol"].encode() == k for k, v in sent)
    assert isinstance(target, BatchTarget) and target.calls == 3  # one hand-off per frame with points


def _publishers() -> tuple[Publisher, Publisher, Telemetry, Telemetry]:
    """Two publishers with tiny buffers and no broker: the queue fills at once."""
    out = []
    for _ in range(2):
        telemetry = Telemetry()
        cfg = producer_config("127.0.0.1:1", buffer_max_messages=10, extra={"log_level": 0})
        out.append((Publisher(cfg, "t", telemetry, overflow_max_points=5), telemetry))
    return out[0][0], out[1][0], out[0][1], out[1][1]


def test_publish_many_buffers_and_drops_as_a_call_per_point_does() -> None:
    one, many, t_one, t_many = _publishers()
    batches = [[(b"A", [b"a%d" % i for i in range(4)]), (b"B", [b"b%d" % i for i in range(4)])]
               for _ in range(4)]
    batches[1].append((b"C", []))
    for batch in batches:
        for key, values in batch:
            for value in values:
                one.publish(key, value)
        many.publish_many(batch)
    assert one.congested and many.congested
    assert many.enqueued == one.enqueued == 10
    assert list(many._overflow) == list(one._overflow)
    assert [v for _, v in many._overflow] == [b"a3", b"b0", b"b1", b"b2", b"b3"]  # the newest kept
    assert (t_many.get("points_dropped", {"reason": "buffer_full"})
            == t_one.get("points_dropped", {"reason": "buffer_full"}) == 32 - 10 - 5)
    for pub in (one, many):
        pub.close(0.2)


def test_publish_many_drops_a_point_kafka_never_takes_and_keeps_the_rest() -> None:
    telemetry = Telemetry()
    cfg = producer_config("127.0.0.1:1", extra={"log_level": 0, "message.max.bytes": 1000})
    pub = Publisher(cfg, "t", telemetry)
    pub.publish_many([(b"A", [b"x", b"y" * 5000, b"z"]), (b"B", [b"w"])])
    assert pub.enqueued == 3 and not pub.congested
    assert telemetry.get("points_dropped", {"reason": "msg_size_too_large"}) == 1
    pub.close(0.2)
