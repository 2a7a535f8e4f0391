"""The engine against a brute-force reference, arrival-order independence,
late/duplicate counting, stale detection, bounded memory, and one symbol on two
venues as two markets."""

from __future__ import annotations

import math
import random
import statistics
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from perpstream.consumers.snapshots.engine import (
    ACCEPTED,
    DUPLICATE,
    IGNORED,
    INVALID,
    LATE,
    EngineConfig,
    SnapshotEngine,
    annualize,
    sample_stdev_exact,
)
from perpstream.consumers.snapshots.exceptions import SnapshotConfigError
from perpstream.schemas.models import Metric
from tests.unit.snapshots.reference import Point, keyed, reference_snapshots

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SRC = "binance_usdm"
#: the venues a generated symbol is listed on (one or both): the same symbol on two venues
SOURCES = ("binance_usdm", "bybit_linear")
#: funding intervals venues use (hours), and two that no venue does but the arithmetic must take
INTERVALS = (8.0, 4.0, 2.0, 1.0, 3.0, 0.5)


def run(engine: SnapshotEngine, points: list[Point]) -> list[dict[str, Any]]:
    for p in points:
        engine.add(*p)
    return engine.take_output()


@st.composite
def streams(draw: st.DrawFn, lateness: int = 2000) -> tuple[list[Point], list[Point], int]:
    """(clean points in event-time order, arrival order with duplicates, n duplicates)."""
    rnd = random.Random(draw(st.integers(0, 2**32)))
    n_symbols = draw(st.integers(1, 3))
    points: list[Point] = []
    markets = [(src, f"S{s}USDT") for s in range(n_symbols) for src in SOURCES[:draw(st.integers(1, 2))]]
    for src, symbol in markets:
        et = T0 + draw(st.integers(0, 20_000))
        mark = draw(st.floats(0.01, 50_000))
        oi = draw(st.floats(0, 1e9))
        n_events = draw(st.integers(1, 160))
        for _ in range(n_events):
            r = rnd.random()
            et += rnd.choice([1, 2, 1000, 1000, 1000, 999, 3000]) if r < 0.93 else rnd.randint(5_000, 200_000)
            mark *= math.exp(rnd.gauss(0, 1e-3))
            index = mark * (1 + rnd.gauss(0, 1e-4))
            if rnd.random() < 0.9:
                points.append((src, symbol, "mark_price", mark, et))
            if rnd.random() < 0.85:
                points.append((src, symbol, "index_price", index, et))
            if rnd.random() < 0.8:
                points.append((src, symbol, "funding_rate", rnd.gauss(1e-4, 1e-4), et))
            if rnd.random() < 0.3:
                points.append((src, symbol, "estimated_settle_price", mark, et))
            if rnd.random() < 0.15:
                oi = max(0.0, oi + rnd.gauss(0, 1e5))
                points.append((src, symbol, "open_interest", oi, et))
            if rnd.random() < 0.04:  # the venue changes the symbol's funding interval now and then
                points.append((src, symbol, "funding_interval_hours", rnd.choice(INTERVALS), et))
    # Within-lateness disorder: arrival key = et + jitter in [0, lateness], so each
    # point is at most `lateness` behind the largest event time before it.
    keyed_points = [(p[4] + rnd.randint(0, lateness), i, p) for i, p in enumerate(points)]
    n_dup = 0
    for p in list(points):
        if p[2] != "estimated_settle_price" and rnd.random() < 0.1:
            keyed_points.append((p[4] + rnd.randint(0, lateness), len(keyed_points), p))
            n_dup += 1
    arrival = [p for _, _, p in sorted(keyed_points)]
    return points, arrival, n_dup


CFG_SMALL = EngineConfig(windows_s=(10, 30, 60))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_engine_equals_reference(data: tuple[list[Point], list[Point], int]) -> None:
    points, arrival, n_dup = data
    cfg = CFG_SMALL
    expected = reference_snapshots(
        points, interval_ms=cfg.interval_ms, windows_s=cfg.windows_s, lateness_ms=cfg.allowed_lateness_ms
    )
    engine = SnapshotEngine(cfg)
    got = run(engine, arrival)
    assert keyed(got) == keyed(expected)
    assert engine.counters.duplicate == n_dup
    assert engine.counters.late == 0
    # The event-time ordered stream gives bit-identical snapshots, in the same order per symbol.
    ordered = run(SnapshotEngine(cfg), sorted(points, key=lambda p: p[4]))
    assert keyed(ordered) == keyed(got)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams())
def test_default_windows_equal_reference(data: tuple[list[Point], list[Point], int]) -> None:
    points, arrival, _ = data
    cfg = EngineConfig()
    expected = reference_snapshots(
        points, interval_ms=cfg.interval_ms, windows_s=cfg.windows_s, lateness_ms=cfg.allowed_lateness_ms
    )
    assert keyed(run(SnapshotEngine(cfg), arrival)) == keyed(expected)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.randoms(use_true_random=False))
def test_late_points_are_counted_and_change_nothing(
    data: tuple[list[Point], list[Point], int], rnd: random.Random
) -> None:
    _, arrival, _ = data
    clean = run(SnapshotEngine(CFG_SMALL), arrival)
    engine = SnapshotEngine(CFG_SMALL)
    injected = 0
    for p in arrival:
        engine.add(*p)
        last = engine.last_emitted(p[0], p[1])
        if last is not None and rnd.random() < 0.2:
            metric = rnd.choice(["mark_price", "index_price", "funding_rate", "open_interest"])
            et = last - rnd.randint(0, 90_000)
            before = engine.counters.late + engine.counters.duplicate
            outcome = engine.add(p[0], p[1], metric, rnd.uniform(1, 100), et)
            assert outcome in (LATE, DUPLICATE)
            assert engine.counters.late + engine.counters.duplicate == before + 1
            injected += 1
    got = engine.take_output()
    assert keyed(got) == keyed(clean)


def test_no_snapshot_before_watermark_passes_strictly() -> None:
    e = SnapshotEngine(EngineConfig(allowed_lateness_ms=2000))
    for et in (T0 + 1, T0 + 4000, T0 + 7000):
        e.add(SRC, "BTCUSDT", "mark_price", 100.0, et)
    # first t = T0 + 5000 (first multiple >= T0 + 1); watermark 5000 is not > 5000.
    assert e.take_output() == []
    assert e.add(SRC, "BTCUSDT", "mark_price", 101.0, T0 + 7001) == ACCEPTED
    assert {s["snapshot_time"] for s in e.take_output()} == {T0 + 5000}
    # a point within lateness of 7001 (>= 5001) still counts for t = 10000
    assert e.add(SRC, "BTCUSDT", "mark_price", 102.0, T0 + 5001) == ACCEPTED
    assert e.add(SRC, "BTCUSDT", "mark_price", 102.0, T0 + 5000) == LATE
    assert e.add(SRC, "BTCUSDT", "mark_price", 100.0, T0 + 4000) == DUPLICATE
    assert e.add(SRC, "BTCUSDT", "next_funding_time", 1.0, T0 + 9000) == IGNORED
    assert e.add(SRC, "BTCUSDT", "mark_price", 0.0, T0 + 9000) == INVALID
    assert e.counters.as_dict() | {"snapshots": 0} == {
        "accepted": 5, "duplicate": 1, "late": 1, "ignored": 1, "invalid": 1, "snapshots": 0,
    }


def test_stale_when_open_interest_polling_stops() -> None:
    cfg = EngineConfig(windows_s=(60,))
    e = SnapshotEngine(cfg)
    oi_stop = T0 + 120_000
    for s in range(0, 300):
        et = T0 + s * 1000
        e.add(SRC, "ETHUSDT", "mark_price", 3000.0 + s, et)
        if et <= oi_stop and s % 10 == 0:
            e.add(SRC, "ETHUSDT", "open_interest", 1e6, et)
    snaps = sorted(e.take_output(), key=lambda s: s["snapshot_time"])
    threshold = cfg.oi_stale_ms
    first_stale = next(s for s in snaps if s["snapshot_time"] > T0 + 5000 and s["stale"])
    assert first_stale["oi_age_ms"] > threshold
    assert first_stale["snapshot_time"] <= oi_stop + threshold + cfg.interval_ms
    for s in snaps:
        if T0 + 5000 <= s["snapshot_time"] < first_stale["snapshot_time"]:
            assert not s["stale"], s
        if s["snapshot_time"] >= first_stale["snapshot_time"]:
            assert s["stale"]


def test_stale_when_marks_missing_or_old() -> None:
    e = SnapshotEngine(EngineConfig(windows_s=(60,)))
    e.add(SRC, "X", "open_interest", 5.0, T0)
    e.add(SRC, "X", "open_interest", 5.0, T0 + 10_000)
    snaps = e.take_output()
    assert [s["stale"] for s in snaps] == [True, True]  # no mark ever: mark_age null
    assert all(s["mark_age_ms"] is None for s in snaps)


def test_memory_bounded_by_largest_window() -> None:
    cfg = EngineConfig(windows_s=(60, 300))
    e = SnapshotEngine(cfg)
    peak = 0
    for s in range(4 * 3600):
        et = T0 + s * 1000
        e.add(SRC, "BTCUSDT", "mark_price", 100.0 + (s % 7), et)
        e.add(SRC, "BTCUSDT", "index_price", 100.0, et)
        e.add(SRC, "BTCUSDT", "funding_rate", 1e-4, et)
        if s % 10 == 0:
            e.add(SRC, "BTCUSDT", "open_interest", 1e6, et)
        e.take_output()
        peak = max(peak, e.point_count())
    per_metric = 300 + 5 + 2 + 34  # window + interval + lateness + eviction slack, at 1 point/s
    assert peak <= 3 * per_metric + per_metric // 10 + 40
    assert e.counters.snapshots > 0


def test_exact_stdev_matches_statistics_and_survives_cancellation() -> None:
    rnd = random.Random(7)
    xs = [1e-3 + rnd.gauss(0, 1e-12) for _ in range(500)]  # tiny spread around a large mean
    n1 = [math.ldexp(x, 128) for x in xs]
    s1 = sum(int(v) for v in n1)
    s2 = sum(int(v) ** 2 for v in n1)
    assert all(v == int(v) for v in n1)
    assert sample_stdev_exact(len(xs), s1, s2) == statistics.stdev(xs)


def test_bad_config_is_refused() -> None:
    with pytest.raises(SnapshotConfigError):
        EngineConfig(interval_ms=0)
    with pytest.raises(SnapshotConfigError):
        EngineConfig(windows_s=())


def test_one_symbol_on_two_venues_is_two_markets() -> None:
    """BTCUSDT of Binance and of Bybit in one engine (one partition: the key is the symbol):
    each market's snapshots are those of an engine that saw it alone; the same identity but
    the source is not a duplicate, and a silent venue's watermark does not move with the other's."""
    cfg = EngineConfig(windows_s=(10,), allowed_lateness_ms=0)
    both = SnapshotEngine(cfg)
    alone = {src: SnapshotEngine(cfg) for src in SOURCES}
    for s in range(30):
        et = T0 + s * 1000
        for src, price in (("binance_usdm", 100.0 + s), ("bybit_linear", 100.5 + s / 2)):
            if src == "bybit_linear" and s >= 12:
                continue  # Bybit goes silent after 11 s
            for e in (both, alone[src]):
                assert e.add(src, "BTCUSDT", "mark_price", price, et) == ACCEPTED
    got = both.take_output()
    for src in SOURCES:
        mine = [snap for snap in got if snap["source"] == src]
        assert keyed(mine) == keyed(alone[src].take_output())
        assert mine and all(snap["symbol"] == "BTCUSDT" for snap in mine)
    assert both.last_emitted("binance_usdm", "BTCUSDT") == T0 + 25_000
    assert both.last_emitted("bybit_linear", "BTCUSDT") == T0 + 10_000
    assert both.counters.duplicate == 0
    assert sorted(both.markets) == [("binance_usdm", "BTCUSDT"), ("bybit_linear", "BTCUSDT")]
    assert both.point_count(("bybit_linear", "BTCUSDT")) == 12


def _recovery_input(applied: list[Point], market: tuple[str, str], last_t: int | None,
                    max_w: int) -> dict[str, Any]:
    """What SnapshotStore.load_partition returns for one market, computed in Python."""
    pts = sorted((p[2], p[4], p[3]) for p in applied if (p[0], p[1]) == market)
    if last_t is None:
        return {"points": pts, "carry_bound": None, "carry_basis": None}
    bound = last_t - max_w
    keep = [p for p in pts if p[1] > bound]
    for metric in ("mark_price", "index_price", "funding_rate", "open_interest", "funding_interval_hours"):
        before = [p for p in pts if p[0] == metric and p[1] <= bound]
        if before:
            keep.append(max(before, key=lambda p: p[1]))
    index = {et: v for m, et, v in pts if m == "index_price"}
    pairs = [(et, v) for m, et, v in pts if m == "mark_price" and et <= bound and et in index]
    carry = None
    if pairs:
        et, v = max(pairs)
        carry = (v - index[et]) / index[et]
    return {"points": keep, "carry_bound": bound, "carry_basis": carry}


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(streams(), st.floats(0.05, 0.95))
def test_restore_from_applied_points_resumes_identically(
    data: tuple[list[Point], list[Point], int], cut: float
) -> None:
    """A restart at any point (state rebuilt from the applied points and the last
    emitted time, as the store does) emits exactly what an uninterrupted run does."""
    _, arrival, _ = data
    k = int(len(arrival) * cut)
    whole = run(SnapshotEngine(CFG_SMALL), arrival)
    first = SnapshotEngine(CFG_SMALL)
    applied = [p for p in arrival[:k] if first.add(*p) == ACCEPTED]
    before = first.take_output()
    resumed = SnapshotEngine(CFG_SMALL)
    for src, sym in {(p[0], p[1]) for p in applied}:
        last = first.last_emitted(src, sym)
        rec = _recovery_input(applied, (src, sym), last, CFG_SMALL.max_window_ms)
        resumed.restore_symbol(sym, src, rec["points"], last_t=last, carry_bound=rec["carry_bound"],
                               carry_basis=rec["carry_basis"])
    after = run(resumed, arrival[k:])
    assert keyed(before + after) == keyed(whole)


def test_take_output_hands_out_each_snapshot_once() -> None:
    """What a caller takes is its own: later points neither repeat nor change it."""
    e = SnapshotEngine(EngineConfig(windows_s=(60,), allowed_lateness_ms=0))
    for s in range(0, 11):
        e.add(SRC, "BTCUSDT", Metric.MARK_PRICE, 100.0 + s, T0 + s * 1000)
    first = e.take_output()
    assert [s["snapshot_time"] for s in first] == [T0, T0 + 5000]
    assert e.take_output() == []
    e.add(SRC, "BTCUSDT", Metric.MARK_PRICE, 120.0, T0 + 15_001)
    second = e.take_output()
    assert [s["snapshot_time"] for s in second] == [T0 + 10_000, T0 + 15_000]
    assert [s["snapshot_time"] for s in first] == [T0, T0 + 5000]


# -- the funding interval ---------------------------------------------------------------------

def _funding_market(e: SnapshotEngine, seconds: int, intervals: dict[int, float],
                    src: str = SRC) -> list[Point]:
    """A mark and a funding rate every second, and ``intervals`` (second -> hours)."""
    pts: list[Point] = []
    for s in range(seconds):
        et = T0 + s * 1000
        pts += [(src, "ETHUSDT", "mark_price", 3000.0 + s, et),
                (src, "ETHUSDT", "funding_rate", 1e-4 * (1 + s), et)]
        if s in intervals:
            pts.append((src, "ETHUSDT", "funding_interval_hours", intervals[s], et + 345))
    for p in pts:
        assert e.add(*p) == ACCEPTED
    return pts


def test_an_interval_change_mid_window_takes_the_interval_in_force_at_t() -> None:
    """Binance moves ETHUSDT from 8 h to 4 h funding at 12.345 s: snapshots before that time
    annualise with 8 h, from it on with 4 h, whatever the window (the interval is a last value,
    not a window aggregate); the snapshot at 10 s, whose window holds no interval point, still
    has the 8 h set at 0.345 s."""
    e = SnapshotEngine(EngineConfig(windows_s=(10, 60), allowed_lateness_ms=0))
    _funding_market(e, 31, {0: 8.0, 12: 4.0})
    snaps = e.take_output()
    assert {s["snapshot_time"] for s in snaps} == {T0 + k * 5000 for k in range(1, 6)} | {T0}
    for s in snaps:
        t = s["snapshot_time"]
        expected_h = None if t < T0 + 345 else 8.0 if t < T0 + 12_345 else 4.0
        assert s["funding_interval_h"] == expected_h, t
        if expected_h is None:
            assert s["funding_annualized"] is None
        else:
            exact = Fraction(s["funding_last"]) * 8760 / Fraction(expected_h)
            assert s["funding_annualized"] == float(exact)
    at_15 = [s for s in snaps if s["snapshot_time"] == T0 + 15_000]
    assert [s["funding_interval_h"] for s in at_15] == [4.0, 4.0]
    assert at_15[0]["funding_annualized"] == float(Fraction(1e-4 * 16) * 2190)  # never 1e-4 x 16 x 3 x 365


def test_without_an_interval_or_a_funding_rate_the_new_fields_are_null() -> None:
    e = SnapshotEngine(EngineConfig(windows_s=(10,), allowed_lateness_ms=0))
    for s in range(11):
        e.add(SRC, "A", "mark_price", 1.0 + s, T0 + s * 1000)
        e.add(SRC, "B", "mark_price", 1.0 + s, T0 + s * 1000)
        e.add(SRC, "B", "funding_interval_hours", 1.0, T0 + s * 1000)
    snaps = e.take_output()
    assert {(s["symbol"], s["funding_interval_h"], s["funding_annualized"]) for s in snaps} == {
        ("A", None, None), ("B", 1.0, None)}


@pytest.mark.parametrize("hours", [8.0, 4.0, 1.0])
def test_the_annualising_factor_is_8760_over_the_interval(hours: float) -> None:
    rate = 1.25e-4
    e = SnapshotEngine(EngineConfig(windows_s=(10,), allowed_lateness_ms=0))
    for s in range(11):
        e.add(SRC, "X", "funding_rate", rate, T0 + s * 1000)
        e.add(SRC, "X", "funding_interval_hours", hours, T0 + s * 1000)
    (snap, *_) = e.take_output()
    assert snap["funding_annualized"] == float(Fraction(rate) * Fraction(8760 / hours))
    assert snap["funding_annualized"] == pytest.approx(rate * {8.0: 1095, 4.0: 2190, 1.0: 8760}[hours])


def test_annualize_rounds_once_and_keeps_the_edges() -> None:
    rate = 0.1 + 0.2  # an inexact double: rate * 8760 rounds, the quotient must not round twice
    assert annualize(rate, 3.0) == float(Fraction(rate) * 8760 / 3)
    assert math.copysign(1.0, annualize(-0.0, 8.0)) == -1.0
    assert annualize(1e300, 5e-324) == math.inf and annualize(-1e300, 5e-324) == -math.inf
    assert annualize(5e-324, 1e308) == 0.0


def test_a_non_positive_interval_is_invalid() -> None:
    e = SnapshotEngine()
    assert e.add(SRC, "X", "funding_interval_hours", 0.0, T0) == INVALID
    assert e.add(SRC, "X", "funding_interval_hours", -8.0, T0) == INVALID
    assert e.point_count() == 0


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.randoms(use_true_random=False))
def test_interval_points_in_any_order_within_the_lateness_give_the_same_snapshots(rnd: random.Random) -> None:
    cfg = EngineConfig(windows_s=(10, 30), allowed_lateness_ms=2000)
    ordered = SnapshotEngine(cfg)
    pts = _funding_market(ordered, 60, {0: 8.0, 9: 4.0, 10: 1.0, 33: 8.0})
    expected = ordered.take_output()
    shuffled = sorted(pts, key=lambda p: p[4] + rnd.randint(0, cfg.allowed_lateness_ms))
    e = SnapshotEngine(cfg)
    assert all(e.add(*p) == ACCEPTED for p in shuffled)
    assert keyed(e.take_output()) == keyed(expected)


def test_restore_brings_back_an_interval_set_long_before_the_window() -> None:
    """The interval was set once at the start; after a restart past the largest window the
    restored state still annualises with it (the store keeps the latest point per metric at or
    before the bound, the interval included)."""
    cfg = EngineConfig(windows_s=(10,), allowed_lateness_ms=0)
    whole = SnapshotEngine(cfg)
    pts = _funding_market(whole, 120, {0: 4.0})
    expected = whole.take_output()
    k = len(pts) * 2 // 3
    first = SnapshotEngine(cfg)
    applied = [p for p in pts[:k] if first.add(*p) == ACCEPTED]
    before = first.take_output()
    last = first.last_emitted(SRC, "ETHUSDT")
    assert last is not None and last - cfg.max_window_ms > T0 + 345  # the interval is behind the bound
    rec = _recovery_input(applied, (SRC, "ETHUSDT"), last, cfg.max_window_ms)
    resumed = SnapshotEngine(cfg)
    resumed.restore_symbol("ETHUSDT", SRC, rec["points"], last_t=last, carry_bound=rec["carry_bound"],
                           carry_basis=rec["carry_basis"])
    after = run(resumed, pts[k:])
    assert keyed(before + after) == keyed(expected)
    assert {s["funding_interval_h"] for s in after} == {4.0}
