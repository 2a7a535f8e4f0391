"""The live view against the real ClickHouse engine: the sink's own table, rows
inserted as the sink inserts them, and the cross-venue table as the asset engine
fills it, read through a client and through the read-only session the query
endpoint uses (its JSON answers carry 64-bit integers as strings, arrays as lists)."""

from __future__ import annotations

import io
import os
import statistics
import time
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console

from perpstream.consumers.sink.handler import rows_to_arrow
from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.dashboard import (
    ASSET_LOOKBACK_S,
    Dashboard,
    annual,
    money,
    percent,
    price,
    quantity,
    query_fn,
)
from perpstream.query_server import ReadOnlyQueries
from perpstream.runtime.telemetry import Telemetry
from tests.dashboard_store import BYBIT, HYPERLIQUID, OKX, Store, asset_records, market, snapshot_row

pytestmark = pytest.mark.integration

NOW_MS = 1_796_169_600_000  # 2026-12-02T00:00:00Z
SRC = "binance_usdm"
#: symbol -> (mark at the end, index offset, funding, open interest, last event ms)
MARKET = {
    "BTCUSDT": (64_240.38272864, -12.5, 0.0001, 82_345.678, NOW_MS - 1_000),
    "PEPEUSDT": (0.000012345, 0.0, -0.00075, 123_456_789_012.0, NOW_MS - 1_000),
    "SILENTUSDT": (3.5, 0.001, 0.0002, 10_000.0, NOW_MS - 20_000),
}


def _points() -> list[tuple[Any, ...]]:
    """90 s of markPrice events (5 metrics) and open interest every 10 s per symbol; rows in
    the sink's column order (source, symbol, metric, event_time, value, ingest_time)."""
    rows = []
    for sym, (mark, index_off, funding, oi, last) in MARKET.items():
        for k in range(90):
            t = last - (89 - k) * 1000
            m = mark * (1 + 0.0003 * ((k * 7) % 11 - 5) / 5) if k < 89 else mark
            for metric, v in (("mark_price", m), ("index_price", m - index_off),
                              ("estimated_settle_price", m * 2), ("funding_rate", funding),
                              ("next_funding_time", float(NOW_MS + 3_600_000))):
                rows.append((SRC, sym, metric, t, v, t + 7))
            if k % 10 == 9:
                rows.append((SRC, sym, "open_interest", t - 500, oi, t))
    # an old point far outside the minute: never the latest, never in the trend
    rows.append((SRC, "BTCUSDT", "mark_price", NOW_MS - 600_000, 1e9, NOW_MS - 600_000))
    return rows


def _expected_trend(rows: list[tuple[Any, ...]], symbol: str, last_bucket: int) -> list[float | None]:
    marks = sorted((r[3], r[4]) for r in rows if r[1] == symbol and r[2] == "mark_price")
    out: list[float | None] = []
    for k in range(12):
        start = last_bucket - (11 - k) * 5000
        inside = [v for t, v in marks if start <= t < start + 5000]
        out.append(inside[-1] if inside else None)
    return out


def _render(dash: Dashboard, board: Any) -> list[str]:
    console = Console(record=True, width=80, file=io.StringIO(), color_system=None)
    console.print(dash.render(board, width=80, height=30))
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_the_board_shows_what_the_store_holds(clickhouse: Any, clickhouse_dsn: str, ch_database: str) -> None:
    migrate_sink(clickhouse, ch_database)
    rows = _points()
    clickhouse.insert_arrow("metric_points", rows_to_arrow(rows), database=ch_database)
    # re-delivered copies the ReplacingMergeTree has not merged yet: they change nothing
    clickhouse.insert_arrow("metric_points", rows_to_arrow(rows[-400:]), database=ch_database)

    telemetry = Telemetry()
    telemetry.gauge_fn("last_event_age_seconds", lambda: {(("symbol", "BTCUSDT"),): 1.0,
                                                          (("symbol", "SILENTUSDT"),): 20.0})
    session = ReadOnlyQueries(clickhouse_dsn)
    ticks = [100.0]  # the view's monotonic clock: queries take no time on it, none is skipped
    try:
        boards = []
        for source in (clickhouse, session):
            dash = Dashboard(telemetry, source, database=ch_database, data_dir="/data",
                             endpoint_url="http://127.0.0.1:8123", clock=lambda: ticks[0],
                             wall=lambda: NOW_MS / 1000)
            boards.append((dash, dash.sample()))
    finally:
        session.close()

    for dash, board in boards:
        assert board.error is None
        got = {r.symbol: r for r in board.rows}
        assert set(got) == set(MARKET)
        for sym, (mark, index_off, funding, oi, last) in MARKET.items():
            r = got[sym]
            assert (r.mark, r.mark_ms) == (mark, last)
            assert r.index == pytest.approx(mark - index_off, rel=1e-15)
            assert r.basis == pytest.approx(index_off / (mark - index_off), rel=1e-9)
            assert (r.funding, r.oi) == (funding, oi)
            assert r.trend == pytest.approx(_expected_trend(rows, sym, NOW_MS - 5000))
        notional = {sym: m[0] * m[3] for sym, m in MARKET.items()}
        assert [r.symbol for r in board.rows] == sorted(MARKET, key=lambda s: -notional[s])
        assert {r.symbol for r in board.rows if r.stale} == {"SILENTUSDT"}
        assert board.data_as_of_ms == NOW_MS - 1000

        lines = _render(dash, board)
        assert max(cell_len(x) for x in lines) <= 80
        btc = next(x for x in lines if x.startswith("BTCUSDT"))
        for shown in (price(64_240.38272864), percent(0.0001), quantity(82_345.678), "1.0s", "ok"):
            assert shown in btc, shown
        assert "64,240.38" in btc and "+0.0100%" in btc and "82,346" in btc
        pepe = next(x for x in lines if x.startswith("PEPEUSDT"))
        assert "0.0000123450" in pepe and "-0.0750%" in pepe and "123,456,789,012" in pepe
        assert next(x for x in lines if x.startswith("SILENTUSDT")).endswith("STALE")

    # the table goes away under a running view: the last rows stay, the error is said once
    dash = boards[0][0]
    clickhouse.command(f"DROP TABLE {ch_database}.metric_points")
    ticks[0] += 1
    failed = dash.sample()
    assert failed.error is not None and "Code: 60" in failed.error
    assert {r.symbol for r in failed.rows} == set(MARKET)
    assert any(x.startswith("! store query failed") for x in _render(dash, failed))


def test_several_venues_and_the_cross_venue_table(clickhouse: Any, clickhouse_dsn: str,
                                                  ch_database: str) -> None:
    store = Store(clickhouse, ch_database)
    market(store, "BTCUSDT", 64_240.38, 64_227.5, 0.0001, 82_345.678)
    market(store, "BTCUSDT", 64_251.5, 64_230.0, 0.00012, 50_123.4, source=BYBIT)
    market(store, "BTC-USDT-SWAP", 64_238.0, 64_227.0, 0.00008, 29_500.0, source=OKX)
    market(store, "kPEPE", 0.01231, 0.0123, 0.00002, 900_000_000.0, source=HYPERLIQUID)
    store.flush()
    store.create_assets()
    t = NOW_MS - 25_000
    store.add_assets(asset_records([
        snapshot_row(SRC, "BTCUSDT", t, funding_ann=0.1095, mark=64_240.0, oi=82_345.678),
        snapshot_row(BYBIT, "BTCUSDT", t, funding_ann=0.1314, mark=64_251.5, oi=50_123.4),
        snapshot_row(OKX, "BTC-USDT-SWAP", t, funding_ann=None, mark=64_238.0, oi=29_500.0, stale=True),
        snapshot_row(SRC, "1000PEPEUSDT", t, funding_ann=-0.1095, mark=0.0123, oi=5e9),
        snapshot_row(HYPERLIQUID, "kPEPE", t, funding_ann=0.1752, mark=0.01231, oi=9e8)]))
    session = ReadOnlyQueries(clickhouse_dsn)
    try:
        boards = []
        for source in (clickhouse, session):
            dash = Dashboard(Telemetry(), source, database=ch_database, clock=lambda: 100.0,
                             wall=lambda: NOW_MS / 1000)
            boards.append((dash, dash.sample()))
    finally:
        session.close()
    (_, by_client), (dash, by_session) = boards
    assert by_client.error is None and by_session.error is None
    assert by_session.rows == by_client.rows and by_session.assets == by_client.assets
    btc, pepe = by_session.assets
    assert (btc.asset, btc.window_s, btc.snapshot_ms) == ("BTC", 60, t)
    assert btc.venues_present == (SRC, BYBIT, OKX) and btc.venues_stale == (OKX,)
    assert btc.funding_ann_oi_weighted == pytest.approx(
        (0.1095 * 64_240.0 * 82_345.678 + 0.1314 * 64_251.5 * 50_123.4)
        / (64_240.0 * 82_345.678 + 64_251.5 * 50_123.4), rel=1e-12)
    assert pepe.asset == "PEPE" and pepe.funding_ann_spread == pytest.approx(0.1752 + 0.1095, rel=1e-12)
    lines = _render(dash, by_session)
    assert max(cell_len(x) for x in lines) <= 80
    assert any(x.split()[:2] == ["bybit", "BTCUSDT"] and "64,251.50" in x for x in lines)
    row = next(x for x in lines if x.split()[:2] == ["BTC", "2/3"])
    for shown in ("+10.95% binance", "+13.14% bybit", "+2.19%", annual(btc.funding_ann_oi_weighted),
                  money(btc.oi_notional_total), "25s"):
        assert shown in row, shown


@pytest.mark.skipif(not os.environ.get("PERPSTREAM_DASHBOARD_BENCH"),
                    reason="a measurement: PERPSTREAM_DASHBOARD_BENCH=1 (rows: PERPSTREAM_DASHBOARD_BENCH_S)")
def test_cost_of_a_tick(clickhouse: Any, clickhouse_dsn: str, ch_database: str) -> None:
    """700 symbols, 5 markPrice metrics a second and OI every 10 s: 600 s = 2.1 million rows."""
    migrate_sink(clickhouse, ch_database)
    seconds = int(os.environ.get("PERPSTREAM_DASHBOARD_BENCH_S", "600"))
    metrics = ("mark_price", "index_price", "estimated_settle_price", "funding_rate", "next_funding_time")
    start = NOW_MS - seconds * 1000
    for c0 in range(0, seconds, 60):
        batch = []
        for s in range(700):
            for k in range(c0, min(seconds, c0 + 60)):
                t = start + k * 1000
                batch += [(SRC, f"S{s:04d}USDT", m, t, 100.0 + s + k * 0.01, t + 5) for m in metrics]
                if k % 10 == 0:
                    batch.append((SRC, f"S{s:04d}USDT", "open_interest", t, 1000.0 + s, t + 5))
        clickhouse.insert_arrow("metric_points", rows_to_arrow(batch), database=ch_database)
    total = clickhouse.command(f"SELECT count() FROM {ch_database}.metric_points")
    telemetry = Telemetry()
    telemetry.gauge_fn("last_event_age_seconds", lambda: {(("symbol", "S0000USDT"),): 1.0})
    session = ReadOnlyQueries(clickhouse_dsn)
    try:
        for optimized in (False, True):
            if optimized:
                clickhouse.command(f"OPTIMIZE TABLE {ch_database}.metric_points FINAL")
            parts = clickhouse.command(f"SELECT count() FROM system.parts WHERE database = "
                                       f"'{ch_database}' AND table = 'metric_points' AND active")
            for name, source in (("clickhouse-connect client", clickhouse), ("ReadOnlyQueries", session)):
                sample_ms, query_ms = _time_samples(telemetry, source, ch_database)
                print(f"\n{total:,} rows in {parts} part(s), {name}: sample() median {sample_ms:.1f} ms, "
                      f"its query {query_ms:.1f} ms")
    finally:
        session.close()


@pytest.mark.skipif(not os.environ.get("PERPSTREAM_DASHBOARD_BENCH"),
                    reason="a measurement: PERPSTREAM_DASHBOARD_BENCH=1 (PERPSTREAM_DASHBOARD_BENCH_S)")
def test_cost_of_the_asset_query(clickhouse: Any, clickhouse_dsn: str, ch_database: str) -> None:
    """700 assets on two venues, windows 60, 300 and 3600 s, a snapshot every 5 s: an hour of
    history merged into one part (1.5 million rows), then ten minutes in five parts."""
    store = Store(clickhouse, ch_database)
    store.create_assets()
    seconds = int(os.environ.get("PERPSTREAM_DASHBOARD_BENCH_S", "3600"))
    _asset_history(clickhouse, ch_database, NOW_MS - 600_000 - seconds * 1000, seconds // 5)
    clickhouse.command(f"OPTIMIZE TABLE {ch_database}.asset_snapshots FINAL")
    for k in range(5):
        _asset_history(clickhouse, ch_database, NOW_MS - 600_000 + k * 120_000, 24)
    total = clickhouse.command(f"SELECT count() FROM {ch_database}.asset_snapshots")
    parts = clickhouse.command(f"SELECT count() FROM system.parts WHERE database = '{ch_database}' "
                               "AND table = 'asset_snapshots' AND active")
    sql = Dashboard(Telemetry(), store, database=ch_database).asset_sql(
        NOW_MS - 60_000 - ASSET_LOOKBACK_S * 1000)
    session = ReadOnlyQueries(clickhouse_dsn)
    try:
        for name, source in (("clickhouse-connect client", clickhouse), ("ReadOnlyQueries", session)):
            run, took = query_fn(source), []
            for _ in range(20):
                t0 = time.perf_counter()
                answer = run(sql)
                took.append(time.perf_counter() - t0)
            assert len(answer) == 700
            print(f"\n{total:,} asset rows in {parts} part(s), {name}: the cross-venue query, median "
                  f"{statistics.median(took) * 1000:.1f} ms")
    finally:
        session.close()


def _asset_history(client: Any, database: str, start_ms: int, times: int) -> None:
    """AssetSnapshot rows of 700 assets on Binance and Bybit in three windows, every 5 s from
    ``start_ms``: the sizes of real rows, not the asset engine's arithmetic."""
    markets = ", ".join(f"('{src}', 'X', 'USDT', 1, 0.01, 8.0, 0.00001, 0.0001, 100.0, 1e4, 1e6, false)"
                        for src in (SRC, BYBIT))
    client.command(f"""
        INSERT INTO {database}.asset_snapshots
        SELECT concat('S', toString(a.number)), w,
               fromUnixTimestamp64Milli(toInt64({start_ms} + k.number * 5000), 'UTC'),
               [{markets}], ['{SRC}', '{BYBIT}'], [], 2, 2,
               0.01, '{SRC}:X', 0.02, '{BYBIT}:X', 0.01, 0.015, 2e6
        FROM numbers(700) AS a, (SELECT arrayJoin([60, 300, 3600]) AS w) AS ws, numbers({times}) AS k""")


def _time_samples(telemetry: Telemetry, source: Any, database: str) -> tuple[float, float]:
    """Medians of 20 samples and of their queries, in ms (perf_counter)."""
    run = query_fn(source)
    queried: list[float] = []

    def timed(sql: str) -> Any:
        t0 = time.perf_counter()
        try:
            return run(sql)
        finally:
            queried.append(time.perf_counter() - t0)

    ticks = [0.0]  # a clock that moves only between samples: every sample queries
    dash = Dashboard(telemetry, timed, database=database, clock=lambda: ticks[0],
                     wall=lambda: NOW_MS / 1000)
    took = []
    for _ in range(20):
        ticks[0] += 1
        t0 = time.perf_counter()
        board = dash.sample()
        took.append(time.perf_counter() - t0)
    assert board.error is None and len(board.rows) == 700
    return statistics.median(took) * 1000, statistics.median(queried) * 1000
