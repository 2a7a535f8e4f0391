"""A straightforward implementation of docs/snapshots.md "Features",
brute force over the full point list, written independently of the engine
(exact rational arithmetic via Fraction / statistics, no incremental state).
"""

from __future__ import annotations

import math
import statistics
from fractions import Fraction
from typing import Any

Point = tuple[str, str, str, float, int]  # source, symbol, metric, value, event_time

USED = ("mark_price", "index_price", "funding_rate", "open_interest", "funding_interval_hours")
#: The metrics whose values must be > 0 to be applied.
POSITIVE = ("mark_price", "index_price", "funding_interval_hours")


def _mean(xs: list[float]) -> float | None:
    if not xs:
        return None
    return float(sum((Fraction(x) for x in xs), Fraction(0)) / len(xs))


def _annualized(rate: float, hours: float) -> float:
    """rate x 8760 / hours as an exact rational, rounded once to a double; a zero rate keeps
    its sign and a quotient past the double range is an infinity of the rate's sign."""
    if rate == 0:
        return rate
    try:
        return float(Fraction(rate) * 8760 / Fraction(hours))
    except OverflowError:
        return math.inf if rate > 0 else -math.inf


def reference_snapshots(
    points: list[Point],
    *,
    interval_ms: int,
    windows_s: tuple[int, ...],
    lateness_ms: int,
    mark_stale_ms: int = 5000,
    oi_stale_ms: float = 30000,
) -> list[dict[str, Any]]:
    """Snapshots for a stream in which no point is late: every distinct
    identity is applied; per market (source, symbol), times run from the first
    multiple of the interval >= the market's first event time while
    t < max event time - lateness."""
    by_market: dict[tuple[str, str], dict[str, dict[int, float]]] = {}
    for source, symbol, metric, value, et in points:
        if metric not in USED:
            continue
        if metric in POSITIVE and not value > 0:
            continue
        by_market.setdefault((source, symbol), {m: {} for m in USED})[metric].setdefault(et, value)
    out: list[dict[str, Any]] = []
    for (source, symbol), series in by_market.items():
        all_et = [et for s in series.values() for et in s]
        if not all_et:
            continue
        first = -((-min(all_et)) // interval_ms) * interval_ms
        limit = max(all_et) - lateness_ms
        marks = sorted(series["mark_price"].items())
        index = series["index_price"]
        funding = sorted(series["funding_rate"].items())
        oi = sorted(series["open_interest"].items())
        intervals = sorted(series["funding_interval_hours"].items())
        basis = [(et, (m - index[et]) / index[et]) for et, m in marks if et in index]
        t = first
        while t < limit:
            def last(seq: list[tuple[int, float]], bound: int) -> tuple[int, float] | None:
                cands = [p for p in seq if p[0] <= bound]
                return cands[-1] if cands else None

            ml = last(marks, t)
            il = last(sorted(index.items()), t)
            fl = last(funding, t)
            ol = last(oi, t)
            bl = last(basis, t)
            hl = last(intervals, t)
            mark_age = None if ml is None else t - ml[0]
            oi_age = None if ol is None else t - ol[0]
            stale = (
                mark_age is None or oi_age is None or mark_age > mark_stale_ms or oi_age > oi_stale_ms
            )
            for w in windows_s:
                start = t - w * 1000
                inside = [v for et, v in marks if start < et <= t]
                rets = [math.log(inside[i] / inside[i - 1]) for i in range(1, len(inside))]
                m0 = last(marks, start)
                o0 = last(oi, start)
                out.append({
                    "source": source,
                    "symbol": symbol,
                    "window_s": w,
                    "snapshot_time": t,
                    "mark_last": None if ml is None else ml[1],
                    "index_last": None if il is None else il[1],
                    "funding_last": None if fl is None else fl[1],
                    "oi_last": None if ol is None else ol[1],
                    "mark_return": (
                        math.log(ml[1] / m0[1]) if ml is not None and m0 is not None else None
                    ),
                    "mark_volatility": statistics.stdev(rets) if len(inside) >= 3 else None,
                    "basis_last": None if bl is None else bl[1],
                    "basis_mean": _mean([b for et, b in basis if start < et <= t]),
                    "funding_mean": _mean([v for et, v in funding if start < et <= t]),
                    "oi_change_pct": (
                        (ol[1] - o0[1]) / o0[1]
                        if ol is not None and o0 is not None and o0[1] != 0
                        else None
                    ),
                    "n_mark": len(inside),
                    "n_oi": sum(1 for et, _ in oi if start < et <= t),
                    "mark_age_ms": mark_age,
                    "oi_age_ms": oi_age,
                    "stale": stale,
                    "funding_interval_h": None if hl is None else hl[1],
                    "funding_annualized": (
                        _annualized(fl[1], hl[1]) if fl is not None and hl is not None else None
                    ),
                })
            t += interval_ms
    return out


def keyed(snaps: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Snapshots as sortable tuples, with floats compared bit for bit."""
    rows = []
    for s in snaps:
        row = []
        for k in sorted(s):
            v = s[k]
            row.append((k, v.hex() if isinstance(v, float) else v))
        rows.append((s["source"], s["symbol"], s["snapshot_time"], s["window_s"], tuple(row)))
    return sorted(rows)
