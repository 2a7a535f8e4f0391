"""Rebalances while batches are in flight: a member joins, another leaves."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest

from consumers.runtime.batch import Batch, TopicPartitionId
from consumers.sink.handler import ClickHouseSink
from consumers.sink.migrations import migrate_sink
from consumers.sink.service import sink_loop
from schemas.telemetry import Telemetry
from tests.conftest import TEST_CONSUMER_CONFIG
from tests.integration.test_sink_support import (
    Runner,
    committed_total,
    make_points,
    produce,
    settings_for,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class SlowCheckingSink(ClickHouseSink):
    """The real sink, slowed down so rebalances hit batches in flight, and
    checking that it only ever gets records of partitions it was told it owns."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owned: set[TopicPartitionId] = set()
        self.violations: list[TopicPartitionId] = []
        self.assigned_calls = 0
        self.revoked_calls = 0

    def on_assigned(self, partitions: list[TopicPartitionId]) -> None:
        self.owned.update(partitions)
        self.assigned_calls += 1

    def on_revoked(self, partitions: list[TopicPartitionId]) -> None:
        self.owned.difference_update(partitions)
        self.revoked_calls += 1

    def handle(self, batch: Batch) -> None:
        self.violations.extend(tp for tp in batch.partitions if tp not in self.owned)
        time.sleep(0.05)
        super().handle(batch)


def test_member_joins_and_another_leaves(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, ch_database: str,
) -> None:
    topic, dlq, group = topic_factory(6), topic_factory(1), group_factory()
    total = produce(kafka_bootstrap, topic, make_points(60_000))
    settings = settings_for(kafka_bootstrap, ch_database, topic, dlq, group, batch_max_records=500)
    migrate_sink(clickhouse, ch_database)
    clickhouse.command(f"SYSTEM STOP MERGES {ch_database}.metric_points")
    telemetry = Telemetry()

    def member(i: int) -> tuple[Runner, SlowCheckingSink]:
        handler = SlowCheckingSink(clickhouse, ch_database, telemetry=telemetry, group_id=group)
        loop = sink_loop(settings, clickhouse, telemetry=telemetry, member=i, handler=handler,
                         consumer_overrides=TEST_CONSUMER_CONFIG)
        return Runner(loop.run), handler

    def stored() -> int:
        return int(clickhouse.query(f"SELECT count() FROM {ch_database}.metric_points").result_rows[0][0])

    a, ha = member(0)
    b = None
    try:
        wait_for(lambda: stored() >= 5_000, timeout=120, what="member A storing")
        b, hb = member(1)  # joins: A hands over some partitions mid-stream
        wait_for(lambda: len(hb.owned) > 0 and ha.revoked_calls >= 1, timeout=120,
                 what="member B owning partitions")
        progress = stored()
        wait_for(lambda: stored() >= progress + 2_000, timeout=120, what="both members storing")
        assert stored() < total, "rebalance came too late to matter; lower the batch size"
        assert a.stop() == 0  # leaves with batches in flight: its partitions move to B
        try:
            wait_for(lambda: sum(committed_total(kafka_bootstrap, group, topic, 6).values()) == total,
                     timeout=120, what="all offsets committed")
        except AssertionError as exc:
            raise AssertionError(
                f"{exc}: committed {committed_total(kafka_bootstrap, group, topic, 6)}, stored {stored()}, "
                f"B owns {sorted(hb.owned)}, telemetry {telemetry.summary()}"
            ) from exc
    finally:
        for r in (a, b):
            if r is not None and r.thread.is_alive():
                r.stop()

    assert ha.revoked_calls >= 1
    assert not (ha.violations or hb.violations)
    # merges are stopped: every row counted once without FINAL = nothing duplicated
    assert stored() == total
    final = clickhouse.query(f"SELECT count() FROM {ch_database}.metric_points FINAL").result_rows[0][0]
    assert final == total
