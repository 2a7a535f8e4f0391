"""History of Bybit, OKX and Hyperliquid for ``perpstream backfill --venue``: the bodies read as
the venues document them (bad items rejected alone, envelope codes sorted), the paging of each
kind returning every row of a range exactly once, and the flags that do not fit a venue refused
in one line before anything is opened."""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpstream.errors import ConfigError
from perpstream.producer.backfill import bybit, command, hyperliquid, okx
from perpstream.producer.backfill.fetch import BackfillResult
from perpstream.producer.backfill.plan import Checkpoint
from perpstream.producer.backfill.spec import (
    Ask,
    Page,
    by_cursor,
    newest_first,
    oldest_first,
    page_of,
    row_time,
)
from perpstream.producer.backfill.venues import VENUE_CHOICES, venue_plan
from perpstream.producer.exceptions import FrameRejected, RestError
from perpstream.producer.failures import RestFault
from perpstream.producer.settings import ProducerSettings
from perpstream.schemas.models import Metric

T0 = 1_790_000_000_000
H = 3_600_000


def ask(symbol: str, start: int = T0, end: int = T0 + 100 * H, period: str = "") -> Ask:
    return Ask("http://venue", symbol, start, end, 7, period)


def bybit_body(result: dict[str, Any], code: int = 0, msg: str = "OK") -> dict[str, Any]:
    return {"retCode": code, "retMsg": msg, "result": result, "retExtInfo": {}, "time": T0}


# -- Bybit ------------------------------------------------------------------------------------


def test_bybit_funding_rows_are_settled_funding_at_their_timestamp() -> None:
    rows = [{"symbol": "BTCUSDT", "fundingRate": "-0.0001", "fundingRateTimestamp": str(T0 + 8 * H)},
            {"symbol": "BTCUSDT", "fundingRate": "0.00005", "fundingRateTimestamp": str(T0)},
            {"symbol": "ETHUSDT", "fundingRate": "0.0001", "fundingRateTimestamp": str(T0 - 8 * H)},
            {"symbol": "BTCUSDT", "fundingRate": "NaN", "fundingRateTimestamp": str(T0 - 16 * H)},
            {"symbol": "BTCUSDT", "fundingRate": "0.0001"}]
    page = bybit.funding_page(bybit_body({"category": "linear", "list": rows}), ask("BTCUSDT"))
    settled = {"source": "bybit_linear", "symbol": "BTCUSDT", "metric": Metric.FUNDING_RATE_SETTLED,
               "ingest_time": 7}
    assert page.points == [{**settled, "value": -0.0001, "event_time": T0 + 8 * H},
                           {**settled, "value": 0.00005, "event_time": T0}]
    assert [e.reason for e in page.rejected] == ["bad_symbol", "non_finite", "missing_field"]
    # paging reads every row's time, good or bad: the oldest is the ETH row's
    assert (page.items, page.oldest, page.newest, page.cursor) == (5, T0 - 16 * H, T0 + 8 * H, None)


def test_bybit_open_interest_is_in_base_coin_with_its_cursor() -> None:
    body = bybit_body({"symbol": "1000PEPEUSDT", "category": "linear", "nextPageCursor": "lastid%3D42",
                       "list": [{"openInterest": "461134384.5", "timestamp": str(T0)},
                                {"openInterest": "-1", "timestamp": str(T0 - 300_000)}]})
    page = bybit.open_interest_page(body, ask("1000PEPEUSDT", period="5min"))
    assert [(p["metric"], p["value"], p["event_time"]) for p in page.points] == [
        (Metric.OPEN_INTEREST, 461134384.5, T0)]
    assert [e.reason for e in page.rejected] == ["bad_number"]
    assert page.cursor == "lastid%3D42"
    last = bybit_body({"symbol": "1000PEPEUSDT", "category": "linear", "nextPageCursor": "", "list": []})
    assert bybit.open_interest_page(last, ask("1000PEPEUSDT")).cursor is None
    other = bybit_body({"symbol": "BTCUSDT", "category": "linear", "list": []})
    with pytest.raises(FrameRejected, match="bad_symbol"):
        bybit.open_interest_page(other, ask("1000PEPEUSDT"))


@pytest.mark.parametrize(("code", "fault"), [
    (10006, RestFault.RATE_LIMITED), (10000, RestFault.RETRY), (10016, RestFault.RETRY),
    (10001, RestFault.REFUSED), (110001, RestFault.REFUSED),
])
def test_bybit_envelope_codes_are_sorted(code: int, fault: RestFault) -> None:
    with pytest.raises(RestError) as info:
        bybit.funding_page(bybit_body({}, code, "params error: Symbol Invalid"), ask("NOPEUSDT"))
    assert info.value.fault is fault
    assert info.value.retry_after is None  # an envelope limit is paused by the requests, not here


# -- OKX --------------------------------------------------------------------------------------


def test_okx_publishes_the_realized_rate_not_the_predicted_one() -> None:
    row = {"instType": "SWAP", "instId": "BTC-USDT-SWAP", "formulaType": "withRate",
           "method": "current_period", "fundingRate": "0.0000746604960499",
           "realizedRate": "0.0000746572360545", "fundingTime": str(T0)}
    page = okx.funding_page({"code": "0", "msg": "", "data": [row, {**row, "instId": "ETH-USDT-SWAP"}]},
                            ask("BTC-USDT-SWAP"))
    assert [(p["source"], p["value"], p["event_time"]) for p in page.points] == [
        ("okx_swap", 0.0000746572360545, T0)]
    assert [e.reason for e in page.rejected] == ["bad_symbol"]


def test_okx_open_interest_rows_give_the_coin_figure() -> None:
    doc = {"code": "0", "msg": "", "data": [[str(T0), "100", "1.5", "90000"], [str(T0 - 300_000), "99"],
                                            {"ts": str(T0)}]}
    page = okx.open_interest_page(doc, ask("BTC-USDT-SWAP", period="5m"))
    assert [(p["value"], p["event_time"]) for p in page.points] == [(1.5, T0)]
    assert [e.reason for e in page.rejected] == ["missing_field", "not_object"]
    assert (page.oldest, page.newest) == (T0 - 300_000, T0)


@pytest.mark.parametrize(("code", "fault"), [
    ("50011", RestFault.RATE_LIMITED), ("50013", RestFault.RETRY), ("51001", RestFault.REFUSED),
])
def test_okx_envelope_codes_are_sorted(code: str, fault: RestFault) -> None:
    with pytest.raises(RestError) as info:
        okx.funding_page({"code": code, "msg": "Instrument ID does not exist", "data": []}, ask("NOPE-SWAP"))
    assert info.value.fault is fault


# -- Hyperliquid ------------------------------------------------------------------------------


def test_hyperliquid_funding_rows_keep_their_time_and_the_coin_spelling() -> None:
    rows = [{"coin": "kPEPE", "fundingRate": "-0.00022196", "premium": "-0.00052196", "time": T0 + 76},
            {"coin": "kPEPE", "fundingRate": 0.0000125, "premium": "0", "time": T0 + H + 3},
            {"coin": "KPEPE", "fundingRate": "0.0000125", "premium": "0", "time": T0 + 2 * H},
            {"coin": "kPEPE", "fundingRate": True, "premium": "0", "time": T0 + 3 * H}]
    page = hyperliquid.funding_page(rows, ask("kPEPE"))
    assert [(p["symbol"], p["value"], p["event_time"]) for p in page.points] == [
        ("kPEPE", -0.00022196, T0 + 76), ("kPEPE", 0.0000125, T0 + H + 3)]
    assert [e.reason for e in page.rejected] == ["bad_symbol", "bad_number"]
    assert hyperliquid.funding_request("BTC", T0, T0 + H) == {
        "type": "fundingHistory", "coin": "BTC", "startTime": T0, "endTime": T0 + H}


# -- hostile bodies ---------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=30,
)
row_like = st.fixed_dictionaries({}, optional={
    k: json_values | st.sampled_from(["0.0001", str(T0), "BTCUSDT", "BTC-USDT-SWAP", "BTC"])
    for k in ("symbol", "fundingRate", "fundingRateTimestamp", "openInterest", "timestamp", "instId",
              "realizedRate", "fundingTime", "coin", "time")})
rows = st.lists(st.one_of(row_like, json_values,
                          st.lists(st.sampled_from([str(T0), "1.5", "x", None, 5]), max_size=5)), max_size=6)
bodies = st.one_of(
    json_values, rows,
    st.builds(lambda c, r, cur: {"retCode": c, "retMsg": "", "result": {"list": r, "nextPageCursor": cur}},
              st.sampled_from([0, 0, 10006, 10001, "0"]), rows, json_values),
    st.builds(lambda c, r: {"code": c, "msg": "", "data": r}, st.sampled_from(["0", "0", "50011", 0]), rows),
)
READERS: list[Callable[[Any], Page]] = [
    lambda d: bybit.funding_page(d, ask("BTCUSDT")),
    lambda d: bybit.open_interest_page(d, ask("BTCUSDT")),
    lambda d: okx.funding_page(d, ask("BTC-USDT-SWAP")),
    lambda d: okx.open_interest_page(d, ask("BTC-USDT-SWAP")),
    lambda d: hyperliquid.funding_page(d, ask("BTC")),
]


@settings(max_examples=400, deadline=None)
@given(bodies)
def test_hostile_bodies_are_rejected_or_refused_never_raised(doc: Any) -> None:
    json.dumps(doc, default=str)
    for read in READERS:
        try:
            page = read(doc)
        except (FrameRejected, RestError):
            continue
        assert page.items == len(page.points) + len(page.rejected)
        for p in page.points:
            assert type(p["value"]) is float and p["value"] - p["value"] == 0.0
            assert type(p["event_time"]) is int


# -- paging -----------------------------------------------------------------------------------


class Venue:
    """A venue's history as a sorted series of row times, answering pages as the three
    styles do; ``asked`` counts the pages."""

    def __init__(self, times: list[int], limit: int) -> None:
        self.times = sorted(set(times))
        self.limit = limit
        self.asked = 0

    def page(self, chosen: list[int], cursor: str | None = None) -> Page:
        self.asked += 1
        pts = [{"source": "v", "symbol": "S", "metric": Metric.OPEN_INTEREST, "value": 1.0, "event_time": t,
                "ingest_time": 0} for t in chosen]
        return Page(pts, [], len(chosen), min(chosen, default=None), max(chosen, default=None), cursor)

    async def newest(self, start: int, upper: int) -> Page:
        """Newest first, at or before ``upper``, from ``start`` (Bybit's funding)."""
        i = bisect.bisect_right(self.times, upper)
        return self.page([t for t in self.times[:i] if t >= start][::-1][: self.limit])

    async def oldest(self, lower: int, end: int) -> Page:
        """Oldest first, from ``lower`` to ``end`` (Hyperliquid)."""
        return self.page([t for t in self.times if lower <= t <= end][: self.limit])

    async def cursored(self, start: int, end: int, cursor: str) -> Page:
        """Newest first with a cursor naming the next page's newest time (Bybit's open interest)."""
        upper = int(cursor) if cursor else end
        chosen = [t for t in self.times if start <= t <= upper][::-1]
        more = len(chosen) > self.limit
        return self.page(chosen[: self.limit], str(chosen[self.limit]) if more else None)


def run(coro: Awaitable[list[dict[str, Any]]]) -> list[int]:
    async def main() -> list[dict[str, Any]]:
        return await coro

    return [p["event_time"] for p in asyncio.run(main())]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(0, 400), max_size=150), st.integers(0, 200), st.integers(1, 300),
       st.integers(1, 25))
def test_each_paging_style_returns_every_row_of_the_range_once(
        times: list[int], start: int, span: int, limit: int) -> None:
    end = start + span
    want = sorted({t for t in times if start <= t < end})
    pages = [
        lambda v: newest_first(lambda upper: v.newest(start, upper), start, end, limit),
        lambda v: oldest_first(lambda lower: v.oldest(lower, end - 1), start, end, limit),
        lambda v: by_cursor(lambda cursor: v.cursored(start, end - 1, cursor), start, end),
    ]
    for style in pages:
        venue = Venue(times, limit)
        got = run(style(venue))
        assert sorted(got) == want and len(got) == len(want)
        assert venue.asked <= len(want) // limit + 1  # no request beyond the one that says "no more"


def test_paging_stops_where_a_venue_makes_no_progress() -> None:
    calls = []

    async def same(_: Any) -> Page:
        calls.append(1)
        pts = [{"source": "v", "symbol": "S", "metric": Metric.OPEN_INTEREST, "value": 1.0, "event_time": T0,
                "ingest_time": 0}]
        return Page(pts, [], 1, T0, T0, "again")

    assert run(by_cursor(same, T0 - H, T0 + H)) == [T0]
    assert len(calls) == 2  # the second page went no further back: stop
    assert run(oldest_first(same, T0 - H, T0 + H, 1)) == [T0] and len(calls) == 4


def test_row_times_for_paging() -> None:
    assert [row_time(v) for v in (T0, str(T0), "", "1e3", True, None, "9" * 17)] == [
        T0, T0, None, None, None, None, None]
    with pytest.raises(FrameRejected, match="not_object"):
        page_of({"list": []}, "x", lambda d: d, lambda d: None)


# -- plans, flags and checkpoints ---------------------------------------------------------------


def plan_settings(**kw: Any) -> ProducerSettings:
    return ProducerSettings(kafka_bootstrap_servers="h:1", backfill_since="6h", **kw)


def test_a_venue_plan_takes_the_venue_spelling_and_its_period() -> None:
    plan = venue_plan(plan_settings(bybit_symbols="ETHUSDT,1000PEPEUSDT", backfill_oi_period="1h"), "bybit")
    assert plan.symbols == ("1000PEPEUSDT", "ETHUSDT") and plan.base == "https://api.bybit.com"
    assert [(t.kind.metric, t.period, t.period_ms) for t in plan.tracks] == [
        (Metric.FUNDING_RATE_SETTLED, "", 0), (Metric.OPEN_INTEREST, "1h", H)]
    okx_plan = venue_plan(plan_settings(okx_symbols="BTC-USDT-SWAP", backfill_oi_period="1d"), "okx",
                          "open_interest")
    assert [(t.kind.metric, t.period) for t in okx_plan.tracks] == [(Metric.OPEN_INTEREST, "1D")]
    hl = venue_plan(plan_settings(hyperliquid_symbols="kPEPE,BTC"), "hyperliquid")
    assert hl.symbols == ("BTC", "kPEPE") and [t.kind.metric for t in hl.tracks] == ["funding_rate_settled"]
    assert hl.notes == ("open_interest is not backfilled: Hyperliquid keeps no open-interest history (only "
                        "the current value, which the live producer publishes)",)
    assert venue_plan(plan_settings(all_symbols=True), "bybit").symbols is None
    assert VENUE_CHOICES == ("binance", "bybit", "okx", "hyperliquid")


@pytest.mark.parametrize(("kw", "venue", "metrics", "message"), [
    ({}, "bybit", None, r"needs --symbols A,B as Bybit spells them \(PERPSTREAM_BYBIT_SYMBOLS\) or --all"),
    ({"hyperliquid_symbols": "BTC"}, "hyperliquid", "open_interest",
     "--metrics open_interest: Hyperliquid keeps no open-interest history"),
    ({"bybit_symbols": "BTCUSDT"}, "bybit", "mark_price", "--metrics 'mark_price': Bybit serves "
     "funding_rate_settled, open_interest"),
    ({"bybit_symbols": "BTCUSDT"}, "bybit", " , ", "--metrics is empty"),
    ({"bybit_symbols": "BTCUSDT", "backfill_oi_period": "2h"}, "bybit", None,
     "--oi-period 2h .*Bybit serves open_interest history at 5m, 15m, 30m, 1h, 4h, 1d"),
    ({"okx_symbols": "BTC-USDT-SWAP", "backfill_oi_period": "15m"}, "okx", None, "OKX serves .* 5m, 1h, 1d"),
    ({"okx_symbols": "BTC-USDT-SWAP", "backfill_oi_period": "15m"}, "okx", "funding_rate_settled", None),
    ({}, "kraken", None, "--venue 'kraken': choose from binance, bybit, okx, hyperliquid"),
])
def test_flags_that_do_not_fit_the_venue_are_one_line(
        kw: dict[str, Any], venue: str, metrics: str | None, message: str | None) -> None:
    if message is None:
        venue_plan(plan_settings(**kw), venue, metrics)  # the period does not matter without open interest
        return
    with pytest.raises(ConfigError, match=message) as info:
        venue_plan(plan_settings(**kw), venue, metrics)
    assert "\n" not in str(info.value)


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    command.register(parser.add_subparsers(dest="command"))
    return parser.parse_args(["backfill", "--since", "6h", "--bootstrap-servers", "h:1", *argv])


@pytest.mark.parametrize(("argv", "message"), [
    (["--venue", "bybit", "--symbols", "BTCUSDT", "--rest-url", "http://x"],
     "--rest-url is Binance's REST base; with --venue bybit use --bybit-rest-url"),
    (["--venue", "okx", "--symbols", "BTC-USDT-SWAP", "--testnet"], "--testnet is Binance's futures testnet"),
    (["--venue", "bybit", "--symbols", "BTCUSDT", "--okx-rest-url", "http://x"],
     "--okx-rest-url is for --venue okx; this run is --venue bybit"),
    (["--symbols", "BTCUSDT", "--hyperliquid-rest-url", "http://x"], "--hyperliquid-rest-url is for --venue"),
    (["--symbols", "BTCUSDT", "--metrics", "open_interest"], "--metrics chooses among the histories of"),
    (["--venue", "bybit"], "needs --symbols A,B"),
    (["--venue", "hyperliquid", "--symbols", "BTC", "--metrics", "open_interest"],
     "Hyperliquid keeps no open-interest history"),
])
def test_the_command_refuses_another_venues_flags_before_opening_anything(
        argv: list[str], message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("PERPSTREAM_BYBIT_SYMBOLS", "PERPSTREAM_SYMBOLS", "PERPSTREAM_OKX_SYMBOLS"):
        monkeypatch.delenv(var, raising=False)
    args = parse(*argv)
    with pytest.raises(ConfigError, match=message):
        args.func(args)


def test_venue_symbols_are_kept_as_the_venue_spells_them(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PERPSTREAM_HYPERLIQUID_SYMBOLS", raising=False)
    args = parse("--venue", "hyperliquid", "--symbols", "kPEPE,BTC", "--hyperliquid-rest-url", "http://h")
    s = command.build_settings(ProducerSettings, args, command._venue_fields("hyperliquid"))
    assert s.venue_symbols("hyperliquid") == frozenset({"kPEPE", "BTC"}) and s.symbols is None
    assert s.hyperliquid_rest_url == "http://h"


def test_checkpoints_are_per_venue_metric_and_symbol(tmp_path: Path) -> None:
    binance = Checkpoint(tmp_path, "t.v1", "BTCUSDT")
    bybit_oi = Checkpoint(tmp_path, "t.v1", "BTCUSDT", ("bybit", "open_interest"))
    bybit_funding = Checkpoint(tmp_path, "t.v1", "BTCUSDT", ("bybit", "funding_rate_settled"))
    assert binance.path == tmp_path / "t.v1" / "BTCUSDT.json"
    assert bybit_oi.path == tmp_path / "t.v1" / "bybit" / "open_interest" / "BTCUSDT.json"
    bybit_oi.delivered(T0, T0 + H)
    assert Checkpoint(tmp_path, "t.v1", "BTCUSDT", ("bybit", "open_interest")).resume_from(T0) == T0 + H
    assert bybit_funding.resume_from(T0) == T0 and binance.resume_from(T0) == T0


def test_okx_serves_three_months_of_funding_and_1440_bars_of_open_interest() -> None:
    funding = okx.HISTORY.kind(Metric.FUNDING_RATE_SETTLED)
    oi = okx.HISTORY.kind(Metric.OPEN_INTEREST)
    assert funding is not None and oi is not None
    assert funding.oldest(T0, 0) == T0 - 90 * 86_400_000 + H
    assert oi.oldest(T0, 300_000) == T0 - 1440 * 300_000 + H  # five days at 5 m
    assert oi.oldest(T0, 86_400_000) == T0 - 1440 * 86_400_000 + H
    assert bybit.HISTORY.kind(Metric.OPEN_INTEREST).oldest(T0, 300_000) is None  # type: ignore[union-attr]
    assert hyperliquid.HISTORY.kind(Metric.OPEN_INTEREST) is None


def test_thelast_lines_name_the_venue_and_say_what_is_not_served(capsys: pytest.CaptureFixture[str]) -> None:
    note = "open_interest is not backfilled: Hyperliquid keeps no open-interest history"
    ok = BackfillResult(venue="hyperliquid", symbols=2, chunks=4, points=1200, requests=5, weight=225,
                        notes=[note])
    assert command.last_lines(ok) == 0
    out = capsys.readouterr().err.splitlines()
    assert out[0] == f"perpstream backfill: note: {note}"
    assert out[1].startswith("perpstream backfill: hyperliquid: 1,200 points for 2 symbols (4 chunks")
    failed = BackfillResult(venue="bybit",
                            failures={"ZZZUSDT": "Symbol Invalid", "AAAUSDT": "Symbol Invalid"})
    assert command.last_lines(failed) == 1
    assert capsys.readouterr().err == (
        "perpstream backfill: error: bybit: not everything was delivered (AAAUSDT: Symbol Invalid; "
        "ZZZUSDT: Symbol Invalid); run the same command again to resume\n")
    assert command.last_lines(BackfillResult(points=3, symbols=1)) == 0
    # Binance's line is as it was
    assert capsys.readouterr().err.startswith("perpstream backfill: 3 points for 1 symbols")
