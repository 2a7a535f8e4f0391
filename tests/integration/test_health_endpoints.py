"""/readyz of each component against the real broker, ClickHouse and fake exchange:
ready once connected and progressing, the reason while not."""

from __future__ import annotations

import contextlib
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from confluent_kafka import Consumer

from perpstream.consumers.sink.service import run_sink
from perpstream.consumers.snapshots.app import SnapshotService
from perpstream.consumers.snapshots.settings import SnapshotSettings
from perpstream.local import free_port
from perpstream.runtime.health import Health
from perpstream.runtime.telemetry import Telemetry, operator_endpoints
from tests.conftest import TEST_CONSUMER_CONFIG
from tests.fakes.binance import FakeBinance, live_producer
from tests.integration.test_sink_support import Runner, settings_for
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


@contextlib.contextmanager
def serving(health: Health) -> Iterator[Callable[[], tuple[int, str]]]:
    """/readyz of ``health`` over HTTP; yields a function returning (status, body)."""
    with operator_endpoints(Telemetry(), free_port(), health, host="127.0.0.1") as server:
        assert server is not None
        url = f"http://127.0.0.1:{server.server_address[1]}/readyz"

        def ready() -> tuple[int, str]:
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    return resp.status, resp.read().decode()
            except urllib.error.HTTPError as exc:
                return exc.code, exc.read().decode()

        yield ready


#: the holder's assignor, which the component must share (librdkafka members of one group
#: must agree); sticky, so the holder keeps the only partition while the component joins
HOLDER_STRATEGY = "cooperative-sticky"


@contextlib.contextmanager
def holding_the_partition(bootstrap: str, group: str, topic: str) -> Iterator[list[int]]:
    """Another member of ``group`` that owns the topic's only partition (the assignor is
    sticky) until the block ends; yields the number of rebalances it has taken part in."""
    rebalances: list[int] = [0]
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                  "partition.assignment.strategy": HOLDER_STRATEGY, **TEST_CONSUMER_CONFIG})

    def on_assign(consumer: Any, partitions: list[Any]) -> None:
        rebalances[0] += 1

    c.subscribe([topic], on_assign=on_assign)
    done = threading.Event()
    poller = threading.Thread(target=lambda: [c.poll(0.1) for _ in iter(done.is_set, True)], daemon=True)
    poller.start()
    try:
        wait_for(lambda: rebalances[0] >= 1, timeout=60, what="the holder's partition")
        yield rebalances
    finally:
        done.set()
        poller.join(10)
        c.close()


def _sink(bootstrap: str, clickhouse: Any, db: str, topic: str, dlq: str, group: str,
          health: Health) -> Runner:
    settings = settings_for(bootstrap, db, topic, dlq, group, partition_assignment_strategy=HOLDER_STRATEGY)
    return Runner(lambda stop: run_sink(settings, clickhouse, stop, health=health,
                                        consumer_overrides=TEST_CONSUMER_CONFIG))


def _snapshots(bootstrap: str, clickhouse: Any, db: str, topic: str, dlq: str, group: str,
               health: Health) -> Runner:
    settings = SnapshotSettings(kafka_bootstrap_servers=bootstrap, clickhouse_database=db,
                                metrics_topic=topic, dlq_topic=dlq, snapshots_topic=dlq + "-snapshots",
                                group_id=group, partition_assignment_strategy=HOLDER_STRATEGY)
    service = SnapshotService(settings, clickhouse, consumer_overrides=TEST_CONSUMER_CONFIG, health=health)
    return Runner(service.run)


@pytest.mark.parametrize(("component", "start"), [("sink", _sink), ("snapshots", _snapshots)])
def test_consumer_is_ready_once_assigned_a_partition(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, ch_database: str, component: str, start: Callable[..., Runner],
) -> None:
    topic, dlq, group = topic_factory(1), topic_factory(1), group_factory()
    health = Health()
    with serving(health) as ready:
        assert ready()[0] == 503  # nothing registered yet
        with holding_the_partition(kafka_bootstrap, group, topic) as rebalances:
            runner = start(kafka_bootstrap, clickhouse, ch_database, topic, dlq, group, health)
            try:
                # the group settles with both (a leaving leader can wedge Tansu's coordinator) ...
                wait_for(lambda: rebalances[0] >= 2, timeout=60, what=f"{component} joined the group")
                # ... and the holder keeps the only partition
                assert ready() == (503, f"{component}: not assigned any partition\n")
            except BaseException:
                runner.stop()
                raise
        try:  # the holder left: the partition moves to the component
            wait_for(lambda: ready() == (200, "ok\n"), timeout=60, what=f"{component} ready", interval=0.2)
        finally:
            assert runner.stop() == 0
        assert ready() == (503, f"{component}: stopped\n")


def test_producer_is_ready_while_connected_and_says_why_once_the_exchange_is_gone(
    kafka_bootstrap: str, topic_factory: Callable[..., str],
) -> None:
    topic = topic_factory(1)
    health = Health()
    fake = FakeBinance(["BTCUSDT", "ETHUSDT"], tick=0.1).__enter__()
    running = True
    try:
        with serving(health) as ready, live_producer(fake, kafka_bootstrap, topic, Telemetry(),
                                                     health=health, symbols="BTCUSDT,ETHUSDT"):
            wait_for(lambda: ready() == (200, "ok\n"), timeout=30, what="producer ready", interval=0.1)
            fake.__exit__(None, None, None)  # the exchange is gone: sockets closed, connects refused
            running = False
            _, body = wait_for(lambda: (r := ready())[0] == 503 and r, timeout=30,
                               what="producer not ready", interval=0.1)
            assert body.startswith("producer: no websocket connected for "), body
            assert health.liveness().ok  # not ready, but its loop turns
    finally:
        if running:
            fake.__exit__(None, None, None)
