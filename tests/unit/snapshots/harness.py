"""Helpers shared by the snapshot integration tests: partitioning a recorded
stream like the producer does (key = symbol), reading ``market_snapshots``."""

from __future__ import annotations

import zlib
from typing import Any

from perpstream.consumers.snapshots.engine import EngineConfig, SnapshotEngine
from perpstream.consumers.snapshots.store import SNAPSHOT_COLUMNS


def partition_of(symbol: str, partitions: int) -> int:
    return zlib.crc32(symbol.encode()) % partitions


def split(records: list[dict[str, Any]], partitions: int) -> dict[int, list[dict[str, Any]]]:
    out: dict[int, list[dict[str, Any]]] = {p: [] for p in range(partitions)}
    for r in records:
        out[partition_of(r["symbol"], partitions)].append(r)
    return out


def engine_snapshots(
    records: list[dict[str, Any]], config: EngineConfig | None = None
) -> list[tuple[Any, ...]]:
    """What an uninterrupted single engine emits for the records, as table rows."""
    e = SnapshotEngine(config)
    for r in records:
        e.add(r["source"], r["symbol"], r["metric"], r["value"], r["event_time"])
    return sorted(tuple(s[c] for c in SNAPSHOT_COLUMNS) for s in e.take_output())


def table_rows(client: Any, database: str) -> list[tuple[Any, ...]]:
    cols = ", ".join(
        "toUnixTimestamp64Milli(snapshot_time)" if c == "snapshot_time" else c for c in SNAPSHOT_COLUMNS
    )
    rows = client.query(
        f"SELECT {cols} FROM {database}.market_snapshots FINAL ORDER BY symbol, window_s, snapshot_time"
    ).result_rows
    return sorted(tuple(bool(v) if c == "stale" else v for c, v in zip(SNAPSHOT_COLUMNS, r, strict=True))
                  for r in rows)


def raw_count(client: Any, database: str) -> int:
    return int(client.query(f"SELECT count() FROM {database}.market_snapshots").result_rows[0][0])
