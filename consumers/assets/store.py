"""ClickHouse tables of the asset group and the reads that rebuild its state.

Tables (versioned migrations, component ``assets``; docs/snapshots.md,
"Cross-venue asset snapshots"):

- ``asset_snapshots``: the product. ReplacingMergeTree ORDER BY
  (asset, window_s, snapshot_time), columns from ``schemas/asset_snapshot.avsc``
  (:data:`~consumers.assets.engine.ASSET_SNAPSHOT_COLUMNS`). A record written
  twice is written with identical values (see ``consumers.assets.app``), so
  ``FINAL`` reads are exact.
- ``asset_inputs``: every MarketSnapshot row the engine *accepted*, per
  (group, topic, partition), with the asset it was filed under. The group's own
  state log: recovery depends neither on ``market_snapshots`` (another group's
  table, which holds rows this engine found late) nor on the topic's retention.
- ``asset_checkpoints``: per (group, topic, partition, asset) the last
  snapshot time whose records are durable; written after them.

Write order in a batch: inputs and records (ClickHouse and topic, any order),
then checkpoints; every insert is synchronous
(:data:`~consumers.clickhouse.SYNC_INSERT`), so a checkpoint is never stored
before what it vouches for. :meth:`AssetStore.load_partition` reads, per asset
of a partition, its checkpoint ``c`` and every accepted row with
``snapshot_time > c`` (all of them without a checkpoint).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from perpstream.consumers.assets.engine import ASSET_SNAPSHOT_COLUMNS
from perpstream.consumers.assets.wire import ROW_FIELDS, VALUE_FIELDS
from perpstream.consumers.clickhouse import SYNC_INSERT, Migration, apply_migrations, store_error
from perpstream.consumers.runtime.batch import TopicPartitionId
from perpstream.schemas.columns import ddl_columns

SNAPSHOTS_TABLE: Final = "asset_snapshots"
INPUTS_TABLE: Final = "asset_inputs"
CHECKPOINTS_TABLE: Final = "asset_checkpoints"

#: Accepted rows are kept this long after they were written. An asset silent for
#: longer than this with rows still pending loses them on a restore (docs/snapshots.md).
INPUTS_RETENTION_DAYS: Final = 8

_NO_CHECKPOINT: Final = -(2**62)
_VALUES_DDL = "".join(f" {name} Nullable(Float64)," for name in VALUE_FIELDS)

ASSET_MIGRATIONS: Final = (
    Migration(
        1,
        "asset_snapshots",
        "CREATE TABLE IF NOT EXISTS {db}.asset_snapshots ("
        + ddl_columns(ASSET_SNAPSHOT_COLUMNS)
        + ") ENGINE = ReplacingMergeTree ORDER BY (asset, window_s, snapshot_time)",
    ),
    Migration(
        2,
        "asset_inputs",
        "CREATE TABLE IF NOT EXISTS {db}.asset_inputs ("
        " group_id LowCardinality(String),"
        " topic LowCardinality(String),"
        " partition UInt32,"
        " asset LowCardinality(String),"
        " source LowCardinality(String),"
        " symbol LowCardinality(String),"
        " window_s UInt32,"
        " snapshot_time DateTime64(3, 'UTC'),"
        + _VALUES_DDL +
        " stale Bool,"
        " written_at DateTime DEFAULT now()"
        ") ENGINE = ReplacingMergeTree"
        " ORDER BY (group_id, topic, partition, asset, snapshot_time, window_s, source, symbol)"
        f" TTL written_at + INTERVAL {INPUTS_RETENTION_DAYS} DAY",
    ),
    Migration(
        3,
        "asset_checkpoints",
        "CREATE TABLE IF NOT EXISTS {db}.asset_checkpoints ("
        " group_id LowCardinality(String),"
        " topic LowCardinality(String),"
        " partition UInt32,"
        " asset LowCardinality(String),"
        " last_snapshot_ms Int64,"
        " written_at DateTime64(3, 'UTC') DEFAULT now64(3)"
        ") ENGINE = ReplacingMergeTree(last_snapshot_ms)"
        " ORDER BY (group_id, topic, partition, asset)",
    ),
)

SNAPSHOT_COLUMNS: Final = tuple(c.name for c in ASSET_SNAPSHOT_COLUMNS)
_MARKET_FIELDS: Final = ("source", "symbol", "quote", "scale", "funding_annualized", "funding_interval_h",
                         "funding_last", "basis_last", "mark_last", "oi_last", "oi_notional", "stale")
_INPUT_COLUMNS: Final = ("group_id", "topic", "partition", "asset", *ROW_FIELDS)


def migrate_assets(client: Any, database: str) -> list[int]:
    """Create or upgrade the asset group's tables; idempotent, safe from every member."""
    return apply_migrations(client, database, "assets", ASSET_MIGRATIONS)


def record_row(rec: Mapping[str, Any]) -> list[Any]:
    """An AssetSnapshot record as a row of ``asset_snapshots`` (each market a tuple in field order)."""
    row = [rec[c] for c in SNAPSHOT_COLUMNS]
    row[SNAPSHOT_COLUMNS.index("markets")] = [tuple(m[f] for f in _MARKET_FIELDS) for m in rec["markets"]]
    return row


@dataclass
class AssetRecovery:
    """One asset of a partition: its checkpoint and the accepted rows after it, by time."""

    asset: str
    last_t: int | None
    rows: list[dict[str, Any]] = field(default_factory=list)


class AssetStore:
    """Writes and recovery reads of one group in one database (the client is shared).

    A failure raises :func:`~consumers.clickhouse.store_error`'s verdict:
    StoreUnavailableError, which the runtime retries; StoreRejectedError, which stops the member.
    """

    def __init__(self, client: Any, database: str, group_id: str) -> None:
        self._client = client
        self._db = database
        self._group = group_id

    def _insert(self, table: str, rows: list[list[Any]], columns: Sequence[str]) -> None:
        if not rows:
            return
        try:
            self._client.insert(table, rows, column_names=list(columns), database=self._db,
                                settings=dict(SYNC_INSERT))
        except Exception as exc:
            raise store_error(exc, f"insert into {self._db}.{table}") from exc

    def write_inputs(self, rows: Mapping[TopicPartitionId, Sequence[tuple[str, tuple[Any, ...]]]]) -> None:
        """Accepted rows per partition, each ``(asset, row in ROW_FIELDS order)``; one insert."""
        flat = [[self._group, topic, partition, asset, *row]
                for (topic, partition), items in rows.items() for asset, row in items]
        self._insert(INPUTS_TABLE, flat, _INPUT_COLUMNS)

    def write_snapshots(self, records: Sequence[Mapping[str, Any]]) -> None:
        self._insert(SNAPSHOTS_TABLE, [record_row(r) for r in records], SNAPSHOT_COLUMNS)

    def write_checkpoints(self, last: Mapping[TopicPartitionId, Mapping[str, int]]) -> None:
        """Per partition, asset -> last snapshot time whose records are durable; one insert."""
        rows = [[self._group, t, p, a, ms] for (t, p), assets in last.items() for a, ms in assets.items()]
        self._insert(CHECKPOINTS_TABLE, rows, ("group_id", "topic", "partition", "asset", "last_snapshot_ms"))

    def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        try:
            return list(self._client.query(sql, parameters=params).result_rows)
        except Exception as exc:
            raise store_error(exc, f"state read from {self._db}") from exc

    def load_partition(self, topic: str, partition: int) -> list[AssetRecovery]:
        """Every asset of one partition: its checkpoint and its accepted rows after it, in
        (snapshot_time, window_s, source, symbol) order."""
        db = self._db
        key = {"g": self._group, "t": topic, "p": partition}
        where = "group_id = %(g)s AND topic = %(t)s AND partition = %(p)s"
        out = {
            str(a): AssetRecovery(str(a), int(ms))
            for a, ms in self._rows(
                f"SELECT asset, max(last_snapshot_ms) FROM {db}.{CHECKPOINTS_TABLE} "
                f"WHERE {where} GROUP BY asset", key)
        }
        et = "toUnixTimestamp64Milli(snapshot_time)"
        params: dict[str, Any] = dict(key)
        after = "1"
        if out:  # transform() cannot type empty arrays
            params.update(assets=list(out), cks=[r.last_t for r in out.values()], none=_NO_CHECKPOINT)
            after = f"{et} > transform(toString(asset), %(assets)s, %(cks)s, toInt64(%(none)s))"
        cols = ", ".join(et if c == "snapshot_time" else c for c in ROW_FIELDS)
        for asset, *values in self._rows(
            f"SELECT asset, {cols} FROM {db}.{INPUTS_TABLE} FINAL WHERE {where} "
            f"AND {after} "
            f"ORDER BY snapshot_time, window_s, source, symbol", params,
        ):
            rec = out.get(str(asset))
            if rec is None:
                rec = out[str(asset)] = AssetRecovery(str(asset), None)
            row = dict(zip(ROW_FIELDS, values, strict=True))
            row["window_s"], row["snapshot_time"], row["stale"] = (
                int(row["window_s"]), int(row["snapshot_time"]), bool(row["stale"]))
            rec.rows.append(row)
        return list(out.values())
