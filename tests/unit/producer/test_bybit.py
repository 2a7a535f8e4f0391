"""Bybit v5 linear: ticker snapshots and deltas merged per symbol, control answers, listing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpstream.producer import bybit
from perpstream.producer.bybit import BybitApiError, ErrorAck, Pong, SubscribeAck, TickerBook, TickerUpdate
from perpstream.producer.exceptions import FrameRejected
from perpstream.schemas.models import Metric, MetricPoint

INGEST = 1_673_272_862_000

# Shaped as Bybit's public docs show a linear ticker snapshot (every field a string).
SNAPSHOT: dict[str, Any] = {
    "topic": "tickers.BTCUSDT", "type": "snapshot",
    "data": {
        "symbol": "BTCUSDT", "tickDirection": "PlusTick", "price24hPcnt": "0.017103",
        "lastPrice": "17216.00", "prevPrice24h": "16926.50", "highPrice24h": "17281.50",
        "lowPrice24h": "16915.00", "prevPrice1h": "17238.00", "markPrice": "17217.33",
        "indexPrice": "17227.36", "openInterest": "68744.761", "openInterestValue": "1183601235.91",
        "turnover24h": "1570383121.943499", "volume24h": "91705.276",
        "nextFundingTime": "1673280000000", "fundingRate": "-0.000212", "bid1Price": "17215.50",
        "bid1Size": "84.489", "ask1Price": "17216.00", "ask1Size": "83.020",
    },
    "cs": 24987956059, "ts": 1673272861686,
}


def _delta(ts: int, **fields: str) -> dict[str, Any]:
    return {"topic": "tickers.BTCUSDT", "type": "delta", "data": {"symbol": "BTCUSDT", **fields},
            "cs": 24987956060, "ts": ts}


def _text(msg: dict[str, Any]) -> str:
    return json.dumps(msg)


def _rejected(raw: str, book: TickerBook) -> str:
    with pytest.raises(FrameRejected) as exc:
        bybit.parse_ws_message(raw, book)
    assert exc.value.reason in bybit.REJECT_REASONS
    return exc.value.reason


def test_snapshot_gives_every_published_metric_at_the_envelope_time() -> None:
    book = TickerBook()
    update = bybit.parse_ws_message(_text(SNAPSHOT), book)
    assert update == TickerUpdate("BTCUSDT", 1673272861686, {
        Metric.MARK_PRICE: 17217.33, Metric.INDEX_PRICE: 17227.36, Metric.FUNDING_RATE: -0.000212,
        Metric.NEXT_FUNDING_TIME: 1673280000000.0, Metric.OPEN_INTEREST: 68744.761,
    }, snapshot=True)
    points = bybit.records(update, INGEST)
    for p in points:
        MetricPoint.from_record(p)  # every point satisfies the contract
        assert p["source"] == "bybit_linear" and p["symbol"] == "BTCUSDT"
        assert p["event_time"] == 1673272861686 and p["ingest_time"] == INGEST
    assert len(points) == 5


def test_deltas_give_only_what_they_changed_and_the_book_keeps_the_rest() -> None:
    book = TickerBook()
    bybit.parse_ws_message(_text(SNAPSHOT), book)
    # a delta of last price and book tops only: no published metric changed
    quiet = bybit.parse_ws_message(_text(_delta(1673272861786, lastPrice="17217.50",
                                                  bid1Price="17217.00")), book)
    assert quiet == TickerUpdate("BTCUSDT", 1673272861786, {}, snapshot=False)
    assert bybit.records(quiet, INGEST) == []

    mark = bybit.parse_ws_message(_text(_delta(1673272861886, markPrice="17218.10",
                                                 openInterest="68750.001")), book)
    assert mark == TickerUpdate("BTCUSDT", 1673272861886, {
        Metric.MARK_PRICE: 17218.10, Metric.OPEN_INTEREST: 68750.001}, snapshot=False)
    assert book.current("BTCUSDT") == {
        Metric.MARK_PRICE: 17218.10, Metric.INDEX_PRICE: 17227.36, Metric.FUNDING_RATE: -0.000212,
        Metric.NEXT_FUNDING_TIME: 1673280000000.0, Metric.OPEN_INTEREST: 68750.001,
    }


def test_delta_changing_only_the_funding_rate_publishes_only_the_funding_rate() -> None:
    book = TickerBook()
    bybit.parse_ws_message(_text(SNAPSHOT), book)
    update = bybit.parse_ws_message(_text(_delta(1673272861986, fundingRate="0.0001")), book)
    assert isinstance(update, TickerUpdate)
    assert [(p["metric"], p["value"], p["event_time"]) for p in bybit.records(update, INGEST)] == [
        (Metric.FUNDING_RATE, 0.0001, 1673272861986)]
    assert book.current("BTCUSDT")[Metric.MARK_PRICE] == 17217.33


def test_delta_before_any_snapshot_is_rejected_until_the_snapshot_arrives() -> None:
    book = TickerBook()
    assert _rejected(_text(_delta(1673272861786, markPrice="17218.10")), book) == "delta_before_snapshot"
    assert book.current("BTCUSDT") == {}
    bybit.parse_ws_message(_text(SNAPSHOT), book)
    after = bybit.parse_ws_message(_text(_delta(1673272861886, markPrice="17218.10")), book)
    assert isinstance(after, TickerUpdate) and after.values == {Metric.MARK_PRICE: 17218.10}
    book.reset()  # a new connection: its deltas wait for its own snapshot
    assert _rejected(_text(_delta(1673272861986, markPrice="17219.00")), book) == "delta_before_snapshot"


def test_a_snapshot_replaces_the_symbol_state() -> None:
    book = TickerBook()
    bybit.parse_ws_message(_text(SNAPSHOT), book)
    bybit.parse_ws_message(_text(_delta(1673272861886, openInterest="1.5")), book)
    again = {**SNAPSHOT, "ts": 1673272900000,
             "data": {k: v for k, v in SNAPSHOT["data"].items() if k != "openInterest"}}
    bybit.parse_ws_message(_text(again), book)
    assert Metric.OPEN_INTEREST not in book.current("BTCUSDT")


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("markPrice", "NaN", "non_finite"),
    ("indexPrice", "inf", "non_finite"),
    ("openInterest", "-3", "bad_number"),
    ("markPrice", "-0.5", "bad_number"),
    ("markPrice", "1_000", "bad_number"),
    ("markPrice", " 17218", "bad_number"),
    ("fundingRate", "abc", "bad_number"),
    ("markPrice", 17218.1, "bad_number"),  # Bybit sends strings; a number is not its payload
    ("nextFundingTime", "12", "bad_timestamp"),
    ("nextFundingTime", "1.6e12", "bad_timestamp"),
    ("nextFundingTime", "9" * 5000, "bad_timestamp"),  # more digits than int() will read
])
def test_bad_value_rejects_the_whole_delta_and_leaves_the_book(field: str, value: Any, reason: str) -> None:
    book = TickerBook()
    bybit.parse_ws_message(_text(SNAPSHOT), book)
    before = book.current("BTCUSDT")
    msg = _delta(1673272861886, openInterest="70000.0")
    msg["data"][field] = value
    assert _rejected(_text(msg), book) == reason
    assert book.current("BTCUSDT") == before


def test_negative_funding_is_a_value_not_an_error() -> None:
    book = TickerBook()
    bybit.parse_ws_message(_text(SNAPSHOT), book)
    update = bybit.parse_ws_message(_text(_delta(1673272861886, fundingRate="-0.0075")), book)
    assert isinstance(update, TickerUpdate) and update.values == {Metric.FUNDING_RATE: -0.0075}


def test_contract_without_funding_publishes_no_funding_points() -> None:
    data = {**SNAPSHOT["data"], "symbol": "BTC-27DEC24", "fundingRate": "", "nextFundingTime": "0"}
    msg = {**SNAPSHOT, "topic": "tickers.BTC-27DEC24", "data": data}
    update = bybit.parse_ws_message(_text(msg), TickerBook())
    assert isinstance(update, TickerUpdate)
    assert set(update.values) == {Metric.MARK_PRICE, Metric.INDEX_PRICE, Metric.OPEN_INTEREST}


@pytest.mark.parametrize(("raw", "reason"), [
    ('{"topic":"tickers.BTCUSDT","type":"snapshot","data":{', "bad_json"),
    ("[1, 2]", "not_object"),
    ('{"topic":"tickers.BTCUSDT","type":"snapshot","data":[],"ts":1673272861686}', "not_object"),
    ('{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"markPrice":"1"},"ts":1673272861686}',
     "missing_field"),
    ('{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT"}}', "missing_field"),
    ('{"topic":"tickers.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT"},"ts":"x"}',
     "bad_timestamp"),
    ('{"topic":"tickers.ETHUSDT","type":"snapshot","data":{"symbol":"BTCUSDT"},"ts":1673272861686}',
     "unexpected_topic"),
    ('{"topic":"orderbook.1.BTCUSDT","type":"snapshot","data":{"symbol":"BTCUSDT"},"ts":1673272861686}',
     "unexpected_topic"),
    ('{"topic":"tickers.btc usdt","type":"snapshot","data":{"symbol":"btc usdt"},"ts":1673272861686}',
     "bad_symbol"),
    ('{"topic":"tickers.BTCUSDT","type":"update","data":{"symbol":"BTCUSDT"},"ts":1673272861686}',
     "unexpected_event"),
    ('{"success":true,"ret_msg":"","conn_id":"c1","req_id":"","op":"auth"}', "unexpected_event"),
    ('{"hello":"world"}', "unexpected_event"),
])
def test_messages_that_are_not_bybit_answers_are_rejected_with_a_reason(raw: str, reason: str) -> None:
    assert _rejected(raw, TickerBook()) == reason


def test_nan_literal_in_the_json_text_is_rejected() -> None:
    book = TickerBook()
    bybit.parse_ws_message(_text(SNAPSHOT), book)
    raw = '{"topic":"tickers.BTCUSDT","type":"delta","data":{"symbol":"BTCUSDT","markPrice":NaN},' \
          '"cs":1,"ts":1673272861886}'
    assert _rejected(raw, book) == "bad_number"


def test_control_answers() -> None:
    book = TickerBook()
    ack = '{"success":true,"ret_msg":"","conn_id":"cejreaspqfh3sjdnldmg-p","req_id":"7","op":"subscribe"}'
    assert bybit.parse_ws_message(ack, book) == SubscribeAck("7", "cejreaspqfh3sjdnldmg-p")
    pong = '{"success":true,"ret_msg":"pong","conn_id":"0970e817-426e","req_id":"","op":"ping"}'
    assert bybit.parse_ws_message(pong, book) == Pong("0970e817-426e")
    op_pong = '{"req_id":"","op":"pong","args":["1675418560633"],"conn_id":"cfcb4ocsvfriu23r3er0"}'
    assert bybit.parse_ws_message(op_pong, book) == Pong("cfcb4ocsvfriu23r3er0")
    refused = ('{"success":false,"ret_msg":"Invalid topic :[tickers.NOPEUSDT]",'
               '"conn_id":"c1","req_id":"8","op":"subscribe"}')
    assert bybit.parse_ws_message(refused, book) == ErrorAck(
        "subscribe", "Invalid topic :[tickers.NOPEUSDT]", "8")
    assert _rejected('{"success":false,"op":"subscribe"}', book) == "missing_field"


_VALUES = st.one_of(
    st.sampled_from(["17218.1", "-0.0001", "0", "", "NaN", "-inf", "1e400", "1_0", " 1", "\uff11",
                     "1673280000000", "9" * 5000, "BTCUSDT", "btcusdt", "tickers.BTCUSDT"]),
    st.text(max_size=8), st.integers(), st.floats(), st.none(), st.booleans(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
_DATA_KEYS = st.sampled_from(["symbol", "markPrice", "indexPrice", "fundingRate", "nextFundingTime",
                              "openInterest", "lastPrice"])
_MESSAGES = st.fixed_dictionaries({}, optional={
    "topic": st.one_of(st.just("tickers.BTCUSDT"), _VALUES),
    "type": st.one_of(st.sampled_from(["snapshot", "delta"]), _VALUES),
    "data": st.one_of(st.dictionaries(_DATA_KEYS, _VALUES), _VALUES),
    "ts": st.one_of(st.just(1673272861686), _VALUES),
    "success": _VALUES, "op": st.one_of(st.sampled_from(["subscribe", "ping", "pong"]), _VALUES),
    "ret_msg": st.one_of(st.just("pong"), _VALUES), "conn_id": _VALUES, "req_id": _VALUES,
})


#: Bybit field -> metric, written from the docs (the oracle does not read the module's table).
_FIELD_METRIC = {"markPrice": Metric.MARK_PRICE, "indexPrice": Metric.INDEX_PRICE,
                 "fundingRate": Metric.FUNDING_RATE, "nextFundingTime": Metric.NEXT_FUNDING_TIME,
                 "openInterest": Metric.OPEN_INTEREST}
_NO_VALUE = {"fundingRate": ("",), "nextFundingTime": ("", "0")}
#: Values of each field as Bybit sends them (the rest of the generated values are not).
_READABLE = {"markPrice": ("17218.1", "0.0001", "0"), "indexPrice": ("17218.1", "0.0001", "0"),
             "openInterest": ("17218.1", "0.0001", "0"), "fundingRate": ("17218.1", "0.0001", "0", ""),
             "nextFundingTime": ("1673280000000", "0", "")}

_TICKERS = st.builds(
    lambda kind, data: {"topic": "tickers.BTCUSDT", "type": kind, "data": {**data, "symbol": "BTCUSDT"},
                        "cs": 1, "ts": 1673272861686},
    st.sampled_from(["snapshot", "delta"]),
    # each value readable half the time, so whole messages get through as well as get rejected
    st.fixed_dictionaries({}, optional={
        **{k: st.booleans().flatmap(lambda good, k=k: st.sampled_from(_READABLE[k]) if good else _VALUES)
           for k in _READABLE},
        "lastPrice": _VALUES}))


def _readable(msg: Any, seen_snapshot: bool) -> bool:
    """A well-formed ticker message of BTCUSDT with values Bybit sends, after a snapshot if a delta."""
    if not (isinstance(msg, dict) and msg.get("topic") == "tickers.BTCUSDT" and msg.get("ts") == 1673272861686
            and msg.get("type") in ("snapshot", "delta") and isinstance(msg.get("data"), dict)
            and msg["data"].get("symbol") == "BTCUSDT"):
        return False
    if msg["type"] == "delta" and not seen_snapshot:
        return False
    return all(v in _READABLE[k] for k, v in msg["data"].items() if k in _READABLE)


@settings(max_examples=400, deadline=None)
@given(msgs=st.lists(st.one_of(_MESSAGES, _TICKERS, st.just(SNAPSHOT)), max_size=6))
def test_generated_messages_are_read_exactly_or_rejected_and_the_book_holds(msgs: list[Any]) -> None:
    book = TickerBook()
    seen_snapshot = False
    for msg in msgs:
        before = book.current("BTCUSDT")
        try:
            out = bybit.parse_ws_message(json.dumps(msg), book)
        except FrameRejected as exc:
            assert exc.reason in bybit.REJECT_REASONS
            assert not _readable(msg, seen_snapshot), exc  # a message Bybit could send is read
            assert book.current("BTCUSDT") == before  # a rejected message changes nothing
            continue
        if not isinstance(out, TickerUpdate):
            assert isinstance(out, SubscribeAck | Pong | ErrorAck)
            continue
        expected_book = {} if out.snapshot else dict(before)
        expected_values = {}
        for field, metric in _FIELD_METRIC.items():
            if field not in msg["data"]:
                continue
            if msg["data"][field] in _NO_VALUE.get(field, ()):
                expected_book.pop(metric, None)
            else:  # exactly the decimal Bybit sent
                expected_book[metric] = expected_values[metric] = float(msg["data"][field])
        assert out.values == expected_values
        seen_snapshot = True
        assert book.current("BTCUSDT") == expected_book
        for p in bybit.records(out, INGEST):
            MetricPoint.from_record(p)
    # whatever came before, a snapshot is read exactly
    assert bybit.parse_ws_message(_text(SNAPSHOT), book).values[Metric.MARK_PRICE] == 17217.33


def test_too_large_message_is_rejected_before_parsing() -> None:
    with pytest.raises(FrameRejected) as exc:
        bybit.parse_ws_message(_text(SNAPSHOT), TickerBook(), max_bytes=100)
    assert exc.value.reason == "too_large"


# -- instruments-info ---------------------------------------------------------------------


def _instrument(symbol: str, base: str, minutes: Any = 480, contract: str = "LinearPerpetual",
                status: str = "Trading") -> dict[str, Any]:
    return {"symbol": symbol, "contractType": contract, "status": status, "baseCoin": base,
            "quoteCoin": "USDT", "launchTime": "1585526400000", "deliveryTime": "0",
            "deliveryFeeRate": "", "priceScale": "2",
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "100.00", "leverageStep": "0.01"},
            "priceFilter": {"minPrice": "0.10", "maxPrice": "199999.80", "tickSize": "0.10"},
            "lotSizeFilter": {"maxOrderQty": "1190.000", "minOrderQty": "0.001", "qtyStep": "0.001"},
            "unifiedMarginTrade": True, "fundingInterval": minutes, "settleCoin": "USDT",
            "copyTrading": "both", "upperFundingRate": "0.00375", "lowerFundingRate": "-0.00375",
            "isPreListing": False, "preListingInfo": None}


def _page(items: list[dict[str, Any]], cursor: str = "") -> dict[str, Any]:
    return {"retCode": 0, "retMsg": "OK",
            "result": {"category": "linear", "list": items, "nextPageCursor": cursor},
            "retExtInfo": {}, "time": 1735809771618}


def test_listing_keeps_trading_perpetuals_with_base_coin_and_funding_hours() -> None:
    body = _page([
        _instrument("BTCUSDT", "BTC", 480),
        _instrument("1000PEPEUSDT", "1000PEPE", 240),
        _instrument("MYROUSDT", "MYRO", 60),
        _instrument("BTC-27DEC24", "BTC", 0, contract="LinearFutures"),
        _instrument("NEWUSDT", "NEW", status="PreLaunch"),
        _instrument("OLDUSDT", "OLD", status="Settling"),
        _instrument("odd usdt", "ODD"),
        _instrument("BADUSDT", "BAD", "480"),
    ])
    listing = bybit.perpetual_listing(json.loads(json.dumps(body)))
    assert listing.symbols == {"BTCUSDT", "1000PEPEUSDT", "MYROUSDT"}
    assert listing.base_coins == {"BTCUSDT": "BTC", "1000PEPEUSDT": "1000PEPE", "MYROUSDT": "MYRO"}
    assert listing.funding_hours == {"BTCUSDT": 8.0, "1000PEPEUSDT": 4.0, "MYROUSDT": 1.0}
    assert set(listing.rejected) == {"odd usdt", "BADUSDT"}
    assert "fundingInterval" in listing.rejected["BADUSDT"]
    assert listing.next_cursor is None  # "" marks the last page


def test_listing_pages_follow_the_cursor() -> None:
    first = bybit.perpetual_listing(_page([_instrument("BTCUSDT", "BTC")], cursor="first%3D1000"))
    assert first.next_cursor == "first%3D1000"
    assert bybit.instruments_url("https://api.bybit.com/", first.next_cursor) == (
        "https://api.bybit.com/v5/market/instruments-info?category=linear&limit=1000&cursor=first%3D1000")
    assert bybit.instruments_url("https://api.bybit.com") == (
        "https://api.bybit.com/v5/market/instruments-info?category=linear&limit=1000")


def test_listing_error_envelope_raises_its_code_and_message() -> None:
    body = {"retCode": 10006, "retMsg": "Too many visits!", "result": {}, "retExtInfo": {},
            "time": 1735809771618}
    with pytest.raises(BybitApiError) as exc:
        bybit.perpetual_listing(body)
    assert (exc.value.ret_code, exc.value.ret_msg) == (10006, "Too many visits!")
    assert exc.value.rate_limited
    assert str(exc.value) == "Bybit retCode 10006: Too many visits!"
    with pytest.raises(BybitApiError) as bad:
        bybit.perpetual_listing({"retCode": 10001, "retMsg": "params error", "result": {}})
    assert not bad.value.rate_limited


@pytest.mark.parametrize(("body", "reason"), [
    ([], "not_object"),
    ({"retMsg": "OK", "result": {"list": []}}, "missing_field"),
    ({"retCode": 0, "retMsg": "OK", "result": None}, "missing_field"),
    ({"retCode": 0, "retMsg": "OK", "result": {"category": "linear"}}, "missing_field"),
])
def test_listing_body_that_is_not_an_envelope_is_rejected(body: Any, reason: str) -> None:
    with pytest.raises(FrameRejected) as exc:
        bybit.perpetual_listing(body)
    assert exc.value.reason == reason
