"""ClickHouse plumbing the consumers share: opening a client, versioned
migrations, and the batch journal.

Migrations: every package that owns tables passes its own ordered list of
:class:`Migration` steps to :func:`apply_migrations` under a component name
(``sink``, ``snapshots``). Applied steps are recorded in
``<database>.schema_migrations``; a step runs at most once per component and
database, steps must be idempotent DDL anyway (``IF NOT EXISTS``) because two
members can race on a fresh database. Changing an applied step's SQL is an
error: add a new version instead.

Batch journal: see :class:`ClickHouseBatchJournal`. It makes a batch that is
re-delivered after a crash or a rebalance have the same per-partition offset
boundaries as before, which is what lets ``insert_deduplication_token`` drop
the re-insert.

Every function takes an already open clickhouse-connect client: with the
embedded engine one process may open one chdb directory, so the process opens
one client and every component shares it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from consumers.exceptions import MigrationError
from schemas.exceptions import ConfigError

log = logging.getLogger(__name__)

TopicPartitionId = tuple[str, int]


@dataclass(frozen=True)
class Migration:
    """One step. ``sql`` may hold several statements separated by ``;\\n`` and
    uses ``{db}`` for the database name."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()[:16]

    def statements(self, database: str) -> list[str]:
        return [s.strip() for s in self.sql.format(db=database).split(";\n") if s.strip()]


_migrate_lock = threading.Lock()


def apply_migrations(client: Any, database: str, component: str, steps: Sequence[Migration]) -> list[int]:
    """Create ``database`` and apply the steps of ``component`` not applied yet.

    Returns the versions applied now. Safe to call from every member at start.
    """
    versions = [s.version for s in steps]
    if versions != sorted(set(versions)):
        raise MigrationError(f"{component}: migration versions must be unique and ascending: {versions}")
    with _migrate_lock:
        client.command(f"CREATE DATABASE IF NOT EXISTS {database}")
        client.command(
            f"CREATE TABLE IF NOT EXISTS {database}.schema_migrations ("
            " component LowCardinality(String), version UInt32, name String, checksum String,"
            " applied_at DateTime64(3, 'UTC') DEFAULT now64(3)"
            ") ENGINE = ReplacingMergeTree ORDER BY (component, version)"
        )
        rows = client.query(
            f"SELECT version, checksum FROM {database}.schema_migrations FINAL WHERE component = %(c)s",
            parameters={"c": component},
        ).result_rows
        done = {int(v): str(c) for v, c in rows}
        applied: list[int] = []
        for step in steps:
            if step.version in done:
                if done[step.version] != step.checksum:
                    raise MigrationError(
                        f"{component} migration {step.version} ({step.name}) changed after it was "
                        "applied; add a new version instead"
                    )
                continue
            for stmt in step.statements(database):
                try:
                    client.command(stmt)
                except Exception as exc:
                    raise MigrationError(
                        f"{component} migration {step.version} ({step.name}) failed: {exc}"
                    ) from exc
            client.insert(
                "schema_migrations",
                [[component, step.version, step.name, step.checksum]],
                column_names=["component", "version", "name", "checksum"],
                database=database,
            )
            applied.append(step.version)
            log.info(
                "migration applied",
                extra={"component": component, "version": step.version, "migration": step.name,
                       "database": database},
            )
        return applied


def open_client(dsn: str, **kwargs: Any) -> Any:
    """A clickhouse-connect client for ``http(s)://...`` or ``chdb:///abs/dir``.

    Mirrors ``perpstream.local.open_clickhouse`` so that consumers do not
    import the CLI shell.
    """
    import clickhouse_connect

    if dsn.startswith("chdb://"):
        path = dsn[len("chdb://"):]
        if not path.startswith("/"):
            raise ConfigError(f"clickhouse_dsn: chdb DSN needs an absolute directory, got {dsn!r}")
        Path(path).mkdir(parents=True, exist_ok=True)
    return clickhouse_connect.get_client(dsn=dsn, **kwargs)


JOURNAL_MIGRATIONS = (
    Migration(
        1,
        "consumer_batches",
        "CREATE TABLE IF NOT EXISTS {db}.consumer_batches ("
        " group_id LowCardinality(String), topic LowCardinality(String), partition UInt32,"
        " first_offset Int64, last_offset Int64, written_at DateTime64(3, 'UTC') DEFAULT now64(3)"
        ") ENGINE = ReplacingMergeTree(last_offset) ORDER BY (group_id, topic, partition)",
    ),
)


class ClickHouseBatchJournal:
    """Remembers, per group and partition, the offset range of the latest batch
    handed to a handler (written *before* the handler stores it).

    Why: the dedup token of an insert is (topic, partition, first, last). After
    a crash between insert and commit the batch is polled again from the
    committed offset, but poll timing would cut it elsewhere and the token
    would differ. The runtime reads the journal when it is assigned a partition
    and cuts the first batch at the journaled ``last_offset``, so the re-insert
    is byte-identical and ClickHouse drops it. (Kafka commit metadata could hold
    this too, but Tansu does not keep it.) One small insert per batch; the
    table keeps one row per partition after merges (version = last_offset).
    """

    def __init__(self, client: Any, database: str) -> None:
        self._client = client
        self._db = database

    def migrate(self) -> None:
        apply_migrations(self._client, self._db, "consumer_batches", JOURNAL_MIGRATIONS)

    def record(self, group_id: str, ranges: Mapping[TopicPartitionId, tuple[int, int]]) -> None:
        rows = [[group_id, t, p, first, last] for (t, p), (first, last) in ranges.items()]
        if rows:
            self._client.insert(
                "consumer_batches", rows,
                column_names=["group_id", "topic", "partition", "first_offset", "last_offset"],
                database=self._db,
            )

    def pending(
        self, group_id: str, partitions: Iterable[TopicPartitionId]
    ) -> dict[TopicPartitionId, tuple[int, int]]:
        wanted = set(partitions)
        if not wanted:
            return {}
        topics = sorted({t for t, _ in wanted})
        rows = self._client.query(
            f"SELECT topic, partition, argMax(first_offset, last_offset), max(last_offset) "
            f"FROM {self._db}.consumer_batches WHERE group_id = %(g)s AND topic IN %(t)s "
            "GROUP BY topic, partition",
            parameters={"g": group_id, "t": topics},
        ).result_rows
        return {(str(t), int(p)): (int(f), int(la)) for t, p, f, la in rows if (str(t), int(p)) in wanted}
