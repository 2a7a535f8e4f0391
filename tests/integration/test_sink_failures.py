"""ClickHouse failing for a while, and poison records on the topic.

A permanent ClickHouse error and a record too large for the DLQ are in
test_consumer_failures.py.
"""

from __future__ import annotations

import logging
import math
import struct
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from clickhouse_connect.driver.exceptions import OperationalError

from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.consumers.sink.service import run_sink
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.codec import metric_point_codec
from perpstream.schemas.topics import (
    DLQ_HEADER_ERROR,
    DLQ_HEADER_GROUP,
    DLQ_HEADER_OFFSET,
    DLQ_HEADER_PARTITION,
    DLQ_HEADER_REASON,
    DLQ_HEADER_TOPIC,
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


class FailingInserts:
    """The real client, except that inserts fail while ``failing`` is set, the
    way clickhouse-connect's HTTP client fails when the server refuses connections.

    Fault injection around the real engine (an embedded engine cannot be
    "down"): every insert that is let through lands in ClickHouse as usual.
    """

    def __init__(self, client: Any) -> None:
        self._client = client
        self.failing = threading.Event()
        self.failed = 0

    def insert_arrow(self, *args: Any, **kwargs: Any) -> Any:
        if self.failing.is_set():
            self.failed += 1
            raise OperationalError(
                "Error HTTPConnectionPool(host='clickhouse', port=8123): Max retries exceeded with url: / "
                "(Caused by NewConnectionError('Failed to establish a new connection: [Errno 111] "
                "Connection refused')) executing HTTP request attempt 1 (http://clickhouse:8123)")
        return self._client.insert_arrow(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def _count(clickhouse: Any, db: str, final: bool = True) -> int:
    fin = " FINAL" if final else ""
    return int(clickhouse.query(f"SELECT count() FROM {db}.metric_points{fin}").result_rows[0][0])


def test_clickhouse_down_for_a_while(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, ch_database: str, caplog: pytest.LogCaptureFixture,
) -> None:
    """Unreachable (connection refused), then refusing inserts itself (TOO_MANY_PARTS):
    the sink pauses, retries the same batches, catches up; nothing lost, nothing doubled."""
    caplog.set_level(logging.INFO, "perpstream.consumers")
    topic, dlq, group = topic_factory(3), topic_factory(1), group_factory()
    points = make_points(40_000)
    first, more = 30_000, points[30_000:]
    produce(kafka_bootstrap, topic, points[:first])
    total = first
    migrate_sink(clickhouse, ch_database)
    # merges stopped: a batch inserted twice would stay visible without FINAL
    clickhouse.command(f"SYSTEM STOP MERGES {ch_database}.metric_points")
    flaky = FailingInserts(clickhouse)
    flaky.failing.set()
    telemetry = Telemetry()
    settings = settings_for(kafka_bootstrap, ch_database, topic, dlq, group, batch_max_records=3_000)
    runner = Runner(lambda stop: run_sink(settings, flaky, stop, telemetry=telemetry,
                                          consumer_overrides=TEST_CONSUMER_CONFIG))
    try:
        wait_for(lambda: telemetry.total("batch_retries") >= 4, timeout=120, what="retries")
        # down: nothing stored, nothing committed, partitions paused, member alive
        for _ in range(3):
            committed = committed_total(kafka_bootstrap, group, topic, 3)
            assert all(o < 0 for o in committed.values()), committed
            assert _count(clickhouse, ch_database) == 0
            time.sleep(0.5)
        assert max(telemetry.snapshot().get("paused", {}).values(), default=0) == 1
        assert runner.thread.is_alive()

        flaky.failing.clear()
        wait_for(lambda: sum(committed_total(kafka_bootstrap, group, topic, 3).values()) == first,
                 timeout=180, what="recovery: all offsets committed")
        assert _count(clickhouse, ch_database) == first

        # the engine itself refuses inserts (a real TOO_MANY_PARTS) while new data arrives:
        # committed offsets never pass what is stored
        table = f"{ch_database}.metric_points"
        clickhouse.command(f"ALTER TABLE {table} MODIFY SETTING parts_to_throw_insert = 1")
        retries = telemetry.total("batch_retries")
        total = first + produce(kafka_bootstrap, topic, more)
        wait_for(lambda: telemetry.total("batch_retries") >= retries + 3, timeout=120, what="retries")
        for _ in range(3):
            assert sum(committed_total(kafka_bootstrap, group, topic, 3).values()) == first
            assert _count(clickhouse, ch_database) == first
            time.sleep(0.3)
        assert runner.thread.is_alive()
        clickhouse.command(f"ALTER TABLE {table} RESET SETTING parts_to_throw_insert")
        wait_for(lambda: sum(committed_total(kafka_bootstrap, group, topic, 3).values()) == total,
                 timeout=180, what="all offsets committed")
    finally:
        assert runner.stop() == 0
    assert flaky.failed >= 4
    assert _count(clickhouse, ch_database) == total
    assert _count(clickhouse, ch_database, final=False) == total  # retries were deduplicated
    assert telemetry.total("records_stored") >= total

    ours = [r for r in caplog.records if r.name.startswith("perpstream.consumers")]
    assert not [r for r in ours if r.exc_info], "a ClickHouse outage is not a bug: no tracebacks"
    retry_lines = [r for r in ours if r.getMessage().startswith("batch not stored yet")]
    causes = " ".join(str(getattr(r, "error", "")) for r in retry_lines)
    assert "connection: OperationalError" in causes and "TOO_MANY_PARTS (252)" in causes
    # persistent faults are logged rate-limited (one line per 30 s per member), not once per retry
    assert len(retry_lines) < telemetry.total("batch_retries") / 2, (len(retry_lines), retries)


def test_poison_records_go_to_the_dlq(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, ch_database: str,
) -> None:
    topic, dlq, group = topic_factory(1), topic_factory(1), group_factory()
    codec = metric_point_codec()
    good = make_points(3_000)
    # a funding interval is stored like any metric; one of zero hours breaks its rule (> 0)
    interval = dict(good[0], metric="funding_interval_hours", value=8.0)
    zero_interval = dict(interval, value=0.0, event_time=interval["event_time"] + 1)
    good.append(interval)
    valid = codec.encode(good[0])
    nan = dict(good[1], value=math.nan, event_time=good[1]["event_time"] + 1)
    poison = [
        (b"k-random", bytes(range(7, 47)), "bad_magic"),
        (b"k-schema-id", b"\x00" + struct.pack(">I", 4242) + valid[10:], "unknown_schema"),
        (b"k-fingerprint", b"\xc3\x01" + b"\x01" * 8 + valid[10:], "unknown_schema"),
        (b"k-truncated", valid[:-5], "truncated"),
        (b"k-nan", codec.encode(nan), "invalid"),
        (b"k-lower", codec.encode(dict(good[2], symbol="btcusdt")), "invalid"),
        (b"k-interval", codec.encode(zero_interval), "invalid"),
    ]
    produce(kafka_bootstrap, topic, good[:1_000])
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": kafka_bootstrap})
    for key, value, _ in poison:
        p.produce(topic, key=key, value=value, headers=[("origin", b"test")])
    assert p.flush(30) == 0
    produce(kafka_bootstrap, topic, good[1_000:])
    total = len(good) + len(poison)

    telemetry = Telemetry()
    settings = settings_for(kafka_bootstrap, ch_database, topic, dlq, group, batch_max_records=700)
    migrate_sink(clickhouse, ch_database)
    runner = Runner(lambda stop: run_sink(settings, clickhouse, stop, telemetry=telemetry,
                                          consumer_overrides=TEST_CONSUMER_CONFIG))
    try:
        wait_for(lambda: committed_total(kafka_bootstrap, group, topic, 1)[0] == total,
                 timeout=180, what="offsets past the poison committed")
    finally:
        assert runner.stop() == 0

    assert _count(clickhouse, ch_database) == len(good)
    assert clickhouse.query(
        f"SELECT value FROM {ch_database}.metric_points FINAL WHERE metric = 'funding_interval_hours'"
    ).result_rows == [(8.0,)]
    dead = read_dlq(kafka_bootstrap, dlq, len(poison))
    assert len(dead) == len(poison)
    by_key = {m.key(): m for m in dead}
    for key, value, reason in poison:
        m = by_key[key]
        headers = dict(m.headers())
        assert m.value() == value
        assert headers["origin"] == b"test"
        assert headers[DLQ_HEADER_REASON].decode() == reason
        assert headers[DLQ_HEADER_ERROR]
        assert headers[DLQ_HEADER_GROUP].decode() == group
        assert headers[DLQ_HEADER_TOPIC].decode() == topic
        assert headers[DLQ_HEADER_PARTITION] == b"0"
        assert 1_000 <= int(headers[DLQ_HEADER_OFFSET]) < 1_000 + len(poison)
    assert telemetry.total("records_dlq") == len(poison)
