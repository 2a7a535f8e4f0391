"""``perpstream run``, ``perpstream topics`` and ``perpstream broker``.

- ``perpstream run``: the whole pipeline in ONE process on the embedded
  default: a local Tansu broker (unless ``PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS``
  names a cluster), embedded ClickHouse (chdb) under ``--data-dir`` (unless
  ``PERPSTREAM_CLICKHOUSE_DSN`` is set), the producer, the sink group and the
  snapshot and asset groups as threads. One process, because a chdb directory can be
  opened by one OS process only; the members share one ClickHouse client.
  It is a :class:`~perpstream.pipeline.root.Pipeline` under the fail-fast
  policy: a component that fails ends the run, which drains and exits 1.
  Shutdown order: the producer stops and flushes first, the consumers then
  drain what was delivered (bounded), then stop and commit.
- ``perpstream topics``: create the standard topics.
- ``perpstream broker``: a local broker on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the client module costs ~0.17 s of `perpstream --help` (-X importtime)
    from clickhouse_connect.driver.client import Client

from perpstream.consumers.assets.settings import AssetSettings
from perpstream.consumers.sink.settings import SinkSettings
from perpstream.consumers.snapshots.settings import SnapshotSettings
from perpstream.errors import ConfigError
from perpstream.kafka_runtime import KAFKA_VERSION, KafkaCluster
from perpstream.local import TansuBroker, ensure_topics
from perpstream.pipeline.lock import holding
from perpstream.pipeline.root import CONSUMERS, Pipeline
from perpstream.pipeline.spec import (
    RUN_FLAGS,
    QueryServerSettings,
    build_spec,
    standard_topics,
)
from perpstream.producer.cli import PRODUCER_SETTINGS, add_venue_flags, settings_from_args, source_option
from perpstream.runtime.health import Health
from perpstream.runtime.secrets import redact_dsn
from perpstream.runtime.settings import (
    CommonSettings,
    SettingsUse,
    add_log_flags,
    build_settings,
    declare_settings,
)
from perpstream.runtime.signals import stop_on_signals
from perpstream.runtime.supervisor import FailFast
from perpstream.runtime.telemetry import Telemetry, configure_logging
from perpstream.runtime.tuning import tune_gc

log = logging.getLogger("perpstream.run")


def add_market_flags(p: argparse.ArgumentParser) -> None:
    """The flags of the market a pipeline follows, the same for `run` and `up` (docs/producer.md)."""
    p.add_argument("--symbols", help="comma-separated symbols of the live source (default: every "
                   "PERPETUAL/TRADING symbol)")
    p.add_argument("--all", action="store_true", default=None, help="every PERPETUAL/TRADING symbol")
    p.add_argument("--sim-symbols", type=int, help="number of simulated symbols (default 20)")
    p.add_argument("--seed", type=int, help="simulated market seed (default 1)")
    p.add_argument("--sim-rate", type=float,
                   help="simulated seconds per wall second (default 1; 0 = unthrottled)")
    p.add_argument("--replay-rate", type=float, help="replay speed factor (0 = as fast as possible)")
    p.add_argument("--ws-url", help="websocket base (env PERPSTREAM_BINANCE_WS_URL)")
    p.add_argument("--rest-url", help="REST base (env PERPSTREAM_BINANCE_REST_URL)")
    p.add_argument("--testnet", action="store_true", default=None, help="Binance futures testnet")
    p.add_argument("--oi-interval", type=float, help="open-interest poll period per symbol, s")
    add_venue_flags(p)


def add_embedded_flags(p: argparse.ArgumentParser) -> None:
    """The flags of the embedded store and broker both pipelines run on (docs/query-server.md)."""
    p.add_argument("--partitions", type=int, help="partitions of new topics (default: 1 on the embedded "
                   "broker, 6 on a cluster)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus text (/metrics), /healthz and /readyz")
    p.add_argument("--http-port", type=int,
                   help="ClickHouse HTTP interface (read-only) of the embedded store (default 8123; "
                   "a free port when taken; 0 = any free port)")
    p.add_argument("--http-host", help="interface to serve it on (default 127.0.0.1; another one needs "
                   "PERPSTREAM_HTTP_PASSWORD)")
    p.add_argument("--no-http", action="store_true", help="do not serve the embedded store")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    r = sub.add_parser(
        "run",
        help="producer + sink + snapshots + assets in one process (embedded broker and ClickHouse by "
        "default)",
    )
    r.add_argument("--source", type=source_option("live", "sim"), metavar="live|sim|replay:FILE",
                   help="default live; replay:FILE = a file written by `perpstream record`")
    add_market_flags(r)
    r.add_argument("--duration", type=float, help="stop cleanly after this many seconds")
    r.add_argument("--data-dir", help="embedded state directory (env PERPSTREAM_DATA_DIR)")
    add_embedded_flags(r)
    r.add_argument("--summary-interval", type=float, default=5.0, help="seconds between summary lines")
    r.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add_log_flags(r, level=False)  # default text here, unless PERPSTREAM_LOG_FORMAT says otherwise
    r.set_defaults(func=_run)
    _declare_run_settings(r)

    p = sub.add_parser("broker", help="run a local broker until Ctrl+C: Tansu (memory only) or Apache "
                       "Kafka (durable, one or three nodes)")
    p.add_argument("--engine", choices=["tansu", "kafka"], default="tansu",
                   help=f"tansu: the embedded default, in memory; kafka: Apache Kafka {KAFKA_VERSION} in "
                   "KRaft mode, needs Java 17 and Maven or KAFKA_HOME (docs/kafka.md)")
    p.add_argument("--nodes", type=int, choices=[1, 3], default=1,
                   help="Apache Kafka: combined broker+controller nodes (default 1)")
    p.add_argument("--data-dir", help="Apache Kafka: where the nodes keep their logs (default "
                   "<PERPSTREAM_DATA_DIR>/kafka); a restart on the same directory keeps every topic")
    p.add_argument("--port", type=int, help="Tansu: the port (default 9092)")
    p.add_argument("--heap-mb", type=int, default=512,
                   help="Apache Kafka: heap of each node, MB (default 512)")
    p.set_defaults(func=_broker)

    t = sub.add_parser("topics", help="create the metrics, snapshots, assets and DLQ topics if missing")
    t.add_argument("--bootstrap-servers", help="default: PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS")
    t.add_argument("--partitions", type=int, default=6, help="partitions per topic (default 6)")
    t.add_argument("--replication-factor", type=int,
                   help="copies of each partition (env PERPSTREAM_TOPIC_REPLICATION_FACTOR; default "
                   "min(3, brokers))")
    t.add_argument("--min-insync-replicas", type=int,
                   help="env PERPSTREAM_TOPIC_MIN_INSYNC_REPLICAS (default one less than the replication "
                   "factor, at least 1)")
    t.set_defaults(func=_topics)
    declare_settings(t, SettingsUse(CommonSettings, TOPICS_FLAGS))


def _declare_run_settings(parser: argparse.ArgumentParser) -> None:
    declare_settings(parser, SettingsUse(QueryServerSettings, RUN_FLAGS), PRODUCER_SETTINGS,
                     SettingsUse(SinkSettings), SettingsUse(SnapshotSettings), SettingsUse(AssetSettings))


#: flag dest -> field of ``perpstream topics``
TOPICS_FLAGS = {"bootstrap_servers": "kafka_bootstrap_servers",
                "replication_factor": "topic_replication_factor",
                "min_insync_replicas": "topic_min_insync_replicas"}


def _topics(args: argparse.Namespace) -> int:
    settings = build_settings(CommonSettings, args, TOPICS_FLAGS)
    bootstrap = settings.kafka_bootstrap_servers
    if not bootstrap:
        raise ConfigError(
            "no Kafka cluster: set PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS or pass --bootstrap-servers"
        )
    if args.partitions < 1:
        raise ConfigError(f"--partitions must be >= 1, got {args.partitions}")
    differences = ensure_topics(
        bootstrap, standard_topics(settings, args.partitions), plan=settings.topic_plan(),
        security=settings.kafka_security(),
    )
    for line in differences:
        print(f"warning: existing topic differs from the settings: {line}")
    print(f"topics ready on {bootstrap}: {', '.join(standard_topics(settings, args.partitions))}")
    return 0


def _broker(args: argparse.Namespace) -> int:
    if args.engine == "tansu":
        if args.data_dir is not None or args.nodes != 1:
            raise ConfigError("--data-dir and --nodes are for --engine kafka (Tansu keeps topics in memory)")
        with stop_on_signals() as stop, TansuBroker(port=args.port or 9092) as broker:
            print(f"broker listening on {broker.bootstrap_servers}; Ctrl+C stops it", flush=True)
            while not stop.wait(0.5):
                if not broker.running:
                    print("broker exited", flush=True)
                    return 1
        return 0
    if args.port is not None:
        raise ConfigError("--port is for --engine tansu (Apache Kafka nodes take free ports, kept in "
                          "<data-dir>/cluster.json)")
    if args.heap_mb < 128:
        raise ConfigError(f"--heap-mb must be at least 128, got {args.heap_mb}")
    data_dir = (Path(args.data_dir) if args.data_dir
                else Path(build_settings(CommonSettings, args, {}).data_dir, "kafka"))
    cluster = KafkaCluster(data_dir, nodes=args.nodes, heap_mb=args.heap_mb)
    with stop_on_signals() as stop:
        print(f"starting Apache Kafka {KAFKA_VERSION}: {args.nodes} node(s) in {data_dir}", flush=True)
        with cluster:
            print(f"broker listening on {cluster.bootstrap_servers}; Ctrl+C stops it "
                  f"(logs: {data_dir}/node-*/kafka.log)", flush=True)
            while not stop.wait(0.5):
                down = [n.node_id for n in cluster.nodes if not cluster.running(n.node_id)]
                if down:
                    print(f"node(s) {down} exited: see {data_dir}/node-{down[0]}/kafka.log", flush=True)
                    return 1
            print("stopping (controlled shutdown)", flush=True)
    return 0


def _run(args: argparse.Namespace) -> int:
    root = build_settings(QueryServerSettings, args, RUN_FLAGS)
    args.bootstrap_servers = root.kafka_bootstrap_servers
    spec = build_spec(root, settings_from_args(args),
                      broker=None if root.kafka_bootstrap_servers else "tansu",
                      partitions=args.partitions, serve_queries=not args.no_http)
    with holding(spec.data_dir):
        configure_logging(root.log_level, root.log_format if "log_format" in root.model_fields_set
                          else "text")  # run's default: text for a terminal
        tune_gc(root.gc_threshold)
        with stop_on_signals() as interrupt, Pipeline(spec, FailFast(stop_others=False),
                                                      telemetry=Telemetry(), health=Health()) as pipeline:
            _announce(pipeline)
            _watch(pipeline, interrupt, args.summary_interval)
            interrupt.clear()  # a second Ctrl+C skips the catch-up
            pipeline.drain(interrupt)
            _print_summary(pipeline.telemetry)
            assert pipeline.client is not None
            _print_tables(pipeline.client, spec.database)
            return pipeline.exit_code()


def _announce(pipeline: Pipeline) -> None:
    spec = pipeline.spec
    if pipeline.broker is not None:
        print(f"embedded broker on {pipeline.bootstrap} (in memory: topics live as long as this run)")
    print(f"ClickHouse: {redact_dsn(spec.dsn)}, database {spec.database}")
    if pipeline.endpoint_url:
        print(f"queries (read-only ClickHouse HTTP interface): {pipeline.endpoint_url}  "
              f"e.g. perpstream sql 'SELECT count() FROM {spec.database}.metric_points'", flush=True)


def _watch(pipeline: Pipeline, interrupt: threading.Event, summary_interval: float) -> None:
    """Until the producer ends (``--duration``, a replay's end), Ctrl+C, or a failure."""
    producer = pipeline.components["producer"]
    consumers = [pipeline.components[n] for n in CONSUMERS]
    next_summary = time.monotonic() + summary_interval
    while producer.is_alive() and not interrupt.wait(0.2):
        if pipeline.supervisor.failure.is_set() or any(not c.is_alive() for c in consumers):
            log.error("a component stopped unexpectedly; shutting down")
            return
        if time.monotonic() >= next_summary:
            next_summary += summary_interval
            _print_summary(pipeline.telemetry)


def _print_summary(telemetry: Telemetry) -> None:
    t = telemetry.total
    print(
        f"published={t('points_published'):.0f} delivered={t('points_delivered'):.0f} "
        f"rejected_frames={t('frames_rejected'):.0f} stored={t('records_stored'):.0f} "
        f"dlq={t('records_dlq'):.0f} snapshots={t('snapshots_emitted'):.0f} "
        f"asset_snapshots={t('asset_snapshots_emitted'):.0f}",
        flush=True,
    )


def _print_tables(client: Client, database: str) -> None:
    with contextlib.suppress(Exception):
        points = client.command(f"SELECT count() FROM {database}.metric_points FINAL")
        snaps = client.command(f"SELECT count() FROM {database}.market_snapshots FINAL")
        assets = client.command(f"SELECT count() FROM {database}.asset_snapshots FINAL")
        print(f"ClickHouse {database}.metric_points: {points} rows, market_snapshots: {snaps} rows, "
              f"asset_snapshots: {assets} rows")
        rows = client.query(
            f"SELECT symbol, snapshot_time, mark_last, funding_last, oi_last, basis_last, "
            f"mark_volatility, stale FROM {database}.market_snapshots FINAL "
            f"WHERE window_s = 60 ORDER BY snapshot_time DESC, symbol LIMIT 5"
        ).result_rows
        for row in rows:
            print("  ", *row)
