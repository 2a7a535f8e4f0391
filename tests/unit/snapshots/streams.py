"""A deterministic recorded market for the snapshot tests and the benchmark:
markPrice events at 1 s, open interest every 10 s (stopping early for one
symbol), a funding interval set at the start and changed two thirds in,
disorder within the allowed lateness, duplicates and late points;
each symbol listed on one venue or on several (one market per venue)."""

from __future__ import annotations

import math
import random
from typing import Any

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SOURCE = "binance_usdm"


def recorded_market(
    symbols: int = 12,
    seconds: int = 600,
    *,
    seed: int = 1,
    lateness_ms: int = 2000,
    dup_rate: float = 0.03,
    late_rate: float = 0.01,
    oi_every_s: int = 10,
    oi_stop_symbol: int | None = 0,
    sources: tuple[str, ...] = (SOURCE,),
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(arrival-order records with duplicates and late points, the clean records).

    Every symbol is listed on each of ``sources``, a market with prices of its own;
    ``oi_stop_symbol``'s open interest stops half way on the first source only.
    """
    rnd = random.Random(seed)
    clean: list[dict[str, Any]] = []
    for k, src in ((k, src) for k in range(symbols) for src in sources):
        sym = f"SYM{k:03d}USDT"
        mark = 10.0 + 100 * rnd.random()
        oi = 1e6 * (1 + rnd.random())
        offset = rnd.randint(0, 999)
        changes = {0: 8.0, (seconds * 2) // 3 + k: 4.0 if src == sources[0] else 1.0}
        for s in range(seconds):
            et = T0 + s * 1000 + offset
            mark *= math.exp(rnd.gauss(0, 5e-4))
            index = mark * (1 + rnd.gauss(0, 2e-4))
            for metric, value in (
                ("mark_price", mark), ("index_price", index), ("estimated_settle_price", index),
                ("funding_rate", 1e-4 + rnd.gauss(0, 2e-5)), ("next_funding_time", float(T0 + 8 * 3600_000)),
            ):
                clean.append(_rec(sym, metric, value, et, src))
            stopped = oi_stop_symbol == k and src == sources[0] and s > seconds // 2
            if s % oi_every_s == 0 and not stopped:
                oi += rnd.gauss(0, 1e3)
                clean.append(_rec(sym, "open_interest", oi, et + 37, src))
            if s in changes:  # the funding interval: set at the start, changed once later
                clean.append(_rec(sym, "funding_interval_hours", changes[s], et + 211, src))
    keyed = [(r["event_time"] + rnd.randint(0, lateness_ms), i, r) for i, r in enumerate(clean)]
    n = len(keyed)
    for i in range(n):
        r = keyed[i][2]
        if rnd.random() < dup_rate:
            keyed.append((r["event_time"] + rnd.randint(0, lateness_ms), len(keyed), dict(r)))
        # Late: at least 10 s behind a point already seen, once snapshots are being emitted.
        if rnd.random() < late_rate and r["event_time"] >= T0 + 30_000:
            late = dict(r)
            late["event_time"] = r["event_time"] - 10_000 - rnd.randint(0, 5000)
            late["value"] = r["value"] * 1.5
            keyed.append((r["event_time"] + lateness_ms, len(keyed), late))
    arrival = [r for _, _, r in sorted(keyed, key=lambda x: (x[0], x[1]))]
    return arrival, clean


def _rec(symbol: str, metric: str, value: float, et: int, source: str = SOURCE) -> dict[str, Any]:
    return {"source": source, "symbol": symbol, "metric": metric, "value": value,
            "event_time": et, "ingest_time": et + 150}


def as_row(record: dict[str, Any]) -> tuple[Any, ...]:
    """A recorded point as the row the consume loop hands to handlers (ROW_FIELDS order)."""
    from perpstream.consumers.runtime.decoding import ROW_FIELDS

    return tuple(record.get(f, 0) if f == "ingest_time" else record[f] for f in ROW_FIELDS)
