"""Tables the sink owns. Add a new :class:`Migration` to change them; never edit an applied one."""

from __future__ import annotations

from typing import Any

from perpstream.consumers.clickhouse import ClickHouseBatchJournal, Migration, apply_migrations
from perpstream.schemas.columns import METRIC_POINT_COLUMNS, ddl_columns

TABLE = "metric_points"

#: Blocks remembered for insert_deduplication_token. A re-delivered batch must
#: arrive before this many newer inserts into the table; at 6 partitions and a
#: few batches a second that is hours.
DEDUP_WINDOW = 100_000

SINK_MIGRATIONS = (
    Migration(
        1,
        "metric_points",
        "CREATE TABLE IF NOT EXISTS {db}.metric_points ("
        + ddl_columns(METRIC_POINT_COLUMNS)
        + ") ENGINE = ReplacingMergeTree"
        " ORDER BY (source, symbol, metric, event_time)"
        f" SETTINGS non_replicated_deduplication_window = {DEDUP_WINDOW}",
    ),
)


def migrate_sink(client: Any, database: str) -> list[int]:
    """Create or upgrade the sink's tables (and the batch journal); idempotent."""
    applied = apply_migrations(client, database, "sink", SINK_MIGRATIONS)
    ClickHouseBatchJournal(client, database).migrate()
    return applied
