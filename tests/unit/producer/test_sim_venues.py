"""The simulated venues: deterministic frames in each venue's wire format, read by the venue's
real parser to the values the simulation wrote, one market told consistently across venues."""

from __future__ import annotations

import asyncio
import json
import statistics
from typing import Any

import pytest

from perpstream.producer.encoding import MetricPointEncoder
from perpstream.producer.exceptions import PermanentFailure
from perpstream.producer.ingest import Ingest
from perpstream.producer.sim_venues import (
    OI_SHARES,
    SIM_VENUES,
    BinanceScaledSim,
    SimBinanceScaledSource,
    SimVenue,
    SimVenueSource,
    decimal,
    simulated_venue,
)
from perpstream.producer.sources import SimulatedMarket
from perpstream.producer.venue_ingest import VenueIngest
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.codec import metric_point_codec
from perpstream.schemas.models import Metric
from perpstream.schemas.rules import source_problem

START = 1_790_000_000_000
CODEC = metric_point_codec()
VENUES = sorted(SIM_VENUES)


class ListTarget:
    def __init__(self, congested: bool = False) -> None:
        self.congested = congested
        self.sent: list[tuple[bytes, bytes]] = []

    def publish(self, key: bytes, value: bytes) -> None:
        self.sent.append((key, value))

    def points(self) -> list[dict[str, Any]]:
        return [CODEC.decode(v) for _, v in self.sent]


def venue(name: str, n: int = 6, seed: int = 3) -> SimVenue:
    if name == "binance":
        return BinanceScaledSim(n, seed, START)
    return simulated_venue(name, n, seed, START)


def read(v: SimVenue, seconds: int) -> list[list[dict[str, Any]]]:
    """Every frame of ``seconds`` simulated seconds through the venue's real parser, per second;
    after each second the parser's latest value of each (symbol, metric) is what the
    simulation says it wrote."""
    parser = v.parser()
    set_listing = getattr(parser, "set_instruments", None)
    if set_listing is not None:
        set_listing(v.instruments())
    out = []
    for _ in range(seconds):
        points = [p for frames in v.tick() for f in frames for p in parser.parse(f.text, f.receive_ms)]
        latest = {(p["symbol"], p["metric"]): (p["event_time"], p["value"]) for p in points
                  if p["metric"] != Metric.FUNDING_INTERVAL_HOURS}
        assert latest == {k: sent for k, sent in v.sent.items() if k in latest}
        out.append(points)
    return out


@pytest.mark.parametrize("name", [*VENUES, "binance"])
def test_same_seed_same_frames(name: str) -> None:
    a, b, c = venue(name), venue(name), venue(name, seed=4)
    if name != "binance":
        assert a.listing_body() == b.listing_body()
    frames_a = [a.tick() for _ in range(40)]
    assert frames_a == [b.tick() for _ in range(40)]
    assert frames_a != [c.tick() for _ in range(40)]


@pytest.mark.parametrize("name", VENUES)
def test_frames_parse_with_the_venues_parser_to_what_was_written(name: str) -> None:
    v = venue(name)
    seconds = read(v, 65)  # past OKX's minute of funding pushes
    points = [p for second in seconds for p in second]
    assert {p["source"] for p in points} == {f"sim.{v.venue_source}"} and source_problem(v.source) is None
    listed = set(v.instruments())
    assert {p["symbol"] for p in points} == listed == set(v.symbols)
    metrics = {Metric.MARK_PRICE, Metric.INDEX_PRICE, Metric.FUNDING_RATE, Metric.NEXT_FUNDING_TIME,
               Metric.OPEN_INTEREST}
    for symbol in listed:  # every contract has every metric, every second has a mark
        assert {p["metric"] for p in points if p["symbol"] == symbol} >= metrics
        assert all([p for p in s if p["symbol"] == symbol and p["metric"] == Metric.MARK_PRICE]
                   for s in seconds)


def test_symbols_line_up_across_venues() -> None:
    assert venue("bybit").symbols == [*(f"SIM{i:04d}USDT" for i in range(6)), "1000SIMPEPEUSDT"]
    assert venue("okx").symbols == [*(f"SIM{i:04d}-USDT-SWAP" for i in range(6)), "SIMPEPE-USDT-SWAP"]
    assert venue("hyperliquid").symbols == [*(f"SIM{i:04d}" for i in range(6)), "kSIMPEPE"]
    assert venue("binance").funding_intervals() == {**{f"SIM{i:04d}USDT": 8.0 for i in range(6)},
                                                    "1000SIMPEPEUSDT": 4.0}
    assert venue("bybit").source == "sim.bybit_linear"
    assert venue("okx").source == "sim.okx_swap"
    assert venue("hyperliquid").source == "sim.hyperliquid"


def test_bybit_sends_a_snapshot_then_deltas_ten_a_second() -> None:
    v = venue("bybit", n=2)
    first, second = v.tick(), v.tick()
    msgs = [json.loads(f.text) for f in first[0] + second[0]]
    assert len(msgs) == 20 and msgs[0]["type"] == "snapshot" and {m["type"] for m in msgs[1:]} == {"delta"}
    published = {"markPrice", "indexPrice", "fundingRate", "nextFundingTime", "openInterest"}
    assert published <= set(msgs[0]["data"])
    assert all(set(m["data"]) < set(msgs[0]["data"]) for m in msgs[1:])  # deltas: the changed fields
    assert [m["ts"] - START for m in msgs[:10]] == list(range(0, 1000, 100))


def test_okx_rates_and_channels() -> None:
    v = venue("okx", n=2)
    seconds = [v.tick() for _ in range(61)]
    channels = [[json.loads(f.text)["arg"]["channel"] for f in s[0]] for s in seconds]
    assert channels[0].count("mark-price") == 5 and channels[0].count("index-tickers") == 1
    assert [k for k, c in enumerate(channels) if "open-interest" in c] == list(range(0, 61, 3))
    assert [k for k, c in enumerate(channels) if "funding-rate" in c] == [0, 60]


def test_hyperliquid_frames_carry_no_time_and_are_stamped_on_receipt() -> None:
    v = venue("hyperliquid", n=2)
    frames = [f for s in v.tick() for f in s]
    assert len(frames) == 3
    assert all(set(json.loads(f.text)["data"]["ctx"]).isdisjoint({"ts", "time"}) for f in frames)
    points = v.parser().parse(frames[0].text, frames[0].receive_ms)
    assert {p["event_time"] for p in points} == {frames[0].receive_ms}
    assert START <= frames[0].receive_ms < START + 1000


def test_shared_coins_walk_around_the_binance_simulation() -> None:
    market = SimulatedMarket(6, 3, START)
    venues = [venue(name) for name in VENUES]
    for _ in range(30):
        marks = {json.loads(text)["data"]["s"]: float(json.loads(text)["data"]["p"])
                 for kind, text in market.tick() if kind == "ws"}
        for v in venues:
            v.tick()
            for i in range(6):
                _, mark = v.sent[(v.symbols[i], Metric.MARK_PRICE)]
                assert mark == pytest.approx(marks[f"SIM{i:04d}USDT"], rel=3e-3)


def test_scaled_contracts_price_and_notional_agree() -> None:
    venues = {name: venue(name) for name in [*VENUES, "binance"]}
    scales = {"binance": 1000, "bybit": 1000, "okx": 1, "hyperliquid": 1000}
    for _ in range(30):
        per_coin: dict[str, float] = {}
        notional: dict[str, float] = {}
        for name, v in venues.items():
            v.tick()
            sym = v.symbols[-1]
            _, mark = v.sent[(sym, Metric.MARK_PRICE)]
            _, oi = v.sent[(sym, Metric.OPEN_INTEREST)]
            per_coin[name] = mark / scales[name]
            notional[name] = oi * mark / OI_SHARES[name]  # each venue's share of one market
        for name in venues:
            assert per_coin[name] == pytest.approx(per_coin["binance"], rel=5e-3)
            assert 0.6 < notional[name] / notional["binance"] < 1.7
    assert venues["okx"].symbols[-1] == "SIMPEPE-USDT-SWAP" and per_coin["okx"] < 1e-4


def test_funding_differs_per_venue_and_interval() -> None:
    by = {name: venue(name, n=8) for name in VENUES}
    for _ in range(3):
        for v in by.values():
            v.tick()
    intervals = {i.symbol: i.funding_interval_h for i in by["bybit"].instruments().values()}
    assert intervals == {**{f"SIM{i:04d}USDT": 4.0 if i % 4 == 1 else 8.0 for i in range(8)},
                         "1000SIMPEPEUSDT": 4.0}
    bybit_next = {s: by["bybit"].sent[(s, Metric.NEXT_FUNDING_TIME)][1] for s in intervals}
    assert all(t % (intervals[s] * 3_600_000) == 0 for s, t in bybit_next.items())
    okx_points = [p for s in read(venue("okx", n=8), 1) for p in s]
    assert {p["symbol"]: p["value"] for p in okx_points if p["metric"] == Metric.FUNDING_INTERVAL_HOURS} == {
        **{f"SIM{i:04d}-USDT-SWAP": 4.0 if i % 4 == 2 else 8.0 for i in range(8)}, "SIMPEPE-USDT-SWAP": 8.0}
    # hourly rates are about an eighth of the 8-hourly ones; no two venues quote the same rate
    eight_hourly = [i for i in range(8) if i % 4 not in (1, 2)]
    rate = {name: [v.sent[(v.symbols[i], Metric.FUNDING_RATE)][1] for i in eight_hourly]
            for name, v in by.items()}
    ratio = statistics.median(h * 8 / b for h, b in zip(rate["hyperliquid"], rate["bybit"], strict=True))
    assert 0.5 < ratio < 2.0
    assert all(len({rate[n][k] for n in by}) == 3 for k in range(len(eight_hourly)))


def test_decimal_writes_plain_decimals() -> None:
    assert decimal(1.0123e-5) == "0.00001012300000"
    assert decimal(61234.5678) == "61234.56780"
    assert decimal(-0.000123, 4) == "-0.0001230"
    assert float(decimal(0.7761287321)) == 0.7761287321


def _ingest(name: str, target: ListTarget, n: int = 3) -> tuple[SimVenue, VenueIngest]:
    v = venue(name, n=n)
    return v, VenueIngest(target, MetricPointEncoder(CODEC), Telemetry(), source=v.source, parser=v.parser())


async def _run_until(source: Any, sink: Any, done: Any) -> None:
    stop = asyncio.Event()
    task = asyncio.create_task(source.run(sink, stop))
    async with asyncio.timeout(30):
        while not done() and not task.done():  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 10)


@pytest.mark.parametrize("name", VENUES)
def test_source_states_the_listing_then_streams_conflated_points(name: str) -> None:
    target = ListTarget()
    v, sink = _ingest(name, target)
    asyncio.run(_run_until(SimVenueSource(v, rate=0), sink, lambda: len(target.sent) > 500))
    sink.drain()
    points = target.points()
    intervals = [p for p in points if p["metric"] == Metric.FUNDING_INTERVAL_HOURS]
    assert {p["symbol"] for p in intervals} == set(v.symbols)
    if name != "okx":  # the listing states them, at the simulation's start
        assert points[:len(v.symbols)] == intervals[:len(v.symbols)]
        assert {p["event_time"] for p in intervals} == {START}
    seconds = [(p["symbol"], p["metric"], p["event_time"] // 1000) for p in points]
    assert len(seconds) == len(set(seconds))  # one point per key and second (--conflate-ms 1000)
    assert v.tick_index > 5


def test_source_stops_when_kafka_takes_nothing() -> None:
    v, sink = _ingest("bybit", ListTarget(congested=True))
    source = SimVenueSource(v, rate=0, backpressure_deadline=0.2)
    with pytest.raises(PermanentFailure):
        asyncio.run(_run_until(source, sink, lambda: False))
    assert v.tick_index < 20  # it paused at the first congestion check


def test_binance_scaled_source_feeds_the_binance_ingest() -> None:
    target = ListTarget()
    ingest = Ingest(target, MetricPointEncoder(CODEC), Telemetry(), source="sim")
    v = BinanceScaledSim(4, 3, START, oi_interval_ms=2000)
    asyncio.run(_run_until(SimBinanceScaledSource(v, rate=0), ingest, lambda: len(target.sent) > 200))
    points = target.points()
    assert [(p["symbol"], p["value"]) for p in points[:5]] == [
        *((f"SIM{i:04d}USDT", 8.0) for i in range(4)), ("1000SIMPEPEUSDT", 4.0)]
    assert {p["symbol"] for p in points[5:]} == {"1000SIMPEPEUSDT"}
    metrics = {p["metric"] for p in points}
    assert {Metric.OPEN_INTEREST, Metric.MARK_PRICE, Metric.NEXT_FUNDING_TIME} <= metrics
    nexts = {p["value"] for p in points if p["metric"] == Metric.NEXT_FUNDING_TIME}
    assert all(t % (4 * 3_600_000) == 0 for t in nexts)
    assert {p["source"] for p in points} == {"sim"}

