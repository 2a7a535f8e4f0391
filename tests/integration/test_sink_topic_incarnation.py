"""A topic that starts again at offset 0 (recreated, or an in-memory broker
restarted, as with ``perpstream run`` on a kept data directory) must not have
its batches mistaken for already-inserted ones by the dedup token."""

from __future__ import annotations

from typing import Any

import pytest

from consumers.sink.migrations import migrate_sink
from consumers.sink.service import run_sink
from perpstream.local import TansuBroker, ensure_topics
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


def test_second_incarnation_of_a_topic_is_stored_in_full(
    clickhouse: Any, ch_database: str, broker_kind: str
) -> None:
    if broker_kind != "tansu":
        pytest.skip("starts its own in-memory brokers")
    migrate_sink(clickhouse, ch_database)
    points = make_points(2_000, symbols=1)  # one symbol: one partition, one batch per run
    runs = [points[:1_000], points[1_000:]]  # same offsets 0..999, different events
    for batch in runs:
        with TansuBroker() as broker:
            ensure_topics(broker.bootstrap_servers, {"metrics": 1, "dlq": 1})
            assert produce(broker.bootstrap_servers, "metrics", batch) == len(batch)
            settings = settings_for(broker.bootstrap_servers, ch_database, "metrics", "dlq", "sink",
                                    batch_max_records=10_000, batch_max_ms=2_000)
            runner = Runner(lambda stop, s=settings: run_sink(s, clickhouse, stop,
                                                              consumer_overrides=TEST_CONSUMER_CONFIG))
            try:
                wait_for(lambda b=broker: committed_total(b.bootstrap_servers, "sink", "metrics", 1)
                         .get(0, 0) == 1_000, timeout=120, what="offsets committed")
            finally:
                assert runner.stop() == 0
    count = clickhouse.command(f"SELECT count() FROM {ch_database}.metric_points")
    assert count == 2_000
