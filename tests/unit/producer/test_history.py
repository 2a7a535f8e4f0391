"""History and premiumIndex bodies: parsed as Binance documents them, hostile ones rejected item by item."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpstream.producer import history
from perpstream.producer.exceptions import FrameRejected
from perpstream.producer.timespec import parse_instant
from perpstream.schemas.models import Metric

SYM = "BTCUSDT"
NOW = 1_790_000_000_000


def test_funding_history_gives_settled_funding_at_funding_time() -> None:
    doc = [{"symbol": SYM, "fundingRate": "-0.00010000", "fundingTime": 1_789_977_600_000, "markPrice": ""},
           {"symbol": "ETHUSDT", "fundingRate": "0.0001", "fundingTime": 1_789_977_600_000},
           {"symbol": SYM, "fundingRate": "NaN", "fundingTime": 1_789_977_600_001}]
    p = history.funding_rate_points(doc, SYM, 5)
    assert p.points == [{"source": "binance_usdm", "symbol": SYM, "metric": Metric.FUNDING_RATE_SETTLED,
                         "value": -0.0001, "event_time": 1_789_977_600_000, "ingest_time": 5}]
    assert [e.reason for e in p.rejected] == ["bad_symbol", "non_finite"]
    assert p.last_time == 1_789_977_600_001 and p.items == 3


def test_klines_give_the_close_at_close_time_and_skip_the_open_minute() -> None:
    closed = [NOW - 120_000, "1", "2", "0.5", "1.5", "0", NOW - 60_001, "0", 60, "0", "0", "0"]
    still_open = [NOW - 30_000, "1.5", "2", "1", "1.7", "0", NOW + 29_999, "0"]
    bad_span = [NOW - 180_000, "1", "1", "1", "1", "0", NOW - 180_000 + 1000]
    p = history.kline_close_points([closed, still_open, bad_span, "x"], SYM, Metric.MARK_PRICE, 7, NOW)
    assert p.points == [{"source": "binance_usdm", "symbol": SYM, "metric": Metric.MARK_PRICE, "value": 1.5,
                         "event_time": NOW - 60_001, "ingest_time": 7}]
    assert [e.reason for e in p.rejected] == ["bad_timestamp", "not_object"]


def test_open_interest_history_and_premium_index() -> None:
    oi = history.open_interest_hist_points(
        [{"symbol": SYM, "sumOpenInterest": "123.5", "sumOpenInterestValue": "1", "timestamp": NOW}], SYM, 1)
    assert [(x["metric"], x["value"], x["event_time"]) for x in oi.points] == [
        (Metric.OPEN_INTEREST, 123.5, NOW)]
    item = {"symbol": SYM, "markPrice": "2", "indexPrice": "1.9", "estimatedSettlePrice": "1.95",
            "lastFundingRate": "0.0001", "interestRate": "0.0001", "nextFundingTime": NOW + 1000, "time": NOW}
    delivery = {**item, "symbol": "BTCUSDT_261225", "lastFundingRate": "", "nextFundingTime": 0}
    p = history.premium_index_points([item, delivery, {"symbol": 5}], 9)
    assert sorted((x["symbol"], x["metric"]) for x in p.points) == sorted(
        [(SYM, m) for m in (Metric.MARK_PRICE, Metric.INDEX_PRICE, Metric.ESTIMATED_SETTLE_PRICE,
                            Metric.FUNDING_RATE, Metric.NEXT_FUNDING_TIME)]
        + [("BTCUSDT_261225", m)
           for m in (Metric.MARK_PRICE, Metric.INDEX_PRICE, Metric.ESTIMATED_SETTLE_PRICE)])
    assert all(x["event_time"] == NOW for x in p.points)
    assert len(p.rejected) == 1
    only = history.premium_index_points(item, 9, frozenset({"ETHUSDT"}))
    assert only.points == []


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)
item_like = st.fixed_dictionaries({}, optional={
    "symbol": st.sampled_from([SYM, "", "btc", 5]) | st.text(max_size=8),
    "fundingRate": json_values, "fundingTime": json_values, "sumOpenInterest": json_values,
    "timestamp": json_values, "markPrice": json_values, "indexPrice": json_values,
    "estimatedSettlePrice": json_values, "lastFundingRate": json_values, "nextFundingTime": json_values,
    "time": json_values,
})


@settings(max_examples=400, deadline=None)
@given(st.one_of(json_values, st.lists(st.one_of(item_like, json_values), max_size=6)))
def test_hostile_bodies_are_rejected_never_raised(doc: Any) -> None:
    json.dumps(doc, default=str)
    for parse in (lambda d: history.funding_rate_points(d, SYM, 0),
                  lambda d: history.open_interest_hist_points(d, SYM, 0),
                  lambda d: history.kline_close_points(d, SYM, Metric.INDEX_PRICE, 0, NOW),
                  lambda d: history.premium_index_points(d, 0)):
        try:
            out = parse(doc)
        except FrameRejected:
            continue
        for p in out.points:
            assert p["symbol"] and isinstance(p["value"], float) and type(p["event_time"]) is int


@pytest.mark.parametrize(("text", "ms"), [
    ("1767225600000", 1_767_225_600_000), ("2026-01-01", 1_767_225_600_000),
    ("2026-01-01T00:00:00Z", 1_767_225_600_000), ("2026-01-01T02:00:00+02:00", 1_767_225_600_000),
    ("6h", NOW - 21_600_000), ("90m", NOW - 5_400_000), ("7d", NOW - 7 * 86_400_000),
])
def test_instants(text: str, ms: int) -> None:
    assert parse_instant(text, NOW) == ms


@pytest.mark.parametrize("text", ["yesterday", "12", "2200-01-01", "-5h", "\uff16h"])
def test_bad_instants_say_which_forms_are_accepted(text: str) -> None:
    with pytest.raises(ValueError, match=r"not a time|outside 2017"):
        parse_instant(text, NOW)
