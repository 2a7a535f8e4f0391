"""Binance fundingInfo: every followed perpetual gets its funding interval, 8 h unless
the answer lists it; bad items are skipped and named, never costing the good ones."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpstream.producer import funding_info
from perpstream.producer.binance import load_json
from perpstream.producer.conflate import FundingIntervals
from perpstream.producer.exceptions import FrameRejected
from perpstream.producer.funding_info import (
    FundingTable,
    funding_info_url,
    funding_intervals,
    interval_points,
)


def item(symbol: Any, hours: Any = 4, **extra: Any) -> dict[str, Any]:
    """An item shaped as Binance's docs show one."""
    return {"symbol": symbol, "adjustedFundingRateCap": "0.02500000",
            "adjustedFundingRateFloor": "-0.02500000", "fundingIntervalHours": hours, "disclaimer": False,
            **extra}


# As Binance answers it (weight 0): only adjusted symbols, one of them still at 8 h (cap adjusted only).
BODY = json.dumps([item("BLZUSDT", 4), item("GTCUSDT", 8), item("LPTUSDT", 1), item("UNLISTEDUSDT", 2)])
LISTED = ["BTCUSDT", "BLZUSDT", "GTCUSDT", "LPTUSDT", "1000PEPEUSDT", "币安人生USDT"]


def test_every_listed_symbol_gets_its_interval_eight_hours_unless_listed() -> None:
    table = funding_intervals(load_json(BODY), LISTED)
    assert table == FundingTable(
        {"1000PEPEUSDT": 8.0, "BLZUSDT": 4.0, "BTCUSDT": 8.0, "GTCUSDT": 8.0, "LPTUSDT": 1.0,
         "币安人生USDT": 8.0},
        {})
    assert all(type(h) is float for h in table.hours.values())


def test_an_empty_answer_means_every_symbol_at_eight_hours() -> None:
    assert funding_intervals([], ["BTCUSDT"]).hours == {"BTCUSDT": 8.0}
    assert funding_intervals([item("BTCUSDT", 4)], []) == FundingTable({}, {})


@pytest.mark.parametrize("body", [{}, {"code": -1003, "msg": "Too many requests"}, None, "[]", 3, True])
def test_an_answer_that_is_not_an_array_is_rejected(body: Any) -> None:
    with pytest.raises(FrameRejected) as exc:
        funding_intervals(body, LISTED)
    assert exc.value.reason == funding_info.NOT_ARRAY


@pytest.mark.parametrize(("bad", "why"), [
    (item("BLZUSDT", None), "no fundingIntervalHours"),
    ({"symbol": "BLZUSDT"}, "no fundingIntervalHours"),
    (item("BLZUSDT", "4"), "is not a number"),
    (item("BLZUSDT", True), "is not a number"),
    (item("BLZUSDT", 0), "is not in (0, 24]"),
    (item("BLZUSDT", -4), "is not in (0, 24]"),
    (item("BLZUSDT", 25), "is not in (0, 24]"),
    (item("BLZUSDT", float("nan")), "is not in (0, 24]"),
    (item("BLZUSDT", float("inf")), "is not in (0, 24]"),
    (item("BLZUSDT", 10**400), "is not in (0, 24]"),
])
def test_a_bad_item_leaves_its_symbol_out_and_named_and_the_rest_read(bad: dict[str, Any], why: str) -> None:
    listed = ["BLZUSDT", "LPTUSDT", "GTCUSDT", "X"]
    table = funding_intervals([item("LPTUSDT", 1), bad, item("GTCUSDT", 8)], listed)
    assert table.hours == {"GTCUSDT": 8.0, "LPTUSDT": 1.0, "X": 8.0}  # BLZUSDT's interval is unknown
    assert list(table.rejected) == ["BLZUSDT"] and why in table.rejected["BLZUSDT"]


def test_items_without_a_readable_symbol_are_named_and_skipped() -> None:
    table = funding_intervals([[1], "BLZUSDT", item(None), item(7), item("LPTUSDT", 1)], ["LPTUSDT"])
    assert table.hours == {"LPTUSDT": 1.0}
    assert table.rejected == {"[1]": "item is not an object", "'BLZUSDT'": "item is not an object",
                              "None": "symbol is not a string", "7": "symbol is not a string"}


def test_bad_items_of_symbols_not_followed_are_ignored() -> None:
    assert funding_intervals([item("OTHERUSDT", "x")], ["BTCUSDT"]) == FundingTable({"BTCUSDT": 8.0}, {})


def test_a_symbol_listed_twice_counts_once_if_it_agrees_and_not_at_all_if_it_does_not() -> None:
    agreeing = [item("BLZUSDT", 4), item("BLZUSDT", 4.0)]
    assert funding_intervals(agreeing, ["BLZUSDT"]).hours == {"BLZUSDT": 4.0}
    for body in ([item("BLZUSDT", 4), item("BLZUSDT", 1), item("BLZUSDT", 4)],
                 [item("BLZUSDT", 4), item("BLZUSDT", "x")], [item("BLZUSDT", "x"), item("BLZUSDT", 4)]):
        table = funding_intervals(body, ["BLZUSDT"])
        assert table.hours == {} and list(table.rejected) == ["BLZUSDT"]


def test_url_and_cost() -> None:
    assert funding_info_url("https://fapi.binance.com/") == "https://fapi.binance.com/fapi/v1/fundingInfo"
    assert funding_info.FUNDING_INFO_WEIGHT == 0
    assert (funding_info.FUNDING_POOL_REQUESTS, funding_info.FUNDING_POOL_WINDOW_S) == (500, 300.0)


def test_points_are_published_once_then_on_change() -> None:
    now = 1_790_000_000_000
    first = interval_points(funding_intervals(load_json(BODY), ["BTCUSDT", "BLZUSDT"]).hours, now)
    assert first == [
        {"source": "binance_usdm", "symbol": "BLZUSDT", "metric": "funding_interval_hours", "value": 4.0,
         "event_time": now, "ingest_time": now},
        {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": "funding_interval_hours", "value": 8.0,
         "event_time": now, "ingest_time": now}]
    f = FundingIntervals()
    assert f.observe(first) == first
    changed = funding_intervals([item("BLZUSDT", 1)], ["BTCUSDT", "BLZUSDT"])
    again = interval_points(changed.hours, now + 60_000)
    assert f.observe(again) == [again[0]]


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    | st.sampled_from(["BLZUSDT", "BTCUSDT", "fundingIntervalHours"]),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(
        st.sampled_from(["symbol", "fundingIntervalHours", "disclaimer", "x"]), children, max_size=4),
    max_leaves=20)
_ITEMS = st.one_of(_JSON, st.builds(item, st.sampled_from(["BLZUSDT", "BTCUSDT", "ETHUSDT"]),
                                    st.one_of(
    st.sampled_from([1, 2, 4, 8, 4.0, 0.5, 24, 0, -4, 25, True, False, float("nan"), "4"]), _JSON)))


@settings(max_examples=500, deadline=None)
@given(body=st.one_of(_JSON, st.lists(_ITEMS, max_size=6)))
def test_any_answer_is_read_exactly_or_rejected(body: Any) -> None:
    listed = ["BLZUSDT", "BTCUSDT"]
    try:
        table = funding_intervals(body, listed)
    except FrameRejected as exc:
        assert exc.reason == funding_info.NOT_ARRAY and not isinstance(body, list)
        return
    assert isinstance(body, list)
    for symbol in listed:
        named = [x for x in body if isinstance(x, dict) and x.get("symbol") == symbol]
        said: list[Any] = [x.get("fundingIntervalHours") for x in named]
        clean = all(type(h) in (int, float) and 0 < h <= 24 for h in said) and len(set(said)) <= 1
        if clean:  # read exactly: what Binance said, or 8 h when it says nothing
            assert table.hours[symbol] == (float(said[0]) if said else 8.0)
            assert symbol not in table.rejected
        else:
            assert symbol not in table.hours and symbol in table.rejected
