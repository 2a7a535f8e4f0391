"""The live view: rates from counter deltas, people's numbers, 80 columns, stale marks,
the rows that fit, a failed query, the log line and the terminal restored."""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from typing import Any

import pytest
from rich.cells import cell_len
from rich.console import Console

from perpstream.dashboard import (
    MARKET_SQL,
    Board,
    Dashboard,
    LiveBoard,
    duration,
    log_fields,
    percent,
    price,
    query_fn,
    sparkline,
)
from perpstream.runtime.telemetry import Telemetry

NOW_MS = 1_796_169_600_000  # 2026-12-02T00:00:00Z
SINK = {"group": "perpstream-sink", "table": "metric_points"}


class Clock:
    def __init__(self, t: float = 500.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


class Store:
    """Rows shaped as the dashboard's query answers them, built from points; records the SQL."""

    def __init__(self) -> None:
        self.points: list[tuple[str, str, int, float]] = []  # symbol, metric, event ms, value
        self.sql: list[str] = []
        self.fail: Exception | None = None

    def add(self, symbol: str, metric: str, at_ms: int, value: float) -> None:
        self.points.append((symbol, metric, at_ms, value))

    def __call__(self, sql: str) -> list[tuple[Any, ...]]:
        self.sql.append(sql)
        if self.fail is not None:
            raise self.fail
        lo = int(re.search(r"fromUnixTimestamp64Milli\(toInt64\((\d+)\)", sql).group(1))  # type: ignore[union-attr]
        bucket = int(re.search(r"\) - \d+, (\d+)\) AS b", sql).group(1))  # type: ignore[union-attr]
        out = []
        for sym in sorted({p[0] for p in self.points}):
            row: list[Any] = [sym]
            for metric in ("mark_price", "index_price", "funding_rate", "open_interest"):
                pts = sorted((t, v) for s, m, t, v in self.points if s == sym and m == metric and t >= lo)
                row += [pts[-1][1], pts[-1][0]] if pts else [0.0, 0]
            buckets: dict[int, tuple[int, float]] = {}
            for s, m, t, v in self.points:
                if s == sym and m == "mark_price" and t >= lo:
                    b = (t - lo) // bucket
                    if b not in buckets or t > buckets[b][0]:
                        buckets[b] = (t, v)
            row.append(sorted((b, tv[1]) for b, tv in buckets.items()))
            out.append(tuple(row))
        return out


def market(store: Store, symbol: str, mark: float, index: float, funding: float, oi: float,
           *, last_ms: int = NOW_MS - 1000, seconds: int = 60, oi_ms: int | None = None) -> None:
    """A symbol's points: a mark and index every second up to ``last_ms``, the mark rising."""
    for k in range(seconds):
        t = last_ms - (seconds - 1 - k) * 1000
        store.add(symbol, "mark_price", t, mark * (1 - 0.0001 * (seconds - 1 - k)))
        store.add(symbol, "index_price", t, index)
        store.add(symbol, "funding_rate", t, funding)
    store.add(symbol, "open_interest", oi_ms if oi_ms is not None else last_ms - 2000, oi)


def dashboard(telemetry: Telemetry, store: Any, clock: Clock, wall_ms: list[int]) -> Dashboard:
    return Dashboard(telemetry, store, database="perpstream", data_dir="/var/lib/perpstream",
                     endpoint_url="http://127.0.0.1:8123", clock=clock, wall=lambda: wall_ms[0] / 1000)


def text(board: Board, dash: Dashboard, width: int = 80, height: int | None = None) -> list[str]:
    console = Console(record=True, width=width, file=io.StringIO(), color_system=None)
    console.print(dash.render(board, width=width, height=height))
    return [line.rstrip() for line in console.export_text().splitlines()]


def test_rates_are_counter_deltas_over_clock_deltas_and_totals_are_summed_over_labels() -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    dash = dashboard(t, Store(), clock, wall)
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


def test_the_board_at_80_columns_shows_labelled_values_in_peoples_units() -> None:
    t, clock, wall, store = Telemetry(), Clock(), [NOW_MS], Store()
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
    btc = next(line for line in lines if line.startswith("BTCUSDT"))
    basis_bp = (64_240.38272864 - 64_227.5) / 64_227.5 * 1e4
    assert "64,240.38" in btc and "+0.0100%" in btc and f"{basis_bp:+.1f}" in btc and "82,346" in btc
    shib = next(line for line in lines if line.startswith("1000SHIBUSDT"))
    assert "0.0000123450" in shib and "-0.0750%" in shib and "+0.0" in shib
    assert "123,456,789,012" in shib
    eth = next(line for line in lines if line.startswith("ETHUSDT"))
    assert "3,412.57" in eth and "+0.0000%" in eth and "1,234,568" in eth
    assert "2026-12-02T00:00:00.000Z" in lines[0]  # ISO-8601 UTC
    assert "in 3,500.0/s" in whole
    # sorted by open-interest notional (OI x mark), largest first
    order = [line.split()[0] for line in lines if line.endswith(("ok", "STALE"))]
    notional = {"BTCUSDT": 82_345.678 * 64_240.38, "ETHUSDT": 1_234_567.5 * 3_412.57,
                "1000SHIBUSDT": 123_456_789_012.0 * 0.000012345}
    assert order == sorted(notional, key=lambda s: -notional[s])
    # the trend: the mark rose over the minute, so the last bucket is the highest block
    trend = next(r.trend for r in board.rows if r.symbol == "BTCUSDT")
    assert len(trend) == 12 and trend[-1] == max(v for v in trend if v is not None)
    assert btc.split()[5].endswith("█")


def test_stale_symbols_are_marked_and_counted() -> None:
    t, clock, wall, store = Telemetry(), Clock(), [NOW_MS], Store()
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
    assert next(x for x in lines if x.startswith("SILENTUSDT")).endswith("STALE")
    assert next(x for x in lines if x.startswith("FRESHUSDT")).endswith("ok")
    assert "8.0s" in next(x for x in lines if x.startswith("SILENTUSDT"))
    assert "stale 2 of 3: OLDOIUSDT, SILENTUSDT" in "\n".join(lines)
    # a symbol that stops sending keeps its last values and becomes stale as the wall clock moves
    wall[0] += 10_000
    later = {r.symbol: r for r in dash.sample().rows}
    assert later["FRESHUSDT"].stale and later["FRESHUSDT"].mark == pytest.approx(10.0)


def test_rows_beyond_the_height_are_a_plus_n_more_line() -> None:
    t, clock, wall, store = Telemetry(), Clock(), [NOW_MS], Store()
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


def test_a_failed_query_keeps_the_last_rows_and_says_why_in_one_line() -> None:
    t, clock, wall, store = Telemetry(), Clock(), [NOW_MS], Store()
    market(store, "BTCUSDT", 64_000.0, 63_990.0, 0.0001, 80_000.0)
    dash = dashboard(t, store, clock, wall)
    assert dash.sample().error is None
    store.fail = RuntimeError("HTTPDriver received ClickHouse error\nCode: 60. DB::Exception: "
                              "Unknown table expression identifier 'perpstream.metric_points'\nmore")
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
    store.fail = None
    assert dash.sample().error is None


def test_the_query_reads_one_minute_of_event_time_ending_at_the_producers_latest_event() -> None:
    t, clock, store = Telemetry(), Clock(), Store()
    wall = [NOW_MS + 3_600_000]  # a replay an hour behind the wall clock
    ages = {(("symbol", "A"),): 3_600.0, (("symbol", "B"),): 3_600.4}
    t.gauge_fn("last_event_age_seconds", lambda: ages)
    market(store, "AUSDT", 5.0, 5.0, 0.0001, 100.0)
    dash = dashboard(t, store, clock, wall)
    board = dash.sample()
    lo = int(re.search(r"toInt64\((\d+)\)", store.sql[-1]).group(1))  # type: ignore[union-attr]
    assert lo == NOW_MS - 60_000  # the minute before the bucket [NOW, NOW + 5 s), and that bucket
    assert "metric_points" in store.sql[-1] and "event_time >=" in store.sql[-1]
    assert [r.symbol for r in board.rows] == ["AUSDT"] and board.rows[0].mark == pytest.approx(5.0)
    assert board.data_as_of_ms == NOW_MS - 1000
    t2, store2 = Telemetry(), Store()
    dashboard(t2, store2, clock, wall).sample()  # no producer ages, nothing seen: the wall clock
    assert int(re.search(r"toInt64\((\d+)\)", store2.sql[-1]).group(1)) == wall[0] - 60_000  # type: ignore[union-attr]


def test_log_fields_for_when_the_view_is_off() -> None:
    t, clock, wall, store = Telemetry(), Clock(), [NOW_MS], Store()
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
    assert f["data_dir"] == "/var/lib/perpstream" and f["error"] is None


def test_narrow_terminals_lose_the_trend_first() -> None:
    t, clock, wall, store = Telemetry(), Clock(), [NOW_MS], Store()
    market(store, "1000000MOGUSDT", 0.000001, 0.000001, 0.0001, 9_999_999_999.0)
    dash = dashboard(t, store, clock, wall)
    board = dash.sample()
    for width in (100, 80, 72, 60):
        lines = text(board, dash, width=width)
        assert max(cell_len(x) for x in lines) <= width, width
        row = next(x for x in lines if x.startswith("1000000MOGUSDT"))
        assert "0.00000100000" in row and "9,999,999,999" in row
    assert "mark 60s" in "\n".join(text(board, dash, width=80))
    assert "mark 60s" not in "\n".join(text(board, dash, width=60))


def test_prices_keep_six_significant_digits_over_the_exchanges_range() -> None:
    assert price(100_000.0) == "100,000.00"
    assert price(64_240.38272864) == "64,240.38"
    assert price(3.41257) == "3.41257"
    assert price(0.2663971) == "0.266397"
    assert price(0.000001) == "0.00000100000"
    assert price(None) == "-" and price(float("nan")) == "-"
    assert percent(0.0001) == "+0.0100%" and percent(-0.0) == "+0.0000%"
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


def test_the_live_view_redraws_each_tick_and_leaves_the_cursor_visible() -> None:
    t, clock, wall, store = Telemetry(), Clock(), [NOW_MS], Store()
    market(store, "BTCUSDT", 64_000.0, 63_990.0, 0.0001, 80_000.0)
    dash = Dashboard(t, store, database="perpstream", clock=clock, wall=lambda: wall[0] / 1000)
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


def test_the_live_view_restores_the_terminal_when_the_caller_fails() -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=80, height=30, color_system=None)
    with pytest.raises(KeyboardInterrupt), LiveBoard(dashboard(t, Store(), clock, wall), console) as view:
        view.tick()
        raise KeyboardInterrupt
    assert out.getvalue().rstrip().endswith("\x1b[?25h")


def test_a_slow_store_is_asked_less_often() -> None:
    t, clock, wall, store = Telemetry(), Clock(), [NOW_MS], Store()
    market(store, "BTCUSDT", 64_000.0, 63_990.0, 0.0001, 80_000.0)

    def slow(sql: str) -> list[tuple[Any, ...]]:
        clock.t += 0.5  # each query takes half a second of the clock
        return store(sql)

    dash = dashboard(t, slow, clock, wall)
    asked = []
    for k in range(8):
        clock.t = 500.0 + k  # one tick a second
        before = len(store.sql)
        board = dash.sample()
        asked.append(len(store.sql) - before)
    # after 0.5 s of query the next waits 2.5 s: ticks at 0, 1, 2, 3 ... query at 0, 3, 6
    assert asked == [1, 0, 0, 1, 0, 0, 1, 0]
    assert board.query_s == 0.5 and board.rows[0].mark == 64_000.0 and board.error is None
    assert "query 500 ms" in "\n".join(text(board, dash))


def test_an_answer_of_another_shape_is_an_error_not_a_crash() -> None:
    t, clock, wall = Telemetry(), Clock(), [NOW_MS]
    dash = dashboard(t, lambda sql: [("BTCUSDT", "not a number")], clock, wall)
    board = dash.sample()
    assert board.error is not None and board.error.startswith("store query failed")
    t.gauge_fn("buffer_fill", lambda: 1 / 0)  # a computed gauge that fails
    failed = dash.sample()
    assert failed.error is not None and "telemetry: division by zero" in failed.error


def test_notes_of_the_running_process_are_shown_and_keep_the_board_in_the_height() -> None:
    t, clock, wall, store = Telemetry(), Clock(), [NOW_MS], Store()
    for k in range(40):
        market(store, f"S{k:03d}USDT", 1.0 + k, 1.0 + k, 0.0001, 1_000.0, seconds=3)
    notes = ["sink: failed (ClickHouse unavailable); restarting in 4.0 s (restarts: 2)"]
    dash = Dashboard(t, store, database="perpstream", clock=clock, wall=lambda: wall[0] / 1000,
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
    row = ("BTCUSDT", 64000.0, NOW_MS, 63990.0, NOW_MS, 0.0001, NOW_MS, 1000.0, NOW_MS, [], "extra")
    board = dashboard(t, lambda sql: [row], clock, wall).sample()
    assert board.rows == () and board.error is not None
    assert "returned 11 columns, expected 10" in board.error and "funding_ms" in board.error
    assert "AS funding_ms" in MARKET_SQL and MARKET_SQL.index("AS mark,") < MARKET_SQL.index("AS oi,")
