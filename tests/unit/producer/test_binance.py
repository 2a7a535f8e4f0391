"""Normalisation of Binance payloads, from the recorded sample files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perpstream.producer import binance
from perpstream.producer.binance import PartialFrame
from perpstream.producer.exceptions import FrameRejected
from perpstream.schemas.models import Metric, MetricPoint

INGEST = 1_790_526_539_123


def _load(samples_dir: Path, name: str) -> str:
    return (samples_dir / name).read_text()


def _by_metric(points: list[dict]) -> dict[str, float]:
    return {p["metric"]: p["value"] for p in points}


def test_combined_frame_gives_every_metric(samples_dir: Path) -> None:
    msg = json.loads(_load(samples_dir, "mark_price_combined.json"))
    points = binance.points_from_message(msg, INGEST)
    assert _by_metric(points) == {
        Metric.MARK_PRICE: 64240.38272864, Metric.INDEX_PRICE: 64273.72847826,
        Metric.ESTIMATED_SETTLE_PRICE: 64361.80163225, Metric.FUNDING_RATE: -0.00006042,
        Metric.NEXT_FUNDING_TIME: 1781424000000.0,
    }
    for p in points:
        MetricPoint.from_record(p)  # every point satisfies the contract
        assert p["event_time"] == 1781419401002 and p["ingest_time"] == INGEST
        assert p["symbol"] == "BTCUSDT" and p["source"] == "binance_usdm"


def test_raw_frame_with_new_fields_ignores_them(samples_dir: Path) -> None:
    points = binance.points_from_message(json.loads(_load(samples_dir, "mark_price_raw.json")), INGEST)
    assert len(points) == 5 and _by_metric(points)[Metric.MARK_PRICE] == 84551.10762319


def test_delivery_contract_has_no_funding_metrics(samples_dir: Path) -> None:
    points = binance.points_from_message(json.loads(_load(samples_dir, "mark_price_delivery.json")), INGEST)
    assert set(_by_metric(points)) == {Metric.MARK_PRICE, Metric.INDEX_PRICE, Metric.ESTIMATED_SETTLE_PRICE}


def test_all_market_array(samples_dir: Path) -> None:
    msg = json.loads(_load(samples_dir, "mark_price_all_market.json"))
    points = binance.points_from_message(msg, INGEST)
    assert {p["symbol"] for p in points} == {"BTCUSDT", "ETHUSDT"} and len(points) == 10
    only_eth = binance.points_from_message(msg, INGEST, symbols=frozenset({"ETHUSDT"}))
    assert {p["symbol"] for p in only_eth} == {"ETHUSDT"}


def test_prices_round_trip_exactly() -> None:
    for text in ("64240.38272864", "0.00000801", "-0.00006042", "1e-8", "123456789.123456789"):
        d = {"e": "markPriceUpdate", "E": 1781419401002, "s": "X", "p": "1", "i": "1", "P": "1",
             "r": text, "T": 0}
        v = _by_metric(binance.mark_price_points(d, INGEST))[Metric.FUNDING_RATE]
        assert v == float(text) and float(repr(v)) == v


def test_open_interest(samples_dir: Path) -> None:
    p = binance.open_interest_point(json.loads(_load(samples_dir, "open_interest.json")), INGEST)
    assert p == {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": Metric.OPEN_INTEREST,
                 "value": 10659.509, "event_time": 1589437530011, "ingest_time": INGEST}


def test_control_messages(samples_dir: Path) -> None:
    assert binance.is_control(json.loads(_load(samples_dir, "subscribe_ack.json")))
    assert binance.is_control(json.loads(_load(samples_dir, "subscribe_error.json")))
    assert not binance.is_control(json.loads(_load(samples_dir, "mark_price_combined.json")))


GOOD = {"e": "markPriceUpdate", "E": 1781419401002, "s": "BTCUSDT", "p": "1.5", "i": "1.4",
        "P": "1.6", "r": "0.0001", "T": 1781424000000}


@pytest.mark.parametrize(("change", "reason"), [
    ({"p": None}, "bad_number"),
    ({"p": "abc"}, "bad_number"),
    ({"p": "-5"}, "bad_number"),
    ({"i": "NaN"}, "non_finite"),
    ({"P": "inf"}, "non_finite"),
    ({"r": "-Infinity"}, "non_finite"),
    ({"E": -1}, "bad_timestamp"),
    ({"E": 10**16}, "bad_timestamp"),
    ({"E": "1781419401002"}, "bad_timestamp"),
    ({"E": True}, "bad_timestamp"),
    ({"T": 5}, "bad_timestamp"),
    ({"s": "btcusdt"}, "bad_symbol"),
    ({"s": ""}, "bad_symbol"),
    ({"e": "aggTrade"}, "unexpected_event"),
])
def test_bad_values_rejected(change: dict, reason: str) -> None:
    with pytest.raises(FrameRejected) as info:
        binance.mark_price_points({**GOOD, **change}, INGEST)
    assert info.value.reason == reason


@pytest.mark.parametrize("missing", ["e", "E", "s", "p", "i", "P", "r", "T"])
def test_missing_field_rejected(missing: str) -> None:
    d = dict(GOOD)
    del d[missing]
    with pytest.raises(FrameRejected) as info:
        binance.mark_price_points(d, INGEST)
    assert info.value.reason == "missing_field"


@pytest.mark.parametrize(("raw", "reason"), [
    ("{not json", "bad_json"),
    (b"\xff\xfe", "bad_json"),
    ("[1, 2", "bad_json"),
    ("x" * 5000, "too_large"),
])
def test_undecodable_frames(raw: str | bytes, reason: str) -> None:
    with pytest.raises(FrameRejected) as info:
        binance.load_json(raw, max_bytes=4000)
    assert info.value.reason == reason


def test_non_object_payloads() -> None:
    for msg in (42, "x", None, {"stream": "a", "data": 5}):
        with pytest.raises(FrameRejected) as info:
            binance.points_from_message(msg, INGEST)
        assert info.value.reason == "not_object"


def test_array_keeps_good_items_and_reports_bad_ones() -> None:
    msg = {"stream": "!markPrice@arr@1s", "data": [GOOD, {**GOOD, "p": "x"}, {**GOOD, "s": "ETHUSDT"}]}
    with pytest.raises(PartialFrame) as info:
        binance.points_from_message(msg, INGEST)
    assert len(info.value.points) == 10 and info.value.reason == "bad_number"


def test_sharding_and_names() -> None:
    streams = [binance.mark_price_stream(f"S{i:03d}USDT") for i in range(450)]
    shards = binance.shard(streams, 200)
    assert [len(s) for s in shards] == [200, 200, 50]
    assert sorted(s for group in shards for s in group) == sorted(streams)
    assert binance.mark_price_stream("BTCUSDT") == "btcusdt@markPrice@1s"
    assert binance.combined_stream_url("wss://fstream.binance.com/market/") == \
        "wss://fstream.binance.com/market/stream"
    assert json.loads(binance.subscribe_message(["a", "b"], 7)) == \
        {"method": "SUBSCRIBE", "params": ["a", "b"], "id": 7}


def test_the_listing_follows_trading_perpetuals_only(samples_dir: Path) -> None:
    info = json.loads(_load(samples_dir, "exchange_info_excerpt.json"))
    assert binance.perpetual_listing(info) == ({"BTCUSDT"}, {})


def test_stream_names_are_the_symbol_lower_cased() -> None:
    assert binance.mark_price_stream("1000PEPEUSDT") == "1000pepeusdt@markPrice@1s"
    assert binance.mark_price_stream("BTCUSDT_261225") == "btcusdt_261225@markPrice@1s"
    assert binance.mark_price_stream("币安人生USDT") == "币安人生usdt@markPrice@1s"
    assert binance.mark_price_stream("币安人生USDT", fast=False) == "币安人生usdt@markPrice"


def test_listing_skips_entries_whose_symbol_breaks_the_rule(samples_dir: Path) -> None:
    info = json.loads(_load(samples_dir, "exchange_info_excerpt.json"))
    perpetual = {"contractType": "PERPETUAL", "status": "TRADING"}
    info["symbols"] += [{**perpetual, "symbol": s} for s in ("币安人生USDT", "1000PEPEUSDT", "bad usdt",
                                                              "btcusdt", "X" * 65)]
    info["symbols"] += [{**perpetual, "symbol": 7}, {**perpetual}, "not an entry",
                        {"symbol": "bad too", "contractType": "CURRENT_QUARTER", "status": "TRADING"}]
    listing = binance.perpetual_listing(info)
    assert listing.symbols == {"BTCUSDT", "币安人生USDT", "1000PEPEUSDT"}
    # "bad too" is not a perpetual, so it is not followed and not reported either
    assert set(listing.rejected) == {"bad usdt", "btcusdt", "X" * 65, "7", "None"}
    assert "64" in listing.rejected["X" * 65]
    with pytest.raises(FrameRejected):
        binance.perpetual_listing({"symbols": None})


def test_sample_truncates() -> None:
    assert binance.sample("x" * 1000, 10).startswith("xxxxxxxxxx...(+990")
