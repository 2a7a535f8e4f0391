"""The asset engine: one asset across venues, the funding and notional aggregates against
exact fractions, stale markets, the emission rule, late/duplicate/ignored/invalid rows,
arrival-order independence, bounded memory, restore, and the Avro record and columns."""

from __future__ import annotations

import random
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpstream.consumers.assets.engine import (
    ACCEPTED,
    ASSET_SNAPSHOT_COLUMNS,
    DUPLICATE,
    IGNORED,
    INVALID,
    LATE,
    AssetConfigError,
    AssetEngine,
    AssetEngineConfig,
    AssetEngineError,
)
from perpstream.consumers.assets.keys import AssetKey, asset_of
from perpstream.errors import ConfigError
from perpstream.schemas.codec import AvroCodec, load_schema
from perpstream.schemas.columns import ddl_columns

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
STEP = 5_000
L = 15_000
_SNAPSHOT_FIELDS = [f["name"] for f in load_schema("market_snapshot").definition["fields"]]


def row(source: str, symbol: str, t: int, *, window: int = 60, mark: float | None = 1.0,
        oi: float | None = 1.0, fa: float | None = None, fi: float | None = 8.0,
        stale: bool = False, **extra: Any) -> dict[str, Any]:
    """A MarketSnapshot row as the snapshot group emits it, with the funding fields."""
    r: dict[str, Any] = dict.fromkeys(_SNAPSHOT_FIELDS)
    r.update(source=source, symbol=symbol, window_s=window, snapshot_time=t, mark_last=mark,
             oi_last=oi, funding_last=None if fa is None or fi is None else fa * fi / 8760,
             basis_last=0.0001, n_mark=60, n_oi=6, mark_age_ms=0, oi_age_ms=0, stale=stale,
             funding_interval_h=fi, funding_annualized=fa)
    r.update(extra)
    return r


def run(engine: AssetEngine, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for r in rows:
        engine.add(r)
    return engine.take_output()


def close(engine: AssetEngine, source: str, symbol: str, t: int) -> list[dict[str, Any]]:
    """Move the asset's watermark past t with a row at t + L + 1 ms."""
    assert engine.add(row(source, symbol, t + L + 1)) == ACCEPTED
    return engine.take_output()


# -- one asset across four venues -----------------------------------------------------------

PEPE_ROWS = [
    # 1,000,000 lots of 1000 PEPE at 0.01 = 10,000 USDT
    row("binance_usdm", "1000PEPEUSDT", T0, mark=0.01, oi=1e6, fa=0.1095),
    row("bybit_linear", "1000PEPEUSDT", T0, mark=0.0101, oi=2e6, fa=0.2190),
    # 1,000,000,000 PEPE at 0.00001 = 10,000 USDT: the same notional as Binance's lots
    row("okx_swap", "PEPE-USDT-SWAP", T0, mark=0.00001, oi=1e9, fa=-0.0547),
    row("hyperliquid", "kPEPE", T0, mark=0.0099, oi=5e5, fa=0.0876, fi=1.0),
]


def test_pepe_on_four_venues_is_one_record_with_notional_weights() -> None:
    engine = AssetEngine()
    assert [engine.add(r) for r in PEPE_ROWS] == [ACCEPTED] * 4
    assert engine.take_output() == []  # not before the watermark passes T0
    [rec] = close(engine, "okx_swap", "PEPE-USDT-SWAP", T0)
    assert rec["asset"] == "PEPE" and rec["window_s"] == 60 and rec["snapshot_time"] == T0
    assert [(m["source"], m["symbol"], m["scale"], m["quote"]) for m in rec["markets"]] == [
        ("binance_usdm", "1000PEPEUSDT", 1000, "USDT"), ("bybit_linear", "1000PEPEUSDT", 1000, "USDT"),
        ("hyperliquid", "kPEPE", 1000, "USDC"), ("okx_swap", "PEPE-USDT-SWAP", 1, "USDT")]
    notionals = [m["oi_notional"] for m in rec["markets"]]
    assert notionals == [1e6 * 0.01, 2e6 * 0.0101, 5e5 * 0.0099, 1e9 * 0.00001]
    assert notionals[0] == pytest.approx(10_000) and notionals[3] == pytest.approx(10_000)
    assert rec["venues_present"] == ["binance_usdm", "bybit_linear", "hyperliquid", "okx_swap"]
    assert rec["venues_stale"] == [] and rec["n_markets"] == rec["n_fresh"] == 4
    assert rec["funding_ann_min"] == -0.0547 and rec["funding_ann_min_market"] == "okx_swap:PEPE-USDT-SWAP"
    assert rec["funding_ann_max"] == 0.2190 and rec["funding_ann_max_market"] == "bybit_linear:1000PEPEUSDT"
    assert rec["funding_ann_spread"] == 0.2190 - -0.0547
    ns = [Fraction(n) for n in notionals]
    fas = [Fraction(x) for x in (0.1095, 0.2190, 0.0876, -0.0547)]
    assert rec["oi_notional_total"] == float(sum(ns))
    assert rec["funding_ann_oi_weighted"] == float(sum(a * n for a, n in zip(fas, ns, strict=True)) / sum(ns))
    assert rec["funding_ann_oi_weighted"] == pytest.approx(
        (0.1095 * 10_000 + 0.2190 * 20_200 + 0.0876 * 4_950 - 0.0547 * 10_000) / 45_150)


def test_the_record_carries_each_markets_values_as_the_snapshot_had_them() -> None:
    engine = AssetEngine()
    engine.add(row("binance_usdm", "1000PEPEUSDT", T0, mark=0.01, oi=1e6, fa=0.1095, basis_last=-0.002))
    [rec] = close(engine, "binance_usdm", "1000PEPEUSDT", T0)
    assert rec["markets"] == [{
        "source": "binance_usdm", "symbol": "1000PEPEUSDT", "quote": "USDT", "scale": 1000,
        "funding_annualized": 0.1095, "funding_interval_h": 8.0, "funding_last": 0.1095 * 8.0 / 8760,
        "basis_last": -0.002, "mark_last": 0.01, "oi_last": 1e6, "oi_notional": 1e6 * 0.01, "stale": False}]
    # one market: a min and a max, but no spread
    assert rec["funding_ann_min"] == rec["funding_ann_max"] == 0.1095
    assert rec["funding_ann_spread"] is None


# -- which markets count --------------------------------------------------------------------


def test_stale_markets_are_listed_but_not_aggregated() -> None:
    engine = AssetEngine()
    rows = [
        row("binance_usdm", "BTCUSDT", T0, mark=100_000.0, oi=10.0, fa=0.10, stale=True),
        row("binance_usdm", "BTCUSDC", T0, mark=100_010.0, oi=2.0, fa=0.12),
        row("bybit_linear", "BTCUSDT", T0, mark=99_990.0, oi=5.0, fa=0.50, stale=True),
        row("okx_swap", "BTC-USDT-SWAP", T0, mark=100_000.0, oi=3.0, fa=0.08),
    ]
    run(engine, rows)
    [rec] = close(engine, "okx_swap", "BTC-USDT-SWAP", T0)
    assert rec["n_markets"] == 4 and rec["n_fresh"] == 2
    assert [m["stale"] for m in rec["markets"]] == [False, True, True, False]  # BTCUSDC sorts first
    # Binance still has a fresh market; Bybit has none
    assert rec["venues_present"] == ["binance_usdm", "bybit_linear", "okx_swap"]
    assert rec["venues_stale"] == ["bybit_linear"]
    assert rec["funding_ann_max"] == 0.12 and rec["funding_ann_max_market"] == "binance_usdm:BTCUSDC"
    assert rec["funding_ann_min"] == 0.08 and rec["funding_ann_min_market"] == "okx_swap:BTC-USDT-SWAP"
    assert rec["oi_notional_total"] == 200_020.0 + 300_000.0
    assert rec["funding_ann_oi_weighted"] == float(
        (Fraction(0.12) * 200_020 + Fraction(0.08) * 300_000) / 500_020)


def test_all_stale_leaves_every_aggregate_null() -> None:
    engine = AssetEngine()
    run(engine, [row("binance_usdm", "BTCUSDT", T0, fa=0.1, stale=True),
                 row("hyperliquid", "BTC", T0, fa=0.2, stale=True)])
    [rec] = close(engine, "hyperliquid", "BTC", T0)
    assert rec["n_markets"] == 2 and rec["n_fresh"] == 0
    assert rec["venues_stale"] == rec["venues_present"] == ["binance_usdm", "hyperliquid"]
    for k in ("funding_ann_min", "funding_ann_min_market", "funding_ann_max", "funding_ann_max_market",
              "funding_ann_spread", "funding_ann_oi_weighted", "oi_notional_total"):
        assert rec[k] is None, k


def test_markets_without_funding_or_open_interest() -> None:
    engine = AssetEngine()
    run(engine, [
        row("binance_usdm", "ETHUSDT", T0, mark=3000.0, oi=None, fa=0.1),  # no notional
        row("bybit_linear", "ETHUSDT", T0, mark=3001.0, oi=4.0, fa=None),  # no funding
        row("okx_swap", "ETH-USDT-SWAP", T0, mark=None, oi=7.0, fa=0.3),  # no mark, no notional
    ])
    [rec] = close(engine, "okx_swap", "ETH-USDT-SWAP", T0)
    assert [m["oi_notional"] for m in rec["markets"]] == [None, 12_004.0, None]
    assert rec["funding_ann_min"] == 0.1 and rec["funding_ann_max"] == 0.3
    assert rec["funding_ann_spread"] == 0.3 - 0.1
    assert rec["oi_notional_total"] == 12_004.0
    assert rec["funding_ann_oi_weighted"] is None  # no market has both


def test_zero_open_interest_counts_in_the_total_but_weighs_nothing() -> None:
    engine = AssetEngine()
    run(engine, [row("binance_usdm", "SOLUSDT", T0, mark=150.0, oi=0.0, fa=0.4),
                 row("bybit_linear", "SOLUSDT", T0, mark=150.0, oi=0.0, fa=0.2)])
    [rec] = close(engine, "bybit_linear", "SOLUSDT", T0)
    assert rec["oi_notional_total"] == 0.0
    assert rec["funding_ann_oi_weighted"] is None
    run(engine, [row("binance_usdm", "SOLUSDT", T0 + STEP, mark=150.0, oi=0.0, fa=0.4),
                 row("bybit_linear", "SOLUSDT", T0 + STEP, mark=150.0, oi=2.0, fa=0.2)])
    [rec] = close(engine, "bybit_linear", "SOLUSDT", T0 + STEP)
    assert rec["funding_ann_oi_weighted"] == 0.2


def test_the_sums_are_exact_not_running_float_sums() -> None:
    engine = AssetEngine()
    # in (source, symbol) order a running sum adds 1.0 to 1e16 twice and loses both
    run(engine, [row("binance_usdm", "BTCUSDT", T0, mark=1e16, oi=1.0, fa=1.0),
                 row("bybit_linear", "BTCUSDT", T0, mark=1.0, oi=1.0, fa=3.0),
                 row("okx_swap", "BTC-USDT-SWAP", T0, mark=1.0, oi=1.0, fa=3.0)])
    [rec] = close(engine, "okx_swap", "BTC-USDT-SWAP", T0)
    assert rec["oi_notional_total"] == 1e16 + 2.0 != (1e16 + 1.0) + 1.0
    assert rec["funding_ann_oi_weighted"] == float(Fraction(10**16 + 6, 10**16 + 2))


def test_rows_written_before_the_funding_fields_still_count() -> None:
    engine = AssetEngine()
    old = row("binance_usdm", "BTCUSDT", T0, mark=100.0, oi=3.0)
    del old["funding_interval_h"], old["funding_annualized"]
    assert engine.add(old) == ACCEPTED
    [rec] = close(engine, "binance_usdm", "BTCUSDT", T0)
    assert rec["markets"][0]["funding_annualized"] is None and rec["markets"][0]["funding_interval_h"] is None
    assert rec["oi_notional_total"] == 300.0 and rec["funding_ann_min"] is None


def test_ties_go_to_the_first_market_in_source_symbol_order() -> None:
    engine = AssetEngine()
    run(engine, [row("okx_swap", "BTC-USDT-SWAP", T0, fa=0.1), row("bybit_linear", "BTCUSDT", T0, fa=0.1),
                 row("hyperliquid", "BTC", T0, fa=0.1)])
    [rec] = close(engine, "okx_swap", "BTC-USDT-SWAP", T0)
    assert rec["funding_ann_min_market"] == rec["funding_ann_max_market"] == "bybit_linear:BTCUSDT"
    assert rec["funding_ann_spread"] == 0.0


# -- emission, late, duplicate ------------------------------------------------------------


def test_emitted_once_the_asset_watermark_is_strictly_past_t() -> None:
    engine = AssetEngine()
    engine.add(row("binance_usdm", "1000PEPEUSDT", T0))
    engine.add(row("okx_swap", "PEPE-USDT-SWAP", T0 + L))  # M - L == T0: not yet
    assert engine.take_output() == []
    assert engine.add(row("hyperliquid", "kPEPE", T0)) == ACCEPTED  # still in time
    engine.add(row("bybit_linear", "1000PEPEUSDT", T0 + L + 1))
    [rec] = engine.take_output()
    assert rec["snapshot_time"] == T0
    assert [m["source"] for m in rec["markets"]] == ["binance_usdm", "hyperliquid"]
    assert engine.last_emitted("PEPE") == T0


def test_each_asset_has_its_own_watermark() -> None:
    engine = AssetEngine()
    run(engine, [row("binance_usdm", "BTCUSDT", T0), row("binance_usdm", "ETHUSDT", T0)])
    assert engine.add(row("binance_usdm", "BTCUSDT", T0 + 4 * STEP)) == ACCEPTED
    assert [r["asset"] for r in engine.take_output()] == ["BTC"]
    assert engine.add(row("okx_swap", "ETH-USDT-SWAP", T0)) == ACCEPTED  # ETH's t is still open
    assert engine.add(row("okx_swap", "BTC-USDT-SWAP", T0)) == LATE


def test_late_rows_are_counted_and_not_applied() -> None:
    engine = AssetEngine()
    engine.add(row("binance_usdm", "BTCUSDT", T0))
    close(engine, "binance_usdm", "BTCUSDT", T0)
    assert engine.add(row("bybit_linear", "BTCUSDT", T0)) == LATE
    assert engine.add(row("bybit_linear", "BTCUSDT", T0 - STEP)) == LATE
    # a repeat of an emitted row is late too: its time's rows are forgotten
    assert engine.add(row("binance_usdm", "BTCUSDT", T0)) == LATE
    assert engine.counters.late == 3 and engine.take_output() == []


def test_a_row_past_the_lateness_after_the_last_emitted_time_is_applied_alone() -> None:
    engine = AssetEngine()
    engine.add(row("binance_usdm", "BTCUSDT", T0))
    engine.add(row("binance_usdm", "BTCUSDT", T0 + 10 * STEP))
    [first] = engine.take_output()
    assert first["snapshot_time"] == T0
    # T0 + STEP had no row when T0 was emitted; it is after the last emitted time
    assert engine.add(row("okx_swap", "BTC-USDT-SWAP", T0 + STEP)) == ACCEPTED
    [straggler] = engine.take_output()
    assert straggler["snapshot_time"] == T0 + STEP and straggler["n_markets"] == 1
    assert engine.add(row("bybit_linear", "BTCUSDT", T0 + STEP)) == LATE


def test_duplicates_are_counted_and_the_first_wins() -> None:
    engine = AssetEngine()
    assert engine.add(row("binance_usdm", "BTCUSDT", T0, fa=0.1)) == ACCEPTED
    assert engine.add(row("binance_usdm", "BTCUSDT", T0, fa=0.9)) == DUPLICATE
    assert engine.add(row("binance_usdm", "BTCUSDT", T0, fa=0.1, window=300)) == ACCEPTED  # another window
    out = close(engine, "binance_usdm", "BTCUSDT", T0)
    assert [(r["window_s"], r["funding_ann_max"]) for r in out] == [(300, 0.1), (60, 0.1)]
    assert engine.counters.as_dict() == {"accepted": 3, "duplicate": 1, "late": 0, "ignored": 0,
                                         "invalid": 0, "snapshots": 2}


def test_windows_are_separate_records_largest_first_per_time() -> None:
    engine = AssetEngine()
    for t in (T0, T0 + STEP):
        for w in (60, 3600, 300):
            engine.add(row("binance_usdm", "BTCUSDT", t, window=w))
    engine.add(row("binance_usdm", "BTCUSDT", T0 + STEP + L + 1))
    assert [(r["snapshot_time"], r["window_s"]) for r in engine.take_output()] == [
        (T0, 3600), (T0, 300), (T0, 60), (T0 + STEP, 3600), (T0 + STEP, 300), (T0 + STEP, 60)]


@pytest.mark.parametrize("r", [
    row("binance_usdm", "BTCUSDT_261225", T0),  # a dated future
    row("deribit", "BTC-PERPETUAL", T0),  # a venue without a key
    row("binance_usdm", "BTCEUR", T0),  # no quote the grammar knows
])
def test_rows_without_an_asset_are_ignored(r: dict[str, Any]) -> None:
    engine = AssetEngine()
    assert engine.add(r) == IGNORED
    assert engine.assets == [] and engine.counters.ignored == 1


def test_the_config_decides_whether_inverse_contracts_count() -> None:
    inverse = row("okx_swap", "BTC-USD-SWAP", T0, mark=100_000.0, oi=2.0, fa=0.1)
    with_usd = AssetEngine()
    assert with_usd.add(inverse) == ACCEPTED
    [rec] = close(with_usd, "okx_swap", "BTC-USDT-SWAP", T0)
    assert rec["markets"][0]["quote"] == "USD" and rec["oi_notional_total"] == 200_000.0
    linear_only = AssetEngine(AssetEngineConfig(quotes=frozenset({"USDT", "USDC"})))
    assert linear_only.add(inverse) == IGNORED


@pytest.mark.parametrize("change", [
    {"source": None}, {"symbol": 7}, {"window_s": 0}, {"window_s": True}, {"window_s": "60"},
    {"snapshot_time": 1.5e12}, {"snapshot_time": None}, {"stale": None}, {"stale": 1},
    {"mark_last": float("nan")}, {"oi_last": float("inf")}, {"funding_annualized": "0.1"},
    {"funding_interval_h": float("-inf")}, {"basis_last": True}, {"mark_last": 10**400},
])
def test_rows_that_cannot_be_read_are_invalid(change: dict[str, Any]) -> None:
    engine = AssetEngine()
    assert engine.add({**row("binance_usdm", "BTCUSDT", T0), **change}) == INVALID
    assert engine.assets == [] and engine.counters.invalid == 1
    no_stale = {k: v for k, v in row("binance_usdm", "BTCUSDT", T0).items() if k != "stale"}
    assert engine.add(no_stale) == INVALID


def test_integer_values_read_as_doubles() -> None:
    engine = AssetEngine()
    assert engine.add(row("binance_usdm", "BTCUSDT", T0, mark=100, oi=3, fa=0)) == ACCEPTED
    [rec] = close(engine, "binance_usdm", "BTCUSDT", T0)
    m = rec["markets"][0]
    got = (m["mark_last"], m["oi_last"], m["oi_notional"], m["funding_annualized"])
    assert got == (100.0, 3.0, 300.0, 0.0)
    assert type(m["mark_last"]) is float and type(rec["funding_ann_min"]) is float


def test_an_overflowing_or_negative_notional_is_null() -> None:
    engine = AssetEngine()
    run(engine, [row("binance_usdm", "BTCUSDT", T0, mark=1e300, oi=1e300, fa=0.1),
                 row("bybit_linear", "BTCUSDT", T0, mark=10.0, oi=-1.0, fa=0.2),
                 row("okx_swap", "BTC-USDT-SWAP", T0, mark=1.7e308, oi=1.0, fa=0.3),
                 row("hyperliquid", "BTC", T0, mark=1.7e308, oi=1.0, fa=0.4)])
    [rec] = close(engine, "hyperliquid", "BTC", T0)
    assert [m["oi_notional"] for m in rec["markets"]] == [None, None, 1.7e308, 1.7e308]
    assert rec["oi_notional_total"] == float("inf")  # the exact sum exceeds every double
    assert rec["funding_ann_oi_weighted"] == float((Fraction(0.3) + Fraction(0.4)) / 2)


def test_a_resolver_with_venue_metadata() -> None:
    """The wiring passes the venues' base coins: a quote the grammar alone does not know maps."""
    bases = {("binance_usdm", "BTCBUSD"): "BTC"}

    def key_of(source: str, symbol: str) -> AssetKey | None:
        return asset_of(source, symbol, bases.get((source, symbol)))

    config = AssetEngineConfig(quotes=frozenset({"BUSD", "USDT"}))
    assert AssetEngine(config).add(row("binance_usdm", "BTCBUSD", T0)) == IGNORED
    engine = AssetEngine(config, key_of=key_of)
    assert engine.add(row("binance_usdm", "BTCBUSD", T0)) == ACCEPTED
    assert engine.add(row("binance_usdm", "BTCUSDT", T0)) == ACCEPTED
    [rec] = close(engine, "binance_usdm", "BTCUSDT", T0)
    assert [(m["symbol"], m["quote"]) for m in rec["markets"]] == [("BTCBUSD", "BUSD"), ("BTCUSDT", "USDT")]


def test_config_errors() -> None:
    for bad in ({"lateness_ms": -1}, {"quotes": frozenset()}):
        with pytest.raises(AssetConfigError):
            AssetEngineConfig(**bad)
    assert issubclass(AssetConfigError, ConfigError)


# -- memory, checkpoint, restore ------------------------------------------------------------

VENUE_ROWS = (("binance_usdm", "1000PEPEUSDT"), ("bybit_linear", "1000PEPEUSDT"),
              ("okx_swap", "PEPE-USDT-SWAP"), ("hyperliquid", "kPEPE"))


def stream(n_times: int) -> list[dict[str, Any]]:
    return [row(s, sym, T0 + i * STEP, window=w, mark=0.01 + i * 1e-6, oi=1e6 + i, fa=0.1 + (i % 7) / 100)
            for i in range(n_times) for s, sym in VENUE_ROWS for w in (60, 300)]


def test_memory_is_bounded_by_the_lateness() -> None:
    engine = AssetEngine()
    bound = len(VENUE_ROWS) * 2 * (L // STEP + 1)
    for r in stream(2_000):
        engine.add(r)
        assert engine.pending_rows() <= bound
    assert len(engine.take_output()) == 2 * (2_000 - L // STEP - 1)


def test_restore_from_a_checkpoint_continues_the_uninterrupted_run() -> None:
    rows = stream(40)
    whole = run(AssetEngine(), rows)
    first = AssetEngine()
    emitted = run(first, rows[:150])
    cp = first.checkpoint()
    assert cp == {"PEPE": emitted[-1]["snapshot_time"]}
    second = AssetEngine()
    for asset, last_t in cp.items():
        second.restore(asset, last_t)
    # the pending rows are re-read (they are stored rows), then the stream goes on
    again = run(second, rows)
    assert emitted + again == whole
    assert second.counters.late == sum(r["snapshot_time"] <= cp["PEPE"] for r in rows)
    with pytest.raises(AssetEngineError):
        second.restore("PEPE", T0)


# -- arrival order -----------------------------------------------------------------------------

MARKETS = {
    "PEPE": VENUE_ROWS,
    "BTC": (("binance_usdm", "BTCUSDT"), ("binance_usdm", "BTCUSDC"), ("bybit_linear", "BTCPERP"),
            ("okx_swap", "BTC-USDT-SWAP"), ("okx_swap", "BTC-USD-SWAP"), ("hyperliquid", "BTC")),
    "SHIB": (("binance_usdm", "1000SHIBUSDT"), ("bybit_linear", "SHIB1000USDT"), ("hyperliquid", "kSHIB")),
}
_maybe = st.none() | st.floats(-5.0, 5.0)


@st.composite
def market_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Rows of a few assets' markets over a few snapshot times, each (market, window, t) at most once."""
    rnd = random.Random(draw(st.integers(0, 2**32)))
    n_times = draw(st.integers(1, 12))
    rows = []
    for markets in MARKETS.values():
        start = T0 + STEP * draw(st.integers(0, 4))
        for i in range(n_times):
            for source, symbol in markets:
                for w in (60, 300):
                    if rnd.random() < 0.3:
                        continue
                    rows.append(row(
                        source, symbol, start + i * STEP, window=w,
                        mark=rnd.choice([None, rnd.uniform(1e-8, 1e5), rnd.uniform(0, 2), 0.01]),
                        oi=rnd.choice([None, 0.0, rnd.uniform(0, 1e12), rnd.uniform(0, 1e6), 1e6]),
                        fa=draw(_maybe), fi=rnd.choice([None, 1.0, 4.0, 8.0]), stale=rnd.random() < 0.25))
    return rows


def arrival(rows: list[dict[str, Any]], seed: int, n_dup: int) -> list[dict[str, Any]]:
    """The rows (plus n_dup repeats) in an order where each arrives at most L behind the
    largest time before it: sorted by time + a delay in [0, L]."""
    rnd = random.Random(seed)
    sent = rows + [dict(rnd.choice(rows)) for _ in range(n_dup if rows else 0)]
    keyed = [(r["snapshot_time"] + rnd.randint(0, L), rnd.random(), r) for r in sent]
    return [r for *_, r in sorted(keyed, key=lambda x: (x[0], x[1]))]


def _notional(m: dict[str, Any]) -> Fraction | None:
    if m["oi_last"] is None or m["mark_last"] is None:
        return None
    p = m["oi_last"] * m["mark_last"] + 0.0
    return Fraction(p) if p >= 0 and p != float("inf") else None


def reference(asset: str, window: int, t: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The AssetSnapshot by its definitions (docs/snapshots.md), with fractions."""
    markets = []
    for r in sorted(rows, key=lambda r: (r["source"], r["symbol"])):
        key = asset_of(r["source"], r["symbol"])
        assert key is not None
        n = _notional(r)
        markets.append({"source": r["source"], "symbol": r["symbol"], "quote": key.quote,
                        "scale": key.scale, **{k: r[k] for k in (
                            "funding_annualized", "funding_interval_h", "funding_last", "basis_last",
                            "mark_last", "oi_last")},
                        "oi_notional": None if n is None else float(n), "stale": r["stale"]})
    fresh = [m for m in markets if not m["stale"]]
    funded = [m for m in fresh if m["funding_annualized"] is not None]
    lo = min(funded, key=lambda m: m["funding_annualized"], default=None)
    hi = max(funded, key=lambda m: m["funding_annualized"], default=None)
    with_n = [(m, Fraction(m["oi_notional"])) for m in fresh if m["oi_notional"] is not None]
    both = [(Fraction(m["funding_annualized"]), n) for m, n in with_n if m["funding_annualized"] is not None]
    weight = sum(n for _, n in both)
    present = sorted({m["source"] for m in markets})
    return {
        "asset": asset, "window_s": window, "snapshot_time": t, "markets": markets,
        "venues_present": present,
        "venues_stale": [s for s in present if s not in {m["source"] for m in fresh}],
        "n_markets": len(markets), "n_fresh": len(fresh),
        "funding_ann_min": lo and lo["funding_annualized"],
        "funding_ann_min_market": lo and f"{lo['source']}:{lo['symbol']}",
        "funding_ann_max": hi and hi["funding_annualized"],
        "funding_ann_max_market": hi and f"{hi['source']}:{hi['symbol']}",
        "funding_ann_spread": hi["funding_annualized"] - lo["funding_annualized"]
        if lo and hi and len(funded) >= 2 else None,
        "funding_ann_oi_weighted": float(sum(a * n for a, n in both) / weight) if weight else None,
        "oi_notional_total": float(sum(n for _, n in with_n)) if with_n else None,
    }


def expected(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every (asset, window, t) with t < M_asset - L, in emission order per asset."""
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    top: dict[str, int] = {}
    for r in rows:
        key = asset_of(r["source"], r["symbol"])
        assert key is not None
        groups.setdefault((key.asset, r["window_s"], r["snapshot_time"]), []).append(r)
        top[key.asset] = max(top.get(key.asset, r["snapshot_time"]), r["snapshot_time"])
    due = sorted((k for k in groups if k[2] < top[k[0]] - L), key=lambda k: (k[0], k[2], -k[1]))
    return [reference(a, w, t, groups[(a, w, t)]) for a, w, t in due]


def per_asset(out: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records grouped by asset, each asset's in emission order (assets interleave by arrival)."""
    return sorted(out, key=lambda r: r["asset"])  # stable: keeps each asset's order


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=market_rows(), seeds=st.tuples(st.integers(0, 2**32), st.integers(0, 2**32)),
       n_dup=st.integers(0, 20))
def test_any_arrival_order_within_the_lateness_gives_the_same_records(
    rows: list[dict[str, Any]], seeds: tuple[int, int], n_dup: int,
) -> None:
    want = expected(rows)
    outs = []
    for seed in seeds:
        engine = AssetEngine()
        got = per_asset(run(engine, arrival(rows, seed, n_dup)))
        assert engine.counters.late == 0 and engine.counters.duplicate == (n_dup if rows else 0)
        assert engine.counters.accepted == len(rows)
        assert got == want
        outs.append(repr(got))
    assert outs[0] == outs[1]  # bit for bit: -0.0 and 0.0 would differ here


# -- the record and the table ----------------------------------------------------------------


def test_records_encode_with_the_schema_and_decode_equal() -> None:
    codec = AvroCodec(load_schema("asset_snapshot"))
    engine = AssetEngine()
    run(engine, [*PEPE_ROWS, row("binance_usdm", "1000PEPEUSDT", T0, window=300, mark=None, oi=None,
                                 stale=True)])
    out = close(engine, "okx_swap", "PEPE-USDT-SWAP", T0)
    assert [r["window_s"] for r in out] == [300, 60]
    for rec in out:
        assert codec.decode(codec.encode(rec)) == rec


def test_columns_follow_the_schema() -> None:
    fields = load_schema("asset_snapshot").definition["fields"]
    assert [c.name for c in ASSET_SNAPSHOT_COLUMNS] == [f["name"] for f in fields]
    by = {c.name: c.clickhouse for c in ASSET_SNAPSHOT_COLUMNS}
    assert by["snapshot_time"] == "DateTime64(3, 'UTC')"
    assert by["venues_present"] == "Array(LowCardinality(String))"
    assert by["funding_ann_min_market"] == "LowCardinality(Nullable(String))"
    assert by["markets"].startswith(
        "Array(Tuple(source LowCardinality(String), symbol LowCardinality(String), "
        "quote LowCardinality(String), scale Int64, ")
    assert by["markets"].endswith("oi_notional Nullable(Float64), stale Bool))")
    assert " n_fresh UInt32," in ddl_columns(ASSET_SNAPSHOT_COLUMNS)
    market_fields = [f["name"] for f in fields[3]["type"]["items"]["fields"]]
    engine = AssetEngine()
    engine.add(row("binance_usdm", "BTCUSDT", T0))
    [rec] = close(engine, "binance_usdm", "BTCUSDT", T0)
    assert list(rec) == [f["name"] for f in fields]
    assert list(rec["markets"][0]) == market_fields
