"""Hostile websocket frames and REST bodies at the producer's entry points.

Boundary 1 is ``Ingest.on_ws_frame``, boundary 2 ``Ingest.on_open_interest``
and ``perpetual_listing``. Every generated input (perpstream/fakes/hostile/frames.py) is
judged by an oracle written from the contract (perpstream/fakes/hostile/binance_rules.py,
jsontext.py): an accepted frame publishes exactly the points the contract gives
(decoded with the reference codec and compared field by field, keys included),
a rejected one is counted in ``frames_rejected`` under a documented reason and
publishes nothing for the bad item, and a valid frame fed after every input is
still published exactly.

The generated-input tests tolerate a failure only where the oracle saw the
trigger of an open bug (perpstream/fakes/hostile/known_bugs.py, none now); the bugs this
suite found first are fixed and pinned by the regression tests at the end.
"""

from __future__ import annotations

import gc
import io
import json
import logging
import random
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpstream.fakes.hostile.frames import (
    FILTER,
    MAX_FRAME,
    OI_FAMILIES,
    T0,
    WS_FAMILIES,
    exchange_info_case,
    oi_case,
    ws_case,
)
from perpstream.fakes.hostile.harness import IngestHarness, RecordingTarget, Tally
from perpstream.fakes.hostile.jsontext import Raw, dumps
from perpstream.fakes.hostile.outcomes import Case, Verdict
from perpstream.producer.binance import DEFAULT_MAX_FRAME_BYTES, REJECT_REASONS, perpetual_listing
from perpstream.producer.encoding import MetricPointEncoder
from perpstream.producer.exceptions import FrameRejected
from perpstream.producer.ingest import Ingest
from perpstream.runtime.telemetry import JsonFormatter, Telemetry
from perpstream.schemas.codec import metric_point_codec
from perpstream.schemas.models import Metric

CODEC = metric_point_codec()
HARNESS = IngestHarness()
OI_HARNESS = IngestHarness()


def ci(examples: int) -> Any:
    """Fixed inputs in CI (derandomized, no example database), and no time limit per input."""
    return settings(max_examples=examples, derandomize=True, database=None, deadline=None,
                    suppress_health_check=list(HealthCheck))


def check(v: Verdict, case: Case) -> None:
    assert v.failure is None or v.explained, f"{v.failure}\n  input ({case.family}): {case.short(600)}"


def payload(**changes: Any) -> dict[str, Any]:
    d: dict[str, Any] = {"e": "markPriceUpdate", "E": T0, "s": "BTCUSDT", "p": "64240.38272864",
                         "i": "64261.21012245", "P": "64234.17512183", "r": "0.00010000", "T": T0 + 3_600_000}
    for k, v in changes.items():
        if v is _DROP:
            d.pop(k)
        else:
            d[k] = v
    return d


_DROP = object()


def frame(**changes: Any) -> str:
    return dumps({"stream": "btcusdt@markPrice@1s", "data": payload(**changes)})


def fresh(symbols: frozenset[str] | None = None, max_frame: int = MAX_FRAME) -> tuple[Ingest, RecordingTarget,
                                                                                        Telemetry]:
    target, telemetry = RecordingTarget(), Telemetry()
    ingest = Ingest(target, MetricPointEncoder(CODEC), telemetry, max_frame_bytes=max_frame,
                    symbols=symbols)
    return ingest, target, telemetry


# -- boundary 1: generated frames ---------------------------------------------------------------

@ci(250)
@given(st.randoms(use_true_random=False))
def test_generated_frames_are_published_exactly_or_rejected_with_a_reason(rng: random.Random) -> None:
    case = ws_case(rng)
    check(HARNESS.ws(case), case)


def test_seeded_frames_cover_every_family_reason_and_outcome() -> None:
    tally = Tally("websocket frames")
    for i in range(1500):
        case = ws_case(random.Random(f"ci:{i}"))
        tally.add(case, HARNESS.ws(case), f"ci:{i}")
    assert tally.new == 0, tally.report()
    assert set(tally.families) == set(WS_FAMILIES), tally.families
    assert set(REJECT_REASONS) <= set(tally.reasons), tally.reasons
    assert {"accepted", "partial", "rejected", "control", "nothing"} <= set(tally.outcomes), tally.outcomes


# -- boundary 1: pinned frames ------------------------------------------------------------------

SAMPLES = ["mark_price_combined.json", "mark_price_raw.json", "mark_price_delivery.json",
           "mark_price_all_market.json"]


@pytest.mark.parametrize("name", SAMPLES)
@pytest.mark.parametrize("as_bytes", [False, True])
def test_binance_samples_are_published_exactly(samples_dir: Path, name: str, as_bytes: bool) -> None:
    raw = (samples_dir / name).read_bytes()
    v = HARNESS.ws(Case(raw if as_bytes else raw.decode(), "sample"))
    assert v.failure is None and v.outcome == "accepted", v.failure


def test_delivery_contract_publishes_no_funding_metrics(samples_dir: Path) -> None:
    ingest, target, _ = fresh()
    ingest.on_ws_frame((samples_dir / "mark_price_delivery.json").read_text(), 5)
    assert [CODEC.decode(v)["metric"] for _, v in target.sent] == [
        Metric.MARK_PRICE, Metric.INDEX_PRICE, Metric.ESTIMATED_SETTLE_PRICE]


@pytest.mark.parametrize("raw", [
    '{"result":null,"id":1}', '{"result":["btcusdt@markPrice@1s"],"id":7}', b'{"id": 3, "result": null}',
    '{"error":{"code":2,"msg":"Invalid request"},"id":1}', '{"id":1,"result":null,"e":"markPriceUpdate"}',
])
def test_control_answers_are_handed_back_and_never_published(raw: str | bytes) -> None:
    v = HARNESS.ws(Case(raw, "control"))
    assert v.failure is None and v.outcome == "control", v.failure


def one(reason: str) -> dict[str, int]:
    return {reason: 1}


@pytest.mark.parametrize(("raw", "reasons"), [
    ("", one("bad_json")), (b"\xff\xfe\xfd", one("bad_json")), ("{", one("bad_json")),
    ("\x00", one("bad_json")),
    ('{"e":"markPriceUpdate","s":"BTC\nUSDT"}', one("bad_json")),  # a raw control character in a string
    ("x" * (MAX_FRAME + 1), one("too_large")), (b"[" + b" " * MAX_FRAME + b"]", one("too_large")),
    ("null", one("not_object")), ('"markPriceUpdate"', one("not_object")),
    ("[1, null, []]", {"not_object": 3}),
    ('{"stream":"btcusdt@markPrice@1s"}', one("missing_field")), ('{"result":null}', one("missing_field")),
    (frame(T=_DROP), one("missing_field")), (frame(r=_DROP), one("missing_field")),
    (frame(p="nan"), one("non_finite")), (frame(i="Infinity"), one("non_finite")),
    (frame(P="1e999"), one("non_finite")), (frame(r="-inf"), one("non_finite")),
    (frame(p="-1"), one("bad_number")), (frame(p="abc"), one("bad_number")),
    (frame(p=None), one("bad_number")), (frame(p=True), one("bad_number")),
    (frame(r="1.5.5"), one("bad_number")), (frame(i=["1"]), one("bad_number")),
    (frame(E=1.79e12), one("bad_timestamp")), (frame(E=str(T0)), one("bad_timestamp")),
    (frame(E=4_102_444_800_000), one("bad_timestamp")), (frame(E=1_483_228_799_999), one("bad_timestamp")),
    (frame(E=2**64), one("bad_timestamp")), (frame(T=True), one("bad_timestamp")),
    (frame(s="btcusdt"), one("bad_symbol")), (frame(s="BTC\u0000USDT"), one("bad_symbol")),
    (frame(s="\ud800"), one("bad_symbol")), (frame(s="X" * 65), one("bad_symbol")),
    (frame(s="BTC USDT"), one("bad_symbol")), (frame(s="币" * 22), one("bad_symbol")),
    (frame(s="BTC\u200bUSDT"), one("bad_symbol")), (frame(s=5), one("bad_symbol")),
    (frame(e="24hrTicker"), one("unexpected_event")), (frame(e=None), one("unexpected_event")),
])
def test_pinned_rejections(raw: str | bytes, reasons: dict[str, int]) -> None:
    v = HARNESS.ws(Case(raw, "pinned"))
    assert v.failure is None, v.failure
    assert v.outcome == "rejected" and dict(v.reasons) == reasons


@pytest.mark.parametrize("raw", [
    frame(s="币安人生USDT"), dumps(payload(s="我踏马来了USDT")).encode(), frame(s="E\u0301USDT"),
    frame(s="A" * 64), frame(s="币" * 21), frame(s="\uff22\uff34\uff23USDT"), frame(r="", T=0),
    frame(p="-0", i="0", P="1e-400"),
    frame(ap="1.5", st=0, x={"deep": [[[[{"a": None}]]]]}), frame(p=1.5, i=2, P=Raw("3.0e2")),
    frame(E=1_483_228_800_000, T=4_102_444_799_999), "\n\t " + frame() + " \r\n",
    dumps({"stream": "!markPrice@arr@1s", "data": [payload(), payload(s="ETHUSDT", r="", T=0)]}),
])
def test_pinned_acceptances(raw: str | bytes) -> None:
    v = HARNESS.ws(Case(raw, "pinned"))
    assert v.failure is None and v.outcome == "accepted", v.failure


def test_a_bad_item_of_an_all_market_frame_is_rejected_alone() -> None:
    items = [payload(), payload(s="btcusdt"), payload(s="ETHUSDT", p="nan"), 5, payload(s="币安人生USDT")]
    ingest, target, telemetry = fresh()
    ingest.on_ws_frame(dumps(items), 9)
    assert {CODEC.decode(v)["symbol"] for _, v in target.sent} == {"BTCUSDT", "币安人生USDT"}
    assert len(target.sent) == 10
    reasons = ("bad_symbol", "non_finite", "not_object")
    counted = {r: telemetry.get("frames_rejected", {"reason": r}) for r in reasons}
    assert counted == {"bad_symbol": 1, "non_finite": 1, "not_object": 1}


def test_the_default_frame_limit_is_exact() -> None:
    h = IngestHarness(max_frame=DEFAULT_MAX_FRAME_BYTES)
    d = payload()
    d["pad"] = ""
    base = len(dumps(d).encode())
    for extra, outcome in ((0, "accepted"), (1, "rejected")):
        d["pad"] = "x" * (DEFAULT_MAX_FRAME_BYTES - base + extra)
        raw = dumps(d).encode()
        assert len(raw) == DEFAULT_MAX_FRAME_BYTES + extra
        v = h.ws(Case(raw, "size"))
        assert v.failure is None and v.outcome == outcome, v.failure


@pytest.mark.parametrize("raw", [
    "\ud800{", b"\xff" * 1_000, "x" * 5_000_000, '{"s":"\\u0000"}', b"\x00\x01\x02", frame(s="BTC\u202eUSDT"),
    '{"e":"markPriceUpdate"' + ',"x":"' + "币" * 10_000 + '"}',
])
def test_a_rejection_logs_one_json_line_with_a_short_sample(raw: str | bytes) -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("perpstream.producer.ingest")
    logger.addHandler(handler)
    try:
        ingest, target, telemetry = fresh(max_frame=DEFAULT_MAX_FRAME_BYTES)
        ingest.on_ws_frame(raw, 1)
    finally:
        logger.removeHandler(handler)
    lines = out.getvalue().splitlines()
    assert len(lines) == 1 and not target.sent and telemetry.total("frames_rejected") == 1
    line = json.loads(lines[0])
    assert line["msg"] == "frame rejected" and line["reason"] in REJECT_REASONS
    assert len(line["sample"]) < 260 and len(line["detail"]) <= 300


# -- boundary 2: open interest and exchangeInfo -------------------------------------------------

@ci(150)
@given(st.randoms(use_true_random=False))
def test_generated_open_interest_bodies(rng: random.Random) -> None:
    case = oi_case(rng)
    check(OI_HARNESS.oi(case), case)


def test_seeded_open_interest_bodies_cover_every_family_reason_and_outcome() -> None:
    tally = Tally("open interest")
    h = IngestHarness()
    for i in range(800):
        case = oi_case(random.Random(f"ci:{i}"))
        tally.add(case, h.oi(case), f"ci:{i}")
    assert tally.new == 0, tally.report()
    assert set(tally.families) == set(OI_FAMILIES), tally.families
    assert set(REJECT_REASONS) - {"unexpected_event"} <= set(tally.reasons), tally.reasons
    assert {"accepted", "rejected", "duplicate"} <= set(tally.outcomes), tally.outcomes


def test_open_interest_sample_and_duplicates(samples_dir: Path) -> None:
    h = IngestHarness()
    body = (samples_dir / "open_interest.json").read_text()
    first, again = h.oi(Case(body, "sample")), h.oi(Case(body, "sample"))
    assert first.failure is None and first.outcome == "accepted", first.failure
    assert again.failure is None and again.outcome == "duplicate", again.failure
    err = h.oi(Case('{"code":-1121,"msg":"Invalid symbol."}', "error_body"))
    assert err.failure is None and dict(err.reasons) == {"missing_field": 1}


@ci(100)
@given(st.randoms(use_true_random=False))
def test_generated_exchange_info(rng: random.Random) -> None:
    case = exchange_info_case(rng)
    check(HARNESS.perpetuals(case), case)


def test_seeded_exchange_info() -> None:
    tally = Tally("exchangeInfo")
    for i in range(400):
        case = exchange_info_case(random.Random(f"ci:{i}"))
        tally.add(case, HARNESS.perpetuals(case), f"ci:{i}")
    assert tally.new == 0, tally.report()
    assert {"accepted", "rejected"} <= set(tally.outcomes), tally.outcomes


def test_exchange_info_sample(samples_dir: Path) -> None:
    info = json.loads((samples_dir / "exchange_info_excerpt.json").read_text())
    assert perpetual_listing(info).symbols == {"BTCUSDT"}
    assert HARNESS.perpetuals(Case(info, "sample")).failure is None


# -- regressions: the bugs this suite found first, each fixed and kept fixed here ----------------

@pytest.mark.parametrize("entry", ["mark price", "all-market array", "open interest"])
def test_an_integer_literal_wider_than_a_double_is_rejected_not_raised(entry: str) -> None:
    wide = Raw("9" * 400)
    h = IngestHarness()
    if entry == "open interest":
        v = h.oi(Case(dumps({"openInterest": wide, "symbol": "BTCUSDT", "time": T0}), entry))
    elif entry == "mark price":
        v = h.ws(Case(frame(p=wide), entry))
    else:
        v = h.ws(Case(dumps([payload(s="ETHUSDT", r=wide), payload()]), entry))
        assert v.outcome == "partial", v.failure  # the good item is still published
    assert v.failure is None and set(v.reasons) <= {"non_finite", "bad_number"}, v.failure


@pytest.mark.parametrize("raw", ["[" * 100_000, '{"a":' * 50_000 + "1" + "}" * 50_000])
@pytest.mark.parametrize("entry", ["websocket", "open interest"])
def test_deeply_nested_json_is_rejected_as_bad_json(raw: str, entry: str) -> None:
    ingest, target, telemetry = fresh()
    (ingest.on_ws_frame if entry == "websocket" else ingest.on_open_interest)(raw, 1)
    # the 300 kB one is larger than this harness's frame limit: rejected before parsing
    rejected = telemetry.get("frames_rejected", {"reason": "bad_json"}) + telemetry.get(
        "frames_rejected", {"reason": "too_large"})
    assert rejected == 1 and not target.sent


@pytest.mark.parametrize("symbol", [["BTCUSDT"], {"s": "BTCUSDT"}])
def test_an_unhashable_symbol_in_a_filtered_all_market_frame_costs_only_its_item(symbol: Any) -> None:
    ingest, target, _ = fresh(symbols=FILTER)
    ingest.on_ws_frame(dumps({"stream": "!markPrice@arr@1s", "data": [payload(s=symbol), payload()]}), 1)
    assert len(target.sent) == 5  # BTCUSDT's points


@pytest.mark.parametrize("text", [" 1.5", "1.5\n", "\u20031.5", "1_000", "\uff11\uff12\uff13",
                                  "\u0661\u0662\u0663"])
def test_strings_that_are_not_decimals_are_rejected(text: str) -> None:
    ingest, target, telemetry = fresh()
    ingest.on_ws_frame(frame(p=text), 1)
    ingest.on_open_interest(dumps({"openInterest": text, "symbol": "BTCUSDT", "time": T0}), 1)
    assert telemetry.get("frames_rejected", {"reason": "bad_number"}) == 2 and not target.sent


@pytest.mark.parametrize("t", [False, Raw("0.0"), Raw("-0.0")])
def test_a_funding_time_that_is_not_integer_zero_is_rejected(t: Any) -> None:
    ingest, target, telemetry = fresh()
    ingest.on_ws_frame(frame(r="", T=t), 1)
    assert telemetry.get("frames_rejected", {"reason": "bad_timestamp"}) == 1 and not target.sent


@pytest.mark.parametrize("body", [[], None, "exchangeInfo", 5, [{"symbols": []}]])
def test_an_exchange_info_body_that_is_not_an_object_is_rejected(body: Any) -> None:
    with pytest.raises(FrameRejected):
        perpetual_listing(body)


def test_frames_with_huge_symbols_leave_no_memory_behind() -> None:
    ingest, _, telemetry = fresh(max_frame=DEFAULT_MAX_FRAME_BYTES)
    ingest.on_ws_frame(frame(s="WARMUP"), 1)  # first-call allocations outside the measurement
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        nonce = uuid.uuid4().hex.upper()  # symbols nothing else in this process has checked
        for i in range(200):  # 200 distinct 100 kB symbols: 20 MB if each stays cached
            ingest.on_ws_frame(frame(s=f"{nonce}{i}" + "X" * 100_000), 1)
        gc.collect()
        retained = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert telemetry.get("frames_rejected", {"reason": "bad_symbol"}) == 200
    assert retained < 2_000_000, f"{retained:,} bytes retained"
