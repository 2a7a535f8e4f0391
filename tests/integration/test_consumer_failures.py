"""Failures that must stop a member, and failures that must not (docs/sink.md, "Failures by edge").

- ClickHouse rejecting a batch for good (a column of another type): the
  member exits non-zero naming the record ranges and the cause, and nothing
  past the failing batch is committed; once the table is fixed a restart
  stores everything, once.
- An error nobody classified: retried a bounded number of times, then the same.
- A record larger than the DLQ producer may send: it reaches the DLQ cut to
  fit, with headers giving its original size, topic, partition, offset and
  error, and the records after it are stored; the member neither crashes
  nor wedges.
- What the real engine raises for the classification table's faults.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pyarrow as pa
import pytest
from clickhouse_connect.driver.exceptions import DatabaseError
from confluent_kafka import Producer

from perpstream.consumers.clickhouse import Permanent, Transient, classify_clickhouse_error
from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.consumers.sink.service import run_sink
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.columns import METRIC_POINT_COLUMNS
from perpstream.schemas.topics import (
    DLQ_HEADER_ERROR,
    DLQ_HEADER_OFFSET,
    DLQ_HEADER_ORIGINAL_SIZE,
    DLQ_HEADER_PARTITION,
    DLQ_HEADER_REASON,
    DLQ_HEADER_TOPIC,
    DLQ_HEADER_TRUNCATED,
)
from tests.conftest import TEST_CONSUMER_CONFIG
from tests.integration.test_sink_support import (
    Runner,
    committed_total,
    make_points,
    produce,
    read_dlq,
    settings_for,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

#: metric_points' columns with the value's type left open (a test swaps in an incompatible one).
_COLUMNS = ", ".join("{value}" if c.name == "value" else f"{c.name} {c.clickhouse}"
                     for c in METRIC_POINT_COLUMNS)


def _count(clickhouse: Any, db: str, final: bool = True) -> int:
    fin = " FINAL" if final else ""
    return int(clickhouse.query(f"SELECT count() FROM {db}.metric_points{fin}").result_rows[0][0])


def _stopped_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "perpstream.consumers.runtime.supervisor"
            and r.getMessage().startswith("consumer member stopped")]


def test_the_engine_raises_what_the_table_expects(clickhouse: Any, ch_database: str) -> None:
    """The faults of docs/sink.md's ClickHouse table, raised by the real engine."""
    migrate_sink(clickhouse, ch_database)
    db = ch_database
    ts = pa.timestamp("ms", tz="UTC")
    table = pa.table({"source": ["s"], "symbol": ["S"], "metric": ["mark_price"],
                      "event_time": pa.array([1_760_000_000_000], ts), "value": [1.0],
                      "ingest_time": pa.array([1_760_000_000_000], ts)})

    def verdict(fn: Callable[[], Any]) -> Transient | Permanent:
        with pytest.raises(Exception) as caught:
            fn()
        return classify_clickhouse_error(caught.value)

    mismatch = _COLUMNS.format(value="value Array(String)")
    clickhouse.command(f"CREATE TABLE {db}.narrow (source String) ENGINE = MergeTree ORDER BY source")
    clickhouse.command(f"CREATE TABLE {db}.mismatch ({mismatch}) ENGINE = MergeTree ORDER BY source")
    permanent: list[tuple[Callable[[], Any], Permanent]] = [
        (lambda: clickhouse.insert_arrow("nope", table, database=db), Permanent("UNKNOWN_TABLE", 60)),
        (lambda: clickhouse.insert_arrow("metric_points", table, database=f"{db}_nope"),
         Permanent("UNKNOWN_DATABASE", 81)),
        (lambda: clickhouse.command("SELEC 1"), Permanent("SYNTAX_ERROR", 62)),
        (lambda: clickhouse.insert_arrow("metric_points", table, database=db, settings={"readonly": "1"}),
         Permanent("READONLY", 164)),
        (lambda: clickhouse.insert_arrow("narrow", table, database=db),
         Permanent("NO_SUCH_COLUMN_IN_TABLE", 16)),
        (lambda: clickhouse.insert_arrow("mismatch", table, database=db), Permanent("TYPE_MISMATCH", 53)),
    ]
    for fn, expected in permanent:
        assert verdict(fn) == expected
    clickhouse.insert_arrow("metric_points", table, database=db)
    clickhouse.command(f"SYSTEM STOP MERGES {db}.metric_points")
    clickhouse.command(f"ALTER TABLE {db}.metric_points MODIFY SETTING parts_to_throw_insert = 1")
    transient: list[tuple[Callable[[], Any], Transient]] = [
        (lambda: clickhouse.insert_arrow("metric_points", table, database=db),
         Transient("TOO_MANY_PARTS", 252)),
        (lambda: clickhouse.query("SELECT sleepEachRow(0.5) FROM numbers(4)",
                                  settings={"max_execution_time": 1}),
         Transient("TIMEOUT_EXCEEDED", 159)),
        (lambda: clickhouse.query("SELECT count() FROM numbers(10000000) GROUP BY number",
                                  settings={"max_memory_usage": 1_000_000}),
         Transient("MEMORY_LIMIT_EXCEEDED", 241)),
    ]
    for fn, expected_t in transient:
        assert verdict(fn) == expected_t


def test_a_permanent_clickhouse_error_stops_the_member_and_commits_nothing_past_it(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, ch_database: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "perpstream.consumers")
    topic, dlq, group = topic_factory(3), topic_factory(1), group_factory()
    points = make_points(12_000)
    first = produce(kafka_bootstrap, topic, points[:6_000])
    migrate_sink(clickhouse, ch_database)
    db = ch_database
    settings = settings_for(kafka_bootstrap, db, topic, dlq, group, batch_max_records=1_000)
    telemetry = Telemetry()

    def start() -> Runner:
        return Runner(lambda stop: run_sink(settings, clickhouse, stop, telemetry=telemetry,
                                            consumer_overrides=TEST_CONSUMER_CONFIG))

    runner = start()
    try:
        wait_for(lambda: sum(committed_total(kafka_bootstrap, group, topic, 3).values()) == first,
                 timeout=120, what="the first records stored and committed")
        # an operator replaces the table with one whose value column has another type;
        # the member is idle (everything committed), so no insert is in flight
        clickhouse.command(f"RENAME TABLE {db}.metric_points TO {db}.metric_points_ok")
        mismatch = _COLUMNS.format(value="value Array(String)")
        clickhouse.command(f"CREATE TABLE {db}.metric_points ({mismatch}) "
                           "ENGINE = ReplacingMergeTree ORDER BY (source, symbol, metric, event_time)")
        total = first + produce(kafka_bootstrap, topic, points[6_000:])
        wait_for(lambda: not runner.thread.is_alive(), timeout=120, what="the member to stop by itself")
    finally:
        rc = runner.stop()
    assert rc == 1

    [line] = _stopped_lines(caplog)
    message = line.getMessage()
    assert line.exc_info is None, "a rejected batch is not a bug: no traceback"
    assert "TYPE_MISMATCH (53)" in message and f"{db}.metric_points" in message, message
    ranges: dict[str, str] = line.ranges  # type: ignore[attr-defined]
    assert ranges and all(k.startswith(f"{topic}[") for k in ranges), ranges
    for name, span in ranges.items():
        assert f"{name} {span}" in message  # e.g. "t-1234[0] 2000..2999"
    # nothing past the failing batch is committed: every partition stays at its range's start
    committed = committed_total(kafka_bootstrap, group, topic, 3)
    assert sum(committed.values()) == first, committed
    for name, span in ranges.items():
        partition = int(name[len(topic) + 1:-1])
        assert committed[partition] == int(span.split("..")[0]), (committed, ranges)
    assert telemetry.total("records_dlq") == 0

    # the operator puts the right table back: a restart stores everything, once
    clickhouse.command(f"DROP TABLE {db}.metric_points")
    clickhouse.command(f"RENAME TABLE {db}.metric_points_ok TO {db}.metric_points")
    clickhouse.command(f"SYSTEM STOP MERGES {db}.metric_points")
    runner = start()
    try:
        wait_for(lambda: sum(committed_total(kafka_bootstrap, group, topic, 3).values()) == total,
                 timeout=180, what="everything stored after the fix")
    finally:
        assert runner.stop() == 0
    assert _count(clickhouse, db) == total
    assert _count(clickhouse, db, final=False) == total


class UnknownInsertErrors:
    """The real client, except that inserts fail with a server error code no table lists."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.failed = 0

    def insert_arrow(self, *args: Any, **kwargs: Any) -> Any:
        self.failed += 1
        raise DatabaseError("Code: 1002. DB::Exception: std::exception. (UNKNOWN_EXCEPTION)",
                            code=1002, name="UNKNOWN_EXCEPTION")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def test_an_unclassified_error_is_retried_a_bounded_number_of_times(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, ch_database: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, "perpstream.consumers")
    topic, dlq, group = topic_factory(1), topic_factory(1), group_factory()
    produce(kafka_bootstrap, topic, make_points(500))
    migrate_sink(clickhouse, ch_database)
    broken = UnknownInsertErrors(clickhouse)
    settings = settings_for(kafka_bootstrap, ch_database, topic, dlq, group, store_unclassified_attempts=3,
                            retry_backoff_initial_ms=10, retry_backoff_max_ms=50)
    runner = Runner(lambda stop: run_sink(settings, broken, stop, consumer_overrides=TEST_CONSUMER_CONFIG))
    try:
        wait_for(lambda: not runner.thread.is_alive(), timeout=120, what="the member to give up")
    finally:
        rc = runner.stop()
    assert rc == 1
    assert broken.failed == 3
    [line] = _stopped_lines(caplog)
    assert "UNKNOWN_EXCEPTION (1002)" in line.getMessage() and "3 attempts" in line.getMessage()
    assert f"{topic}[0] 0..499" in line.getMessage()
    assert committed_total(kafka_bootstrap, group, topic, 1)[0] < 0  # nothing committed


def test_a_record_too_large_for_the_dlq_goes_there_truncated(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, ch_database: str,
) -> None:
    topic, dlq, group = topic_factory(1), topic_factory(1), group_factory()
    good = make_points(1_000)
    produce(kafka_bootstrap, topic, good[:500])
    # 300 kB of garbage (bad magic): the topic's producer may send it (message.max.bytes 1 MB),
    # the DLQ producer below may send 64 kB at most
    big = b"\xff" + bytes(range(256)) * 1_172
    assert len(big) == 300_033
    p = Producer({"bootstrap.servers": kafka_bootstrap, "message.max.bytes": 1_000_000})
    p.produce(topic, key=b"k-big", value=big, headers=[("origin", b"test")])
    assert p.flush(30) == 0
    produce(kafka_bootstrap, topic, good[500:])
    total = len(good) + 1

    migrate_sink(clickhouse, ch_database)
    clickhouse.command(f"SYSTEM STOP MERGES {ch_database}.metric_points")
    telemetry = Telemetry()
    settings = settings_for(kafka_bootstrap, ch_database, topic, dlq, group, batch_max_records=300,
                            dlq_message_max_bytes=65_536)
    runner = Runner(lambda stop: run_sink(settings, clickhouse, stop, telemetry=telemetry,
                                          consumer_overrides=TEST_CONSUMER_CONFIG))
    try:
        wait_for(lambda: committed_total(kafka_bootstrap, group, topic, 1)[0] == total,
                 timeout=120, what="offsets past the large record committed")
        assert runner.thread.is_alive()
    finally:
        assert runner.stop() == 0

    assert _count(clickhouse, ch_database) == len(good)  # the valid records after it are stored
    assert _count(clickhouse, ch_database, final=False) == len(good)
    [dead] = read_dlq(kafka_bootstrap, dlq, 1)
    value = dead.value()
    headers = dict(dead.headers())
    assert dead.key() == b"k-big"
    assert 60_000 < len(value) < 65_536 and value == big[:len(value)]
    assert headers[DLQ_HEADER_ORIGINAL_SIZE] == str(len(big)).encode()
    assert headers[DLQ_HEADER_TRUNCATED].startswith(b"MSG_SIZE_TOO_LARGE")
    assert headers[DLQ_HEADER_TOPIC] == topic.encode()
    assert headers[DLQ_HEADER_PARTITION] == b"0" and headers[DLQ_HEADER_OFFSET] == b"500"
    assert headers[DLQ_HEADER_REASON] == b"bad_magic" and headers[DLQ_HEADER_ERROR]
    assert headers["origin"] == b"test"
    assert telemetry.total("dlq_truncated") == 1 and telemetry.total("records_dlq") == 1
