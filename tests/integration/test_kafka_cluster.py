"""Apache Kafka as the project runs it (perpstream.kafka_runtime, docs/kafka.md): a three-node
cluster on loopback takes the product's topics with three copies and min.insync.replicas 2,
keeps taking acks=all writes with one broker down and acknowledges none with two down, and
every acknowledged record survives nodes killed and restarted on their own logs. A topic that
exists with other settings is reported. Without Java the launcher says what to install in one line."""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource

from perpstream.kafka_runtime import KafkaCluster, java_major
from perpstream.local import ensure_topics
from perpstream.runtime.settings import TopicPlan
from tests.conftest import skip_without_kafka
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaCluster]:
    skip_without_kafka()
    with KafkaCluster(tmp_path_factory.mktemp("kafka3"), nodes=3, heap_mb=320) as c:
        yield c


def _produce(bootstrap: str, topic: str, n: int, *, first: int = 0, timeout: float = 30) -> list[Any]:
    """Sends ``n`` numbered records with acks=all; the delivery errors (None for each success)."""
    errors: list[Any] = []
    p = Producer({"bootstrap.servers": bootstrap, "acks": "all", "enable.idempotence": True,
                  "message.timeout.ms": int(timeout * 1000), "linger.ms": 5})
    for i in range(first, first + n):
        p.produce(topic, str(i).encode(), key=str(i % 7).encode(),
                  on_delivery=lambda err, _msg: errors.append(err))
    p.flush(timeout + 10)
    return errors


def _read_all(bootstrap: str, topic: str, partitions: int) -> list[int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:8]}",
                  "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    try:
        highs = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=20)[1]
                 for p in range(partitions)}
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        out: list[int] = []
        done: dict[int, int] = dict.fromkeys(range(partitions), 0)

        def more() -> bool:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(int(msg.value()))
                done[msg.partition()] = msg.offset() + 1
            return all(done[p] >= highs[p] for p in done)

        wait_for(more, 60, "every record read back", interval=0)
        return out
    finally:
        c.close()


def test_topics_get_three_copies_and_two_insync_replicas(cluster: KafkaCluster) -> None:
    topic = f"rf-{uuid.uuid4().hex[:8]}"
    assert ensure_topics(cluster.bootstrap_servers, {topic: 6}) == []
    admin = AdminClient({"bootstrap.servers": cluster.bootstrap_servers})
    # this client may ask another broker than ensure_topics did, whose metadata can lag a moment
    wait_for(lambda: len(admin.list_topics(topic, timeout=20).topics[topic].partitions) == 6,
             what="the topic's partitions on the broker asked")
    md = admin.list_topics(topic, timeout=20).topics[topic]
    assert {len(p.replicas) for p in md.partitions.values()} == {3}
    (fut,) = admin.describe_configs([ConfigResource(ConfigResource.Type.TOPIC, topic)]).values()
    configs = fut.result(20)
    assert configs["min.insync.replicas"].value == "2"
    assert configs["compression.type"].value == "producer"
    # asked again with other settings: nothing is changed, every difference is reported
    plan = TopicPlan(replication_factor=2, min_insync_replicas=1, retention_ms={topic: 3_600_000})
    differences = ensure_topics(cluster.bootstrap_servers, {topic: 8}, plan=plan)
    assert any("6 partitions, settings ask 8" in d for d in differences), differences
    assert any("replication factor 3, settings ask 2" in d for d in differences), differences
    assert any("min.insync.replicas is 2, settings ask 1" in d for d in differences), differences
    assert any("retention.ms" in d for d in differences), differences


def test_writes_survive_one_broker_down_and_stop_with_two(cluster: KafkaCluster) -> None:
    topic = f"isr-{uuid.uuid4().hex[:8]}"
    ensure_topics(cluster.bootstrap_servers, {topic: 3})
    assert _produce(cluster.bootstrap_servers, topic, 300) == [None] * 300

    victim = cluster.busiest_leader([topic])
    cluster.kill_node(victim)
    try:
        # one broker down: two in-sync replicas remain, acks=all writes go on
        assert _produce(cluster.bootstrap_servers, topic, 300, first=300) == [None] * 300
        second = next(n.node_id for n in cluster.nodes if n.node_id != victim)
        cluster.kill_node(second)
        try:
            # two down: one copy left, fewer than min.insync.replicas: every write is refused
            errors = _produce(cluster.bootstrap_servers, topic, 20, first=600, timeout=8)
            assert errors and all(e is not None for e in errors)
            assert {e.code() for e in errors} <= {KafkaError.NOT_ENOUGH_REPLICAS, KafkaError._MSG_TIMED_OUT,
                                                 KafkaError.NOT_ENOUGH_REPLICAS_AFTER_APPEND,
                                                 KafkaError.REQUEST_TIMED_OUT}, errors
        finally:
            cluster.start_node(second)
    finally:
        cluster.start_node(victim)
    cluster.wait_ready()
    # restarted on their own logs: every acknowledged record is there, once. A write that timed
    # out with two brokers down may still have been appended by the leader before its ISR shrank,
    # and is then committed once the others are back: its fate was unknown, not "lost"
    read = _read_all(cluster.bootstrap_servers, topic, 3)
    assert len(read) == len(set(read)), "a record stored twice"
    assert set(range(600)) <= set(read) <= set(range(620))


def test_a_cluster_started_again_on_its_directory_keeps_its_topics(
        tmp_path: Path, apache_kafka: None) -> None:
    topic = "kept"
    with KafkaCluster(tmp_path, nodes=1, heap_mb=256) as first:
        ensure_topics(first.bootstrap_servers, {topic: 2})
        assert _produce(first.bootstrap_servers, topic, 50) == [None] * 50
        first.kill_node(1)  # no controlled shutdown: as on a crash
    with KafkaCluster(tmp_path, nodes=1, heap_mb=256) as again:
        assert sorted(_read_all(again.bootstrap_servers, topic, 2)) == list(range(50))
    with pytest.raises(Exception, match="cluster of 1 node"):
        KafkaCluster(tmp_path, nodes=3).start()


def test_without_java_the_broker_command_says_what_to_install(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    env = {"HOME": str(tmp_path), "PATH": str(bin_dir), "PERPSTREAM_DATA_DIR": str(tmp_path / "data")}
    done = subprocess.run([sys.executable, "-m", "perpstream.cli", "broker", "--engine", "kafka"],
                          env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Java 17" in lines[0] and "apt-get install" in lines[0], done.stderr
    assert "Traceback" not in done.stderr


def test_java_versions_are_read_as_java_prints_them() -> None:
    assert java_major('openjdk version "17.0.15" 2025-04-15') == 17
    assert java_major('openjdk version "21" 2023-09-19') == 21
    assert java_major('java version "1.8.0_402"') == 8
    assert java_major("no version here") is None
