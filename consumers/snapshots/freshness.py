"""Which markets' context cannot be trusted right now.

Read from ClickHouse, so it answers for the whole group (every member,
every partition): the latest snapshot per market (source, symbol: its
``stale`` flag and age), and the latest applied mark and open-interest
points compared with the wall clock. A market whose feed stopped entirely
produces no new snapshot, which is why the wall-clock comparison is needed
on top of the ``stale`` flag.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from perpstream.consumers.exceptions import StoreUnavailableError
from perpstream.consumers.snapshots.engine import EngineConfig
from perpstream.consumers.snapshots.store import POINTS_TABLE, SNAPSHOTS_TABLE


@dataclass(frozen=True)
class Freshness:
    symbol: str
    last_snapshot_ms: int | None
    snapshot_stale: bool | None
    last_mark_ms: int | None
    last_oi_ms: int | None
    now_ms: int
    reasons: tuple[str, ...]
    #: the venue of the market ("" where the caller judges a symbol without one)
    source: str = ""

    @property
    def stale(self) -> bool:
        return bool(self.reasons)

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source, "symbol": self.symbol, "stale": self.stale, "reasons": list(self.reasons),
            "last_snapshot_ms": self.last_snapshot_ms,
            "mark_age_ms": None if self.last_mark_ms is None else self.now_ms - self.last_mark_ms,
            "oi_age_ms": None if self.last_oi_ms is None else self.now_ms - self.last_oi_ms,
        }


def assess(
    symbol: str, *, now_ms: int, config: EngineConfig, last_snapshot_ms: int | None,
    snapshot_stale: bool | None, last_mark_ms: int | None, last_oi_ms: int | None, source: str = "",
) -> Freshness:
    reasons: list[str] = []
    if snapshot_stale:
        reasons.append("latest snapshot stale")
    if last_mark_ms is None:
        reasons.append("no mark price")
    elif now_ms - last_mark_ms > config.mark_stale_ms:
        reasons.append(f"mark price {now_ms - last_mark_ms} ms old")
    if last_oi_ms is None:
        reasons.append("no open interest")
    elif now_ms - last_oi_ms > config.oi_stale_ms:
        reasons.append(f"open interest {now_ms - last_oi_ms} ms old")
    return Freshness(symbol, last_snapshot_ms, snapshot_stale, last_mark_ms, last_oi_ms, now_ms,
                     tuple(reasons), source)


def freshness(
    client: Any, database: str, config: EngineConfig, *, now_ms: int, group_id: str | None = None,
) -> list[Freshness]:
    """Every market (source, symbol) known to the snapshot tables, with why it is stale (if it is)."""
    window = min(config.windows_s)
    group_filter = "WHERE group_id = %(g)s" if group_id else ""
    try:
        snaps = client.query(
            "SELECT source, symbol, toUnixTimestamp64Milli(max(snapshot_time)), argMax(stale, snapshot_time) "
            f"FROM {database}.{SNAPSHOTS_TABLE} FINAL WHERE window_s = %(w)s GROUP BY source, symbol",
            parameters={"w": window},
        ).result_rows
        pts = client.query(
            "SELECT source, symbol,"
            " maxIf(toUnixTimestamp64Milli(event_time), metric = 'mark_price'),"
            " maxIf(toUnixTimestamp64Milli(event_time), metric = 'open_interest'),"
            " countIf(metric = 'mark_price'), countIf(metric = 'open_interest')"
            f" FROM {database}.{POINTS_TABLE} {group_filter} GROUP BY source, symbol",
            parameters={"g": group_id} if group_id else None,
        ).result_rows
    except Exception as exc:
        raise StoreUnavailableError(f"freshness query on {database} failed: {exc}") from exc
    by_snap = {(str(src), str(s)): (int(t), bool(st)) for src, s, t, st in snaps}
    by_pts = {
        (str(src), str(s)): (int(m) if nm else None, int(o) if no else None)
        for src, s, m, o, nm, no in pts
    }
    out = []
    for src, sym in sorted(set(by_snap) | set(by_pts), key=lambda k: (k[1], k[0])):
        t, st = by_snap.get((src, sym), (None, None))
        m, o = by_pts.get((src, sym), (None, None))
        out.append(assess(sym, source=src, now_ms=now_ms, config=config, last_snapshot_ms=t,
                          snapshot_stale=st, last_mark_ms=m, last_oi_ms=o))
    return out
