"""The live view: rates from counter deltas, people's numbers, 80 columns, stale marks,
a row per market and its venue, the cross-venue table, the rows that fit, a failed query,
the log line and the terminal restored.

The rows come from the store itself: the product's tables in a database of each test's
own on the embedded ClickHouse (tests/dashboard_store.py)."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console

from perpstream.dashboard import (
    ASSETS_TABLE,
    MARKET_SQL,
    Board,
    Dashboard,
    LiveBoard,
    annual,
    duration,
    log_fields,
    money,
    percent,
    price,
    query_fn,
    sparkline,
    venue_name,
)
from perpstream.runtime.telemetry import Telemetry
from tests.dashboard_store import (
    BINANCE,
    BYBIT,
    HYPERLIQUID,
    NOW_MS,
    OKX,
    Store,
    asset_records,
    market,
    snapshot_row,
)

SINK = {"group": "perpstream-sink", "table": "metric_points"}
#: the time of the newest asset snapshots: 25 s before the wall clock, as the asset engine's
#: lateness leaves them (docs/assets.md)
SNAP_MS = NOW_MS - 25_000


class Clock:
    def __init__(self, t: float = 500.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(clickhouse: Any, ch_database: str) -> Store:
    return Store(clickhouse, ch_database)


def dashboard(telemetry: Telemetry, source: Any, clock: Clock, wall_ms: list[int],
              database: str = "perpstream") -> Dashboard:
    if isinstance(source, Store):
        database = source.database
    return Dashboard(telemetry, source, database=database, data_dir="/var/lib/perpstream",
                     endpoint_url="http://127.0.0.1:8123", clock=clock, wall=lambda: wall_ms[0] / 1000)


def text(board: Board, dash: Dashboard, width: int = 80, height: int | None = None) -> list[str]:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(dash.render(board, width=width, height=height))
    return [line.rstrip() for line in console.export_text().splitlines()]


def line_of(lines: list[str], *words: str) -> str:
    """The one line that starts with these words, whatever the spaces between them."""
    found = [x for x in lines if x.split()[:len(words)] == list(words)]
    assert len(found) == 1, (words, lines)
    return found[0]


def four_venues(store: Store) -> None:
    """BTC on four venues (Bybit's silent for 8 s), PEPE on two."""
    market(store, "BTCUSDT", 64_240.38, 64_227.5, 0.0001, 82_345.678)
    market(store, "BTCUSDT", 64_251.5, 64_230.0, 0.00012, 50_123.4, source=BYBIT, last_ms=NOW_MS - 8_000)
    market(store, "BTC-USDT-SWAP", 64_238.0, 64_227.0, 0.00008, 29_500.0, source=OKX)
    market(store, "BTC", 64_262.0, 64_227.0, 0.0000125, 30_000.0, source=HYPERLIQUID)
    market(store, "1000PEPEUSDT", 0.0123, 0.0123, -0.0001, 5_000_000_000.0)
    market(store, "kPEPE", 0.01231, 0.0123, 0.00002, 900_000_000.0, source=HYPERLIQUID)


#: (source, symbol, annualised funding, mark, open interest, stale) of the newest snapshots
BTC_MARKETS = [(BINANCE, "BTCUSDT", 0.1095, 64_240.0, 82_345.678, False),
               (BYBIT, "BTCUSDT", 0.1314, 64_251.5, 50_123.4, False),
               (OKX, "BTC-USDT-SWAP", 0.0876, 64_238.0, 29_500.0, False),
               (HYPERLIQUID, "BTC", 0.2190, 64_262.0, 30_000.0, True)]
PEPE_MARKETS = [(BINANCE, "1000PEPEUSDT", -0.1095, 0.0123, 5_000_000_000.0, False),
                (HYPERLIQUID, "kPEPE", 0.1752, 0.01231, 900_000_000.0, False)]


def snapshots(markets: list[tuple[str, str, float, float, float, bool]], t_ms: int = SNAP_MS,
              window_s: int = 60) -> list[dict[str, Any]]:
    return [snapshot_row(src, sym, t_ms, funding_ann=f, mark=m, oi=oi, stale=stale, window_s=window_s)
            for src, sym, f, m, oi, stale in markets]


def test_rates_are_counter_deltas_over_clock_deltas_and_totals_are_summed_over_labels(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    dash = dashboard(t, store, clock, wall)
    t.inc("points_published", 1_000)
    t.inc("points_delivered", 900)
    t.inc("records_stored", 800, SINK)
    first = dash.sample()
    assert first.published_per_s is None and first.stored_per_s is None  # no previous sample
    clock.t += 2.5
    t.inc("points_published", 7_000)
    t.inc("points_delivered", 6_000)
    t.inc("records_stored", 4_000, SINK)
    t.inc("records_stored", 1_000, {"group": "perpstream-sink", "table": "other"})
    t.inc("records_dlq", 3, {"group": "perpstream-sink", "reason": "decode"})
    t.inc("records_dlq", 2, {"group": "perpstream-snapshots", "reason": "invalid"})
    t.inc("reconnects", 2, {"reason": "silence"})
    t.inc("frames_rejected", 4, {"reason": "bad_number"})
    t.set("consumer_lag", 120, {"group": "perpstream-sink", "topic": "m", "partition": "0"})
    t.set("consumer_lag", 30, {"group": "perpstream-sink", "topic": "m", "partition": "1"})
    t.set("consumer_lag", 7, {"group": "perpstream-snapshots", "topic": "m", "partition": "0"})
    t.gauge_fn("snapshot_stale_symbols", lambda: 4.0)
    b = dash.sample()
    assert b.published_per_s == pytest.approx(7_000 / 2.5)
    assert b.delivered_per_s == pytest.approx(6_000 / 2.5)
    assert b.stored_per_s == pytest.approx(5_000 / 2.5)
    assert (b.published, b.stored, b.dlq, b.reconnects, b.rejected) == (8_000, 5_800, 5, 2, 4)
    assert dict(b.lag) == {"perpstream-sink": 150, "perpstream-snapshots": 7} and b.lag_total == 157
    assert b.engine_stale == 4 and b.uptime_s == pytest.approx(2.5)
    clock.t += 0.5  # nothing new: 0/s, not the previous rate
    quiet = dash.sample()
    assert quiet.published_per_s == 0
    lines = "\n".join(text(quiet, dash))
    assert "stored 0.0/s" in lines and "DLQ 5" in lines and "lag sink 150, snapshots 7" in lines


def test_the_board_at_80_columns_shows_labelled_values_in_peoples_units(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    market(store, "BTCUSDT", 64_240.38272864, 64_227.5, 0.0001, 82_345.678)
    market(store, "1000SHIBUSDT", 0.000012345, 0.000012345, -0.00075, 123_456_789_012.0)
    market(store, "ETHUSDT", 3_412.5678, 3_413.9, 0.0, 1_234_567.5)
    dash = dashboard(t, store, clock, wall)
    dash.sample()
    clock.t += 1
    t.inc("points_published", 3_500)
    board = dash.sample()
    lines = text(board, dash)
    assert max(cell_len(line) for line in lines) <= 80
    whole = "\n".join(lines)
    for label in ("symbol", "mark", "funding", "basis bp", "open int.", "mark 60s", "age", "state",
                  "uptime", "in ", "delivered", "stored", "DLQ", "lag", "reconnects", "rejected frames",
                  "stale", "data /var/lib/perpstream", "queries http://127.0.0.1:8123"):
        assert label in whole, label
    # one venue: no venue column, no cross-venue table, and the assets were not asked for
    assert line_of(lines, "symbol").split()[0] == "symbol" and "venue" not in whole
    assert "across venues" not in whole and store.asked_assets() == 0
    btc = line_of(lines, "BTCUSDT")
    basis_bp = (64_240.38272864 - 64_227.5) / 64_227.5 * 1e4
    assert "64,240.38" in btc and "+0.0100%" in btc and f"{basis_bp:+.1f}" in btc and "82,346" in btc
    shib = line_of(lines, "1000SHIBUSDT")
    assert "0.0000123450" in shib and "-0.0750%" in shib and "+0.0" in shib
    assert "123,456,789,012" in shib
    eth = line_of(lines, "ETHUSDT")
    assert "3,412.57" in eth and "+0.0000%" in eth and "1,234,568" in eth
    assert "2026-12-02T00:00:00.000Z" in lines[0]  # ISO-8601 UTC
    assert "in 3,500.0/s" in whole and "store: 3 symbols, latest mark 2026-12-01T23:59:59.000Z" in whole
    # sorted by open-interest notional (OI x mark), largest first
    order = [line.split()[0] for line in lines if line.endswith(("ok", "STALE"))]
    notional = {"BTCUSDT": 82_345.678 * 64_240.38, "ETHUSDT": 1_234_567.5 * 3_412.57,
                "1000SHIBUSDT": 123_456_789_012.0 * 0.000012345}
    assert order == sorted(notional, key=lambda s: -notional[s])
    # the trend: the mark rose over the minute, so the last bucket is the highest block
    trend = next(r.trend for r in board.rows if r.symbol == "BTCUSDT")
    assert len(trend) == 12 and trend[-1] == max(v for v in trend if v is not None)
    assert btc.split()[5].endswith("█")


def test_each_market_is_a_row_with_its_venue_and_its_own_values_stale_and_place(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    four_venues(store)
    dash = dashboard(t, store, clock, wall)
    board = dash.sample()
    assert board.error is None and board.sources == (BINANCE, BYBIT, HYPERLIQUID, OKX)
    got = {(r.source, r.symbol): r for r in board.rows}
    assert len(got) == 6  # BTCUSDT of Binance and of Bybit are two markets, not one
    assert (got[BINANCE, "BTCUSDT"].mark, got[BYBIT, "BTCUSDT"].mark) == (64_240.38, 64_251.5)
    assert (got[BINANCE, "BTCUSDT"].oi, got[BYBIT, "BTCUSDT"].oi) == (82_345.678, 50_123.4)
    assert {k for k, r in got.items() if r.stale} == {(BYBIT, "BTCUSDT")}  # its mark is 8 s old

    lines = text(board, dash)
    assert max(cell_len(x) for x in lines) <= 80
    header = line_of(lines, "venue", "symbol")
    for label in ("mark", "funding", "basis bp", "open int.", "age", "state"):
        assert label in header, label
    binance = line_of(lines, "binance", "BTCUSDT")
    assert "64,240.38" in binance and "+0.0100%" in binance and "82,346" in binance
    assert binance.endswith("ok")
    bybit = line_of(lines, "bybit", "BTCUSDT")
    assert "64,251.50" in bybit and "+0.0120%" in bybit and "50,123" in bybit and "8.0s" in bybit
    assert bybit.endswith("STALE")
    assert "29,500" in line_of(lines, "okx", "BTC-USDT-SWAP")  # OKX's symbols whole
    assert "900,000,000" in line_of(lines, "hyperliquid", "kPEPE")
    # each market in its place by its own notional
    order = [tuple(x.split()[:2]) for x in lines if x.endswith(("ok", "STALE"))]
    notional = {(r.venue, r.symbol): r.oi * r.mark for r in got.values()}  # type: ignore[operator]
    assert order == sorted(notional, key=lambda k: -notional[k])
    whole = "\n".join(lines)
    assert "stale 1 of 6: bybit:BTCUSDT" in whole
    assert "store: 6 markets, latest mark 2026-12-01T23:59:59.000Z" in whole
    assert log_fields(board)["venues"] == 4 and log_fields(board)["symbols"] == 6


def test_the_venue_column_appears_with_a_second_source(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    market(store, "BTCUSDT", 64_240.38, 64_227.5, 0.0001, 82_345.678)
    dash = dashboard(t, store, clock, wall)
    one = text(dash.sample(), dash)
    assert line_of(one, "symbol") and line_of(one, "BTCUSDT")
    market(store, "BTCUSDT", 64_251.5, 64_230.0, 0.00012, 50_123.4, source="sim.bybit_linear")
    clock.t += 1
    two = text(dash.sample(), dash)
    assert line_of(two, "venue", "symbol")
    assert "64,240.38" in line_of(two, "binance", "BTCUSDT")
    assert "64,251.50" in line_of(two, "sim.bybit", "BTCUSDT")


def test_short_venue_names() -> None:
    assert [venue_name(s) for s in (BINANCE, BYBIT, OKX, HYPERLIQUID)] == ["binance", "bybit", "okx",
                                                                           "hyperliquid"]
    assert [venue_name(s) for s in ("sim", "sim.bybit_linear", "sim.okx_swap", "sim.hyperliquid")] == [
        "sim", "sim.bybit", "sim.okx", "sim.hyperliquid"]
    assert venue_name("deribit_perp") == "deribit_perp"  # one not known here is shown whole


def test_the_cross_venue_table_shows_the_newest_snapshot_of_each_asset_on_two_venues(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    four_venues(store)
    store.create_assets()
    rows = [*snapshots(BTC_MARKETS), *snapshots(PEPE_MARKETS),
            # older, and of a larger window: not what the table shows
            *snapshots([(s, y, f * 3, m, oi, False) for s, y, f, m, oi, _ in BTC_MARKETS], SNAP_MS - 5_000),
            *snapshots([(s, y, f * 5, m, oi, False) for s, y, f, m, oi, _ in BTC_MARKETS], window_s=300),
            # on one venue only
            *snapshots([(BINANCE, "SOLUSDT", 0.05, 150.0, 9_000_000.0, False)]),
            # on two venues a minute ago, now on one: the newest decides
            *snapshots([(BINANCE, "ETHUSDT", 0.1, 3_400.0, 1e6, False),
                        (BYBIT, "ETHUSDT", 0.1, 3_400.0, 1e6, False)], SNAP_MS - 60_000),
            *snapshots([(BINANCE, "ETHUSDT", 0.1, 3_400.0, 1e6, False)])]
    # a record written again (the asset consumer restarted): the table keeps the last one written
    rewritten = [(s, y, f * 7, m, oi, False) for s, y, f, m, oi, _ in BTC_MARKETS]
    store.add_assets(asset_records(snapshots(rewritten)))
    store.add_assets(asset_records(rows))
    dash = dashboard(t, store, clock, wall)
    board = dash.sample()
    assert board.error is None
    assert [a.asset for a in board.assets] == ["BTC", "PEPE"]  # by total notional
    btc = board.assets[0]
    # the numbers, from the inputs: the fresh markets only (Hyperliquid's BTC is stale)
    fresh = [(f, m * oi) for _s, _y, f, m, oi, stale in BTC_MARKETS if not stale]
    total = sum(n for _f, n in fresh)
    weighted = sum(f * n for f, n in fresh) / total
    assert (btc.window_s, btc.snapshot_ms) == (60, SNAP_MS)
    assert btc.venues_present == (BINANCE, BYBIT, HYPERLIQUID, OKX) and btc.venues_stale == (HYPERLIQUID,)
    assert (btc.funding_ann_min, btc.funding_ann_min_market) == (0.0876, "okx_swap:BTC-USDT-SWAP")
    assert (btc.funding_ann_max, btc.funding_ann_max_market) == (0.1314, "bybit_linear:BTCUSDT")
    assert btc.funding_ann_spread == pytest.approx(0.1314 - 0.0876, rel=1e-12)
    assert btc.oi_notional_total == pytest.approx(total, rel=1e-12)
    assert btc.funding_ann_oi_weighted == pytest.approx(weighted, rel=1e-12)

    lines = text(board, dash)
    assert max(cell_len(x) for x in lines) <= 80
    assert "across venues: 2 assets, 60s window, funding annualised, notional in USD" in lines
    header = line_of(lines, "asset", "venues")
    for label in ("funding min", "funding max", "spread", "OI-wtd", "notional", "age"):
        assert label in header, label
    row = line_of(lines, "BTC", "3/4")  # 3 of 4 venues fresh
    for shown in ("+8.76% okx", "+13.14% bybit", "+4.38%", annual(weighted), money(total), "25s"):
        assert shown in row, shown
    assert f"{weighted * 100:+.2f}%" == annual(weighted) and f"{total:,.0f}" == money(total)
    pepe = line_of(lines, "PEPE", "2/2")
    assert "-10.95% binance" in pepe and "+17.52% hyper" in pepe and "+28.47%" in pepe
    assert lines.index(row) < lines.index(pepe)
    wide = text(board, dash, width=110)
    assert "+17.52% hyperliquid" in line_of(wide, "PEPE", "2/2")  # the venue whole where it fits
    pepe_weighted = annual(board.assets[1].funding_ann_oi_weighted)
    assert log_fields(board)["top_assets"] == (f"BTC spread +4.38% oi-w {annual(weighted)}; "
                                               f"PEPE spread +28.47% oi-w {pepe_weighted}")


def test_the_cross_venue_table_needs_two_venues_in_the_store_and_an_asset_on_two(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    market(store, "BTCUSDT", 64_240.38, 64_227.5, 0.0001, 82_345.678)
    store.create_assets()
    store.add_assets(asset_records(snapshots([(BINANCE, "SOLUSDT", 0.05, 150.0, 9_000_000.0, False)])))
    dash = dashboard(t, store, clock, wall)
    board = dash.sample()  # one source: the assets are not asked for
    assert board.assets == () and store.asked_assets() == 0
    market(store, "SOLUSDT", 150.0, 150.0, 0.0001, 9_000_000.0, source=BYBIT)
    clock.t += 1
    board = dash.sample()  # two sources, but no asset on two venues
    assert store.asked_assets() == 1 and board.assets == () and board.error is None
    assert not any("across venues" in x for x in text(board, dash))
    store.add_assets(asset_records(snapshots(BTC_MARKETS[:2])))
    clock.t += 5  # the next cross-venue query: a snapshot interval later
    board = dash.sample()
    assert [a.asset for a in board.assets] == ["BTC"]
    assert "across venues: 1 assets, 60s window, funding annualised, notional in USD" in text(board, dash)


def test_a_missing_asset_table_is_no_error_and_shows_no_table(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    four_venues(store)
    dash = dashboard(t, store, clock, wall)
    board = dash.sample()
    assert store.asked_assets() == 1  # asked, and the store said the table does not exist
    assert board.error is None and board.assets == () and len(board.rows) == 6
    lines = text(board, dash)
    assert not any("across venues" in x or x.startswith("!") for x in lines)
    assert log_fields(board)["top_assets"] is None and log_fields(board)["error"] is None
    # the asset consumer starts: the table is there on the next query
    store.create_assets()
    store.add_assets(asset_records(snapshots(BTC_MARKETS)))
    clock.t += 5  # the next cross-venue query: a snapshot interval later
    assert [a.asset for a in dash.sample().assets] == ["BTC"]


def test_a_failing_asset_query_keeps_the_last_assets_and_says_why(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    four_venues(store)
    store.create_assets()
    store.add_assets(asset_records([*snapshots(BTC_MARKETS), *snapshots(PEPE_MARKETS)]))
    dash = dashboard(t, store, clock, wall)
    before = dash.sample().assets
    assert [a.asset for a in before] == ["BTC", "PEPE"]
    # a table of another layout under the name: the query fails (not a missing table)
    store.client.command(f"DROP TABLE {store.database}.{ASSETS_TABLE}")
    store.client.command(f"CREATE TABLE {store.database}.{ASSETS_TABLE} (asset String) "
                         "ENGINE = ReplacingMergeTree ORDER BY asset")
    clock.t += 5  # the next cross-venue query: a snapshot interval later
    wall[0] += 5000
    board = dash.sample()
    assert board.assets == before and len(board.rows) == 6
    assert board.error is not None
    assert board.error.startswith("asset query failed at 2026-12-02T00:00:05.000Z")
    assert "Code: 47" in board.error and "\n" not in board.error
    lines = text(board, dash)
    assert any(x.startswith("! asset query failed") for x in lines) and line_of(lines, "BTC", "3/4")
    assert max(cell_len(x) for x in lines) <= 80


def test_the_height_is_shared_between_the_markets_and_the_assets(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    coins = [f"C{k:02d}" for k in range(20)]
    for k, coin in enumerate(coins):
        for source in (BINANCE, BYBIT):
            market(store, f"{coin}USDT", 1.0 + k, 1.0 + k, 0.0001, 1_000.0, seconds=3, source=source)
    store.create_assets()
    store.add_assets(asset_records(snapshots([(src, f"{coin}USDT", 0.01 * k, 1.0 + k, 1_000.0, False)
                                              for k, coin in enumerate(coins[:10])
                                              for src in (BINANCE, BYBIT)])))
    dash = dashboard(t, store, clock, wall)
    board = dash.sample()
    assert (len(board.rows), len(board.assets)) == (40, 10)
    lines = text(board, dash, height=30)
    assert len(lines) <= 30
    markets = [x for x in lines if x.endswith(("ok", "STALE"))]
    assets = [x for x in lines if re.match(r"C\d\d +2/2 ", x)]
    # 30 lines less 9 for the board and 4 for the cross-venue table: 17, a third of them assets
    assert (len(markets), len(assets)) == (12, 5)
    assert "+28 more (sorted by open-interest notional)" in lines
    assert "+5 more assets (sorted by total notional)" in lines
    assert [x.split()[0] for x in assets] == ["C09", "C08", "C07", "C06", "C05"]  # largest notional first
    # too low for both: the markets only
    low = text(board, dash, height=14)
    assert len(low) <= 14 and not any("across venues" in x for x in low)
    # without a height: every row of both
    every = text(board, dash)
    assert len([x for x in every if re.match(r"C\d\d +2/2 ", x)]) == 10
    assert not any("more" in x for x in every)


def test_stale_symbols_are_marked_and_counted(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    market(store, "FRESHUSDT", 10.0, 10.0, 0.0001, 5_000.0)
    market(store, "OLDOIUSDT", 10.0, 10.0, 0.0001, 5_000.0, oi_ms=NOW_MS - 45_000)  # > 3 x 10 s
    market(store, "SILENTUSDT", 10.0, 10.0, 0.0001, 5_000.0, last_ms=NOW_MS - 8_000)  # > 5 s
    dash = dashboard(t, store, clock, wall)
    board = dash.sample()
    stale = {r.symbol: r.stale for r in board.rows}
    assert stale == {"FRESHUSDT": False, "OLDOIUSDT": True, "SILENTUSDT": True}
    assert board.stale_count == 2
    reasons = {r.symbol: r.stale_reasons for r in board.rows}
    assert any("open interest" in x for x in reasons["OLDOIUSDT"])
    assert any("mark price 8000 ms old" in x for x in reasons["SILENTUSDT"])
    lines = text(board, dash)
    assert line_of(lines, "SILENTUSDT").endswith("STALE")
    assert line_of(lines, "FRESHUSDT").endswith("ok")
    assert "8.0s" in line_of(lines, "SILENTUSDT")
    assert "stale 2 of 3: OLDOIUSDT, SILENTUSDT" in "\n".join(lines)
    # a symbol that stops sending keeps its last values and becomes stale as the wall clock moves
    wall[0] += 10_000
    later = {r.symbol: r for r in dash.sample().rows}
    assert later["FRESHUSDT"].stale and later["FRESHUSDT"].mark == pytest.approx(10.0)


def test_rows_beyond_the_height_are_a_plus_n_more_line(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    for k in range(40):
        market(store, f"S{k:03d}USDT", 1.0 + k, 1.0 + k, 0.0001, 1_000.0, seconds=3)
    dash = dashboard(t, store, clock, wall)
    board = dash.sample()
    lines = text(board, dash, height=24)
    assert len(lines) <= 24
    rows = [x for x in lines if x.startswith("S0")]
    assert len(rows) == 24 - 9
    assert f"+{40 - len(rows)} more" in "\n".join(lines)
    assert rows[0].startswith("S039USDT")  # the largest notional first
    assert not any("more" in x for x in text(board, dash))  # without a height: every row


def test_a_failed_query_keeps_the_last_rows_and_says_why_in_one_line(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    market(store, "BTCUSDT", 64_000.0, 63_990.0, 0.0001, 80_000.0)
    dash = dashboard(t, store, clock, wall)
    assert dash.sample().error is None
    db = store.database
    store.client.command(f"RENAME TABLE {db}.metric_points TO {db}.metric_points_away")
    clock.t += 1
    wall[0] += 1000
    board = dash.sample()
    assert board.error is not None and "Code: 60. DB::Exception: Unknown table" in board.error
    assert "\n" not in board.error and "2026-12-02T00:00:01.000Z" in board.error
    assert [r.symbol for r in board.rows] == ["BTCUSDT"] and board.rows[0].mark == 64_000.0
    lines = text(board, dash)
    assert any(x.startswith("! store query failed") for x in lines)
    assert max(cell_len(x) for x in lines) <= 80
    assert "Code: 60. DB::Exception" in (log_fields(board)["error"] or "")
    store.client.command(f"RENAME TABLE {db}.metric_points_away TO {db}.metric_points")
    clock.t += 1
    assert dash.sample().error is None


def test_the_query_reads_one_minute_of_event_time_ending_at_the_producers_latest_event(store: Store) -> None:
    t, clock = Telemetry(), Clock()
    wall = [NOW_MS + 3_600_000]  # a replay an hour behind the wall clock
    ages: dict[tuple[tuple[str, str], ...], float] = {(("symbol", "A"),): 3_600.0,
                                                      (("symbol", "B"),): 3_600.4}
    t.gauge_fn("last_event_age_seconds", lambda: ages)
    market(store, "AUSDT", 5.0, 5.0, 0.0001, 100.0)
    dash = dashboard(t, store, clock, wall)
    board = dash.sample()
    lo = int(re.search(r"toInt64\((\d+)\)", store.sql[-1]).group(1))  # type: ignore[union-attr]
    assert lo == NOW_MS - 60_000  # the minute before the bucket [NOW, NOW + 5 s), and that bucket
    assert "metric_points" in store.sql[-1] and "event_time >=" in store.sql[-1]
    assert [r.symbol for r in board.rows] == ["AUSDT"] and board.rows[0].mark == pytest.approx(5.0)
    assert board.data_as_of_ms == NOW_MS - 1000
    dashboard(Telemetry(), store, clock, wall).sample()  # no producer ages, nothing seen: the wall clock
    assert int(re.search(r"toInt64\((\d+)\)", store.sql[-1]).group(1)) == wall[0] - 60_000  # type: ignore[union-attr]


def test_log_fields_for_when_the_view_is_off(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    market(store, "BTCUSDT", 64_000.0, 63_990.0, 0.0001, 80_000.0)
    market(store, "OLDUSDT", 1.0, 1.0, 0.0001, 10.0, last_ms=NOW_MS - 20_000)
    dash = dashboard(t, store, clock, wall)
    dash.sample()
    clock.t += 4
    t.inc("points_published", 10_000)
    t.inc("records_stored", 9_000, SINK)
    t.set("consumer_lag", 42, {"group": "perpstream-sink", "topic": "m", "partition": "3"})
    board = dash.sample()
    f = log_fields(board)
    assert f["in_per_s"] == 2_500.0 and f["stored_per_s"] == 2_250.0 and f["lag"] == 42
    assert f["symbols"] == 2 and f["stale_symbols"] == 1 and f["endpoint"] == "http://127.0.0.1:8123"
    assert f["venues"] == 1 and f["top_assets"] is None
    assert f["data_dir"] == "/var/lib/perpstream" and f["error"] is None


def test_narrow_terminals_lose_the_trend_first(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    market(store, "1000000MOGUSDT", 0.000001, 0.000001, 0.0001, 9_999_999_999.0)
    dash = dashboard(t, store, clock, wall)
    board = dash.sample()
    for width in (100, 80, 72, 60):
        lines = text(board, dash, width=width)
        assert max(cell_len(x) for x in lines) <= width, width
        row = line_of(lines, "1000000MOGUSDT")
        assert "0.00000100000" in row and "9,999,999,999" in row
    assert "mark 60s" in "\n".join(text(board, dash, width=80))
    assert "mark 60s" not in "\n".join(text(board, dash, width=60))
    # at 68 the basis has to go; what it leaves is not given to the trend
    at68 = text(board, dash, width=68)
    assert "basis bp" not in line_of(at68, "symbol") and "age" in line_of(at68, "symbol")
    assert not any(c in "".join(at68) for c in "▁▂▃▄▅▆▇█")


def test_narrow_terminals_cut_names_and_leave_out_columns_but_never_cut_a_number(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    four_venues(store)
    market(store, "PEPE-USDT-SWAP", 0.0000123, 0.0000123, -0.0001, 45_000_000.0, source=OKX)
    store.create_assets()
    store.add_assets(asset_records([*snapshots(BTC_MARKETS), *snapshots(PEPE_MARKETS)]))
    dash = dashboard(t, store, clock, wall)
    board = dash.sample()
    numbers = re.compile(r"[-+]?[\d,]+\.?\d*%?")
    for width in (80, 72, 64):
        lines = text(board, dash, width=width)
        assert max(cell_len(x) for x in lines) <= width, width
        okx = next(x for x in lines if x.startswith("okx") and "0.0000123000" in x)
        assert "45,000,000" in okx  # the open interest whole, whatever else had to go
        btc = next(x for x in lines if x.startswith("BTC "))
        assert money(board.assets[0].oi_notional_total) in btc, width
        whole = {"+8.76%", "+13.14%", "+4.38%", annual(board.assets[0].funding_ann_oi_weighted),
                 money(board.assets[0].oi_notional_total)}
        for word in btc.split():  # every figure of the line is a whole figure of the asset
            if numbers.fullmatch(word) and "/" not in word:
                assert word in whole, (width, word)
    # at 64 the basis had to go, and the trend is not shown in its room
    narrow = text(board, dash, width=64)
    assert "basis bp" not in line_of(narrow, "venue", "symbol")
    assert not any(c in "".join(narrow) for c in "▁▂▃▄▅▆▇█")
    assert "basis bp" in line_of(text(board, dash, width=80), "venue", "symbol")


def test_names_cut_to_fit_still_tell_the_simulated_venues_apart(store: Store) -> None:
    """The simulated venues share ``sim.``: cut to four characters they would all read ``sim…``."""
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    sim = [("sim", "SIM0007USDT"), ("sim.bybit_linear", "SIM0007USDT"), ("sim.okx_swap", "SIM0007-USDT-SWAP"),
           ("sim.hyperliquid", "SIM0007")]
    for k, (source, symbol) in enumerate(sim):
        market(store, symbol, 3_883.0 + k, 3_883.0, 0.0001, 5_000_000.0 - k, source=source)
    store.create_assets()
    store.add_assets(asset_records(snapshots([(src, sym, 0.09 + 0.01 * k, 3_883.0 + k, 5e6, False)
                                              for k, (src, sym) in enumerate(sim)])))
    dash = dashboard(t, store, clock, wall)
    board = dash.sample()
    assert (board.assets[0].funding_ann_min_market, board.assets[0].funding_ann_max_market) == (
        "sim:SIM0007USDT", "sim.hyperliquid:SIM0007")
    for width in (80, 72, 64):
        lines = text(board, dash, width=width)
        assert max(cell_len(x) for x in lines) <= width
        venues = [x.split()[0] for x in lines if x.endswith(("ok", "STALE"))]
        assert len(set(venues)) == 4, (width, venues)  # one row per venue, each name its own
        names = ("sim", "sim.bybit", "sim.okx", "sim.hyperliquid")
        for shown in venues:
            assert any(v.startswith(shown.rstrip("…")) for v in names)
        row = line_of(lines, "SIM0007")
        assert "+9.00% sim " in row + " " and re.search(r"\+12\.00% sim\.h", row), (width, row)


def test_prices_keep_six_significant_digits_over_the_exchanges_range() -> None:
    assert price(100_000.0) == "100,000.00"
    assert price(64_240.38272864) == "64,240.38"
    assert price(3.41257) == "3.41257"
    assert price(0.2663971) == "0.266397"
    assert price(0.000001) == "0.00000100000"
    assert price(None) == "-" and price(float("nan")) == "-"
    assert percent(0.0001) == "+0.0100%" and percent(-0.0) == "+0.0000%"
    assert annual(0.1095) == "+10.95%" and annual(-0.0658) == "-6.58%" and annual(-0.0) == "+0.00%"
    assert annual(12.3456) == "+1,234.56%" and annual(None) == "-" and annual(float("inf")) == "-"
    assert money(10_404_184_512.4) == "10,404,184,512" and money(None) == "-"
    assert [duration(x) for x in (0.84, 12.2, 185, 7_630, 273_600)] == ["0.8s", "12s", "3m05s", "2h07m",
                                                                       "3d04h"]
    assert sparkline([1.0, None, 2.0, 3.0]) == "▁ ▅█" and sparkline([2.0, 2.0]) == "▄▄"


def test_query_fn_takes_a_client_a_read_only_session_or_a_callable() -> None:
    rows = [("BTCUSDT", 1.0)]

    class Result:
        result_rows = rows

    class Client:
        def query(self, sql: str) -> Result:
            assert sql == "SELECT 1"
            return Result()

    class Session:  # perpstream.query_server.ReadOnlyQueries' run
        def run(self, query: str, *, database: str | None, default_format: str,
                settings: dict[str, str], params: dict[str, str]) -> tuple[bytes, str]:
            assert default_format == "JSONCompact" and not settings and not params
            return b'{"meta": [], "data": [["BTCUSDT", 1.0]], "rows": 1}', default_format

    def call(sql: str) -> Sequence[Sequence[Any]]:
        return rows

    assert query_fn(Client())("SELECT 1") == rows
    assert query_fn(Session())("SELECT 1") == [["BTCUSDT", 1.0]]
    assert query_fn(call)("SELECT 1") == rows
    with pytest.raises(TypeError):
        query_fn(42)


def test_the_live_view_redraws_each_tick_and_leaves_the_cursor_visible(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    market(store, "BTCUSDT", 64_000.0, 63_990.0, 0.0001, 80_000.0)
    dash = Dashboard(t, store, database=store.database, clock=clock, wall=lambda: wall[0] / 1000)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, height=30, color_system=None)
    with LiveBoard(dash, console) as view:
        for _ in range(3):
            last = view.tick()
            clock.t += 1.0
    assert len(store.sql) == 3
    assert last.rows[0].symbol == "BTCUSDT"
    raw = out.getvalue()
    assert "\x1b[?25l" in raw and raw.rstrip().endswith("\x1b[?25h")  # hidden while live, shown after
    assert "64,000.00" in raw


def test_the_live_view_restores_the_terminal_when_the_caller_fails(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, height=30, color_system=None)
    with pytest.raises(KeyboardInterrupt), LiveBoard(dashboard(t, store, clock, wall), console) as view:
        view.tick()
        raise KeyboardInterrupt
    assert out.getvalue().rstrip().endswith("\x1b[?25h")


def asked_each_tick(dash: Dashboard, store: Store, clock: Clock, ticks: int = 8) -> list[int]:
    """Queries sent at each of ``ticks`` ticks a second apart."""
    asked = []
    for k in range(ticks):
        clock.t = 500.0 + k
        before = len(store.sql)
        dash.sample()
        asked.append(len(store.sql) - before)
    return asked


def test_a_slow_store_is_asked_less_often(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    market(store, "BTCUSDT", 64_000.0, 63_990.0, 0.0001, 80_000.0)

    def slow(sql: str) -> Sequence[Sequence[Any]]:
        clock.t += 0.5  # each query takes half a second of the clock
        return store(sql)

    dash = dashboard(t, slow, clock, wall, database=store.database)
    # after 0.5 s of query the next waits 2.5 s: ticks at 0, 1, 2, 3 ... query at 0, 3, 6
    assert asked_each_tick(dash, store, clock) == [1, 0, 0, 1, 0, 0, 1, 0]
    board = dash.sample()
    assert board.query_s == 0.5 and board.rows[0].mark == 64_000.0 and board.error is None
    assert "query 500 ms" in "\n".join(text(board, dash))


def test_with_several_venues_each_query_has_half_the_share_and_the_assets_wait_a_snapshot(
        store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    four_venues(store)
    store.create_assets()
    store.add_assets(asset_records(snapshots(BTC_MARKETS)))

    def slow(sql: str) -> Sequence[Sequence[Any]]:
        clock.t += 0.25  # each query takes a quarter of a second of the clock
        return store(sql)

    dash = dashboard(t, slow, clock, wall, database=store.database)
    # the markets: 0.25 s at a tenth of the time, the next 2.5 s later (ticks 0, 3, 6); the
    # assets: not before the next snapshot interval, 5 s (0 and 6)
    assert asked_each_tick(dash, store, clock) == [2, 0, 0, 1, 0, 0, 2, 0]
    assert store.asked_assets() == 2
    board = dash.sample()
    assert (board.query_s, board.asset_query_s) == (0.25, 0.25) and board.error is None
    assert [a.asset for a in board.assets] == ["BTC"] and len(board.rows) == 6
    assert "queries 250 + 250 ms" in "\n".join(text(board, dash))
    assert log_fields(board)["asset_query_ms"] == 250.0


def test_an_answer_of_another_shape_is_an_error_not_a_crash() -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    dash = dashboard(t, lambda sql: [("BTCUSDT", "not a number")], clock, wall)
    board = dash.sample()
    assert board.error is not None and board.error.startswith("store query failed")
    t.gauge_fn("buffer_fill", lambda: 1 / 0)  # a computed gauge that fails
    failed = dash.sample()
    assert failed.error is not None and "telemetry: division by zero" in failed.error


def test_notes_of_the_running_process_are_shown_and_keep_the_board_in_the_height(store: Store) -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    for k in range(40):
        market(store, f"S{k:03d}USDT", 1.0 + k, 1.0 + k, 0.0001, 1_000.0, seconds=3)
    notes = ["sink: failed (ClickHouse unavailable); restarting in 4.0 s (restarts: 2)"]
    dash = Dashboard(t, store, database=store.database, clock=clock, wall=lambda: wall[0] / 1000,
                     notes_fn=lambda: notes)
    lines = text(dash.sample(), dash, height=24)
    assert len(lines) <= 24
    assert "! sink: failed (ClickHouse unavailable); restarting in 4.0 s (restarts: 2)" in lines
    assert len([x for x in lines if x.startswith("S0")]) == 24 - 9 - 1
    notes.clear()
    assert not any(x.startswith("!") for x in text(dash.sample(), dash, height=24))


def test_a_row_of_another_width_is_named_not_read_shifted() -> None:
    """A column added to the query without the row type (or the reverse) is an error naming
    the columns, never a funding rate read as an open interest."""
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    row: tuple[Any, ...] = (BINANCE, "BTCUSDT", 64000.0, NOW_MS, 63990.0, NOW_MS, 0.0001, NOW_MS, 1000.0,
                            NOW_MS, [], "extra")
    board = dashboard(t, lambda sql: [row], clock, wall).sample()
    assert board.rows == () and board.error is not None
    assert "returned 12 columns, expected 11" in board.error and "funding_ms" in board.error
    assert "AS funding_ms" in MARKET_SQL and MARKET_SQL.index("AS mark,") < MARKET_SQL.index("AS oi,")
