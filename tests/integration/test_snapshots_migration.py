"""The snapshot group's tables move to per-(source, symbol) keys (migrations 4-6) and
market_snapshots gains the funding-interval columns (7), on the real ClickHouse engine: rows
written under the old keys survive the rebuild, the old checkpoints take the source of their
symbol's points, the state rebuilt from them is what it was, and a rebuild that stopped half
way (a crash before the migration was recorded) finishes correctly when it runs again."""

from __future__ import annotations

from typing import Any

import pytest

from perpstream.consumers.clickhouse import apply_migrations
from perpstream.consumers.runtime.batch import Batch, PartitionBatch
from perpstream.consumers.snapshots.app import SnapshotHandler
from perpstream.consumers.snapshots.engine import EngineConfig
from perpstream.consumers.snapshots.store import (
    SNAPSHOT_COLUMNS,
    SNAPSHOT_MIGRATIONS,
    SnapshotStore,
    migrate_snapshots,
    snapshots_to_arrow,
)
from perpstream.schemas.columns import MARKET_SNAPSHOT_COLUMNS, columns
from tests.unit.snapshots.harness import engine_snapshots, table_rows
from tests.unit.snapshots.streams import T0, as_row, recorded_market

pytestmark = pytest.mark.integration

OLD = tuple(m for m in SNAPSHOT_MIGRATIONS if m.version <= 3)
KEYS = {
    "market_snapshots": "source, symbol, window_s, snapshot_time",
    "snapshot_points": "group_id, topic, partition, source, symbol, metric, event_time",
    "snapshot_checkpoints": "group_id, topic, partition, source, symbol",
}
CFG = EngineConfig(windows_s=(10, 60))


def _sorting_keys(client: Any, db: str) -> dict[str, str]:
    rows = client.query("SELECT name, sorting_key FROM system.tables WHERE database = %(d)s",
                        parameters={"d": db}).result_rows
    return {str(n): str(k) for n, k in rows if n in KEYS}


#: The columns each table had before the rebuild (checkpoints: without the write time, which
#: differs between two databases filled at different times).
COLUMNS = {
    "market_snapshots": [c.name for c in columns("history/market_snapshot.v1")],
    "snapshot_points": ["group_id", "topic", "partition", "source", "symbol", "metric", "event_time", "value",
                        "written_at"],
    "snapshot_checkpoints": ["group_id", "topic", "partition", "symbol", "last_snapshot_ms"],
}


def _dump(client: Any, db: str, table: str, extra: tuple[str, ...] = ()) -> list[tuple[Any, ...]]:
    cols = ", ".join([*COLUMNS[table], *extra])
    return sorted(client.query(f"SELECT {cols} FROM {db}.{table}").result_rows, key=repr)


def _before_v3(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What the previous release applied: it read funding_interval_hours as unknown (DLQ)."""
    return [r for r in records if r["metric"] != "funding_interval_hours"]


def _old_database(client: Any, db: str, records: list[dict[str, Any]]) -> SnapshotHandler:
    """A database at migration 3, filled the way the previous release filled it: one source per
    symbol, the MarketSnapshot v1 columns, checkpoints without a source, and one checkpoint
    whose points are gone."""
    client.command(f"DROP DATABASE IF EXISTS {db}")
    assert apply_migrations(client, db, "snapshots", OLD) == [1, 2, 3]
    handler = SnapshotHandler(_OldStore(client, db, "g"), CFG, None)
    handler.on_assigned([("m", 0)])
    rows = [as_row(r) for r in _before_v3(records)]
    handler.handle(Batch({("m", 0): PartitionBatch("m", 0, 0, len(rows) - 1, rows, list(range(len(rows))))},
                         []))
    client.command(f"INSERT INTO {db}.snapshot_checkpoints (group_id, topic, partition, symbol, "
                   f"last_snapshot_ms) VALUES ('g', 'm', 0, 'GONEUSDT', {T0})")
    return handler


class _OldStore(SnapshotStore):
    """Writes snapshots and checkpoints as the previous release did (MarketSnapshot v1 columns;
    checkpoints per (group, topic, partition, symbol)); its partitions start empty (a new database)."""

    def load_partition(self, topic: str, partition: int, max_window_ms: int) -> list[Any]:
        return []

    def write_snapshots(self, snaps: Any) -> None:
        v1 = snapshots_to_arrow(snaps).select(COLUMNS["market_snapshots"])
        self._client.insert_arrow("market_snapshots", v1, database=self._db)

    def write_checkpoints(self, last: Any) -> None:
        rows = [["g", t, p, sym, ms] for (t, p), markets in last.items() for (_, sym), ms in markets.items()]
        self._client.insert("snapshot_checkpoints", rows, database=self._db,
                            column_names=["group_id", "topic", "partition", "symbol", "last_snapshot_ms"])


def test_rows_written_under_the_old_keys_survive_the_rebuild(clickhouse: Any, ch_database: str) -> None:
    records, _ = recorded_market(symbols=3, seconds=90, seed=8, dup_rate=0, late_rate=0)
    _old_database(clickhouse, ch_database, records)
    before = {t: _dump(clickhouse, ch_database, t) for t in ("market_snapshots", "snapshot_points")}
    old_ckpt = _dump(clickhouse, ch_database, "snapshot_checkpoints")
    assert _sorting_keys(clickhouse, ch_database)["market_snapshots"] == "symbol, window_s, snapshot_time"

    assert migrate_snapshots(clickhouse, ch_database) == [4, 5, 6, 7]

    assert _sorting_keys(clickhouse, ch_database) == KEYS
    for table, rows in before.items():
        assert _dump(clickhouse, ch_database, table) == rows, table  # written_at (the TTL's) included
    # and market_snapshots has every column of the current schema, in its order (migration 7)
    described = [(str(r[0]), str(r[1])) for r in
                 clickhouse.query(f"DESCRIBE TABLE {ch_database}.market_snapshots").result_rows]
    assert described == [(c.name, c.clickhouse) for c in MARKET_SNAPSHOT_COLUMNS]
    filled = clickhouse.query("SELECT countIf(funding_interval_h IS NOT NULL) "
                              f"FROM {ch_database}.market_snapshots").result_rows
    assert filled == [(0,)]  # rows from before the fields: null
    # each old checkpoint took its symbol's source; the one without points is gone
    ckpt = clickhouse.query(
        f"SELECT source, symbol, last_snapshot_ms FROM {ch_database}.snapshot_checkpoints").result_rows
    assert sorted(ckpt) == sorted(("binance_usdm", str(r[3]), int(r[4])) for r in old_ckpt
                                  if r[3] != "GONEUSDT")
    assert len(old_ckpt) == 4
    assert len(ckpt) == 3
    assert not clickhouse.query("SELECT count() FROM system.tables WHERE database = %(d)s AND name LIKE "
                                "'%%_rebuild'", parameters={"d": ch_database}).result_rows[0][0]


def test_the_state_restored_after_the_rebuild_continues_an_uninterrupted_run(
    clickhouse: Any, ch_database: str,
) -> None:
    """The old release ran over the first half; the new one restores from the migrated tables
    and goes on: market_snapshots is that of one engine over the whole stream."""
    records, _ = recorded_market(symbols=3, seconds=120, seed=8, dup_rate=0, late_rate=0)
    half = [r for r in records if r["event_time"] < T0 + 60_000]
    rest = [r for r in records if r["event_time"] >= T0 + 60_000]
    _old_database(clickhouse, ch_database, half)
    migrate_snapshots(clickhouse, ch_database)
    expected = engine_snapshots(_before_v3(half) + rest, CFG)
    assert any(row[SNAPSHOT_COLUMNS.index("funding_interval_h")] is not None for row in expected)
    handler = SnapshotHandler(SnapshotStore(clickhouse, ch_database, "g"), CFG, None)
    handler.on_assigned([("m", 0)])
    rows = [as_row(r) for r in rest]
    handler.handle(Batch({("m", 0): PartitionBatch("m", 0, len(half), len(records) - 1, rows,
                                                   list(range(len(half), len(records))))}, []))
    assert table_rows(clickhouse, ch_database) == expected


@pytest.mark.parametrize("done", [1, 2, 3, 4, 5])
def test_a_rebuild_stopped_after_any_step_finishes_when_it_runs_again(
    clickhouse: Any, ch_database: str, done: int,
) -> None:
    """The first ``done`` statements of each rebuild ran, then the process died before the
    migration was recorded: the next start runs it whole again and ends with the new keys and
    every row (5: everything ran, only the record is missing)."""
    records, _ = recorded_market(symbols=2, seconds=60, seed=8, dup_rate=0, late_rate=0)
    _old_database(clickhouse, ch_database, records)
    before = {t: _dump(clickhouse, ch_database, t) for t in ("market_snapshots", "snapshot_points")}
    clean_db = f"{ch_database}_clean"
    _old_database(clickhouse, clean_db, records)
    try:
        migrate_snapshots(clickhouse, clean_db)
        for step in SNAPSHOT_MIGRATIONS[3:6]:
            for stmt in step.statements(ch_database)[:done]:
                clickhouse.command(stmt)
        migrate_snapshots(clickhouse, ch_database)
        assert _sorting_keys(clickhouse, ch_database) == KEYS
        for table, rows in before.items():
            assert _dump(clickhouse, ch_database, table) == rows, table
        assert _dump(clickhouse, ch_database, "snapshot_checkpoints", ("source",)) == \
            _dump(clickhouse, clean_db, "snapshot_checkpoints", ("source",))
    finally:
        clickhouse.command(f"DROP DATABASE IF EXISTS {clean_db}")
