"""Snapshots warm at minute one: history published before the live points (docs/snapshots.md).

The history of the hour before the live start (1 m mark and index closes at
closeTime, 5 m open interest, settled funding, as ``perpstream backfill``
publishes them) and then the live points (1 s markPrice, 10 s open interest):
the engine's snapshots equal those of one uninterrupted run over the same
points in event-time order, and the first live snapshot of the 1 h window
already has its return and open-interest change. Live points first would make
the whole history late.
"""

from __future__ import annotations

import math
from typing import Any

from perpstream.consumers.snapshots.engine import SnapshotEngine

T0 = 1_790_000_000_000 - 1_790_000_000_000 % 3_600_000  # the live start, on the hour
SYM = "BTCUSDT"


def _mark(t: int) -> float:
    return round(100 * math.exp(math.sin(t / 7_777_777) / 50), 8)


def history() -> list[tuple[str, float, int]]:
    out: list[tuple[str, float, int]] = []
    # the largest window and two minutes more: m0 / o0 (the latest point <= t - 1 h) included
    for m in range(T0 - 3_720_000, T0, 60_000):
        c = m + 59_999
        out += [("mark_price", _mark(c), c), ("index_price", _mark(c) * 0.9999, c)]
        if m % 300_000 == 0:
            out.append(("open_interest", 1000 + (m // 300_000) % 7, m))
    out.append(("funding_rate_settled", 0.0001, T0 - 1_800_000))  # ignored by the engine
    return sorted(out, key=lambda p: p[2])


def live(seconds: int = 120) -> list[tuple[str, float, int]]:
    out: list[tuple[str, float, int]] = []
    for k in range(seconds):
        e = T0 + 1000 * k + 3
        out += [("mark_price", _mark(e), e), ("index_price", _mark(e) * 0.9998, e),
                ("funding_rate", 0.0001, e)]
        if k % 10 == 0:
            out.append(("open_interest", 1005.5, e + 500))
    return out


def run(points: list[tuple[str, float, int]]) -> list[dict[str, Any]]:
    engine = SnapshotEngine()
    for metric, value, et in points:
        engine.add("binance_usdm", SYM, metric, value, et)
    return engine.take_output()


def test_history_first_equals_an_uninterrupted_run_and_the_hour_is_warm() -> None:
    warm = run(history() + live())
    uninterrupted = run(sorted(history() + live(), key=lambda p: p[2]))
    assert warm == uninterrupted
    first_live = next(s for s in warm if s["window_s"] == 3600 and s["snapshot_time"] >= T0 + 5_000)
    assert first_live["mark_return"] is not None and first_live["oi_change_pct"] is not None
    assert first_live["n_mark"] == 60 + 5 and first_live["n_oi"] == 11 + 1
    assert not first_live["stale"]


def test_live_points_first_make_the_history_late() -> None:
    engine = SnapshotEngine()
    for metric, value, et in live() + history():
        engine.add("binance_usdm", SYM, metric, value, et)
    assert engine.counters.late >= len(history()) - 1
    first_live = next(s for s in engine.take_output() if s["window_s"] == 3600)
    assert first_live["mark_return"] is None
