"""The local broker of a pipeline without a Kafka cluster, and how it is brought back.

Tansu (in memory: restarted on its port, the topics created again) or a
one-node Apache Kafka whose logs live in ``<data-dir>/kafka`` (restarted on its
own logs: every topic and committed offset survives, docs/kafka.md).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from pathlib import Path

from perpstream.errors import PerpstreamError
from perpstream.kafka_runtime import KAFKA_VERSION, KafkaCluster
from perpstream.local import TansuBroker, ensure_topics
from perpstream.pipeline.spec import BrokerEngine
from perpstream.runtime.backoff import backoff
from perpstream.runtime.telemetry import Telemetry

log = logging.getLogger("perpstream.broker")

#: Heap of the local Apache Kafka node of ``up --broker kafka``: one node, a few partitions.
KAFKA_HEAP_MB = 384


def local_broker_engine(chosen: BrokerEngine | None, data_dir: Path) -> BrokerEngine:
    """``--broker`` as given, else kafka when the data directory already holds an Apache Kafka
    cluster (its topics and offsets are there), else tansu."""
    if chosen is not None:
        return chosen
    return "kafka" if (data_dir / "kafka" / "cluster.json").exists() else "tansu"


class LocalBroker:
    """A started local broker: its address, whether it runs, :meth:`watch` to restart it."""

    def __init__(self, data_dir: Path, telemetry: Telemetry, engine: BrokerEngine) -> None:
        self.engine = engine
        self._telemetry = telemetry
        self._delays = backoff(1.0, 2.0, 30.0)
        self._next_try = 0.0
        self.tansu: TansuBroker | None = None
        self.kafka: KafkaCluster | None = None
        if engine == "kafka":
            self.log_path = data_dir / "kafka" / "node-1" / "kafka.log"
            self.kafka = KafkaCluster(data_dir / "kafka", nodes=1, heap_mb=KAFKA_HEAP_MB).start()
        else:
            data_dir.mkdir(parents=True, exist_ok=True)
            self.log_path = data_dir / "broker.log"
            self.tansu = TansuBroker(log_path=self.log_path).start()

    @property
    def bootstrap(self) -> str:
        if self.kafka is not None:
            return self.kafka.bootstrap_servers
        assert self.tansu is not None
        return self.tansu.bootstrap_servers

    @property
    def running(self) -> bool:
        if self.kafka is not None:
            return self.kafka.running(1)
        return self.tansu is not None and self.tansu.running

    @property
    def in_memory(self) -> bool:
        return self.kafka is None

    @property
    def note(self) -> str:
        """What kind of broker, for the ready lines."""
        if self.in_memory:
            return " (local Tansu, in memory)"
        return f" (local Apache Kafka {KAFKA_VERSION}, logs in the data directory)"

    def watch(self, topics: Mapping[str, int]) -> None:
        """Called from the main loop: restart a broker that exited (Tansu's topics created again)."""
        if self.running or time.monotonic() < self._next_try:
            return
        log.error("the local broker exited; restarting it on %s (its log: %s)", self.bootstrap, self.log_path)
        self._telemetry.inc("component_restarts", labels={"component": "broker"})
        try:
            if self.kafka is not None:
                self.kafka.start_node(1)
            else:
                assert self.tansu is not None
                self.tansu = TansuBroker(self.tansu.port, log_path=self.log_path).start()
            ensure_topics(self.bootstrap, dict(topics))
            self._delays = backoff(1.0, 2.0, 30.0)
        except PerpstreamError as exc:
            delay = next(self._delays)
            self._next_try = time.monotonic() + delay
            log.error("restarting the local broker failed (%s); next try in %.1f s", exc, delay)

    def readiness(self) -> str | None:
        return None if self.running else "the local broker exited; restarting it"

    def stop(self) -> None:
        if self.kafka is not None:
            self.kafka.stop()
        if self.tansu is not None:
            self.tansu.stop()
