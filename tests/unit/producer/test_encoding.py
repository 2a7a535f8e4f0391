"""The fast MetricPoint encoder writes exactly the bytes the Avro codec writes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from perpstream.producer.encoding import MetricPointEncoder, zigzag_varint
from perpstream.schemas.codec import metric_point_codec, registry_client
from perpstream.schemas.exceptions import TruncatedRecordError
from perpstream.schemas.models import KNOWN_METRICS, Metric

CODEC = metric_point_codec()
ENCODER = MetricPointEncoder(CODEC)


def test_fast_path_is_selected() -> None:
    assert ENCODER.fast


@given(
    symbol=st.text(min_size=1, max_size=70),
    metric=st.sampled_from(sorted(KNOWN_METRICS)),
    value=st.floats(allow_nan=False),
    et=st.integers(-(2**63), 2**63 - 1),
    it=st.integers(-(2**63), 2**63 - 1),
)
def test_same_bytes_as_codec(symbol: str, metric: str, value: float, et: int, it: int) -> None:
    r = {"source": "binance_usdm", "symbol": symbol, "metric": metric, "value": value,
         "event_time": et, "ingest_time": it}
    data = ENCODER.encode(r)
    assert data == CODEC.encode(r)
    assert CODEC.decode(data) == r
    assert ENCODER.event_time(data) == et  # the re-send order after a failed client


@given(
    source=st.text(min_size=1, max_size=20),
    symbol=st.text(min_size=1, max_size=70),
    metrics=st.lists(st.sampled_from(sorted(KNOWN_METRICS)), min_size=1, max_size=6),
    data=st.data(),
    et=st.integers(-(2**63), 2**63 - 1),
    it=st.integers(-(2**63), 2**63 - 1),
)
def test_frame_path_bodies_are_the_codecs_bytes(source: str, symbol: str, metrics: list[str],
                                                data: st.DataObject, et: int, it: int) -> None:
    """What the websocket frame path writes without records: the bytes of each point's record."""
    values = data.draw(st.lists(st.none() | st.floats(allow_nan=False), min_size=len(metrics),
                                max_size=len(metrics)))
    heads = ENCODER.heads(source, symbol, metrics)
    assert heads is not None
    bodies = ENCODER.bodies(heads, et, it, values)
    records = [{"source": source, "symbol": symbol, "metric": m, "value": v, "event_time": et,
                "ingest_time": it} for m, v in zip(metrics, values, strict=True) if v is not None]
    assert bodies == [CODEC.encode(r) for r in records]
    # the record encoder and the frame path share the cached times: interleaved, both stay right
    if records:
        other = {**records[0], "event_time": it}
        assert ENCODER.encode(other) == CODEC.encode(other)
        assert ENCODER.bodies(heads, et, it, values) == bodies


def test_frame_path_bodies_with_confluent_framing() -> None:
    codec = metric_point_codec(registry_client("mock://enc-bodies"), "t-value")
    enc = MetricPointEncoder(codec)
    heads = enc.heads("binance_usdm", "BTCUSDT", (Metric.MARK_PRICE, Metric.FUNDING_RATE))
    assert heads is not None
    assert enc.bodies(heads, 5, 6, (64000.5, -1e-5)) == [
        codec.encode({"source": "binance_usdm", "symbol": "BTCUSDT", "metric": m, "value": v,
                      "event_time": 5, "ingest_time": 6})
        for m, v in ((Metric.MARK_PRICE, 64000.5), (Metric.FUNDING_RATE, -1e-5))]


def test_event_time_of_a_body_cut_short_is_the_reference_decoders_error() -> None:
    r = {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": Metric.MARK_PRICE, "value": 1.5,
         "event_time": 1_700_000_000_123, "ingest_time": 1}
    data = ENCODER.encode(r)
    with pytest.raises(TruncatedRecordError):  # the publisher then keeps the callback order
        ENCODER.event_time(data[: len(CODEC.header()) + 3])


def test_zigzag_known_values() -> None:
    assert zigzag_varint(0) == b"\x00"
    assert zigzag_varint(-1) == b"\x01"
    assert zigzag_varint(1) == b"\x02"
    assert zigzag_varint(64) == b"\x80\x01"


def test_confluent_framing_also_matches() -> None:
    codec = metric_point_codec(registry_client("mock://enc-test"), "t-value")
    enc = MetricPointEncoder(codec)
    rnd = random.Random(3)
    for _ in range(100):
        r = {"source": "s", "symbol": f"S{rnd.randrange(1000)}", "metric": Metric.MARK_PRICE,
             "value": rnd.random(), "event_time": rnd.randrange(2**41), "ingest_time": rnd.randrange(2**41)}
        assert enc.encode(r) == codec.encode(r)
