"""``--source sim --venues all`` -> a real broker: the four simulated sources, each with every
metric, exactly the values the seed regenerates through each venue's parser."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import pytest

from perpstream.producer import binance
from perpstream.producer.app import SIM_SOURCE, ProducerApp
from perpstream.producer.settings import ProducerSettings
from perpstream.producer.sim_venues import BinanceScaledSim, SimVenue, simulated_venue
from perpstream.producer.sources import SimulatedMarket
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.models import Metric
from tests.fakes import read_topic

pytestmark = pytest.mark.integration
START = 1_790_000_000_000
SEED = 7
SYMBOLS = 3
EVERY_METRIC = {Metric.MARK_PRICE, Metric.INDEX_PRICE, Metric.FUNDING_RATE, Metric.OPEN_INTEREST,
                Metric.NEXT_FUNDING_TIME, Metric.FUNDING_INTERVAL_HOURS}
SOURCES = {"sim.bybit_linear": "bybit", "sim.okx_swap": "okx", "sim.hyperliquid": "hyperliquid"}

Key = tuple[str, str, int]  # symbol, metric, event time


def _run(kafka_bootstrap: str, topic: str, **kw: Any) -> list[dict[str, Any]]:
    telemetry = Telemetry()
    settings = ProducerSettings(kafka_bootstrap_servers=kafka_bootstrap, metrics_topic=topic, source="sim",
                                sim_symbols=SYMBOLS, seed=SEED, sim_start_ms=START, **kw)
    assert ProducerApp(settings, telemetry).run(threading.Event()) == 0
    delivered = int(telemetry.get("points_delivered"))
    assert delivered == telemetry.get("points_published") > 0
    got = [r for _, r in read_topic(kafka_bootstrap, topic, expect=delivered)]
    assert len(got) == delivered
    return got


def _venue_values(venue: SimVenue, until_ms: int) -> dict[Key, float]:
    """What the seed regenerates: the venue's frames through its real parser, plus the
    funding intervals its listing states at the start."""
    parser = venue.parser()
    listed = venue.instruments()
    set_listing = getattr(parser, "set_instruments", None)
    if set_listing is not None:
        set_listing(listed)
    out = {(i.symbol, Metric.FUNDING_INTERVAL_HOURS, START): i.funding_interval_h
           for i in listed.values() if i.funding_interval_h is not None}
    while venue.start_ms + venue.tick_index * 1000 <= until_ms:
        for frames in venue.tick():
            for f in frames:
                out.update(((p["symbol"], p["metric"], p["event_time"]), p["value"])
                           for p in parser.parse(f.text, f.receive_ms))
    return out


def _binance_values(until_ms: int) -> dict[Key, float]:
    """The simulated Binance: its market, its scaled contracts and their funding intervals."""
    scaled = BinanceScaledSim(SYMBOLS, SEED, START)
    out: dict[Key, float] = {(s, Metric.FUNDING_INTERVAL_HOURS, START): h
                             for s, h in scaled.funding_intervals().items()}
    market = SimulatedMarket(SYMBOLS, SEED, START)
    while market.start_ms + market.tick_index * 1000 <= until_ms:
        texts = [(kind, text) for kind, text in market.tick()]
        texts += [(f.kind, f.text) for frames in scaled.tick() for f in frames]
        for kind, text in texts:
            points = (binance.points_from_message(json.loads(text), 0, SIM_SOURCE) if kind == "ws"
                      else [binance.open_interest_point(json.loads(text), 0, SIM_SOURCE)])
            out.update(((p["symbol"], p["metric"], p["event_time"]), p["value"]) for p in points)
    return out


def test_all_simulated_venues_reach_the_topic_as_the_seed_says(
    kafka_bootstrap: str, topic_factory: Callable[..., str],
) -> None:
    got = _run(kafka_bootstrap, topic_factory(3), venues="all", sim_rate=0, duration=1.0)
    by_source: dict[str, list[dict[str, Any]]] = {}
    for r in got:
        by_source.setdefault(r["source"], []).append(r)
    assert set(by_source) == {SIM_SOURCE, *SOURCES}
    for source, points in by_source.items():
        for symbol in {p["symbol"] for p in points}:
            assert {p["metric"] for p in points if p["symbol"] == symbol} >= EVERY_METRIC, (source, symbol)
        until = max(p["event_time"] for p in points)
        expected = (_binance_values(until) if source == SIM_SOURCE
                    else _venue_values(simulated_venue(SOURCES[source], SYMBOLS, SEED, START), until))
        wrong = [p for p in points if expected[(p["symbol"], p["metric"], p["event_time"])] != p["value"]]
        assert not wrong, source
        if source != SIM_SOURCE:  # conflated: one point per key and second (--conflate-ms 1000)
            keys = [(p["symbol"], p["metric"], p["event_time"] // 1000) for p in points]
            assert len(keys) == len(set(keys)), source
    symbols = {source: {p["symbol"] for p in points} for source, points in by_source.items()}
    # the same coins under each venue's spelling, the scaled coin in lots where the venue lists lots
    assert symbols == {
        SIM_SOURCE: {"SIM0000USDT", "SIM0001USDT", "SIM0002USDT", "1000SIMPEPEUSDT"},
        "sim.bybit_linear": {"SIM0000USDT", "SIM0001USDT", "SIM0002USDT", "1000SIMPEPEUSDT"},
        "sim.okx_swap": {"SIM0000-USDT-SWAP", "SIM0001-USDT-SWAP", "SIM0002-USDT-SWAP", "SIMPEPE-USDT-SWAP"},
        "sim.hyperliquid": {"SIM0000", "SIM0001", "SIM0002", "kSIMPEPE"},
    }


@pytest.mark.parametrize(("venues", "sources"), [
    ("bybit,hyperliquid", {"sim.bybit_linear", "sim.hyperliquid"}),
    ("binance", {SIM_SOURCE}),
])
def test_venues_choose_the_simulated_venues(
    kafka_bootstrap: str, topic_factory: Callable[..., str], venues: str, sources: set[str],
) -> None:
    got = _run(kafka_bootstrap, topic_factory(1), venues=venues, sim_rate=50, duration=1.0)
    assert {r["source"] for r in got} == sources
    if venues == "binance":  # alone, the simulated Binance is the market it always was
        assert {r["symbol"] for r in got} == {"SIM0000USDT", "SIM0001USDT", "SIM0002USDT"}
        assert Metric.FUNDING_INTERVAL_HOURS not in {r["metric"] for r in got}
