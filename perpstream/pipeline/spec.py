"""What one pipeline is made of, decided once, before anything starts (docs/layout.md).

:class:`PipelineSpec` is built from the parsed command line and the settings
(``perpstream run`` and ``perpstream up`` build it the same way): the data
directory, the broker (a cluster, or a local Tansu or Apache Kafka), the
topics and their partitions, the producer's, sink's, snapshot and asset consumers'
settings, whether the store is served. A bad setting fails here, with the one
line naming it, before a broker or a store is started. The one thing not known
yet is the local broker's address: :meth:`PipelineSpec.bound` gives the
components' settings with it once the broker runs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from perpstream.consumers.assets.settings import AssetSettings
from perpstream.consumers.sink.settings import SinkSettings
from perpstream.consumers.snapshots.settings import SnapshotSettings
from perpstream.errors import ConfigError
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime.settings import LOG_FLAGS, CommonSettings, build_settings


class QueryServerSettings(CommonSettings):
    """Where the embedded store's read-only ClickHouse HTTP interface listens."""

    http_host: str = Field(default="127.0.0.1", description="interface of the query endpoint")
    http_port: int = Field(default=8123, ge=0, le=65535,
                           description="port of the query endpoint (a free one when taken)")
    http_password: SecretStr | None = Field(
        default=None, description="password of the query endpoint; required off loopback")


#: flag dest -> field of the QueryServerSettings ``run`` and ``up`` build (the producer's: producer.cli)
RUN_FLAGS = {"data_dir": "data_dir", "http_port": "http_port", "http_host": "http_host",
             "metrics_port": "metrics_port", **LOG_FLAGS}

#: Partitions of the topics ``run`` and ``up`` create on their embedded broker. One process
#: consumes them, so more partitions buy no parallelism, and each costs the consumers an insert
#: per batch: at live load, 20% of a core and 460 MB with one partition against 30% and 504 MB with
#: six, measured by `perpstream bench live --partitions 1` and `--partitions 6`.
EMBEDDED_PARTITIONS = 1
#: ... and on a cluster, where consumer groups scale by adding processes.
CLUSTER_PARTITIONS = 6
#: Consumer timeouts on the local Tansu broker: it waits session.timeout.ms / 2 for a join
#: (docs/kafka.md), and it is new every run, so the groups start from its beginning.
TANSU_CONSUMER_OVERRIDES: Mapping[str, int] = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
#: Where the settings are built before the local broker has an address.
_PLACEHOLDER_BOOTSTRAP = "127.0.0.1:9092"

BrokerEngine = Literal["tansu", "kafka"]


def new_topic_partitions(given: int | None, *, embedded: bool) -> int:
    """``--partitions`` when given, else the default for where the topics are created."""
    if given is not None:
        if given < 1:
            raise ConfigError(f"--partitions must be >= 1, got {given}")
        return given
    return EMBEDDED_PARTITIONS if embedded else CLUSTER_PARTITIONS


def standard_topics(settings: CommonSettings, partitions: int) -> dict[str, int]:
    return {
        settings.metrics_topic: partitions,
        settings.snapshots_topic: partitions,
        settings.assets_topic: partitions,
        settings.dlq_topic: partitions,
    }


@dataclass(frozen=True)
class PipelineSpec:
    """Everything a :class:`perpstream.pipeline.Pipeline` starts, typed and validated."""

    data_dir: Path
    root: QueryServerSettings
    #: the local broker to start; None: the cluster of ``root.kafka_bootstrap_servers``
    broker: BrokerEngine | None
    topics: Mapping[str, int]
    producer: ProducerSettings
    sink: SinkSettings
    snapshots: SnapshotSettings
    assets: AssetSettings
    #: history to fetch before the producer goes live (``up --backfill``)
    backfill: ProducerSettings | None = None
    #: serve the embedded store's read-only ClickHouse HTTP interface (not ``--no-http``)
    serve_queries: bool = True
    consumer_overrides: Mapping[str, int] = field(default_factory=dict)

    @property
    def dsn(self) -> str:
        return self.root.resolved_clickhouse_dsn()

    @property
    def database(self) -> str:
        return self.root.clickhouse_database

    def bound(self, bootstrap: str) -> PipelineSpec:
        """The same pipeline with its components' settings on ``bootstrap``."""
        at = {"kafka_bootstrap_servers": bootstrap}
        return PipelineSpec(
            self.data_dir, self.root, self.broker, self.topics,
            self.producer.model_copy(update=at), self.sink.model_copy(update=at),
            self.snapshots.model_copy(update=at), self.assets.model_copy(update=at),
            None if self.backfill is None else self.backfill.model_copy(update=at),
            self.serve_queries, self.consumer_overrides)


def build_spec(root: QueryServerSettings, producer: ProducerSettings, *, broker: BrokerEngine | None,
               partitions: int | None, serve_queries: bool,
               backfill_since: str | None = None) -> PipelineSpec:
    """The spec of ``run`` and ``up``: the consumers' settings from the environment on the
    same store and data directory, topics for where they are created."""
    if broker is not None and root.kafka_bootstrap_servers is not None:
        raise ConfigError("--broker chooses the local broker, but a Kafka cluster is set "
                          "(PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS): give one or the other")
    data_dir = Path(root.data_dir).resolve()
    shared = {"kafka_bootstrap_servers": root.kafka_bootstrap_servers or _PLACEHOLDER_BOOTSTRAP,
              "clickhouse_dsn": root.resolved_clickhouse_dsn(), "data_dir": str(data_dir)}
    producer = producer.model_copy(update={"kafka_bootstrap_servers": shared["kafka_bootstrap_servers"],
                                           "data_dir": str(data_dir)})
    backfill = None
    if backfill_since is not None:
        if producer.source != "live":
            raise ConfigError("--backfill needs the live source: history comes from the exchange's "
                              "REST API")
        backfill = build_settings(ProducerSettings, values={
            **producer.model_dump(), "backfill_since": backfill_since, "backfill_until": None})
    return PipelineSpec(
        data_dir=data_dir, root=root, broker=broker,
        topics=standard_topics(root, new_topic_partitions(partitions, embedded=broker is not None)),
        producer=producer, sink=build_settings(SinkSettings, values=shared),
        snapshots=build_settings(SnapshotSettings, values=shared),
        assets=build_settings(AssetSettings, values=shared), backfill=backfill,
        serve_queries=serve_queries,
        consumer_overrides=TANSU_CONSUMER_OVERRIDES if broker == "tansu" else {},
    )
