"""Hyperliquid perpetuals: activeAssetCtx pushes read at their receive time, the websocket
dialect's requests and control answers, and the meta listing."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpstream.producer import hyperliquid
from perpstream.producer.exceptions import FrameRejected
from perpstream.producer.hyperliquid import DIALECT, FUNDING_INTERVAL_HOURS, Parser
from perpstream.producer.venue import Ack, Instrument, Pong
from perpstream.schemas.models import Metric, MetricPoint

#: 2025-01-01T00:00:00.123Z: 123 ms after a settlement.
INGEST = 1_735_689_600_123
HOUR = 3_600_000

# Shaped as the venue sends a perp ctx (strings on the wire, every field of PerpsAssetCtx).
CTX: dict[str, Any] = {
    "funding": "0.0000125", "openInterest": "27386.98346", "prevDayPx": "96339.0",
    "dayNtlVlm": "2089446183.28", "premium": "0.00018454", "oraclePx": "96997.0",
    "markPx": "97015.0", "midPx": "97014.5", "impactPxs": ["97014.0", "97015.0"],
    "dayBaseVlm": "21629.72986",
}


def push(coin: str = "BTC", channel: str = "activeAssetCtx", **fields: Any) -> dict[str, Any]:
    return {"channel": channel, "data": {"coin": coin, "ctx": {**CTX, **fields}}}


def text(msg: Any) -> str:
    return json.dumps(msg, separators=(",", ":"))


def rejected(raw: str | bytes, parser: Parser | None = None, ingest: int = INGEST) -> str:
    with pytest.raises(FrameRejected) as exc:
        (parser or Parser()).parse(raw, ingest)
    assert exc.value.reason in hyperliquid.REJECT_REASONS
    return exc.value.reason


def values(points: list[dict[str, Any]]) -> dict[str, float]:
    return {p["metric"]: p["value"] for p in points}


def test_a_ctx_push_gives_every_metric_stamped_with_the_receive_time() -> None:
    points = Parser().parse(text(push()), INGEST)
    assert values(points) == {
        Metric.MARK_PRICE: 97015.0, Metric.INDEX_PRICE: 96997.0, Metric.FUNDING_RATE: 0.0000125,
        Metric.NEXT_FUNDING_TIME: float(1_735_689_600_000 + HOUR), Metric.OPEN_INTEREST: 27386.98346,
        FUNDING_INTERVAL_HOURS: 1.0,
    }
    # Hyperliquid sends no timestamp: the event time is when the frame was read
    assert {(p["event_time"], p["ingest_time"]) for p in points} == {(INGEST, INGEST)}
    assert {(p["source"], p["symbol"]) for p in points} == {("hyperliquid", "BTC")}
    for p in points:
        if p["metric"] != FUNDING_INTERVAL_HOURS:  # not in the schema's enum yet
            MetricPoint.from_record(p)


def test_the_same_frame_read_later_is_stamped_later() -> None:
    parser = Parser()
    first = parser.parse(text(push()), INGEST)
    later = parser.parse(text(push()), INGEST + 2 * HOUR)
    assert {p["event_time"] for p in later} == {INGEST + 2 * HOUR}
    assert values(later)[Metric.NEXT_FUNDING_TIME] == values(first)[Metric.NEXT_FUNDING_TIME] + 2 * HOUR


@pytest.mark.parametrize(("ingest", "expected"), [
    (1_735_689_600_000, 1_735_693_200_000),  # at a settlement: the next one is an hour on
    (1_735_689_600_001, 1_735_693_200_000),
    (1_735_693_199_999, 1_735_693_200_000),  # a millisecond before the hour
    (1_735_693_200_000, 1_735_696_800_000),
])
def test_next_funding_time_is_the_next_whole_hour_after_the_event(ingest: int, expected: int) -> None:
    assert hyperliquid.next_funding_time(ingest) == expected
    assert values(Parser().parse(text(push()), ingest))[Metric.NEXT_FUNDING_TIME] == expected


def test_funding_interval_is_stated_once_per_coin_and_connection() -> None:
    parser = Parser()
    assert FUNDING_INTERVAL_HOURS in values(parser.parse(text(push("BTC")), INGEST))
    assert FUNDING_INTERVAL_HOURS not in values(parser.parse(text(push("BTC")), INGEST + 1000))
    assert FUNDING_INTERVAL_HOURS in values(parser.parse(text(push("ETH")), INGEST + 1000))
    parser.reset()  # a new connection
    assert FUNDING_INTERVAL_HOURS in values(parser.parse(text(push("BTC")), INGEST + 2000))


def test_k_coins_keep_their_spelling() -> None:
    points = Parser().parse(text(push("kPEPE", markPx="0.012345", oraclePx="0.01234")), INGEST)
    assert {p["symbol"] for p in points} == {"kPEPE"}
    assert values(points)[Metric.MARK_PRICE] == 0.012345


def test_numbers_as_the_docs_type_them_are_read_like_the_strings_of_the_wire() -> None:
    as_numbers = push(markPx=97015.0, oraclePx=96997, funding=-0.0000125, openInterest=27386.98346)
    assert values(Parser().parse(text(as_numbers), INGEST)) | {Metric.FUNDING_RATE: 0.0000125} == \
        values(Parser().parse(text(push()), INGEST))
    assert values(Parser().parse(text(as_numbers), INGEST))[Metric.FUNDING_RATE] == -0.0000125


def test_null_optional_fields_do_not_matter() -> None:
    quiet = push(midPx=None, premium=None, impactPxs=None)
    assert len(Parser().parse(text(quiet), INGEST)) == 6


@pytest.mark.parametrize("msg", [
    push("@107", channel="activeSpotAssetCtx"),
    {"channel": "activeSpotAssetCtx", "data": {"coin": "PURR/USDC", "ctx": {
        "prevDayPx": "0.2", "dayNtlVlm": "1.0", "markPx": "0.2", "midPx": "0.2", "circulatingSupply": "1"}}},
    push("@107"),  # a spot coin on the perp channel
    push("PURR/USDC"),
])
def test_spot_ctx_is_not_a_perpetual(msg: dict[str, Any]) -> None:
    assert rejected(text(msg)) == "unexpected_event"


@pytest.mark.parametrize(("coin", "reason"), [
    ("", "bad_symbol"),
    ("BTC USD", "bad_symbol"),
    ("BTC\n", "bad_symbol"),
    ("BTC\x00", "bad_symbol"),
    ("BTC\u200b", "bad_symbol"),  # zero-width space
    ("B" * 65, "bad_symbol"),
    ("币" * 22, "bad_symbol"),  # 22 characters, 66 bytes
    (7, "bad_symbol"),
    (None, "bad_symbol"),
])
def test_unreadable_coin_names_are_rejected(coin: Any, reason: str) -> None:
    assert rejected(text(push(coin))) == reason


@pytest.mark.parametrize("coin", ["xyz:TSLA", "BTC.X", "BTC$", "\U0001f680"])
def test_names_the_contract_refuses_are_rejected_not_published(coin: str) -> None:
    # docs/contract.md, "Symbols": no punctuation but "_" and "-", no symbols; the consumers
    # would dead-letter every point of such a coin
    assert rejected(text(push(coin))) == "bad_symbol"


@pytest.mark.parametrize(("field", "value", "reason"), [
    ("markPx", "NaN", "non_finite"),
    ("oraclePx", "inf", "non_finite"),
    ("openInterest", "-3", "bad_number"),
    ("markPx", "-0.5", "bad_number"),
    ("markPx", "1_000", "bad_number"),
    ("markPx", " 97015", "bad_number"),
    ("markPx", "\uff19", "bad_number"),  # a fullwidth digit
    ("funding", "abc", "bad_number"),
    ("funding", "", "bad_number"),
    ("funding", None, "bad_number"),
    ("funding", True, "bad_number"),
    ("openInterest", ["1"], "bad_number"),
    ("openInterest", 10**400, "bad_number"),
])
def test_bad_values_reject_the_whole_frame(field: str, value: Any, reason: str) -> None:
    assert rejected(text(push(**{field: value}))) == reason


@pytest.mark.parametrize(("raw", "reason"), [
    ('{"channel":"activeAssetCtx","data":{', "bad_json"),
    ("Websocket connection established.", "bad_json"),
    ("[1, 2]", "not_object"),
    ('{"channel":"activeAssetCtx","data":[]}', "not_object"),
    ('{"channel":"activeAssetCtx"}', "missing_field"),
    ('{"channel":"activeAssetCtx","data":{"ctx":{}}}', "missing_field"),
    ('{"channel":"activeAssetCtx","data":{"coin":"BTC"}}', "missing_field"),
    ('{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":"x"}}', "not_object"),
    ('{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":{"markPx":"1"}}}', "missing_field"),
    ('{"channel":"pong"}', "unexpected_event"),
    ('{"channel":"subscriptionResponse","data":{}}', "unexpected_event"),
    ('{"channel":"l2Book","data":{"coin":"BTC"}}', "unexpected_event"),
    ('{"hello":"world"}', "unexpected_event"),
])
def test_frames_that_are_not_perp_ctx_pushes_are_rejected_with_a_reason(raw: str, reason: str) -> None:
    assert rejected(raw) == reason


def test_nan_literal_and_oversized_frames_are_rejected() -> None:
    raw = text(push()).replace('"markPx":"97015.0"', '"markPx":NaN')
    assert rejected(raw) == "non_finite"
    assert rejected(text(push(dayNtlVlm="1" * 70_000))) == "too_large"


def test_a_receive_time_outside_the_contract_is_rejected() -> None:
    assert rejected(text(push()), ingest=12) == "bad_timestamp"


def test_a_rejected_frame_leaves_the_parser_as_it_was() -> None:
    parser = Parser()
    assert rejected(text(push("ETH", markPx="NaN")), parser) == "non_finite"
    # ETH's interval was not marked as stated by the frame that failed
    assert FUNDING_INTERVAL_HOURS in values(parser.parse(text(push("ETH")), INGEST))


# -- the dialect ------------------------------------------------------------------------------


def test_requests_name_one_coin_each() -> None:
    assert json.loads(DIALECT.subscribe(["kPEPE"], 7, "SUBSCRIBE")) == {
        "method": "subscribe", "subscription": {"type": "activeAssetCtx", "coin": "kPEPE"}}
    assert json.loads(DIALECT.subscribe(["BTC"], 8, "UNSUBSCRIBE")) == {
        "method": "unsubscribe", "subscription": {"type": "activeAssetCtx", "coin": "BTC"}}
    assert DIALECT.chunk == 1
    with pytest.raises(ValueError):
        DIALECT.subscribe(["BTC", "ETH"], 9, "SUBSCRIBE")
    with pytest.raises(ValueError):
        DIALECT.subscribe(["BTC"], 9, "LIST")


def test_heartbeat_sharding_and_pacing_stay_inside_the_venue_limits() -> None:
    assert DIALECT.source == "hyperliquid" and json.loads(DIALECT.ping or "") == {"method": "ping"}
    assert DIALECT.ping_interval * 2 < hyperliquid.IDLE_TIMEOUT_S  # a missed tick never costs the socket
    coins = [f"C{i}" for i in range(hyperliquid.MAX_SUBSCRIPTIONS)]
    shards = DIALECT.shard(coins)
    assert [c for s in shards for c in s] == coins
    assert len(shards) <= hyperliquid.MAX_CONNECTIONS // 2  # room left for reconnects and successors
    # every data connection subscribing at once stays under the IP's messages a minute
    assert len(shards) * DIALECT.max_messages_per_second * 60 < hyperliquid.MAX_MESSAGES_PER_MINUTE
    assert DIALECT.url(hyperliquid.LIVE_WS_URL) == "wss://api.hyperliquid.xyz/ws"


def test_control_answers() -> None:
    ack = ('{"channel":"subscriptionResponse","data":{"method":"subscribe",'
           '"subscription":{"type":"activeAssetCtx","coin":"kPEPE"}}}')
    assert DIALECT.control(ack) == Ack(None, None, streams=("kPEPE",))
    unsub = ack.replace('"subscribe"', '"unsubscribe"')
    assert DIALECT.control(unsub.encode()) == Ack(None, None, streams=("kPEPE",))
    assert DIALECT.control('{"channel":"pong"}') == Pong()
    assert DIALECT.control("Websocket connection established.") == Pong()
    refused = {"channel": "error", "data": 'Already subscribed: {"type":"activeAssetCtx","coin":"UNI"}'}
    assert DIALECT.control(text(refused)) == Ack(None, refused["data"], streams=("UNI",))
    assert DIALECT.control('{"channel":"error","data":"Invalid request"}') == Ack(None, "Invalid request")
    assert DIALECT.control('{"channel":"error","data":"Bad {json"}') == Ack(None, "Bad {json")
    assert DIALECT.control('{"channel":"error","data":{"code":1}}') == Ack(None, '{"code": 1}')
    for data in (text(push()), '{"channel":"l2Book","data":{}}', "{not json", "[]", "", b"\xff"):
        assert DIALECT.control(data) is None


def test_only_ctx_pushes_are_taken_for_data_unasked() -> None:
    assert DIALECT.is_data_frame(text(push())) and DIALECT.is_data_frame(text(push()).encode())
    for frame in ('{"channel":"pong"}', '{"channel":"subscriptionResponse","data":{}}',
                  text(push(channel="activeSpotAssetCtx")), '{"channel":"activeAssetCtxs"}', ""):
        assert not DIALECT.is_data_frame(frame)


# -- generated input --------------------------------------------------------------------------

_VALUES = st.one_of(
    st.sampled_from(["97015.0", "0.0000125", "-0.0000125", "0", "", "NaN", "-inf", "1e400", "1_0", " 1",
                     "\uff11", "BTC", "kPEPE", "@107", "PURR/USDC", "activeAssetCtx", "activeSpotAssetCtx"]),
    st.text(max_size=6), st.integers(), st.floats(), st.none(), st.booleans(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
#: Values of each read field as Hyperliquid sends them.
_READABLE: dict[str, tuple[Any, ...]] = {
    "markPx": ("97015.0", "0.012345", "0", 97015.0), "oraclePx": ("96997.0", "0", 3),
    "funding": ("0.0000125", "-0.0000125", "0", -0.0004), "openInterest": ("27386.98346", "0", 12),
}
_COINS = ("BTC", "kPEPE", "@107", "", "B C")

_CTX_MESSAGES = st.builds(
    lambda channel, coin, ctx: {"channel": channel, "data": {"coin": coin, "ctx": ctx}},
    st.sampled_from(["activeAssetCtx", "activeAssetCtx", "activeSpotAssetCtx"]),
    st.sampled_from(_COINS),
    # each value readable most of the time, so whole frames get through as well as get rejected
    st.fixed_dictionaries({}, optional={
        **{k: st.integers(0, 3).flatmap(lambda n, k=k: st.sampled_from(_READABLE[k]) if n else _VALUES)
           for k in _READABLE},
        "midPx": _VALUES, "premium": _VALUES}),
)
_MESSAGES = st.fixed_dictionaries({}, optional={
    "channel": st.one_of(st.sampled_from(["activeAssetCtx", "pong", "error", "subscriptionResponse"]),
                         _VALUES),
    "data": st.one_of(st.fixed_dictionaries({}, optional={"coin": _VALUES, "ctx": _VALUES,
                                                          "subscription": _VALUES}), _VALUES),
})


_DECIMAL = re.compile(r"[-+]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?")


def _number(v: Any, signed: bool) -> bool:
    """A decimal string (as the wire sends) or a JSON number (as the docs type it), finite,
    negative only where signed."""
    if type(v) is str and _DECIMAL.fullmatch(v):
        x = float(v)
    elif type(v) in (int, float):
        try:
            x = float(v)
        except OverflowError:
            return False
    else:
        return False
    return math.isfinite(x) and (signed or x >= 0)


def _readable(msg: Any) -> bool:
    """A perp ctx push Hyperliquid could send: the oracle, written from the docs."""
    if not (isinstance(msg, dict) and msg.get("channel") == "activeAssetCtx"
            and isinstance(msg.get("data"), dict) and msg["data"].get("coin") in ("BTC", "kPEPE")
            and isinstance(msg["data"].get("ctx"), dict)):
        return False
    ctx = msg["data"]["ctx"]
    return all(k in ctx and _number(ctx[k], signed=k == "funding") for k in _READABLE)


@settings(max_examples=400, deadline=None)
@given(msgs=st.lists(st.one_of(_MESSAGES, _CTX_MESSAGES, st.just(push("kPEPE"))), max_size=6))
def test_generated_frames_are_read_exactly_or_rejected_and_the_parser_holds(msgs: list[Any]) -> None:
    parser = Parser()
    stated: set[str] = set()
    for i, msg in enumerate(msgs):
        raw = json.dumps(msg)
        assert DIALECT.control(raw) is None or not _readable(msg)  # never raises either
        try:
            points = parser.parse(raw, INGEST + i)
        except FrameRejected as exc:
            assert exc.reason in hyperliquid.REJECT_REASONS
            assert not _readable(msg), exc  # a frame Hyperliquid could send is read
            continue
        assert _readable(msg)
        coin, ctx = msg["data"]["coin"], msg["data"]["ctx"]
        expected = {Metric.MARK_PRICE: float(ctx["markPx"]), Metric.INDEX_PRICE: float(ctx["oraclePx"]),
                    Metric.FUNDING_RATE: float(ctx["funding"]),
                    Metric.NEXT_FUNDING_TIME: float(hyperliquid.next_funding_time(INGEST + i)),
                    Metric.OPEN_INTEREST: float(ctx["openInterest"])}
        if coin not in stated:  # stated once, and only by a frame that was read
            expected[FUNDING_INTERVAL_HOURS] = 1.0
            stated.add(coin)
        assert values(points) == expected
        stamps = {(p["symbol"], p["event_time"], p["ingest_time"]) for p in points}
        assert stamps == {(coin, INGEST + i, INGEST + i)}


@settings(max_examples=300, deadline=None)
@given(raw=st.one_of(st.text(max_size=40), st.binary(max_size=40),
                     st.builds(json.dumps, st.recursive(
                         st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                         lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
                             st.sampled_from(["channel", "data", "coin", "ctx", "subscription"]), inner,
                             max_size=3), max_leaves=8))))
def test_arbitrary_text_is_rejected_or_read_never_raised(raw: str | bytes) -> None:
    try:
        Parser().parse(raw, INGEST)
    except FrameRejected as exc:
        assert exc.reason in hyperliquid.REJECT_REASONS
    DIALECT.control(raw)
    DIALECT.is_data_frame(raw)


# -- meta ---------------------------------------------------------------------------------------


def _meta(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"universe": list(entries), "marginTables": [[50, {"description": "", "marginTiers": [
        {"lowerBound": "0.0", "maxLeverage": 50}]}]]}


def test_meta_lists_coins_as_spelled_and_skips_the_delisted() -> None:
    body = _meta(
        {"name": "BTC", "szDecimals": 5, "maxLeverage": 50, "marginTableId": 50},
        {"name": "kPEPE", "szDecimals": 0, "maxLeverage": 10},
        {"name": "HPOS", "szDecimals": 0, "maxLeverage": 3, "onlyIsolated": True},
        {"name": "LOOM", "szDecimals": 1, "maxLeverage": 3, "isDelisted": True,
         "marginMode": "strictIsolated", "onlyIsolated": True},
    )
    assert hyperliquid.meta_request() == b'{"type":"meta"}'
    assert hyperliquid.info_url("https://api.hyperliquid.xyz/") == "https://api.hyperliquid.xyz/info"
    listed = hyperliquid.instruments(json.dumps(body).encode())
    assert list(listed) == ["BTC", "kPEPE", "HPOS"]
    assert listed["kPEPE"] == Instrument(symbol="kPEPE", base="kPEPE", quote="USD", streams=("kPEPE",),
                                         funding_interval_h=1.0)
    full = hyperliquid.listing(body)
    assert full.delisted == {"LOOM"} and full.rejected == {}


def test_unreadable_meta_entries_are_skipped_and_named() -> None:
    body = _meta(
        {"name": "BTC", "szDecimals": 5, "maxLeverage": 50},
        {"name": "BTC", "szDecimals": 5, "maxLeverage": 50},
        {"name": "B C", "szDecimals": 0, "maxLeverage": 3},
        {"name": "ODD", "szDecimals": "0", "maxLeverage": 3},
        {"name": "ZERO", "szDecimals": 0, "maxLeverage": 0},
        {"name": "FLAG", "szDecimals": 0, "maxLeverage": 3, "isDelisted": "yes"},
        {"name": 7, "szDecimals": 0, "maxLeverage": 3},
        "ETH",
    )
    full = hyperliquid.listing(body)
    assert list(full.instruments) == ["BTC"]
    assert set(full.rejected) == {"BTC", "B C", "ODD", "ZERO", "FLAG", "7", "'ETH'"}
    assert "szDecimals" in full.rejected["ODD"] and "twice" in full.rejected["BTC"]


@pytest.mark.parametrize(("body", "reason"), [
    (b"null", "not_object"),
    ('"Failed to deserialize the JSON body"', "not_object"),
    (b"Too many requests", "bad_json"),
    ([], "not_object"),
    ({"marginTables": []}, "missing_field"),
    ({"universe": {}}, "missing_field"),
])
def test_an_answer_that_is_not_meta_is_rejected(body: Any, reason: str) -> None:
    with pytest.raises(FrameRejected) as exc:
        hyperliquid.instruments(body)
    assert exc.value.reason == reason


def test_rest_weights_are_the_documented_ones() -> None:
    assert hyperliquid.REST_WEIGHT_LIMIT == 1200 and hyperliquid.META_WEIGHT == 20
    assert hyperliquid.RATE_LIMITED_STATUS == 429
    assert hyperliquid.REST_WEIGHT_LIMIT // hyperliquid.META_WEIGHT == 60  # one meta a second at most
