"""ClickHouse tables of the snapshot group and the reads that rebuild its state.

Tables (created by versioned migrations, component ``snapshots``):

- ``market_snapshots``: the product. ReplacingMergeTree ORDER BY
  (symbol, window_s, snapshot_time); a snapshot written twice is written
  with identical values (the engine is deterministic), so duplicates are
  harmless and ``FINAL`` reads are exact.
- ``snapshot_points``: every point the engine *applied*, per
  (group, topic, partition). This is the group's own state log: recovery must
  not depend on the sink group, which may lag or not run at all.
- ``snapshot_checkpoints``: per (group, topic, partition, symbol) the last
  snapshot time whose outputs are all durable. Written after them, the
  handler coalescing several batches into one insert (docs/snapshots.md).

Write order in a batch: points and snapshots (ClickHouse and topic, either
order), then checkpoints; every insert is synchronous
(:data:`~consumers.clickhouse.SYNC_INSERT`), so a checkpoint is never stored
before the outputs it vouches for. Recovery of a partition (:meth:`SnapshotStore.load_partition`):
for each symbol with checkpoint ``c``, every applied point with
``event_time > c - max_window`` plus, per metric, the latest one at or
before that bound plus the latest (mark, index) pair at or before it; for a
symbol without a checkpoint, all its points. ``consumers.snapshots.app``
explains why this reproduces an uninterrupted run.
"""

from __future__ import annotations

import logging
import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from perpstream.consumers.clickhouse import SYNC_INSERT, Migration, apply_migrations, store_error
from perpstream.consumers.runtime.batch import TopicPartitionId
from perpstream.consumers.snapshots.engine import METRIC_NAMES, basis_of
from perpstream.schemas.columns import MARKET_SNAPSHOT_COLUMNS, arrow_schema, ddl_columns

log = logging.getLogger(__name__)

SNAPSHOTS_TABLE = "market_snapshots"
POINTS_TABLE = "snapshot_points"
CHECKPOINTS_TABLE = "snapshot_checkpoints"

#: Applied points are kept this long after they were written (not after their
#: event time: a replay of old data must be recoverable too). A symbol silent
#: for longer loses its m0/o0 history on a restore (docs/snapshots.md).
POINTS_RETENTION_DAYS = 8

_NO_BOUND = -(2**62)

SNAPSHOT_MIGRATIONS = (
    Migration(
        1,
        "market_snapshots",
        "CREATE TABLE IF NOT EXISTS {db}.market_snapshots ("
        + ddl_columns(MARKET_SNAPSHOT_COLUMNS)
        + ") ENGINE = ReplacingMergeTree ORDER BY (symbol, window_s, snapshot_time)",
    ),
    Migration(
        2,
        "snapshot_points",
        "CREATE TABLE IF NOT EXISTS {db}.snapshot_points ("
        " group_id LowCardinality(String),"
        " topic LowCardinality(String),"
        " partition UInt32,"
        " source LowCardinality(String),"
        " symbol LowCardinality(String),"
        " metric LowCardinality(String),"
        " event_time DateTime64(3, 'UTC'),"
        " value Float64,"
        " written_at DateTime DEFAULT now()"
        ") ENGINE = ReplacingMergeTree"
        " ORDER BY (group_id, topic, partition, symbol, metric, event_time)"
        f" TTL written_at + INTERVAL {POINTS_RETENTION_DAYS} DAY",
    ),
    Migration(
        3,
        "snapshot_checkpoints",
        "CREATE TABLE IF NOT EXISTS {db}.snapshot_checkpoints ("
        " group_id LowCardinality(String),"
        " topic LowCardinality(String),"
        " partition UInt32,"
        " symbol LowCardinality(String),"
        " last_snapshot_ms Int64,"
        " written_at DateTime64(3, 'UTC') DEFAULT now64(3)"
        ") ENGINE = ReplacingMergeTree(last_snapshot_ms)"
        " ORDER BY (group_id, topic, partition, symbol)",
    ),
)

SNAPSHOT_COLUMNS = tuple(c.name for c in MARKET_SNAPSHOT_COLUMNS)
_TS = pa.timestamp("ms", tz="UTC")
_F = pa.float64()
_SNAPSHOT_SCHEMA = arrow_schema(MARKET_SNAPSHOT_COLUMNS)
_POINTS_SCHEMA = pa.schema([
    ("group_id", pa.string()), ("topic", pa.string()), ("partition", pa.uint32()),
    ("source", pa.string()), ("symbol", pa.string()), ("metric", pa.string()),
    ("event_time", _TS), ("value", _F),
])


def migrate_snapshots(client: Any, database: str) -> list[int]:
    """Create or upgrade the snapshot group's tables; idempotent, safe from every member."""
    return apply_migrations(client, database, "snapshots", SNAPSHOT_MIGRATIONS)


_SNAPSHOT_ROW = operator.itemgetter(*SNAPSHOT_COLUMNS)


def snapshots_to_arrow(snaps: Sequence[dict[str, Any]]) -> pa.Table:
    # one C-level lookup of every column per snapshot, then a transpose
    columns = zip(*map(_SNAPSHOT_ROW, snaps), strict=True)
    return pa.Table.from_arrays(
        [pa.array(list(col), _SNAPSHOT_SCHEMA.field(c).type)
         for c, col in zip(SNAPSHOT_COLUMNS, columns, strict=True)],
        schema=_SNAPSHOT_SCHEMA,
    )


@dataclass
class SymbolRecovery:
    """What :meth:`SnapshotEngine.restore_symbol` needs for one symbol."""

    symbol: str
    source: str
    last_t: int | None
    carry_bound: int | None
    carry_basis: float | None = None
    points: list[tuple[str, int, float]] = field(default_factory=list)


class SnapshotStore:
    """Writes and recovery reads for one group in one database (shared client)."""

    def __init__(self, client: Any, database: str, group_id: str) -> None:
        self._client = client
        self._db = database
        self._group = group_id

    # -- writes and reads: a failure raises consumers.clickhouse.store_error's verdict --
    # (StoreUnavailableError: the runtime retries the batch; StoreRejectedError: the member stops)

    def _insert(self, table: str, data: pa.Table) -> None:
        if data.num_rows == 0:
            return
        try:
            self._client.insert_arrow(table, data, database=self._db, settings=dict(SYNC_INSERT))
        except Exception as exc:
            raise store_error(exc, f"insert into {self._db}.{table}") from exc

    def write_points(
        self, rows: Mapping[TopicPartitionId, Sequence[tuple[str, str, str, int, float]]]
    ) -> None:
        """Applied points (source, symbol, metric, event_time, value) per partition, one insert."""
        topics: list[str] = []
        parts: list[int] = []
        flat: list[tuple[str, str, str, int, float]] = []
        for (topic, partition), pts in rows.items():
            topics += [topic] * len(pts)
            parts += [partition] * len(pts)
            flat += pts
        if not flat:
            return
        source, symbol, metric, event_time, value = map(list, zip(*flat, strict=True))
        data = pa.Table.from_arrays(
            [
                pa.array([self._group] * len(flat), pa.string()),
                pa.array(topics, pa.string()),
                pa.array(parts, pa.uint32()),
                pa.array(source, pa.string()),
                pa.array(symbol, pa.string()),
                pa.array(metric, pa.string()),
                pa.array(event_time, _TS),
                pa.array(value, _F),
            ],
            schema=_POINTS_SCHEMA,
        )
        self._insert(POINTS_TABLE, data)

    def write_snapshots(self, snaps: Sequence[dict[str, Any]]) -> None:
        if snaps:
            self._insert(SNAPSHOTS_TABLE, snapshots_to_arrow(snaps))

    def write_checkpoints(self, last: Mapping[TopicPartitionId, Mapping[str, int]]) -> None:
        """Per partition, symbol -> last snapshot time whose outputs are durable; one insert."""
        rows = [[self._group, t, p, s, ms] for (t, p), syms in last.items() for s, ms in syms.items()]
        if not rows:
            return
        try:
            self._client.insert(
                CHECKPOINTS_TABLE, rows,
                column_names=["group_id", "topic", "partition", "symbol", "last_snapshot_ms"],
                database=self._db, settings=dict(SYNC_INSERT),
            )
        except Exception as exc:
            raise store_error(exc, f"insert into {self._db}.{CHECKPOINTS_TABLE}") from exc

    # -- recovery -------------------------------------------------------------------

    def _rows(self, sql: str, params: dict[str, Any]) -> list[Any]:
        try:
            return list(self._client.query(sql, parameters=params).result_rows)
        except Exception as exc:
            raise store_error(exc, f"state read from {self._db}") from exc

    def load_partition(self, topic: str, partition: int, max_window_ms: int) -> list[SymbolRecovery]:
        """Everything needed to rebuild the engine state of one partition."""
        db = self._db
        key = {"g": self._group, "t": topic, "p": partition}
        where = "group_id = %(g)s AND topic = %(t)s AND partition = %(p)s"
        ckpt = {
            str(s): int(t)
            for s, t in self._rows(
                f"SELECT symbol, max(last_snapshot_ms) FROM {db}.{CHECKPOINTS_TABLE} "
                f"WHERE {where} GROUP BY symbol", key,
            )
        }
        sources = {
            str(s): str(src)
            for s, src in self._rows(
                f"SELECT symbol, any(source) FROM {db}.{POINTS_TABLE} WHERE {where} GROUP BY symbol", key,
            )
        }
        out: dict[str, SymbolRecovery] = {}
        syms: list[str] = []
        bounds: list[int] = []
        for sym, src in sources.items():
            last = ckpt.get(sym)
            bound = None if last is None else last - max_window_ms
            out[sym] = SymbolRecovery(sym, src, last, bound)
            syms.append(sym)
            bounds.append(_NO_BOUND if bound is None else bound)
        if not out:
            return []
        params = {**key, "syms": syms, "bounds": bounds}
        bound_expr = "transform(toString(symbol), %(syms)s, %(bounds)s, toInt64(0))"
        et = "toUnixTimestamp64Milli(event_time)"
        for sym, metric, ms, value in self._rows(
            f"SELECT symbol, metric, {et}, value FROM {db}.{POINTS_TABLE} "
            f"WHERE {where} AND {et} > {bound_expr}", params,
        ):
            out[str(sym)].points.append((str(metric), int(ms), float(value)))
        # Per metric, the latest point at or before the bound (m0, o0, *_last).
        for sym, metric, ms, value in self._rows(
            f"SELECT symbol, metric, max({et}), argMax(value, event_time) FROM {db}.{POINTS_TABLE} "
            f"WHERE {where} AND metric IN %(metrics)s AND {et} <= {bound_expr} GROUP BY symbol, metric",
            {**params, "metrics": list(METRIC_NAMES)},
        ):
            out[str(sym)].points.append((str(metric), int(ms), float(value)))
        # The latest (mark, index) pair at or before the bound (basis_last).
        for sym, _ms, mark, index in self._rows(
            "SELECT m.symbol, max(m.ms), argMax(m.value, m.ms), argMax(i.value, m.ms) FROM "
            f"(SELECT symbol, {et} AS ms, any(value) AS value FROM {db}.{POINTS_TABLE} "
            f" WHERE {where} AND metric = 'mark_price' AND {et} <= {bound_expr} GROUP BY symbol, ms) AS m "
            f"INNER JOIN (SELECT symbol, {et} AS ms, any(value) AS value FROM {db}.{POINTS_TABLE} "
            f" WHERE {where} AND metric = 'index_price' AND {et} <= {bound_expr} GROUP BY symbol, ms) AS i "
            "ON m.symbol = i.symbol AND m.ms = i.ms GROUP BY m.symbol", params,
        ):
            out[str(sym)].carry_basis = basis_of(float(mark), float(index))
        return list(out.values())
