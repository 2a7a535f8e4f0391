"""The snapshot group end to end: real broker, real ClickHouse engine.

The same recorded input (disorder within lateness, duplicates, late points)
is consumed by three groups into three databases: uninterrupted, with a crash
in the middle of a batch (points stored, snapshots not, nothing committed)
and a restart, and with a second member joining mid-stream (rebalance).
The three market_snapshots tables are identical row for row, and equal to
the pure engine on the clean input (late and duplicate points change nothing).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from perpstream.consumers.snapshots.app import SnapshotHandler, SnapshotService
from perpstream.consumers.snapshots.settings import SnapshotSettings
from perpstream.consumers.snapshots.store import SnapshotStore, migrate_snapshots
from perpstream.schemas.codec import market_snapshot_codec, metric_point_codec
from tests.conftest import TEST_CONSUMER_CONFIG
from tests.unit.snapshots.harness import engine_snapshots, table_rows
from tests.unit.snapshots.streams import recorded_market

pytestmark = pytest.mark.integration
PARTITIONS = 3


class Crash(RuntimeError):
    """An abrupt stop: not backpressure, so the loop ends without committing."""


class CrashingStore(SnapshotStore):
    def __init__(self, *args: Any, crash_at: int) -> None:
        super().__init__(*args)
        self.calls = 0
        self.crash_at = crash_at

    def write_snapshots(self, snaps: Any) -> None:
        self.calls += 1
        if self.calls == self.crash_at:
            raise Crash("injected crash after the points of a batch were stored")
        super().write_snapshots(snaps)


class SlowHandler(SnapshotHandler):
    """Slows batches down so that a second member joins while work is left."""

    def handle(self, batch: Any) -> None:
        time.sleep(0.25)
        super().handle(batch)


def produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> dict[int, int]:
    """Produce with key = symbol; the end offset per partition."""
    codec = metric_point_codec()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    ends: dict[int, int] = {}

    def on_delivery(err: Any, msg: Any) -> None:
        assert err is None, err
        ends[msg.partition()] = max(ends.get(msg.partition(), 0), msg.offset() + 1)

    for i, r in enumerate(records):
        while True:
            try:
                p.produce(topic, codec.encode(r), r["symbol"].encode(), on_delivery=on_delivery)
                break
            except BufferError:
                p.poll(0.05)
        if i % 5000 == 0:
            p.poll(0)
    assert p.flush(60) == 0
    p.close()
    return ends


class Group:
    """Services (processes) of one consumer group writing into one database."""

    def __init__(self, clickhouse: Any, settings: SnapshotSettings) -> None:
        self.clickhouse = clickhouse
        self.settings = settings
        self.services: list[tuple[SnapshotService, threading.Thread, threading.Event, list[int]]] = []
        migrate_snapshots(clickhouse, settings.clickhouse_database)

    def start(
        self, factory: Callable[[SnapshotService, int], SnapshotHandler] | None = None
    ) -> SnapshotService:
        svc = SnapshotService(self.settings, self.clickhouse, consumer_overrides=TEST_CONSUMER_CONFIG,
                              handler_factory=factory)
        stop = threading.Event()
        rc: list[int] = []
        t = threading.Thread(target=lambda: rc.append(svc.run(stop)), daemon=True)
        t.start()
        self.services.append((svc, t, stop, rc))
        return svc

    def committed(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for svc, *_ in self.services:
            for loop in svc.loops:
                for (_, p), off in loop.committed.items():
                    out[p] = max(out.get(p, 0), off)
        return out

    def wait_committed(self, ends: dict[int, int], timeout: float = 150.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            c = self.committed()
            if all(c.get(p, 0) >= e for p, e in ends.items()):
                return
            time.sleep(0.3)
        raise AssertionError(f"not all offsets committed: {self.committed()} < {ends}")

    def stop_all(self) -> None:
        for _, _t, stop, _rc in self.services:
            stop.set()
        for _, t, _, _ in self.services:
            t.join(90)
            assert not t.is_alive(), "member did not drain"


def read_topic(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False, **TEST_CONSUMER_CONFIG})
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            out.extend(m for m in c.consume(1000, timeout=0.5) if m.error() is None)
    finally:
        c.close()
    return out


def test_replays_with_crash_and_rebalance_give_identical_tables(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, ch_database: str,
) -> None:
    arrival, clean = recorded_market(symbols=8, seconds=300, seed=11)
    expected = engine_snapshots(clean)
    assert expected == engine_snapshots(arrival)
    topic = topic_factory(PARTITIONS)
    dlq = topic_factory(1)
    ends = produce(kafka_bootstrap, topic, arrival)
    assert sum(ends.values()) == len(arrival)

    def settings(name: str, out_topic: str, **kw: Any) -> SnapshotSettings:
        return SnapshotSettings(
            kafka_bootstrap_servers=kafka_bootstrap, clickhouse_database=f"{ch_database}_{name}",
            metrics_topic=topic, snapshots_topic=out_topic, dlq_topic=dlq,
            group_id=group_factory("snap"), batch_max_records=kw.pop("batch", 2000), batch_max_ms=200,
            retry_backoff_initial_ms=100, retry_backoff_max_ms=1000,
            # the join in step 3 moves only some partitions (the members are dynamic, so this
            # works on Tansu too): the first member keeps working through the rebalance
            partition_assignment_strategy="cooperative-sticky", **kw,
        )

    dbs = []
    try:
        # 1. uninterrupted
        out_topic = topic_factory(PARTITIONS)
        base = Group(clickhouse, settings("base", out_topic))
        dbs.append(base.settings.clickhouse_database)
        base.start()
        base.wait_committed(ends)
        base.stop_all()
        rows_base = table_rows(clickhouse, dbs[0])
        assert rows_base == expected

        # every snapshot is on the topic too, keyed by its asset, Avro-decodable, same values
        msgs = read_topic(kafka_bootstrap, out_topic, len(rows_base))
        codec = market_snapshot_codec()
        from perpstream.consumers.snapshots.store import SNAPSHOT_COLUMNS

        on_topic = set()
        for m in msgs:
            rec = codec.decode(m.value())
            assert m.key() == rec["symbol"].removesuffix("USDT").encode()  # SYM001USDT: asset SYM001
            on_topic.add(tuple(rec[c] for c in SNAPSHOT_COLUMNS))
        assert on_topic == set(rows_base)

        # 2. crash in the middle of a batch, then a restart of the same group
        crash = Group(clickhouse, settings("crash", topic_factory(PARTITIONS), batch=700))
        dbs.append(crash.settings.clickhouse_database)

        def crashing(svc: SnapshotService, member: int) -> SnapshotHandler:
            h = svc.make_handler(member)
            h.store = CrashingStore(clickhouse, crash.settings.clickhouse_database,
                                    crash.settings.group_id, crash_at=5)
            return h

        crash.start(crashing)
        _svc, t, _stop, rc = crash.services[0]
        t.join(120)
        assert rc == [1], "the injected crash ends the member"
        assert crash.committed(), "some batches were committed before the crash"
        assert any(crash.committed().get(p, 0) < e for p, e in ends.items())
        crash.start()
        crash.wait_committed(ends)
        crash.stop_all()
        assert table_rows(clickhouse, dbs[1]) == rows_base

        # 3. a second member joins mid-stream
        reb = Group(clickhouse, settings("rebalance", topic_factory(PARTITIONS), batch=300))
        dbs.append(reb.settings.clickhouse_database)

        def slow(svc: SnapshotService, member: int) -> SnapshotHandler:
            h = svc.make_handler(member)
            h.__class__ = SlowHandler
            return h

        first = reb.start(slow)
        deadline = time.monotonic() + 90
        while not reb.committed() and time.monotonic() < deadline:
            time.sleep(0.2)
        second = reb.start(slow)
        reb.wait_committed(ends, timeout=240)
        reb.stop_all()
        assert table_rows(clickhouse, dbs[2]) == rows_base
        took = [sum(1 for h in s.handlers for _ in h.engines) for s in (first, second)]
        assert second.loops and second.loops[0].committed, f"second member did no work: {took}"
    finally:
        for db in dbs:
            clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
