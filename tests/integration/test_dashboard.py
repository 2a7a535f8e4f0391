"""The live view against the real ClickHouse engine: the sink's own table, rows
inserted as the sink inserts them, read through a client and through the
read-only session the query endpoint uses."""

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
from perpstream.dashboard import Dashboard, percent, price, quantity, query_fn
from perpstream.query_server import ReadOnlyQueries
from perpstream.runtime.telemetry import Telemetry

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
