"""Rebalances while batches are in flight: a member joins, another leaves."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from perpstream.consumers.exceptions import BackpressureError
from perpstream.consumers.runtime.batch import Batch, TopicPartitionId
from perpstream.consumers.runtime.loop import ConsumeLoop
from perpstream.consumers.sink.handler import ClickHouseSink
from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.consumers.sink.service import sink_loop
from perpstream.runtime.telemetry import Telemetry
from tests.conftest import TEST_CONSUMER_CONFIG
from tests.integration.test_sink_support import (
    Runner,
    committed_total,
    make_points,
    produce,
    settings_for,
)
from tests.waiting import wait_for

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


class _GatedHandler:
    """Records handled offsets per partition; ``blocked`` makes every batch
    backpressure, ``delay`` slows every batch down."""

    def __init__(self) -> None:
        self.owned: set[TopicPartitionId] = set()
        self.revoked_calls = 0
        self.blocked = False
        self.delay = 0.1
        self.handled: dict[int, set[int]] = {}
        self._lock = threading.Lock()
        self.loop: ConsumeLoop | None = None
        self.revoked_while_paused: list[TopicPartitionId] = []

    def on_assigned(self, partitions: list[TopicPartitionId]) -> None:
        self.owned.update(partitions)

    def on_revoked(self, partitions: list[TopicPartitionId]) -> None:
        self.owned.difference_update(partitions)
        self.revoked_calls += 1
        if self.loop is not None and self.loop.paused:
            self.revoked_while_paused.extend(partitions)

    def handle(self, batch: Batch) -> None:
        if self.blocked:
            raise BackpressureError("store blocked by the test")
        time.sleep(self.delay)
        with self._lock:
            for (_, p), pb in batch.partitions.items():
                self.handled.setdefault(p, set()).update(pb.offsets)

    def close(self) -> None:
        pass


def test_partition_revoked_while_paused_is_fetched_when_it_comes_back(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
) -> None:
    """librdkafka keeps a partition's pause flag across revoke and re-assign: a
    member paused by backpressure that loses partitions and later gets them
    back must fetch them again (else they sit assigned and never delivered)."""
    from confluent_kafka import Producer

    topic, group, n, parts = topic_factory(6), group_factory(), 36_000, 6
    p = Producer({"bootstrap.servers": kafka_bootstrap, "linger.ms": 20})
    for i in range(n):
        p.produce(topic, b"x", partition=i % parts)
    assert p.flush(30) == 0
    # a tiny fetch queue keeps most of the topic on the broker while A is paused
    cfg = {**TEST_CONSUMER_CONFIG, "bootstrap.servers": kafka_bootstrap, "queued.max.messages.kbytes": 64,
           "fetch.queue.backoff.ms": 10}
    ha, hb = _GatedHandler(), _GatedHandler()

    def member(h: _GatedHandler, name: str) -> Runner:
        h.loop = ConsumeLoop(cfg, [topic], group, h, decoder=lambda v: (v,), dlq_topic=None,
                             max_records=100, max_wait=0.1, backoff_initial=0.2, backoff_max=0.5, name=name)
        return Runner(h.loop.run)

    def settled(seconds: float) -> Callable[[], bool]:
        """Both members own disjoint halves covering the topic, unchanged for ``seconds``."""
        since: list[float] = []

        def check() -> bool:
            a_, b_ = set(ha.owned), set(hb.owned)
            ok = bool(a_) and bool(b_) and not (a_ & b_) and len(a_ | b_) == parts
            if not ok:
                since.clear()
                return False
            since.append(time.monotonic())
            return since[-1] - since[0] >= seconds

        return check

    def handled(q: int) -> int:
        return len(ha.handled.get(q, set()) | hb.handled.get(q, set()))

    a = member(ha, "a")
    b = None
    try:
        wait_for(lambda: sum(map(handled, range(parts))) >= 600, timeout=60, what="member A handling")
        ha.blocked = True  # A pauses its partitions and retries with backoff
        b = member(hb, "b")  # joins: A loses some partitions while paused
        wait_for(lambda: ha.revoked_calls >= 1 and len(hb.owned) > 0, timeout=60, what="B owning partitions")
        ha.blocked = False
        assert ha.revoked_while_paused, "A was not paused when it lost partitions: the test proves nothing"
        # a leave during a join wedges Tansu's coordinator: B leaves only once the group is stable
        wait_for(settled(2.0), timeout=60, interval=0.1, what="the group settled")
        backlog = [q for q in range(parts) if handled(q) < n // parts and (topic, q) in hb.owned]
        assert backlog, "B finished its partitions before leaving; raise n or the handler delay"
        assert b.stop() == 0  # B leaves: the partitions A lost while paused come back to A
        ha.delay = 0.0
        try:
            wait_for(lambda: all(handled(q) == n // parts for q in range(parts)), timeout=60,
                     what="every offset handled")
        except AssertionError as exc:
            counts = [handled(q) for q in range(parts)]
            raise AssertionError(f"{exc}: per partition {counts} of {n // parts}, "
                                 f"B left a backlog on {backlog}, A owns {sorted(ha.owned)}") from exc
        assert len(ha.owned) == parts
    finally:
        for r in (a, b):
            if r is not None and r.thread.is_alive():
                r.stop()
