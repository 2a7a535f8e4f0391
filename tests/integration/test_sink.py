"""The sink against a real broker and the real ClickHouse engine."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest

from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.consumers.sink.service import run_sink
from tests.conftest import TEST_CONSUMER_CONFIG
from tests.integration.test_sink_support import (
    Runner,
    committed_total,
    make_points,
    produce,
    settings_for,
)
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


def _rows(clickhouse: Any, db: str) -> dict[tuple[str, str, str, int], float]:
    rows = clickhouse.query(
        f"SELECT source, symbol, metric, toUnixTimestamp64Milli(event_time), value "
        f"FROM {db}.metric_points FINAL"
    ).result_rows
    return {(s, sy, m, int(et)): v for s, sy, m, et, v in rows}


@pytest.mark.slow
def test_100k_with_duplicates_three_workers(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, ch_database: str,
) -> None:
    topic, dlq, group = topic_factory(6), topic_factory(1), group_factory()
    distinct = make_points(90_000)
    rng = random.Random(7)
    events = distinct + [rng.choice(distinct) for _ in range(10_000)]
    rng.shuffle(events)
    assert produce(kafka_bootstrap, topic, events) == 100_000

    settings = settings_for(kafka_bootstrap, ch_database, topic, dlq, group, workers=3)
    migrate_sink(clickhouse, ch_database)
    runner = Runner(lambda stop: run_sink(settings, clickhouse, stop,
                                          consumer_overrides=TEST_CONSUMER_CONFIG))
    try:
        wait_for(lambda: sum(committed_total(kafka_bootstrap, group, topic, 6).values()) == 100_000,
                 timeout=240, interval=1.0, what="all offsets committed")
    finally:
        assert runner.stop() == 0

    count = clickhouse.query(f"SELECT count() FROM {ch_database}.metric_points FINAL").result_rows[0][0]
    assert count == 90_000
    stored = _rows(clickhouse, ch_database)
    expected = {(r["source"], r["symbol"], r["metric"], r["event_time"]): r["value"] for r in distinct}
    assert stored == expected
    ingest = clickhouse.query(
        f"SELECT countIf(toUnixTimestamp64Milli(ingest_time) != toUnixTimestamp64Milli(event_time) + 7) "
        f"FROM {ch_database}.metric_points FINAL"
    ).result_rows[0][0]
    assert ingest == 0
