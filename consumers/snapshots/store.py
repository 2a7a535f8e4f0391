"""ClickHouse tables of the snapshot group and the reads that rebuild its state.

Everything is per market, (source, symbol): ``BTCUSDT`` of two venues is two
markets in the same partition (docs/snapshots.md, "Markets").

Tables (created by versioned migrations, component ``snapshots``):

- ``market_snapshots``: the product. ReplacingMergeTree ORDER BY
  (source, symbol, window_s, snapshot_time); a snapshot written twice is
  written with identical values (the engine is deterministic), so duplicates
  are harmless and ``FINAL`` reads are exact.
- ``snapshot_points``: every point the engine *applied*, per
  (group, topic, partition), keyed by the point's identity. This is the
  group's own state log: recovery must not depend on the sink group, which
  may lag or not run at all.
- ``snapshot_checkpoints``: per (group, topic, partition, source, symbol) the
  last snapshot time whose outputs are all durable. Written after them, the
  handler coalescing several batches into one insert (docs/snapshots.md).

Until migrations 4-6 the three were keyed by symbol alone; those migrations
rebuild each table with the source in its key (:func:`_rebuild`). Migration 7
adds the MarketSnapshot v2 columns.

Write order in a batch: points and snapshots (ClickHouse and topic, either
order), then checkpoints; every insert is synchronous
(:data:`~consumers.clickhouse.SYNC_INSERT`), so a checkpoint is never stored
before the outputs it vouches for. Recovery of a partition (:meth:`SnapshotStore.load_partition`):
for each market with checkpoint ``c``, every applied point with
``event_time > c - max_window`` plus, per metric, the latest one at or
before that bound plus the latest (mark, index) pair at or before it; for a
market without a checkpoint, all its points. ``consumers.snapshots.app``
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
from perpstream.consumers.snapshots.engine import METRIC_NAMES, Market, basis_of
from perpstream.schemas.columns import MARKET_SNAPSHOT_COLUMNS, arrow_schema, columns, ddl_columns

log = logging.getLogger(__name__)

SNAPSHOTS_TABLE = "market_snapshots"
POINTS_TABLE = "snapshot_points"
CHECKPOINTS_TABLE = "snapshot_checkpoints"

#: Applied points are kept this long after they were written (not after their
#: event time: a replay of old data must be recoverable too). A symbol silent
#: for longer loses its m0/o0 history on a restore (docs/snapshots.md).
POINTS_RETENTION_DAYS = 8

_NO_BOUND = -(2**62)

#: ``market_snapshots`` as migration 1 created it and migration 4 rebuilds it: the columns of
#: MarketSnapshot v1 (schemas/history/); later fields are added by later migrations.
_V1_SNAPSHOT_COLUMNS = columns("history/market_snapshot.v1")
_SNAPSHOT_DDL_COLUMNS = ddl_columns(_V1_SNAPSHOT_COLUMNS)
_V2_SNAPSHOT_FIELDS = ("funding_interval_h", "funding_annualized")
_SNAPSHOT_NAMES = ", ".join(c.name for c in _V1_SNAPSHOT_COLUMNS)
_POINTS_DDL_COLUMNS = (
    " group_id LowCardinality(String),"
    " topic LowCardinality(String),"
    " partition UInt32,"
    " source LowCardinality(String),"
    " symbol LowCardinality(String),"
    " metric LowCardinality(String),"
    " event_time DateTime64(3, 'UTC'),"
    " value Float64,"
    " written_at DateTime DEFAULT now()"
)
_POINTS_NAMES = "group_id, topic, partition, source, symbol, metric, event_time, value, written_at"
_POINTS_TTL = f" TTL written_at + INTERVAL {POINTS_RETENTION_DAYS} DAY"


def _rebuild(table: str, create: str, copy: str) -> str:
    """A migration that rebuilds ``table`` (its sorting key cannot be altered in place):
    ``create`` is the new table's ``(columns) ENGINE ...`` and ``copy`` the ``(columns)
    SELECT ...`` that fills it from the old one; then the two swap names atomically
    (``EXCHANGE TABLES``: an Atomic database, ClickHouse's default since 20.10 and chdb's)
    and the old one is dropped.

    Any prefix of the steps may run again (a crash before the migration is recorded) and
    still end with the new key and every row: the first step drops what a previous attempt
    left under the temporary name — a partial copy, or the old table after the swap — and
    a copy of an already rebuilt table is the same rows under the same key. The steps are
    not atomic as a whole, so several processes must not run this one migration at the same
    time (docs/snapshots.md, "Upgrading").
    """
    tmp = f"{{db}}.{table}_rebuild"
    return (f"DROP TABLE IF EXISTS {tmp};\n"
            f"CREATE TABLE {tmp} {create};\n"
            f"INSERT INTO {tmp} {copy};\n"
            f"EXCHANGE TABLES {{db}}.{table} AND {tmp};\n"
            f"DROP TABLE {tmp}")


SNAPSHOT_MIGRATIONS = (
    Migration(
        1,
        "market_snapshots",
        "CREATE TABLE IF NOT EXISTS {db}.market_snapshots ("
        + _SNAPSHOT_DDL_COLUMNS
        + ") ENGINE = ReplacingMergeTree ORDER BY (symbol, window_s, snapshot_time)",
    ),
    Migration(
        2,
        "snapshot_points",
        "CREATE TABLE IF NOT EXISTS {db}.snapshot_points ("
        + _POINTS_DDL_COLUMNS
        + ") ENGINE = ReplacingMergeTree"
        " ORDER BY (group_id, topic, partition, symbol, metric, event_time)"
        + _POINTS_TTL,
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
    # Per (source, symbol): BTCUSDT of two venues are two markets (docs/snapshots.md, "Markets").
    Migration(
        4,
        "market_snapshots_by_source",
        _rebuild(
            "market_snapshots",
            f"({_SNAPSHOT_DDL_COLUMNS}) ENGINE = ReplacingMergeTree"
            " ORDER BY (source, symbol, window_s, snapshot_time)",
            f"({_SNAPSHOT_NAMES}) SELECT {_SNAPSHOT_NAMES} FROM {{db}}.market_snapshots",
        ),
    ),
    Migration(
        5,
        "snapshot_points_by_source",
        _rebuild(
            "snapshot_points",
            f"({_POINTS_DDL_COLUMNS}) ENGINE = ReplacingMergeTree"
            " ORDER BY (group_id, topic, partition, source, symbol, metric, event_time)" + _POINTS_TTL,
            f"({_POINTS_NAMES}) SELECT {_POINTS_NAMES} FROM {{db}}.snapshot_points",
        ),
    ),
    # A checkpoint written before this held no source: it is the source of its symbol's
    # applied points, which had one source per partition (a second one was not applied then).
    # A checkpoint whose points are gone (retention) restored nothing before and is dropped.
    Migration(
        6,
        "snapshot_checkpoints_by_source",
        _rebuild(
            "snapshot_checkpoints",
            "(group_id LowCardinality(String), topic LowCardinality(String), partition UInt32,"
            " source LowCardinality(String), symbol LowCardinality(String), last_snapshot_ms Int64,"
            " written_at DateTime64(3, 'UTC') DEFAULT now64(3))"
            " ENGINE = ReplacingMergeTree(last_snapshot_ms)"
            " ORDER BY (group_id, topic, partition, source, symbol)",
            "(group_id, topic, partition, source, symbol, last_snapshot_ms, written_at)"
            " SELECT c.group_id, c.topic, c.partition, p.source, c.symbol, c.last_snapshot_ms, c.written_at"
            " FROM {db}.snapshot_checkpoints AS c INNER JOIN"
            " (SELECT group_id, topic, partition, symbol, argMax(source, event_time) AS source"
            "  FROM {db}.snapshot_points GROUP BY group_id, topic, partition, symbol) AS p"
            " ON c.group_id = p.group_id AND c.topic = p.topic AND c.partition = p.partition"
            " AND c.symbol = p.symbol",
        ),
    ),
    # MarketSnapshot v2: the funding interval in force and the funding rate annualised with it.
    Migration(
        7,
        "market_snapshots_funding_interval",
        "ALTER TABLE {db}.market_snapshots "
        + ", ".join(f"ADD COLUMN IF NOT EXISTS {c.name} {c.clickhouse}"
                    for c in MARKET_SNAPSHOT_COLUMNS if c.name in _V2_SNAPSHOT_FIELDS),
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
    """What :meth:`SnapshotEngine.restore_symbol` needs for one market (source, symbol)."""

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

    def write_checkpoints(self, last: Mapping[TopicPartitionId, Mapping[Market, int]]) -> None:
        """Per partition, (source, symbol) -> last snapshot time whose outputs are durable; one insert."""
        rows = [[self._group, t, p, src, sym, ms]
                for (t, p), markets in last.items() for (src, sym), ms in markets.items()]
        if not rows:
            return
        try:
            self._client.insert(
                CHECKPOINTS_TABLE, rows,
                column_names=["group_id", "topic", "partition", "source", "symbol", "last_snapshot_ms"],
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
        """Everything needed to rebuild the engine state of one partition, per market.

        Long for a reason: four reads that share their parameters and the per-market bound
        expression, and fill one result; split, each would rebuild both.
        """
        db = self._db
        key = {"g": self._group, "t": topic, "p": partition}
        where = "group_id = %(g)s AND topic = %(t)s AND partition = %(p)s"
        ckpt = {
            (str(src), str(sym)): int(t)
            for src, sym, t in self._rows(
                f"SELECT source, symbol, max(last_snapshot_ms) FROM {db}.{CHECKPOINTS_TABLE} "
                f"WHERE {where} GROUP BY source, symbol", key,
            )
        }
        out: dict[Market, SymbolRecovery] = {}
        names: list[str] = []
        bounds: list[int] = []
        for src, sym in self._rows(
            f"SELECT DISTINCT source, symbol FROM {db}.{POINTS_TABLE} WHERE {where}", key,
        ):
            market = (str(src), str(sym))
            last = ckpt.get(market)
            bound = None if last is None else last - max_window_ms
            out[market] = SymbolRecovery(market[1], market[0], last, bound)
            names.append(_market_name(market))
            bounds.append(_NO_BOUND if bound is None else bound)
        if not out:
            return []
        params = {**key, "names": names, "bounds": bounds}
        bound_expr = f"transform({_MARKET_NAME_SQL}, %(names)s, %(bounds)s, toInt64(0))"
        et = "toUnixTimestamp64Milli(event_time)"
        for src, sym, metric, ms, value in self._rows(
            f"SELECT source, symbol, metric, {et}, value FROM {db}.{POINTS_TABLE} "
            f"WHERE {where} AND {et} > {bound_expr}", params,
        ):
            out[(str(src), str(sym))].points.append((str(metric), int(ms), float(value)))
        # Per metric, the latest point at or before the bound (m0, o0, *_last).
        for src, sym, metric, ms, value in self._rows(
            f"SELECT source, symbol, metric, max({et}), argMax(value, event_time) FROM {db}.{POINTS_TABLE} "
            f"WHERE {where} AND metric IN %(metrics)s AND {et} <= {bound_expr} "
            "GROUP BY source, symbol, metric",
            {**params, "metrics": list(METRIC_NAMES)},
        ):
            out[(str(src), str(sym))].points.append((str(metric), int(ms), float(value)))
        # The latest (mark, index) pair at or before the bound (basis_last).
        def side(metric: str) -> str:
            return (f"SELECT source, symbol, {et} AS ms, any(value) AS value FROM {db}.{POINTS_TABLE} "
                    f"WHERE {where} AND metric = '{metric}' AND {et} <= {bound_expr} "
                    "GROUP BY source, symbol, ms")

        for src, sym, _ms, mark, index in self._rows(
            "SELECT m.source, m.symbol, max(m.ms), argMax(m.value, m.ms), argMax(i.value, m.ms) FROM "
            f"({side('mark_price')}) AS m INNER JOIN ({side('index_price')}) AS i "
            "ON m.source = i.source AND m.symbol = i.symbol AND m.ms = i.ms "
            "GROUP BY m.source, m.symbol", params,
        ):
            out[(str(src), str(sym))].carry_basis = basis_of(float(mark), float(index))
        return list(out.values())


#: How a read names a market in one string, for ``transform``: a source has no ``/``
#: (docs/contract.md, "Rules"), so ``source/symbol`` is unambiguous.
_MARKET_NAME_SQL = "concat(toString(source), '/', toString(symbol))"


def _market_name(market: Market) -> str:
    return f"{market[0]}/{market[1]}"
