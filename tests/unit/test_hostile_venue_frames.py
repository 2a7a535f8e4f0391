"""Hostile websocket frames of the venues read through the venue contract (Bybit, Hyperliquid, OKX).

Each frame goes where the websocket state machine hands it: ``Dialect.control`` (an
answer, or None), then ``VenueIngest.on_ws_frame`` with ``conflate_ms=0``, so every
update is published. An oracle written from the venues' documents and the contract
(perpstream/fakes/hostile/venue_rules.py) judges both: the answer is the one the
venue's words allow, the points published are exactly the documented ones (decoded
with the reference codec, float bits and keys included) or the frame is counted in
``frames_rejected{source=…}`` under an allowed reason; Bybit's merged book equals the
oracle's after every frame; nothing raises; and a valid frame after each one is read
exactly (perpstream/fakes/hostile/harness.py, ``VenueHarness``).

The generated cases come from perpstream/fakes/hostile/frames.py; the named ones below
pin each kind of hostile frame the venues can send, and the regressions at the end the
parser bugs this suite found, each fixed.
"""

from __future__ import annotations

import gc
import json
import random
import tracemalloc
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpstream.fakes.hostile import venue_rules
from perpstream.fakes.hostile.frames import (
    BYBIT_FAMILIES,
    HYPERLIQUID_FAMILIES,
    HYPERLIQUID_MAX_FRAME,
    MAX_FRAME,
    OKX_FAMILIES,
    OKX_SWAPS,
    T0,
    Burst,
    bybit_case,
    hyperliquid_case,
    okx_case,
)
from perpstream.fakes.hostile.harness import INGEST_MS, RecordingTarget, Tally, VenueHarness
from perpstream.fakes.hostile.jsontext import Raw, dumps
from perpstream.fakes.hostile.outcomes import Case, Verdict
from perpstream.producer import binance, bybit, hyperliquid, okx
from perpstream.producer.encoding import MetricPointEncoder
from perpstream.producer.exceptions import FrameRejected
from perpstream.producer.venue import Ack, Instrument, Pong
from perpstream.producer.venue_ingest import VenueIngest
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas import rules
from perpstream.schemas.codec import metric_point_codec

CODEC = metric_point_codec()
BYBIT = VenueHarness("bybit")
HYPERLIQUID = VenueHarness("hyperliquid")
OKX = VenueHarness("okx")
_DROP = object()


def ci(examples: int) -> Any:
    """Fixed inputs in CI (derandomized, no example database), and no time limit per input."""
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))


def check(v: Verdict, case: Case) -> None:
    assert v.failure is None, f"{v.failure}\n  input ({case.family}): {case.short(600)}"


def judged(venue: str, *frames: str | bytes) -> Verdict:
    """One case on a fresh harness (its book primed), judged; it must agree with the oracle."""
    case = Case(Burst(frames) if len(frames) > 1 else frames[0], "pinned")
    v = VenueHarness(venue).run(case)
    check(v, case)
    return v


def _fill(d: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    for k, v in changes.items():
        if v is _DROP:
            d.pop(k, None)
        else:
            d[k] = v
    return d


def ticker(kind: str = "delta", symbol: Any = "BTCUSDT", *, topic: Any = None, ts: Any = T0,
           **fields: Any) -> str:
    """A Bybit ``tickers`` message; a snapshot has every published field unless told."""
    data: dict[str, Any] = {}
    if kind == "snapshot":
        data.update(markPrice="17217.33", indexPrice="17227.36", fundingRate="-0.000212",
                    nextFundingTime="1790006400000", openInterest="68744.761", lastPrice="17216.00")
    return dumps({"topic": f"tickers.{symbol}" if topic is None else topic, "type": kind,
                  "data": _fill(data, {"symbol": symbol, **fields}), "cs": 24987956059, "ts": ts})


def push(coin: Any = "BTC", channel: str = "activeAssetCtx", **fields: Any) -> str:
    """A Hyperliquid activeAssetCtx push with every perp ctx field."""
    ctx: dict[str, Any] = {"funding": "0.0000125", "openInterest": "26142.5", "prevDayPx": "96000.0",
                           "dayNtlVlm": "2.6e9", "premium": "0.0001", "oraclePx": "97005.0",
                           "markPx": "97015.0", "midPx": "97015.5", "impactPxs": ["97014.0", "97016.0"],
                           "dayBaseVlm": "26000.1"}
    return dumps({"channel": channel, "data": {"coin": coin, "ctx": _fill(ctx, fields)}})


def outcome(v: Verdict) -> tuple[str, dict[str, int]]:
    return v.outcome, dict(v.reasons)


REJ = "rejected"


def one(reason: str) -> tuple[str, dict[str, int]]:
    return REJ, {reason: 1}


ACCEPTED = ("accepted", {})


# -- generated frames ---------------------------------------------------------------------------

@ci(250)
@given(st.randoms(use_true_random=False))
def test_generated_bybit_frames_are_read_exactly_or_rejected_with_a_reason(rng: random.Random) -> None:
    case = bybit_case(rng)
    check(BYBIT.run(case), case)


@ci(250)
@given(st.randoms(use_true_random=False))
def test_generated_hyperliquid_frames_are_read_exactly_or_rejected_with_a_reason(rng: random.Random) -> None:
    case = hyperliquid_case(rng)
    check(HYPERLIQUID.run(case), case)


@ci(250)
@given(st.randoms(use_true_random=False))
def test_generated_okx_frames_are_read_exactly_or_rejected_with_a_reason(rng: random.Random) -> None:
    case = okx_case(rng)
    check(OKX.run(case), case)


@pytest.mark.parametrize(("venue", "make", "families", "reasons", "outcomes"), [
    ("bybit", bybit_case, BYBIT_FAMILIES, bybit.REJECT_REASONS,
     {"accepted", "rejected", "control", "nothing"}),
    ("okx", okx_case, OKX_FAMILIES, okx.REJECT_REASONS, {"accepted", "rejected", "control"}),
    # bad_timestamp: a receive time outside the contract, never a frame's doing
    ("hyperliquid", hyperliquid_case, HYPERLIQUID_FAMILIES,
     tuple(r for r in hyperliquid.REJECT_REASONS if r != "bad_timestamp"),
     {"accepted", "rejected", "control"}),
])
def test_seeded_frames_cover_every_family_reason_and_outcome(
        venue: str, make: Any, families: tuple[str, ...], reasons: tuple[str, ...],
        outcomes: set[str]) -> None:
    tally = Tally(f"{venue} frames")
    h = VenueHarness(venue)
    for i in range(1500):
        case = make(random.Random(f"ci:{i}"))
        tally.add(case, h.run(case), f"ci:{i}")
    assert tally.new == 0 and not tally.failures, tally.report()
    assert set(tally.families) == set(families), tally.families
    assert set(reasons) <= set(tally.reasons), tally.reasons
    assert outcomes <= set(tally.outcomes), tally.outcomes


# -- Bybit: named frames ------------------------------------------------------------------------

@pytest.mark.parametrize(("frames", "expected"), [
    pytest.param([ticker(symbol="SOLUSDT", markPrice="150.1")], one("delta_before_snapshot"),
                 id="delta-first"),
    pytest.param([ticker(topic="tickers.ETHUSDT", markPrice="1.5")], one("unexpected_topic"),
                 id="delta-names-another-symbol"),
    pytest.param([ticker("snapshot", "ETHUSDT", topic="tickers.BTCUSDT")], one("unexpected_topic"),
                 id="snapshot-names-another-symbol"),
    pytest.param([ticker(topic="orderbook.1.BTCUSDT")], one("unexpected_topic"), id="other-topic"),
    pytest.param([ticker(topic="tickers.btcusdt", symbol="btcusdt")], one("bad_symbol"), id="lower-case"),
    pytest.param([ticker(kind="update")], one("unexpected_event"), id="unknown-type"),
    pytest.param([ticker(markPrice=17217.33)], one("bad_number"), id="number-not-string"),
    pytest.param([ticker(fundingRate=True)], one("bad_number"), id="bool-rate"),
    pytest.param([ticker(openInterest=["1"])], one("bad_number"), id="list-oi"),
    pytest.param([ticker(markPrice="")], one("bad_number"), id="empty-mark"),
    pytest.param([ticker(markPrice="1e400")], one("non_finite"), id="huge-exponent"),
    pytest.param([ticker(indexPrice="9" * 400)], one("non_finite"), id="huge-digits"),
    pytest.param([ticker(markPrice="NaN")], one("non_finite"), id="nan-text"),
    pytest.param([ticker(indexPrice="Infinity")], one("non_finite"), id="infinity-text"),
    pytest.param([ticker(fundingRate="-inf")], one("non_finite"), id="minus-inf-rate"),
    pytest.param([ticker(openInterest="-3")], one("bad_number"), id="negative-oi"),
    pytest.param([ticker(markPrice="1_000")], one("bad_number"), id="underscore"),
    pytest.param([ticker(nextFundingTime="9" * 40)], one("bad_timestamp"), id="nft-40-digits"),
    pytest.param([ticker(nextFundingTime="0" * 10 + "1790006400000")], one("bad_timestamp"),
                 id="nft-zero-padded-23-digits"),
    pytest.param([ticker(nextFundingTime="\u0661\u0667\u0669" + "0" * 10)], one("bad_timestamp"),
                 id="nft-arabic-indic-digits"),
    pytest.param([ticker(nextFundingTime="1790006400000.0")], one("bad_timestamp"), id="nft-fraction"),
    pytest.param([ticker(nextFundingTime="4102444800000")], one("bad_timestamp"), id="nft-2100"),
    pytest.param([ticker(ts="x")], one("bad_timestamp"), id="ts-text"),
    pytest.param([ticker(ts=1.79e12)], one("bad_timestamp"), id="ts-float"),
    pytest.param([ticker(symbol=_DROP, topic="tickers.BTCUSDT")], one("missing_field"), id="no-symbol"),
    pytest.param([dumps({"topic": "tickers.BTCUSDT", "type": "delta", "data": [], "ts": T0})],
                 one("not_object"), id="data-list"),
    pytest.param(["x" * (MAX_FRAME + 1)], one("too_large"), id="past-the-limit"),
    pytest.param(["[" * 100_000], one("bad_json"), id="nested-past-any-reader"),
    pytest.param([ticker(x=Raw("[" * 100 + "]" * 100), markPrice="17218.1")], ACCEPTED,
                 id="nested-garbage-kept-out"),
    pytest.param([ticker(fundingRate="")], ("nothing", {}), id="empty-funding-is-no-funding"),
    pytest.param([ticker(nextFundingTime="0", fundingRate="")], ("nothing", {}), id="no-funding"),
    pytest.param([ticker(markPrice="-0", lastPrice="x")], ACCEPTED, id="negative-zero"),
    pytest.param([ticker("snapshot", "币安人生USDT")], ACCEPTED, id="cjk-snapshot"),
])
def test_bybit_named_frames(frames: list[str], expected: tuple[str, dict[str, int]]) -> None:
    assert outcome(judged("bybit", *frames)) == expected


@pytest.mark.parametrize("value", ["0001790006400000", 1_790_006_400_000])
def test_bybit_times_the_docs_leave_open_are_read_or_rejected_never_misread(value: Any) -> None:
    """Bybit writes nextFundingTime as a digit string: zero padding or an integer may be
    read as the time it says or rejected, nothing else (venue_rules.Policy)."""
    assert outcome(judged("bybit", ticker(nextFundingTime=value))) in (ACCEPTED, one("bad_timestamp"))


def test_a_delta_before_its_snapshot_then_the_snapshot_then_the_delta() -> None:
    symbol = f"FRESH{uuid.uuid4().hex[:6].upper()}USDT"
    h = VenueHarness("bybit")
    verdicts = [h.run(Case(f, "pinned")) for f in (
        ticker(symbol=symbol, markPrice="2.5"), ticker("snapshot", symbol),
        ticker(symbol=symbol, markPrice="2.5"))]
    assert [(v.failure, *outcome(v)) for v in verdicts] == [
        (None, *one("delta_before_snapshot")), (None, *ACCEPTED), (None, *ACCEPTED)]
    assert h.parser.book.current(symbol)["mark_price"] == 2.5  # type: ignore[attr-defined]


def test_a_rejected_delta_leaves_the_book_as_it_was() -> None:
    target, telemetry = RecordingTarget(), Telemetry()
    parser = bybit.Parser()
    ingest = VenueIngest(target, MetricPointEncoder(CODEC), telemetry, source="bybit_linear", parser=parser,
                         conflate_ms=0)
    ingest.on_ws_frame(ticker("snapshot"), INGEST_MS)
    before = parser.book.current("BTCUSDT")
    ingest.on_ws_frame(ticker(markPrice="17300.5", indexPrice="nan"), INGEST_MS)  # one good, one bad value
    assert parser.book.current("BTCUSDT") == before
    assert telemetry.get("frames_rejected", {"reason": "non_finite", "source": "bybit_linear"}) == 1
    assert len(target.sent) == 5  # the snapshot's points only


def test_a_contract_without_funding_publishes_no_funding_points() -> None:
    target = RecordingTarget()
    ingest = VenueIngest(target, MetricPointEncoder(CODEC), Telemetry(), source="bybit_linear",
                         parser=bybit.Parser(), conflate_ms=0)
    ingest.on_ws_frame(ticker("snapshot", fundingRate="", nextFundingTime="0"), INGEST_MS)
    assert sorted(CODEC.decode(v)["metric"] for _, v in target.sent) == [
        "index_price", "mark_price", "open_interest"]


@pytest.mark.parametrize(("frame", "answer"), [
    ({"success": True, "ret_msg": "", "conn_id": "c", "req_id": "7", "op": "subscribe"}, Ack(7)),
    ({"success": True, "ret_msg": "", "conn_id": "c", "req_id": "", "op": "subscribe"}, Ack(None)),
    ({"success": True, "ret_msg": "", "conn_id": "c", "req_id": "abc", "op": "subscribe"}, Ack(None)),
    ({"success": True, "ret_msg": "", "conn_id": "c", "req_id": "-1", "op": "subscribe"}, Ack(None)),
    ({"success": True, "ret_msg": "", "conn_id": "c", "req_id": "9" * 5000, "op": "subscribe"}, Ack(None)),
    ({"success": True, "ret_msg": "", "conn_id": "c", "req_id": [7], "op": "subscribe"}, Ack(None)),
    ({"success": True, "ret_msg": "", "conn_id": "c", "req_id": None, "op": "unsubscribe"}, Ack(None)),
    ({"success": True, "ret_msg": "pong", "conn_id": "c", "req_id": "\u00b2", "op": "ping"}, Pong()),
    ({"op": "pong", "args": ["1790000000000"], "conn_id": "c"}, Pong()),
    ({"success": "true", "ret_msg": "", "req_id": "7", "op": "subscribe"}, None),
    ({"success": False, "req_id": "7", "op": "subscribe"}, None),  # a refusal without its words
    ({"success": True, "op": "auth", "req_id": "7"}, None),
])
def test_bybit_answers_with_garbage_ids_name_no_request_and_never_raise(frame: dict[str, Any],
                                                                         answer: Any) -> None:
    raw = dumps(frame)
    assert bybit.DIALECT.control(raw) == answer
    judged("bybit", raw)


def test_a_bybit_refusal_names_its_request() -> None:
    raw = dumps({"success": False, "ret_msg": "Invalid symbol :[tickers.XUSDT]", "conn_id": "c",
                 "req_id": "8", "op": "subscribe"})
    answer = bybit.DIALECT.control(raw)
    assert isinstance(answer, Ack) and answer.request_id == 8 and answer.error
    assert outcome(judged("bybit", raw)) == ("control", {})


# -- Hyperliquid: named frames ------------------------------------------------------------------

@pytest.mark.parametrize(("frame", "expected"), [
    *[pytest.param(push(**{f: _DROP}), one("missing_field"), id=f"no-{f}")
      for f in ("markPx", "oraclePx", "funding", "openInterest")],
    pytest.param(push(midPx=_DROP, premium=None, impactPxs=None), ACCEPTED, id="optional-fields-gone"),
    pytest.param(push("@107", "activeSpotAssetCtx"), one("unexpected_event"), id="spot-channel"),
    pytest.param(push("BTC", "activeSpotAssetCtx"), one("unexpected_event"), id="spot-channel-perp-coin"),
    pytest.param(push("@107"), one("unexpected_event"), id="spot-coin"),
    pytest.param(push("PURR/USDC"), one("unexpected_event"), id="spot-pair"),
    pytest.param(push("BTC "), one("bad_symbol"), id="trailing-space"),
    pytest.param(push("BTC\n"), one("bad_symbol"), id="newline"),
    pytest.param(push("BTC\x00"), one("bad_symbol"), id="nul"),
    pytest.param(push("BTC\u200b"), one("bad_symbol"), id="zero-width-space"),
    pytest.param(push("BTC\u202e"), one("bad_symbol"), id="bidi-override"),
    pytest.param(push("\ufeffBTC"), one("bad_symbol"), id="bom-in-name"),
    pytest.param(push("BTC\u00a0"), one("bad_symbol"), id="no-break-space"),
    pytest.param(push(""), one("bad_symbol"), id="empty"),
    pytest.param(push("B" * 65), one("bad_symbol"), id="65-bytes"),
    pytest.param(push(7), one("bad_symbol"), id="number-coin"),
    pytest.param(push("btc"), ACCEPTED, id="lower-case"),
    pytest.param(push("kPEPE"), ACCEPTED, id="k-coin"),
    pytest.param(push(markPx=97015.0, oraclePx=97005, funding=-1.25e-05, openInterest=0), ACCEPTED,
                 id="json-numbers"),
    pytest.param(push(markPx=Raw("9.7015E4")), ACCEPTED, id="json-exponent"),
    pytest.param(push(markPx=Raw("9" * 400)), one("bad_number"), id="integer-past-a-double"),
    pytest.param(push(openInterest="9" * 400), one("non_finite"), id="string-past-a-double"),
    pytest.param(push(oraclePx="1e400"), one("non_finite"), id="huge-exponent"),
    pytest.param(push(markPx="NaN"), one("non_finite"), id="nan-text"),
    pytest.param(push(funding="-Infinity"), one("non_finite"), id="minus-infinity-text"),
    pytest.param(push(markPx=-97015.0), one("bad_number"), id="negative-mark"),
    pytest.param(push(funding=True), one("bad_number"), id="bool"),
    pytest.param(push(funding=""), one("bad_number"), id="empty-funding"),
    pytest.param(push(markPx=" 97015"), one("bad_number"), id="padded"),
    pytest.param("x" * (HYPERLIQUID_MAX_FRAME + 1), one("too_large"), id="past-the-limit"),
    pytest.param(dumps({"channel": "activeAssetCtx", "data": {"coin": "BTC", "ctx": "x"}}), one("not_object"),
                 id="ctx-text"),
    pytest.param(dumps({"channel": "activeAssetCtx"}), one("missing_field"), id="no-data"),
])
def test_hyperliquid_named_frames(frame: str, expected: tuple[str, dict[str, int]]) -> None:
    assert outcome(judged("hyperliquid", frame)) == expected


def test_hyperliquid_numbers_are_published_as_the_venue_wrote_them() -> None:
    target = RecordingTarget()
    ingest = VenueIngest(target, MetricPointEncoder(CODEC), Telemetry(), source="hyperliquid",
                         parser=hyperliquid.Parser(), conflate_ms=0)
    ingest.on_ws_frame(push("kPEPE", markPx=0.01234, oraclePx="0.01235", funding=-1.25e-05, openInterest=7),
                       INGEST_MS)
    got = {r["metric"]: r["value"] for r in (CODEC.decode(v) for _, v in target.sent)}
    assert got == {"mark_price": 0.01234, "index_price": 0.01235, "funding_rate": -1.25e-05,
                   "open_interest": 7.0, "next_funding_time": float((INGEST_MS // 3_600_000 + 1) * 3_600_000),
                   "funding_interval_hours": 1.0}


@pytest.mark.parametrize(("frame", "answer"), [
    ('{"channel":"pong"}', Pong()),
    ("Websocket connection established.", Pong()),
    ('{"channel":"subscriptionResponse","data":{"method":"subscribe","subscription":'
     '{"type":"activeAssetCtx","coin":"BTC"}}}', Ack(None, None, ("BTC",))),
    ('{"channel":"subscriptionResponse","data":null}', Ack(None, None, ())),
    ('{"channel":"subscriptionResponse","data":{"subscription":{"coin":7}}}', Ack(None, None, ())),
    (dumps({"channel": "error", "data": 'Already subscribed: {"type":"activeAssetCtx","coin":"UNI"}'}),
     Ack(None, 'Already subscribed: {"type":"activeAssetCtx","coin":"UNI"}', ("UNI",))),
    ('{"channel":"error","data":"Invalid subscription: {"}', Ack(None, "Invalid subscription: {", ())),
    ('{"channel":"activeAssetCtx","data":{}}', None),
])
def test_hyperliquid_answers_never_raise(frame: str, answer: Any) -> None:
    assert hyperliquid.DIALECT.control(frame) == answer
    judged("hyperliquid", frame)


def test_the_oracle_judges_hyperliquid_frames_at_the_products_limit() -> None:
    assert hyperliquid.Parser().max_bytes == HYPERLIQUID_MAX_FRAME == venue_rules.HYPERLIQUID_MAX_FRAME


# -- OKX: named frames -------------------------------------------------------------------------

def okx_push(channel: str = "mark-price", inst: str = "BTC-USDT-SWAP", *items: dict[str, Any]) -> str:
    return dumps({"arg": {"channel": channel, "instId": inst}, "data": list(items)})


def mark(px: Any = "37212.5", ts: Any = str(T0), **more: Any) -> dict[str, Any]:
    return _fill({"instType": "SWAP", "instId": "BTC-USDT-SWAP", "markPx": px, "ts": ts}, more)


def funding(at: Any = "1790006400000", after: Any = "1790035200000", **more: Any) -> dict[str, Any]:
    return _fill({"fundingRate": "0.0001875", "fundingTime": at, "nextFundingTime": after,
                  "instId": "BTC-USDT-SWAP", "instType": "SWAP", "method": "current_period",
                  "ts": str(T0)}, more)


def oi(**more: Any) -> dict[str, Any]:
    return _fill({"instId": "BTC-USDT-SWAP", "instType": "SWAP", "oi": "2216113.01", "oiCcy": "22161.1301",
                  "oiUsd": "1939251795.54", "ts": str(T0)}, more)


def okx_ingest() -> tuple[VenueIngest, RecordingTarget, Telemetry]:
    """OKX's parser following BTC-USDT-SWAP and BTC-USDC-SWAP, as the venue source sets it."""
    target, telemetry = RecordingTarget(), Telemetry()
    parser = okx.Parser()
    parser.set_instruments({s: Instrument(s, "BTC", s.split("-")[1], okx.swap_streams(s, OKX_SWAPS[s]))
                            for s in ("BTC-USDT-SWAP", "BTC-USDC-SWAP")})
    ingest = VenueIngest(target, MetricPointEncoder(CODEC), telemetry, source="okx_swap", parser=parser,
                         conflate_ms=0)
    return ingest, target, telemetry


def published(target: RecordingTarget) -> list[tuple[str, str, float]]:
    out = [(r["symbol"], r["metric"], r["value"]) for r in (CODEC.decode(v) for _, v in target.sent)]
    target.sent.clear()
    return out


@pytest.mark.parametrize(("frame", "expected"), [
    pytest.param(okx_push("mark-price", "BTC-USDT-SWAP", mark(), mark("37213.0", str(T0 + 200)),
                          mark("NaN", str(T0 + 400))), one("non_finite"), id="three-items-one-nan"),
    pytest.param(okx_push("mark-price", "BTC-USDT-SWAP", mark(), mark(ts="1.79e12")), one("bad_timestamp"),
                 id="two-items-one-bad-ts"),
    pytest.param(okx_push("mark-price", "BTC-USDT-SWAP", mark(), mark(instId="ETH-USDT-SWAP")),
                 one("unexpected_topic"), id="an-item-of-another-swap"),
    pytest.param(okx_push("mark-price", "BTC-USDT-SWAP", mark(), "x"), one("not_object"),
                 id="an-item-not-object"),
    pytest.param(okx_push("mark-price", "BTC-USDT-SWAP", mark(), mark(instId=_DROP)), ACCEPTED,
                 id="items-need-not-name-the-swap"),
    pytest.param(okx_push("mark-price", "BTC-USDT-SWAP"), ("nothing", {}), id="no-items"),
    pytest.param(okx_push("index-tickers", "DOGE-USDT", {"idxPx": "0.1", "ts": str(T0)}),
                 one("unknown_index"), id="index-no-listed-swap-uses"),
    pytest.param(okx_push("index-tickers", "BTC-USDT", {"instId": "BTC-USDT", "idxPx": "37210.1",
                                                        "ts": str(T0)}),
                 ACCEPTED, id="index-of-a-listed-swap"),
    pytest.param(okx_push("funding-rate", "BTC-USDT-SWAP", funding("1790035200000", "1790006400000")),
                 ACCEPTED, id="funding-time-after-next-funding-time"),
    pytest.param(okx_push("funding-rate", "BTC-USDT-SWAP", funding(after="")), ACCEPTED,
                 id="no-next-funding"),
    pytest.param(okx_push("funding-rate", "BTC-USDT-SWAP", funding(after="soon")), one("bad_timestamp"),
                 id="next-funding-not-a-time"),
    pytest.param(okx_push("funding-rate", "BTC-USDT-SWAP", funding(fundingRate="")), ACCEPTED, id="no-rate"),
    pytest.param(okx_push("funding-rate", "BTC-USDT-SWAP", funding(fundingTime=_DROP)), one("missing_field"),
                 id="no-funding-time"),
    pytest.param(okx_push("open-interest", "BTC-USDT-SWAP", oi(oiCcy=_DROP)), one("missing_field"),
                 id="oi-without-oiccy"),
    pytest.param(okx_push("open-interest", "BTC-USDT-SWAP", oi(oi="garbage")), ACCEPTED, id="oi-not-read"),
    pytest.param(okx_push("open-interest", "BTC-USDT-SWAP", oi(oiCcy=22161.13)), one("bad_number"),
                 id="oiccy-a-number"),
    pytest.param(okx_push("mark-price", "btc-usdt-swap", mark(instId="btc-usdt-swap")), one("bad_symbol"),
                 id="lower-case-swap"),
    pytest.param(okx_push("tickers", "BTC-USDT-SWAP", mark()), one("unexpected_topic"), id="other-channel"),
    pytest.param(dumps({"event": "notice", "code": "64008", "msg": "closing soon", "connId": "a"}),
                 one("unexpected_event"), id="notice"),
])
def test_okx_named_frames(frame: str, expected: tuple[str, dict[str, int]]) -> None:
    assert outcome(judged("okx", frame)) == expected


def test_an_okx_push_is_read_whole_or_rejected_whole() -> None:
    """producer/okx.py: "A push is read whole or rejected whole" (per frame, not per item)."""
    ingest, target, telemetry = okx_ingest()
    ingest.on_ws_frame(okx_push("mark-price", "BTC-USDT-SWAP", mark(), mark("-1", str(T0 + 200))), INGEST_MS)
    assert not target.sent
    assert telemetry.get("frames_rejected", {"reason": "bad_number", "source": "okx_swap"}) == 1
    ingest.on_ws_frame(okx_push("mark-price", "BTC-USDT-SWAP", mark(), mark("37213.0", str(T0 + 200))),
                       INGEST_MS)
    assert published(target) == [("BTC-USDT-SWAP", "mark_price", 37212.5),
                                 ("BTC-USDT-SWAP", "mark_price", 37213.0)]


def test_an_index_price_is_written_for_every_listed_swap_on_it_and_an_unknown_index_for_none() -> None:
    ingest, target, telemetry = okx_ingest()
    item = {"instId": "BTC-USDT", "idxPx": "37210.1", "ts": str(T0)}
    ingest.on_ws_frame(okx_push("index-tickers", "BTC-USDT", item), INGEST_MS)
    assert published(target) == [("BTC-USDT-SWAP", "index_price", 37210.1)]
    ingest.on_ws_frame(okx_push("index-tickers", "ETH-USDT", {**item, "instId": "ETH-USDT"}), INGEST_MS)
    assert not target.sent
    assert telemetry.get("frames_rejected", {"reason": "unknown_index", "source": "okx_swap"}) == 1


def test_okx_funding_times_give_an_interval_only_in_order_and_only_when_it_changes() -> None:
    ingest, target, _ = okx_ingest()
    h8, h4 = 8 * 3_600_000, 4 * 3_600_000
    at = 1_790_006_400_000
    steps = [
        (funding(str(at), str(at + h8)), [("funding_rate", 0.0001875), ("next_funding_time", float(at)),
                                          ("funding_interval_hours", 8.0)]),
        (funding(str(at), str(at + h8)), [("funding_rate", 0.0001875), ("next_funding_time", float(at))]),
        (funding(str(at + h8), str(at)), [("funding_rate", 0.0001875),
                                          ("next_funding_time", float(at + h8))]),
        (funding(str(at), str(at)), [("funding_rate", 0.0001875), ("next_funding_time", float(at))]),
        (funding(str(at), str(at + h4 + 1)), [("funding_rate", 0.0001875), ("next_funding_time", float(at))]),
        (funding(str(at), str(at + h4)), [("funding_rate", 0.0001875), ("next_funding_time", float(at)),
                                          ("funding_interval_hours", 4.0)]),
    ]
    for item, expected in steps:
        ingest.on_ws_frame(okx_push("funding-rate", "BTC-USDT-SWAP", item), INGEST_MS)
        assert [(m, v) for _, m, v in published(target)] == expected, item


def test_okx_open_interest_is_the_coin_figure_not_the_contracts() -> None:
    ingest, target, _ = okx_ingest()
    ingest.on_ws_frame(okx_push("open-interest", "BTC-USDT-SWAP", oi()), INGEST_MS)
    assert published(target) == [("BTC-USDT-SWAP", "open_interest", 22161.1301)]


@pytest.mark.parametrize(("frame", "answer"), [
    (dumps({"id": "7", "event": "subscribe", "arg": {"channel": "mark-price", "instId": "BTC-USDT-SWAP"},
            "connId": "a"}), Ack(7, None, ("mark-price:BTC-USDT-SWAP",))),
    (dumps({"id": "\u00b2", "event": "subscribe", "arg": {"channel": "mark-price", "instId": "X"},
            "connId": "a"}),
     Ack(None, None, ("mark-price:X",))),
    (dumps({"id": "1" * 33, "event": "unsubscribe", "arg": {"channel": 5}, "connId": "a"}),
     Ack(None, None, ())),
    (dumps({"id": 7, "event": "subscribe", "arg": None}), Ack(None, None, ())),
    (dumps({"id": "8", "event": "error", "code": "60018", "connId": "a",
            "msg": "Wrong URL or channel:mark-price,instId:X-SWAP doesn't exist. "
                   "Please use the correct URL."}),
     Ack(8, "60018: Wrong URL or channel:mark-price,instId:X-SWAP doesn't exist. Please use the correct URL.",
         ("mark-price:X-SWAP",))),
    ("pong", Pong()),
    (b"pong", Pong()),
    ("ping", None),
    (dumps({"event": "notice", "code": "64008", "msg": "closing soon", "connId": "a"}), None),
])
def test_okx_answers_with_garbage_ids_name_no_request_and_never_raise(frame: str | bytes,
                                                                       answer: Any) -> None:
    assert okx.DIALECT.control(frame) == answer
    judged("okx", frame)


# -- memory -------------------------------------------------------------------------------------

def _hostile_names(venue: str, nonce: str) -> Iterator[str]:
    """200 pushes naming distinct 100 kB symbols (20 MB if each stays behind), and for Bybit
    2,000 deltas of symbols never snapshotted, for OKX 2,000 tickers of indexes never listed."""
    for i in range(200):
        name = f"{nonce}{i}" + "X" * 100_000
        yield {"bybit": ticker("snapshot", name), "hyperliquid": push(name),
               "okx": okx_push("mark-price", name, mark(instId=name))}[venue]
    for i in range(2_000 if venue != "hyperliquid" else 0):
        name = f"D{nonce[:8]}{i}"
        yield ticker(symbol=name + "USDT", markPrice="1.5") if venue == "bybit" else \
            okx_push("index-tickers", name + "-USDT", {"idxPx": "1.5", "ts": str(T0)})


@pytest.mark.parametrize("venue", ["bybit", "hyperliquid", "okx"])
def test_rejected_frames_leave_no_memory_behind(venue: str) -> None:
    """Huge unique names, deltas before snapshots, unknown indexes: all rejected, none kept
    (Bybit's book, the name-rule caches, the ingest's per-symbol state)."""
    target, telemetry = RecordingTarget(), Telemetry()
    parser: Any = {"bybit": bybit.Parser(), "hyperliquid": hyperliquid.Parser(max_bytes=200_000),
                   "okx": okx.Parser()}[venue]
    source = {"bybit": "bybit_linear", "hyperliquid": "hyperliquid", "okx": "okx_swap"}[venue]
    ingest = VenueIngest(target, MetricPointEncoder(CODEC), telemetry, source=source, parser=parser,
                         conflate_ms=0)
    for warmup in _hostile_names(venue, "WARMUP"):  # first-call allocations outside the measurement
        ingest.on_ws_frame(warmup, INGEST_MS)
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        nonce = uuid.uuid4().hex.upper()  # names nothing else in this process has checked
        frames = 0
        for frame in _hostile_names(venue, nonce):
            ingest.on_ws_frame(frame, INGEST_MS)
            frames += 1
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert not target.sent and telemetry.total("frames_rejected") == 2 * frames
    assert retained < 2_000_000, f"{retained:,} bytes retained"
    if venue == "bybit":
        assert parser.book.current(f"D{nonce[:8]}0USDT") == {}


# -- regressions: the bugs this suite found in the venues' parsers, fixed and kept fixed ----------


def test_a_bybit_unsubscribe_answer_is_an_answer() -> None:
    """Bybit answers an unsubscribe like a subscribe; read as data it was counted as
    ``unexpected_event`` and its request was never marked answered."""
    raw = json.dumps({"success": True, "ret_msg": "", "conn_id": "c1", "req_id": "12", "op": "unsubscribe"})
    assert bybit.control_answer(raw) == Ack(12)
    assert bybit.Parser().parse(raw, 1) == []


@pytest.mark.parametrize("req_id", ["\u00b2", "\u0661\u0662", "\U0001d7d7", "\uff11"])
def test_a_bybit_answer_whose_req_id_is_not_ascii_digits_names_no_request(req_id: str) -> None:
    """``"²".isdigit()`` is true and ``int("²")`` raises: the ValueError escaped
    ``Dialect.control``, and the websocket reader replaced the socket."""
    raw = json.dumps({"success": True, "ret_msg": "", "conn_id": "c1", "req_id": req_id, "op": "subscribe"})
    assert bybit.control_answer(raw) == Ack(None)


@pytest.mark.parametrize("depth", [990, 1_020])
def test_a_hyperliquid_error_answer_nested_deeply_is_still_an_answer(depth: int) -> None:
    """The frame reads (the JSON reader takes 1,024 levels), but writing its data back as the
    refusal's text overflowed the stack: RecursionError escaped ``Dialect.control``."""
    raw = '{"channel":"error","data":' + "[" * depth + "]" * depth + "}"
    answer = hyperliquid.control(raw)
    assert isinstance(answer, Ack) and answer.request_id is None and answer.error


@pytest.mark.parametrize("coin", ["xyz:TSLA", "BTC.X", "BTC$", "\U0001f680", "BTC\u00a0"])
def test_a_hyperliquid_coin_the_contract_refuses_is_rejected_and_never_published(coin: str) -> None:
    """The parser kept its own, looser name rule: these coins were published, and every
    consumer then dead-lettered their points (docs/contract.md, "Symbols")."""
    ctx = {"markPx": "97015.0", "oraclePx": "97005.0", "funding": "0.0000125", "openInterest": "26142.5"}
    raw = json.dumps({"channel": "activeAssetCtx", "data": {"coin": coin, "ctx": ctx}})
    assert rules.symbol_problem(coin, "hyperliquid") is not None  # what the consumers say
    with pytest.raises(FrameRejected) as exc:
        hyperliquid.Parser().parse(raw, 1_790_000_000_000)
    assert exc.value.reason == "bad_symbol"


@pytest.mark.parametrize("inst_id", ["btc-usdt-swap", "BTC/USDT-SWAP", "BTC.USDT-SWAP", "\u2460-USDT-SWAP"])
def test_an_okx_swap_the_contract_refuses_is_rejected_and_never_published(inst_id: str) -> None:
    """OKX's module checked instIds with a looser rule of its own: these were published, and
    every consumer then dead-lettered their points (docs/contract.md, "Symbols")."""
    raw = json.dumps({"arg": {"channel": "mark-price", "instId": inst_id},
                      "data": [{"instId": inst_id, "markPx": "37212.5", "ts": "1790000000000"}]})
    assert rules.symbol_problem(inst_id, "okx_swap") is not None  # what the consumers say
    with pytest.raises(FrameRejected) as exc:
        okx.Parser().parse(raw, 1_790_000_000_000)
    assert exc.value.reason == "bad_symbol"
    entry = {"instType": "SWAP", "instId": inst_id, "ctType": "linear", "state": "live", "ctValCcy": "BTC",
             "settleCcy": "USDT", "uly": "BTC-USDT"}
    listing = okx.listing(json.dumps({"code": "0", "msg": "", "data": [entry]}))
    assert not listing.instruments and inst_id in listing.rejected


def test_binance_answers_nested_past_the_stack_are_not_answers() -> None:
    """A frame not starting with "stream" goes to control first: nesting deeper than the parser's
    stack is no answer (the data path rejects it), and must not replace the socket."""
    assert binance.DIALECT.control("[" * 100_000) is None
