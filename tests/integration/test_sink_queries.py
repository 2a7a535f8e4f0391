"""The queries users run: latest, series, counts (exact), and consumer lag."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

from perpstream.cli import main
from perpstream.consumers.sink import queries
from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.consumers.sink.service import run_sink
from tests.conftest import TEST_CONSUMER_CONFIG
from tests.integration.test_sink_support import (
    T0,
    Runner,
    committed_total,
    produce,
    settings_for,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def _points() -> list[dict[str, Any]]:
    out = []
    for sym in ("BTCUSDT", "ETHUSDT"):
        for k in range(10):
            et = T0 + k * 1000
            out.append({"source": "binance_usdm", "symbol": sym, "metric": "mark_price",
                        "value": 100.0 + k + (1000 if sym == "BTCUSDT" else 0),
                        "event_time": et, "ingest_time": et + 5})
        out.append({"source": "binance_usdm", "symbol": sym, "metric": "open_interest",
                    "value": 5.5, "event_time": T0 + 3000, "ingest_time": T0 + 3005})
    return out


def test_queries_and_lag(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, clickhouse_dsn: str, ch_database: str, capsys: pytest.CaptureFixture[str],
) -> None:
    topic, dlq, group = topic_factory(3), topic_factory(1), group_factory()
    pts = _points()
    n = produce(kafka_bootstrap, topic, pts + pts[:5])  # 5 re-sent identities
    settings = settings_for(kafka_bootstrap, ch_database, topic, dlq, group)
    migrate_sink(clickhouse, ch_database)
    runner = Runner(lambda stop: run_sink(settings, clickhouse, stop,
                                          consumer_overrides=TEST_CONSUMER_CONFIG))

    def committed() -> int:
        return sum(max(o, 0) for o in committed_total(kafka_bootstrap, group, topic, 3).values())

    try:
        wait_for(lambda: committed() == n,
                 timeout=120, what="all committed")
    finally:
        assert runner.stop() == 0

    latest = {(r["symbol"], r["metric"]): r for r in queries.latest(clickhouse, ch_database)}
    assert latest[("BTCUSDT", "mark_price")]["value"] == 1109.0
    assert latest[("BTCUSDT", "mark_price")]["event_time_ms"] == T0 + 9000
    assert latest[("ETHUSDT", "open_interest")]["value"] == 5.5
    only = queries.latest(clickhouse, ch_database, symbols=["ETHUSDT"], metrics=["mark_price"])
    assert [(r["symbol"], r["value"]) for r in only] == [("ETHUSDT", 109.0)]

    s = queries.series(clickhouse, ch_database, "ETHUSDT", "mark_price", T0 + 2000, T0 + 5000)
    assert [(r["event_time_ms"], r["value"]) for r in s] == [(T0 + 2000, 102.0), (T0 + 3000, 103.0),
                                                             (T0 + 4000, 104.0)]
    counts = {r["metric"]: r for r in queries.counts(clickhouse, ch_database)}
    assert counts["mark_price"]["points"] == 20  # FINAL: re-sent identities counted once
    assert counts["open_interest"]["points"] == 2
    assert counts["mark_price"]["freshest_event_time_ms"] == T0 + 9000
    assert counts["mark_price"]["symbols"] == 2

    lag = queries.consumer_lag(kafka_bootstrap, group, topic)
    assert [r.lag for r in lag] == [0, 0, 0]
    assert sum(r.committed or 0 for r in lag) == n
    more = produce(kafka_bootstrap, topic, pts[:7])
    lag = queries.consumer_lag(kafka_bootstrap, group, topic)
    assert sum(r.lag for r in lag) == more
    assert sum(r.high for r in lag) == n + more

    # the same through the command line
    common = ["--clickhouse-dsn", clickhouse_dsn, "--database", ch_database, "--format", "json"]
    assert main(["query", "counts", *common]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["metric"]: r["points"] for r in rows} == {"mark_price": 20, "open_interest": 2}
    assert main(["query", "lag", "--bootstrap-servers", kafka_bootstrap, "--topic", topic,
                 "--group-id", group, "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert sum(r["lag"] for r in rows) == more
    assert main(["query", "series", "--symbol", "BTCUSDT", "--metric", "mark_price",
                 "--since", str(T0), "--until", str(T0 + 2000), *common[:4]]) == 0
    out = capsys.readouterr().out
    assert "1100" in out and "1101" in out and "1102" not in out


#: PEPE on four venues, each spelled and scaled its own way, and BTC beside it (not PEPE).
PEPE_MARKETS = [
    # source, symbol, funding rate, interval h, mark, open interest (contract's base units)
    ("binance_usdm", "1000PEPEUSDT", 0.0001, 8.0, 0.0125, 8_000_000.0),
    ("bybit_linear", "1000PEPEUSDT", 0.00008, 4.0, 0.01251, 5_000_000.0),
    ("okx_swap", "PEPE-USDT-SWAP", -0.0002, 8.0, 0.0000125, 3_000_000_000.0),
    ("hyperliquid", "kPEPE", 0.00001, 1.0, 0.01249, 2_000_000.0),
]


def _funding_points() -> list[dict[str, Any]]:
    out = []
    btc = ("binance_usdm", "BTCUSDT", 0.0003, 8.0, 90_000.0, 1_000.0)
    for source, symbol, rate, hours, mark, oi in [*PEPE_MARKETS, btc]:
        et = T0 + 1000
        for metric, value in (("funding_rate", rate), ("funding_interval_hours", hours),
                              ("mark_price", mark), ("open_interest", oi),
                              ("next_funding_time", float(T0 + 3_600_000))):
            out.append({"source": source, "symbol": symbol, "metric": metric, "value": value,
                        "event_time": et, "ingest_time": et + 5})
        # an older rate of the same market: the latest one is shown
        out.append({"source": source, "symbol": symbol, "metric": "funding_rate", "value": 0.5,
                    "event_time": T0, "ingest_time": T0 + 5})
    return out


def test_query_funding_lines_up_one_asset_across_venues(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, clickhouse_dsn: str, ch_database: str, capsys: pytest.CaptureFixture[str],
) -> None:
    topic, dlq, group = topic_factory(3), topic_factory(1), group_factory()
    n = produce(kafka_bootstrap, topic, _funding_points())
    settings = settings_for(kafka_bootstrap, ch_database, topic, dlq, group)
    migrate_sink(clickhouse, ch_database)
    runner = Runner(lambda stop: run_sink(settings, clickhouse, stop,
                                          consumer_overrides=TEST_CONSUMER_CONFIG))
    try:
        wait_for(lambda: sum(max(o, 0) for o in committed_total(kafka_bootstrap, group, topic, 3).values())
                 == n, timeout=120, what="all committed")
    finally:
        assert runner.stop() == 0

    common = ["--clickhouse-dsn", clickhouse_dsn, "--database", ch_database]
    assert main(["query", "funding", "--asset", "pepe", *common, "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    want = {(s, sym): (rate, h, rate * 8760 / h * 100, mark * oi)
            for s, sym, rate, h, mark, oi in PEPE_MARKETS}
    assert {(r["source"], r["symbol"]) for r in rows} == set(want)  # BTCUSDT is not PEPE
    for r in rows:
        rate, hours, annualized, notional = want[(r["source"], r["symbol"])]
        assert (r["funding_rate"], r["interval_h"]) == (rate, hours)
        assert r["annualized_pct"] == pytest.approx(annualized, rel=1e-12)
        assert r["oi_notional"] == pytest.approx(notional, rel=1e-12)
        assert r["next_funding_time_ms"] == T0 + 3_600_000
    # highest annualised first: Bybit's 4-hourly 0.008 % is 17.52 %, Hyperliquid's hourly 0.001 % is
    # 8.76 % (not the 1.10 % a fixed 3 x 365 would say)
    assert [r["source"] for r in rows] == ["bybit_linear", "binance_usdm", "hyperliquid", "okx_swap"]
    assert main(["query", "funding", "--asset", "PEPE", *common]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["venue", "symbol", "funding", "interval", "annualized", "next_funding",
                                "oi_notional", "age"]
    hl = next(line for line in table if line.startswith("hyperliquid"))
    assert "kPEPE" in hl and "1 h" in hl and "8.76 %" in hl
