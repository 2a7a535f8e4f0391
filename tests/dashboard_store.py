"""The store the live view's tests read: the product's tables in a database of the test's
own, on the session's ClickHouse (the embedded engine, in process).

``metric_points`` comes from the sink's migrations, ``asset_snapshots`` from the asset
group's (the columns of ``schemas/asset_snapshot.avsc``, a ReplacingMergeTree ordered by
(asset, window_s, snapshot_time)), filled with the records the asset engine makes of
MarketSnapshot rows, written as the asset group writes them: the numbers on the board are
the product's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from perpstream.consumers.assets.engine import (
    ACCEPTED,
    AssetEngine,
    AssetEngineConfig,
)
from perpstream.consumers.assets.keys import asset_of
from perpstream.consumers.assets.store import SNAPSHOT_COLUMNS, migrate_assets, record_row
from perpstream.consumers.sink.handler import rows_to_arrow
from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.dashboard import ASSETS_TABLE, query_fn

NOW_MS = 1_796_169_600_000  # 2026-12-02T00:00:00Z
BINANCE, BYBIT, OKX, HYPERLIQUID = "binance_usdm", "bybit_linear", "okx_swap", "hyperliquid"



class Store:
    """``sql -> rows`` over the test's database, recording each query. Points added with
    :meth:`add` are inserted (as the sink inserts them) before the next query runs."""

    def __init__(self, client: Any, database: str) -> None:
        self.client, self.database = client, database
        migrate_sink(client, database)
        self.read = query_fn(client)
        self.pending: list[tuple[Any, ...]] = []
        self.sql: list[str] = []

    def add(self, symbol: str, metric: str, at_ms: int, value: float, source: str = BINANCE) -> None:
        self.pending.append((source, symbol, metric, at_ms, value, at_ms + 5))

    def flush(self) -> None:
        if self.pending:
            self.client.insert_arrow("metric_points", rows_to_arrow(self.pending), database=self.database)
            self.pending = []

    def __call__(self, sql: str) -> Sequence[Sequence[Any]]:
        self.sql.append(sql)
        self.flush()
        return self.read(sql)

    def asked_assets(self) -> int:
        return sum(ASSETS_TABLE in s for s in self.sql)

    def create_assets(self) -> None:
        """The asset group's tables, as it creates them when it starts."""
        migrate_assets(self.client, self.database)

    def add_assets(self, records: Sequence[dict[str, Any]]) -> None:
        """AssetSnapshot records (as the engine emits them) as the asset group writes them."""
        self.client.insert(ASSETS_TABLE, [record_row(r) for r in records],
                           column_names=list(SNAPSHOT_COLUMNS), database=self.database)


def market(store: Store, symbol: str, mark: float, index: float, funding: float, oi: float,
           *, last_ms: int = NOW_MS - 1000, seconds: int = 60, oi_ms: int | None = None,
           source: str = BINANCE) -> None:
    """A market's points: a mark and index every second up to ``last_ms``, the mark rising."""
    for k in range(seconds):
        t = last_ms - (seconds - 1 - k) * 1000
        store.add(symbol, "mark_price", t, mark * (1 - 0.0001 * (seconds - 1 - k)), source)
        store.add(symbol, "index_price", t, index, source)
        store.add(symbol, "funding_rate", t, funding, source)
    store.add(symbol, "open_interest", oi_ms if oi_ms is not None else last_ms - 2000, oi, source)


def snapshot_row(source: str, symbol: str, t_ms: int, *, funding_ann: float | None, mark: float,
                 oi: float, stale: bool = False, window_s: int = 60) -> dict[str, Any]:
    """A MarketSnapshot row as the asset engine reads it (docs/snapshots.md)."""
    return {"source": source, "symbol": symbol, "window_s": window_s, "snapshot_time": t_ms, "stale": stale,
            "funding_annualized": funding_ann, "funding_interval_h": 8.0,
            "funding_last": None if funding_ann is None else funding_ann / 1095, "basis_last": 0.0002,
            "mark_last": mark, "oi_last": oi}


def asset_records(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The AssetSnapshot records the asset engine makes of ``rows``: every time of every
    asset, released by a later row of the same asset past the engine's lateness."""
    config = AssetEngineConfig()
    engine = AssetEngine(config)
    for r in rows:
        assert engine.add(r) == ACCEPTED, r
    newest: dict[str, dict[str, Any]] = {}
    for r in rows:
        key = asset_of(r["source"], r["symbol"])
        assert key is not None, r
        if key.asset not in newest or r["snapshot_time"] > newest[key.asset]["snapshot_time"]:
            newest[key.asset] = r
    for r in newest.values():
        later = dict(r, snapshot_time=r["snapshot_time"] + config.lateness_ms + 5_000)
        assert engine.add(later) == ACCEPTED
    return engine.take_output()
