"""OKX v5 public swaps: the websocket dialect, the listing, and pushes read into points."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpstream.producer import okx
from perpstream.producer.exceptions import FrameRejected
from perpstream.producer.okx import FUNDING_INTERVAL_HOURS, OkxApiError, Parser
from perpstream.producer.venue import Ack, Instrument, Pong
from perpstream.schemas import rules
from perpstream.schemas.models import KNOWN_METRICS, Metric, MetricPoint

INGEST = 1_700_726_500_000

BTC = Instrument("BTC-USDT-SWAP", "BTC", "USDT", okx.swap_streams("BTC-USDT-SWAP", "BTC-USDT"))
PEPE = Instrument("PEPE-USDT-SWAP", "PEPE", "USDT", okx.swap_streams("PEPE-USDT-SWAP", "PEPE-USDT"))

# Shaped as OKX's public docs show each push.
MARK = {"arg": {"channel": "mark-price", "instId": "BTC-USDT-SWAP"},
        "data": [{"instType": "SWAP", "instId": "BTC-USDT-SWAP", "markPx": "37212.5", "ts": "1700724675402"}]}
INDEX = {"arg": {"channel": "index-tickers", "instId": "BTC-USDT"},
         "data": [{"instId": "BTC-USDT", "idxPx": "37210.1", "high24h": "37800", "low24h": "36900",
                   "open24h": "37000", "sodUtc0": "37100", "sodUtc8": "37050", "ts": "1700724675300"}]}
FUNDING = {"arg": {"channel": "funding-rate", "instId": "BTC-USDT-SWAP"},
           "data": [{"formulaType": "noRate", "fundingRate": "0.0001875391284828",
                     "fundingTime": "1700726400000", "impactValue": "", "instId": "BTC-USDT-SWAP",
                     "instType": "SWAP", "interestRate": "",
                     "method": "current_period", "maxFundingRate": "0.00375", "minFundingRate": "-0.00375",
                     "nextFundingRate": "", "nextFundingTime": "1700755200000",
                     "premium": "0.0001233824646391", "settFundingRate": "0.0001699799259033",
                     "settState": "settled", "ts": "1700724675402"}]}
OPEN_INTEREST = {"arg": {"channel": "open-interest", "instId": "BTC-USDT-SWAP"},
                 "data": [{"instId": "BTC-USDT-SWAP", "instType": "SWAP", "oi": "2216113.01000000309",
                           "oiCcy": "22161.1301000000309", "oiUsd": "1939251795.54769270396321",
                           "ts": "1743041250440"}]}


def _parser(*instruments: Instrument) -> Parser:
    parser = Parser()
    parser.set_instruments({i.symbol: i for i in instruments or (BTC, PEPE)})
    return parser


def _points(parser: Parser, msg: Any) -> list[tuple[str, str, float, int]]:
    records = parser.parse(json.dumps(msg), INGEST)
    for r in records:
        assert r["source"] == "okx_swap" and r["ingest_time"] == INGEST
        if r["metric"] in KNOWN_METRICS:
            MetricPoint.from_record(r)  # every point satisfies the contract
    return [(r["symbol"], r["metric"], r["value"], r["event_time"]) for r in records]


def _rejected(parser: Parser, raw: str | bytes) -> str:
    with pytest.raises(FrameRejected) as exc:
        parser.parse(raw, INGEST)
    assert exc.value.reason in okx.REJECT_REASONS
    return exc.value.reason


# -- the dialect ---------------------------------------------------------------------------


def test_subscribe_names_each_stream_as_a_channel_arg_and_carries_the_request_id() -> None:
    text = okx.subscribe_message(["mark-price:BTC-USDT-SWAP", "index-tickers:BTC-USDT"], 7)
    assert json.loads(text) == {"id": "7", "op": "subscribe", "args": [
        {"channel": "mark-price", "instId": "BTC-USDT-SWAP"},
        {"channel": "index-tickers", "instId": "BTC-USDT"}]}
    assert text.startswith('{"id":"7","op":"subscribe"')  # compact, as sent
    off = json.loads(okx.subscribe_message(["open-interest:PEPE-USDT-SWAP"], 8, "UNSUBSCRIBE"))
    assert off["op"] == "unsubscribe"
    assert off["args"] == [{"channel": "open-interest", "instId": "PEPE-USDT-SWAP"}]
    with pytest.raises(ValueError):
        okx.subscribe_message(["mark-price:BTC-USDT-SWAP"], 9, "PING")
    with pytest.raises(ValueError):
        okx.subscribe_message(["BTC-USDT-SWAP"], 10)


def test_each_arg_answer_is_an_ack_naming_its_stream_and_request() -> None:
    ack = ('{"id":"7","event":"subscribe","arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},'
           '"connId":"a4d3ae55"}')
    assert okx.control(ack) == Ack(7, None, ("mark-price:BTC-USDT-SWAP",))
    assert okx.control(ack.encode()) == Ack(7, None, ("mark-price:BTC-USDT-SWAP",))
    off = '{"event":"unsubscribe","arg":{"channel":"index-tickers","instId":"BTC-USDT"},"connId":"d0b44253"}'
    assert okx.control(off) == Ack(None, None, ("index-tickers:BTC-USDT",))
    foreign_id = '{"id":"abc","event":"subscribe","arg":{"channel":"mark-price","instId":"X"},"connId":"a"}'
    assert okx.control(foreign_id) == Ack(None, None, ("mark-price:X",))


def test_refusals_are_acks_with_the_code_and_words_and_a_60018_names_its_stream() -> None:
    invalid = ('{"id":"3","event":"error","code":"60012",'
               '"msg":"Invalid request: {\\"op\\": \\"subscribe\\"}","connId":"a4d3ae55"}')
    assert okx.control(invalid) == Ack(3, '60012: Invalid request: {"op": "subscribe"}', ())
    missing = ('{"event":"error","msg":"Wrong URL or channel:mark-price,instId:NOPE-USDT-SWAP '
               'doesn\'t exist. Please use the correct URL, channel and parameters referring to API '
               'document.",'
               '"code":"60018","connId":"439535f1"}')
    answer = okx.control(missing)
    assert isinstance(answer, Ack) and answer.request_id is None
    assert answer.error is not None and answer.error.startswith("60018: Wrong URL or channel:mark-price")
    assert answer.streams == ("mark-price:NOPE-USDT-SWAP",)


def test_pong_and_what_is_not_a_control_answer() -> None:
    assert okx.control("pong") == Pong() and okx.control(b"pong") == Pong()
    notice = ('{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service '
              'upgrade. Please reconnect.","connId":"a4d3ae55"}')
    push = json.dumps(MARK, separators=(",", ":"))
    for frame in (push, notice, "ping", "{", "[1]", '{"event":"login"}', b""):
        assert okx.control(frame) is None


def test_only_a_push_is_a_data_frame() -> None:
    push = json.dumps(MARK, separators=(",", ":"))
    assert okx.is_data_frame(push) and okx.is_data_frame(push.encode())
    for frame in ('{"id":"1","event":"subscribe","arg":{"channel":"mark-price","instId":"X"},"connId":"a"}',
                  '{"event":"error","code":"60012","msg":"x"}', "pong", '{"arg":{"channel":"x"}}', b"pong"):
        assert not okx.is_data_frame(frame)


def test_the_dialect_keeps_within_okx_limits() -> None:
    d = okx.DIALECT
    assert d.source == "okx_swap" and d.ping == "ping" and d.ping_interval < 30  # closed after 30 s silent
    assert d.url(okx.LIVE_WS_URL) == "wss://ws.okx.com:8443/ws/v5/public"
    # a request of ``chunk`` long args stays under the 64 KB OKX allows a request
    longest = [f"open-interest:{'X' * 40}-USDT-SWAP"] * d.chunk
    assert len(d.subscribe(longest, 10**31, "SUBSCRIBE").encode()) < 64 * 1024
    streams = [f"mark-price:C{i}-USDT-SWAP" for i in range(1000)]
    groups = d.shard(streams)
    assert [len(g) for g in groups] == [300, 300, 300, 100] and [s for g in groups for s in g] == streams
    # subscribing a full connection costs a handful of the 480 requests an hour it may send
    assert -(-okx.MAX_STREAMS_PER_CONNECTION // d.chunk) <= 3


# -- the listing ---------------------------------------------------------------------------


def _swap(inst_id: str, ct_val_ccy: str, settle: str, ct_type: str = "linear", state: str = "live",
          **extra: Any) -> dict[str, Any]:
    uly = inst_id.removesuffix("-SWAP")
    return {"alias": "", "baseCcy": "", "category": "1", "ctMult": "1", "ctType": ct_type, "ctVal": "0.01",
            "ctValCcy": ct_val_ccy, "expTime": "", "instFamily": uly, "instId": inst_id, "instType": "SWAP",
            "lever": "100", "listTime": "1611916828000", "lotSz": "0.01", "minSz": "0.01", "optType": "",
            "quoteCcy": "", "settleCcy": settle, "state": state, "stk": "", "tickSz": "0.1", "uly": uly,
            "ruleType": "normal", **extra}


def _body(items: list[Any], code: str = "0", msg: str = "") -> str:
    return json.dumps({"code": code, "msg": msg, "data": items})


def test_listing_keeps_live_linear_swaps_with_the_contract_coin_as_base() -> None:
    body = _body([
        _swap("BTC-USDT-SWAP", "BTC", "USDT"),
        _swap("PEPE-USDT-SWAP", "PEPE", "USDT", ctVal="10000000"),
        _swap("BTC-USDC-SWAP", "BTC", "USDC"),
        _swap("BTC-USD-SWAP", "USD", "BTC", ct_type="inverse"),
        _swap("LUNA-USDT-SWAP", "LUNA", "USDT", state="suspend"),
        _swap("NEW-USDT-SWAP", "NEW", "USDT", state="preopen"),
        _swap("BAD USDT-SWAP", "BAD", "USDT"),
        _swap("NOULY-USDT-SWAP", "NOULY", "USDT", uly=""),
        _swap("NOCCY-USDT-SWAP", "", "USDT"),
        {**_swap("BTC-USDT", "", ""), "instType": "SPOT"},
        "not an object",
    ])
    found = okx.listing(body)
    assert found.instruments == {
        "BTC-USDT-SWAP": Instrument("BTC-USDT-SWAP", "BTC", "USDT", (
            "mark-price:BTC-USDT-SWAP", "funding-rate:BTC-USDT-SWAP", "open-interest:BTC-USDT-SWAP",
            "index-tickers:BTC-USDT")),
        "PEPE-USDT-SWAP": PEPE,
        "BTC-USDC-SWAP": Instrument("BTC-USDC-SWAP", "BTC", "USDC",
                                    okx.swap_streams("BTC-USDC-SWAP", "BTC-USDC")),
    }
    assert all(i.funding_interval_h is None for i in found.instruments.values())  # the stream says
    assert set(found.rejected) == {"BAD USDT-SWAP", "NOULY-USDT-SWAP", "NOCCY-USDT-SWAP"}
    assert okx.instruments(body.encode()) == found.instruments
    assert okx.instruments_url("https://www.okx.com/") == "https://www.okx.com/api/v5/public/instruments?instType=SWAP"


def test_an_error_envelope_raises_its_code_and_says_whether_it_is_the_rate_limit() -> None:
    with pytest.raises(OkxApiError) as limited:
        okx.instruments(_body([], "50011", "Too Many Requests"))
    assert (limited.value.code, limited.value.msg) == ("50011", "Too Many Requests")
    assert limited.value.rate_limited
    assert str(limited.value) == "OKX code 50011: Too Many Requests"
    with pytest.raises(OkxApiError) as other:
        okx.instruments(_body([], "51001", "Instrument ID, Instrument ID code or Spread ID doesn't exist."))
    assert not other.value.rate_limited


@pytest.mark.parametrize(("body", "reason"), [
    ("<html>", "bad_json"),
    ("[]", "not_object"),
    ('{"msg":"","data":[]}', "missing_field"),
    ('{"code":"0","msg":"","data":{}}', "missing_field"),
])
def test_a_body_that_is_not_an_envelope_is_rejected(body: str, reason: str) -> None:
    with pytest.raises(FrameRejected) as exc:
        okx.instruments(body)
    assert exc.value.reason == reason


# -- pushes --------------------------------------------------------------------------------


def test_mark_price_at_its_ts_and_each_data_item_a_point() -> None:
    parser = _parser()
    assert _points(parser, MARK) == [("BTC-USDT-SWAP", Metric.MARK_PRICE, 37212.5, 1700724675402)]
    second = {"instType": "SWAP", "instId": "BTC-USDT-SWAP", "markPx": "37213.0", "ts": "1700724675602"}
    two = {**MARK, "data": [*MARK["data"], second]}
    assert _points(parser, two) == [("BTC-USDT-SWAP", Metric.MARK_PRICE, 37212.5, 1700724675402),
                                    ("BTC-USDT-SWAP", Metric.MARK_PRICE, 37213.0, 1700724675602)]
    bare = {"arg": MARK["arg"], "data": [{"markPx": "37214", "ts": "1700724675802"}]}  # no instId: the arg's
    assert _points(parser, bare) == [("BTC-USDT-SWAP", Metric.MARK_PRICE, 37214.0, 1700724675802)]


def test_an_index_price_is_written_for_every_listed_swap_priced_on_that_index() -> None:
    # uly is one-to-many with the settlement coin: two swaps on the index BTC-USD
    usd = Instrument("BTC-USD_UM-SWAP", "BTC", "USD", okx.swap_streams("BTC-USD_UM-SWAP", "BTC-USD"))
    usdc = Instrument("BTC-USDC-SWAP", "BTC", "USDC", okx.swap_streams("BTC-USDC-SWAP", "BTC-USD"))
    parser = _parser(BTC, usd, usdc)
    assert parser.swaps_of("BTC-USD") == ("BTC-USDC-SWAP", "BTC-USD_UM-SWAP")
    msg = {"arg": {"channel": "index-tickers", "instId": "BTC-USD"},
           "data": [{**INDEX["data"][0], "instId": "BTC-USD", "ts": "1700724675300"},
                    {**INDEX["data"][0], "instId": "BTC-USD", "idxPx": "37211", "ts": "1700724675400"}]}
    assert _points(parser, msg) == [
        ("BTC-USDC-SWAP", Metric.INDEX_PRICE, 37210.1, 1700724675300),
        ("BTC-USD_UM-SWAP", Metric.INDEX_PRICE, 37210.1, 1700724675300),
        ("BTC-USDC-SWAP", Metric.INDEX_PRICE, 37211.0, 1700724675400),
        ("BTC-USD_UM-SWAP", Metric.INDEX_PRICE, 37211.0, 1700724675400)]
    assert _points(parser, INDEX) == [("BTC-USDT-SWAP", Metric.INDEX_PRICE, 37210.1, 1700724675300)]


def test_an_index_no_listed_swap_uses_is_rejected_until_the_listing_has_one() -> None:
    parser = Parser()
    assert _rejected(parser, json.dumps(INDEX)) == "unknown_index"  # before any listing
    parser.set_instruments({"BTC-USDT-SWAP": BTC})
    assert len(_points(parser, INDEX)) == 1
    parser.set_instruments({"PEPE-USDT-SWAP": PEPE})  # BTC-USDT-SWAP delisted
    assert _rejected(parser, json.dumps(INDEX)) == "unknown_index"


def test_funding_rate_is_for_the_settlement_at_funding_time_and_the_interval_is_the_gap() -> None:
    assert _points(_parser(), FUNDING) == [
        ("BTC-USDT-SWAP", Metric.FUNDING_RATE, 0.0001875391284828, 1700724675402),
        ("BTC-USDT-SWAP", Metric.NEXT_FUNDING_TIME, 1700726400000.0, 1700724675402),  # not nextFundingTime
        ("BTC-USDT-SWAP", FUNDING_INTERVAL_HOURS, 8.0, 1700724675402),
    ]


@pytest.mark.parametrize(("next_time", "hours"), [
    ("1700740800000", 4.0),
    ("1700730000000", 1.0),
    ("1700728200000", 0.5),
    ("", None),  # no next time: no interval point
    (None, None),
    ("1700726400000", None),  # the same time
    ("1700712000000", None),  # before fundingTime
    ("1700726430000", None),  # 30 s: not whole minutes
])
def test_the_interval_point_only_where_the_two_times_give_one(next_time: str | None,
                                                              hours: float | None) -> None:
    item = dict(FUNDING["data"][0])
    if next_time is None:
        del item["nextFundingTime"]
    else:
        item["nextFundingTime"] = next_time
    points = _points(_parser(), {**FUNDING, "data": [item]})
    intervals = [p[2] for p in points if p[1] == FUNDING_INTERVAL_HOURS]
    assert intervals == ([] if hours is None else [hours])
    assert [p[1] for p in points][:2] == [Metric.FUNDING_RATE, Metric.NEXT_FUNDING_TIME]


def test_negative_funding_is_a_value_and_no_published_rate_is_no_point() -> None:
    item = {**FUNDING["data"][0], "fundingRate": "-0.00375"}
    assert _points(_parser(), {**FUNDING, "data": [item]})[0][2] == -0.00375
    item = {**FUNDING["data"][0], "fundingRate": ""}
    assert [p[1] for p in _points(_parser(), {**FUNDING, "data": [item]})] == [
        Metric.NEXT_FUNDING_TIME, FUNDING_INTERVAL_HOURS]


def test_open_interest_is_the_base_coin_figure_not_contracts() -> None:
    assert _points(_parser(), OPEN_INTEREST) == [
        ("BTC-USDT-SWAP", Metric.OPEN_INTEREST, 22161.1301000000309, 1743041250440)]


@pytest.mark.parametrize(("msg", "reason"), [
    ({**MARK, "data": [{"markPx": "NaN", "ts": "1700724675402"}]}, "non_finite"),
    ({**MARK, "data": [{"markPx": "-1", "ts": "1700724675402"}]}, "bad_number"),
    ({**MARK, "data": [{"markPx": 37212.5, "ts": "1700724675402"}]}, "bad_number"),  # OKX sends strings
    ({**MARK, "data": [{"markPx": " 37212", "ts": "1700724675402"}]}, "bad_number"),
    ({**MARK, "data": [{"markPx": "1_000", "ts": "1700724675402"}]}, "bad_number"),
    ({**MARK, "data": [{"markPx": "37212.5", "ts": "1.7e12"}]}, "bad_timestamp"),
    ({**MARK, "data": [{"markPx": "37212.5", "ts": "12"}]}, "bad_timestamp"),
    ({**MARK, "data": [{"markPx": "37212.5", "ts": "9" * 5000}]}, "bad_timestamp"),
    ({**MARK, "data": [{"ts": "1700724675402"}]}, "missing_field"),
    ({**MARK, "data": [{"markPx": "37212.5"}]}, "missing_field"),
    ({**MARK, "data": [{"instId": "ETH-USDT-SWAP", "markPx": "1", "ts": "1700724675402"}]},
     "unexpected_topic"),
    ({**MARK, "data": [MARK["data"][0], "x"]}, "not_object"),
    ({**MARK, "data": {"markPx": "1"}}, "not_object"),
    ({"arg": MARK["arg"]}, "missing_field"),
    ({"data": []}, "missing_field"),
    ({"arg": [], "data": []}, "not_object"),
    ({"arg": {"channel": "mark-price"}, "data": []}, "missing_field"),
    ({"arg": {"channel": "tickers", "instId": "BTC-USDT-SWAP"}, "data": []}, "unexpected_topic"),
    ({"arg": {"channel": "mark-price", "instId": "BTC USDT"}, "data": []}, "bad_symbol"),
    ({"arg": {"channel": "mark-price", "instId": 5}, "data": []}, "bad_symbol"),
    ({"arg": {"channel": "mark-price", "instId": "X" * 65}, "data": []}, "bad_symbol"),
    ({**FUNDING, "data": [{**FUNDING["data"][0], "fundingTime": ""}]}, "bad_timestamp"),
    ({**FUNDING, "data": [{**FUNDING["data"][0], "nextFundingTime": "soon"}]}, "bad_timestamp"),
    ({**FUNDING, "data": [{**FUNDING["data"][0], "nextFundingTime": None}]}, "bad_timestamp"),
    ({**FUNDING, "data": [{**FUNDING["data"][0], "fundingRate": "1e400"}]}, "non_finite"),
    ({**OPEN_INTEREST, "data": [{**OPEN_INTEREST["data"][0], "oiCcy": "-5"}]}, "bad_number"),
    ({**OPEN_INTEREST, "data": [{k: v for k, v in OPEN_INTEREST["data"][0].items() if k != "oiCcy"}]},
     "missing_field"),
    ({**INDEX, "data": [{**INDEX["data"][0], "idxPx": "abc"}]}, "bad_number"),
    ({"event": "subscribe", "arg": MARK["arg"], "connId": "a"}, "unexpected_event"),
    ([MARK], "not_object"),
])
def test_a_push_that_cannot_be_read_is_rejected_whole_with_its_reason(msg: Any, reason: str) -> None:
    assert _rejected(_parser(), json.dumps(msg)) == reason


@pytest.mark.parametrize(("raw", "reason"), [
    ('{"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":[', "bad_json"),
    ("pong", "bad_json"),
    (b"\xff\xfe", "bad_json"),
    ('{"arg":{"channel":"mark-price","instId":"BTC-USDT-SWAP"},"data":[{"markPx":NaN,"ts":"1700724675402"}]}',
     "bad_number"),
])
def test_text_that_is_not_a_push_is_rejected(raw: str | bytes, reason: str) -> None:
    assert _rejected(_parser(), raw) == reason


def test_a_frame_past_the_size_bound_is_rejected_before_parsing() -> None:
    parser = Parser(max_bytes=100)
    parser.set_instruments({"BTC-USDT-SWAP": BTC})
    assert _rejected(parser, json.dumps(FUNDING)) == "too_large"


# -- generated frames ----------------------------------------------------------------------

_JUNK = st.one_of(
    st.sampled_from(["17218.1", "-0.0001", "0", "", "NaN", "-inf", "1e400", "1_0", " 1", "\uff11",
                     "1700726400000", "9" * 5000, "BTC-USDT-SWAP", "BTC-USDT", "BTC USDT"]),
    st.text(max_size=8), st.integers(), st.floats(), st.none(), st.booleans(),
    st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
# the docs' examples' values among them, so the examples are read too
_PRICES = ("17218.1", "0.0001", "0", "37212.5", "37210.1", "0.0001875391284828", "22161.1301000000309")
_TIMES = ("1700726400000", "1700755200000", "1700724675402", "1700724675300", "1743041250440")
#: Values of each field as OKX sends them; the rest of the generated values are not.
_READABLE: dict[str, tuple[str, ...]] = {
    "markPx": _PRICES, "idxPx": _PRICES, "oiCcy": _PRICES, "oi": _PRICES,
    "fundingRate": (*_PRICES, "-0.0001", ""), "fundingTime": _TIMES, "nextFundingTime": (*_TIMES, ""),
    "ts": _TIMES,
}
_REQUIRED = {"mark-price": ("markPx", "ts"), "index-tickers": ("idxPx", "ts"),
             "open-interest": ("oiCcy", "ts"), "funding-rate": ("fundingRate", "fundingTime", "ts")}

def _mostly(readable: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Four times in five a value OKX sends, else anything."""
    return st.integers(0, 4).flatmap(lambda i: _JUNK if i == 0 else readable)


@st.composite
def _pushes(draw: st.DrawFn) -> str:
    """Pushes near the documented shape: each part as OKX sends it most of the time."""
    channel = draw(_mostly(st.sampled_from(list(_REQUIRED))))
    natural = "BTC-USDT" if channel == "index-tickers" else "BTC-USDT-SWAP"
    inst_id = draw(_mostly(st.sampled_from([natural, natural, "ETH-USDT-SWAP", "ETH-USDT"])))
    fields = {k: _mostly(st.sampled_from(_READABLE[k])) for k in _READABLE}
    item_id = _mostly(st.sampled_from([inst_id, inst_id, inst_id, "ETH-USDT-SWAP"]))
    items = st.one_of(st.fixed_dictionaries(fields, optional={"instId": item_id}),  # every field there
                      st.fixed_dictionaries({}, optional={**fields, "instId": item_id}))  # any missing
    data = draw(_mostly(st.lists(items, max_size=3)))
    return json.dumps({"arg": {"channel": channel, "instId": inst_id}, "data": data})


_FRAMES = st.one_of(
    _pushes(), _pushes(), _pushes(),
    st.sampled_from([MARK, INDEX, FUNDING, OPEN_INTEREST]).map(json.dumps),
    st.dictionaries(st.sampled_from(["arg", "data", "event", "id"]), _JUNK, max_size=3).map(json.dumps),
    st.text(max_size=30), st.binary(max_size=30),
)


def _name_ok(v: Any) -> bool:
    """A swap's name as the contract takes it from okx_swap (docs/contract.md, "Symbols")."""
    return isinstance(v, str) and rules.symbol_problem(v, "okx_swap") is None


def _expected(msg: Any, surely_readable: bool) -> list[tuple[str, str, float, int]] | None:
    """The points OKX's docs say a push gives (written from the docs, not from the module's
    tables; the listing is BTC-USDT-SWAP), or None where the push is not one OKX sends.

    ``surely_readable`` also asks every value to be one OKX sends (:data:`_READABLE`): such a
    push must be read. Without it the values are taken as they are: a push that was read
    must have given exactly these points."""
    if not (isinstance(msg, dict) and "event" not in msg and isinstance(msg.get("arg"), dict)
            and isinstance(msg.get("data"), list)):
        return None
    channel, inst_id = msg["arg"].get("channel"), msg["arg"].get("instId")
    if not isinstance(channel, str) or channel not in _REQUIRED or not _name_ok(inst_id):
        return None
    if channel == "index-tickers" and inst_id != "BTC-USDT":  # the one index the listing has
        return None
    symbol = "BTC-USDT-SWAP" if channel == "index-tickers" else inst_id
    checked = (*_REQUIRED[channel], *(("nextFundingTime",) if channel == "funding-rate" else ()))
    points: list[tuple[str, str, float, int]] = []
    for item in msg["data"]:
        if not isinstance(item, dict) or item.get("instId", inst_id) != inst_id \
                or any(f not in item for f in _REQUIRED[channel]):
            return None
        if surely_readable and any(item[k] not in _READABLE[k] for k in checked if k in item):
            return None
        et = int(item["ts"])
        if channel == "funding-rate":
            if item["fundingRate"] != "":
                points.append((symbol, Metric.FUNDING_RATE, float(item["fundingRate"]), et))
            points.append((symbol, Metric.NEXT_FUNDING_TIME, float(item["fundingTime"]), et))
            gap = int(item.get("nextFundingTime") or item["fundingTime"]) - int(item["fundingTime"])
            if gap > 0 and gap % 60_000 == 0:
                points.append((symbol, FUNDING_INTERVAL_HOURS, gap / 3_600_000, et))
        else:
            metric = {"mark-price": Metric.MARK_PRICE, "index-tickers": Metric.INDEX_PRICE,
                      "open-interest": Metric.OPEN_INTEREST}[channel]
            points.append((symbol, metric, float(item[_REQUIRED[channel][0]]), et))
    return points


@settings(max_examples=500, deadline=None)
@given(frames=st.lists(_FRAMES, max_size=6))
def test_generated_frames_are_read_exactly_or_rejected_with_a_reason(frames: list[str | bytes]) -> None:
    parser = _parser(BTC)
    for raw in frames:
        try:
            msg = json.loads(raw)
        except ValueError:
            msg = None
        try:
            records = parser.parse(raw, INGEST)
        except FrameRejected as exc:
            assert exc.reason in okx.REJECT_REASONS
            assert _expected(msg, surely_readable=True) is None, exc  # a push OKX could send is read
        else:
            got = [(r["symbol"], r["metric"], r["value"], r["event_time"]) for r in records]
            assert got == _expected(msg, surely_readable=False)
            for r in records:
                assert rules.value_problem(r["value"]) is None
                assert rules.event_time_problem(r["event_time"]) is None
        assert parser.swaps_of("BTC-USDT") == ("BTC-USDT-SWAP",)  # nothing a frame says changes the listing
    assert _points(parser, MARK) == [("BTC-USDT-SWAP", Metric.MARK_PRICE, 37212.5, 1700724675402)]
