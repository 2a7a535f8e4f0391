"""A topic that starts again at offset 0 (recreated, or an in-memory broker
restarted, as with ``perpstream run`` on a kept data directory) must not have
its batches mistaken for already-inserted ones by the dedup token."""

from __future__ import annotations

from typing import Any

import pytest

from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.consumers.sink.service import run_sink
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
    clickhouse: Any, ch_database: str
) -> None:
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


def test_a_broker_restarted_under_a_running_member_loses_nothing_of_the_new_incarnation(
    clickhouse: Any, ch_database: str, tmp_path: Any
) -> None:
    """The same member reads the topic before and after an in-memory broker restarts on its
    port (what ``perpstream up`` does when its broker dies): the new incarnation's offsets
    0..999 are cut as the old ones were, and must still be stored."""
    from perpstream.local import free_port

    migrate_sink(clickhouse, ch_database)
    points = make_points(2_000, symbols=1)  # one symbol: one partition
    port = free_port()
    broker = TansuBroker(port=port, log_path=tmp_path / "tansu1.log").start()
    runner = None
    try:
        ensure_topics(broker.bootstrap_servers, {"metrics": 1, "dlq": 1})
        assert produce(broker.bootstrap_servers, "metrics", points[:1_000]) == 1_000
        settings = settings_for(broker.bootstrap_servers, ch_database, "metrics", "dlq", "sink",
                                batch_max_records=10_000, batch_max_ms=2_000)
        runner = Runner(lambda stop: run_sink(settings, clickhouse, stop,
                                              consumer_overrides=TEST_CONSUMER_CONFIG))

        def stored() -> int:
            return int(clickhouse.command(f"SELECT count() FROM {ch_database}.metric_points"))

        wait_for(lambda: stored() == 1_000, 120, "the first incarnation stored")
        broker.stop()
        broker = TansuBroker(port=port, log_path=tmp_path / "tansu2.log").start()
        ensure_topics(broker.bootstrap_servers, {"metrics": 1, "dlq": 1})
        assert produce(broker.bootstrap_servers, "metrics", points[1_000:]) == 1_000
        wait_for(lambda: committed_total(broker.bootstrap_servers, "sink", "metrics", 1).get(0, 0) == 1_000,
                 120, "the new incarnation committed")
    finally:
        if runner is not None:
            assert runner.stop() == 0
        broker.stop()
    assert stored() == 2_000
