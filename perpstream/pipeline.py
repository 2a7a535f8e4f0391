"""Process orchestration for the command line.

- ``perpstream run``: the whole pipeline in ONE process on the embedded
  default: a local Tansu broker (unless ``PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS``
  names a cluster), embedded ClickHouse (chdb) under ``--data-dir`` (unless
  ``PERPSTREAM_CLICKHOUSE_DSN`` is set), the producer, the sink group and the
  snapshot group as threads. One process, because a chdb directory can be
  opened by one OS process only; the members share one ClickHouse client.
  Shutdown order: the producer stops and flushes first, the consumers then
  drain what was delivered (bounded), then stop and commit.
- ``perpstream topics``: create the standard topics.
- ``perpstream broker``: a local Tansu broker on its own.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import logging
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr

from perpstream.errors import ConfigError, PerpstreamError
from perpstream.kafka_runtime import KAFKA_VERSION, KafkaCluster
from perpstream.local import TansuBroker, ensure_topics, open_clickhouse
from perpstream.producer.cli import source_option
from perpstream.query_server import QueryServer, ReadOnlyQueries
from perpstream.runtime.endpoint import (
    DataDirBusyError,
    DataDirLock,
    read_endpoint,
    remove_endpoint,
    write_endpoint,
)
from perpstream.runtime.health import Health
from perpstream.runtime.secrets import redact_dsn
from perpstream.runtime.settings import (
    LOG_FLAGS,
    CommonSettings,
    SettingsUse,
    add_log_flags,
    build_settings,
    declare_settings,
)
from perpstream.runtime.signals import stop_on_signals
from perpstream.runtime.telemetry import Telemetry, configure_logging, operator_endpoints
from perpstream.runtime.tuning import tune_gc

log = logging.getLogger("perpstream.run")

#: How long the consumers may take to store what the producer delivered, on stop.
CATCH_UP_TIMEOUT = 60.0


class AlreadyRunningError(PerpstreamError):
    """Another pipeline holds this data directory."""


def locked_data_dir(data_dir: Path) -> DataDirLock:
    """The data directory's lock, held; ``run`` and ``up`` give the same answer when another
    process holds it: :class:`AlreadyRunningError` (exit 1) saying which process, since when,
    where it answers queries and how to stop it."""
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except DataDirBusyError as exc:
        raise AlreadyRunningError(already_running(data_dir, exc.pid)) from None
    return lock


def already_running(data_dir: Path, pid: int | None) -> str:
    ep = read_endpoint(data_dir)
    who = f"pid {ep.pid if ep else pid}" if (ep or pid) else "another process"
    lines = [f"perpstream already runs on {data_dir} ({who}"
             + (f", since {ep.started_at})" if ep else ")")]
    if ep is not None:
        lines.append(f"  queries: {ep.url}   e.g. perpstream sql --data-dir {data_dir} "
                     f"'SELECT count() FROM perpstream.metric_points'")
    lines.append(f"  stop it with Ctrl+C in its terminal, or: kill -INT {ep.pid if ep else pid or '<pid>'}")
    return "\n".join(lines)


class QueryServerSettings(CommonSettings):
    """Where the embedded store's read-only ClickHouse HTTP interface listens."""

    http_host: str = Field(default="127.0.0.1", description="interface of the query endpoint")
    http_port: int = Field(default=8123, ge=0, le=65535,
                           description="port of the query endpoint (a free one when taken)")
    http_password: SecretStr | None = Field(
        default=None, description="password of the query endpoint; required off loopback")


def register(sub: Any) -> None:
    r = sub.add_parser(
        "run",
        help="producer + sink + snapshots in one process (embedded broker and ClickHouse by default)",
    )
    r.add_argument("--source", type=source_option("live", "sim"), metavar="live|sim|replay:FILE",
                   help="default live; replay:FILE = a file written by `perpstream record`")
    r.add_argument("--symbols", help="comma-separated symbols (live source)")
    r.add_argument("--all", action="store_true", default=None, help="every PERPETUAL/TRADING symbol")
    r.add_argument("--sim-symbols", type=int, help="number of simulated symbols (default 20)")
    r.add_argument("--seed", type=int, help="simulated market seed (default 1)")
    r.add_argument("--sim-rate", type=float, help="simulated seconds per wall second (0 = unthrottled)")
    r.add_argument("--replay-rate", type=float, help="replay speed factor (0 = as fast as possible)")
    r.add_argument("--duration", type=float, help="stop cleanly after this many seconds")
    r.add_argument("--ws-url", help="websocket base (env PERPSTREAM_BINANCE_WS_URL)")
    r.add_argument("--rest-url", help="REST base (env PERPSTREAM_BINANCE_REST_URL)")
    r.add_argument("--testnet", action="store_true", default=None, help="Binance futures testnet")
    r.add_argument("--oi-interval", type=float, help="open-interest poll period per symbol, s")
    r.add_argument("--data-dir", help="embedded state directory (env PERPSTREAM_DATA_DIR)")
    r.add_argument("--partitions", type=int, help="partitions of new topics (default: 1 on the embedded "
                   "broker, 6 on a cluster)")
    r.add_argument("--metrics-port", type=int, help="serve Prometheus text (/metrics), /healthz and /readyz")
    r.add_argument("--summary-interval", type=float, default=5.0, help="seconds between summary lines")
    r.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    add_log_flags(r, level=False)  # default text here, unless PERPSTREAM_LOG_FORMAT says otherwise
    r.add_argument("--http-port", type=int,
                   help="ClickHouse HTTP interface (read-only) of the embedded store (default 8123; "
                   "a free port when taken; 0 = any free port)")
    r.add_argument("--http-host", help="interface to serve it on (default 127.0.0.1; another one needs "
                   "PERPSTREAM_HTTP_PASSWORD)")
    r.add_argument("--no-http", action="store_true", help="do not serve the embedded store")
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

    t = sub.add_parser("topics", help="create the metrics, snapshots and DLQ topics if missing")
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


#: flag dest -> field of the QueryServerSettings ``run`` builds (the producer's flags: producer.cli)
RUN_FLAGS = {"data_dir": "data_dir", "http_port": "http_port", "http_host": "http_host",
             "metrics_port": "metrics_port", **LOG_FLAGS}


def _declare_run_settings(parser: argparse.ArgumentParser) -> None:
    from perpstream.consumers.sink.settings import SinkSettings
    from perpstream.consumers.snapshots.settings import SnapshotSettings
    from perpstream.producer.cli import PRODUCER_SETTINGS

    declare_settings(parser, SettingsUse(QueryServerSettings, RUN_FLAGS), PRODUCER_SETTINGS,
                     SettingsUse(SinkSettings), SettingsUse(SnapshotSettings))


#: Partitions of the topics ``run`` and ``up`` create on their embedded broker. One process
#: consumes them, so more partitions buy no parallelism, and each costs the consumers an insert
#: per batch: at live load, 20% of a core and 460 MB with one partition against 30% and 504 MB with
#: six (`perpstream bench live --partitions 1` / `6`, README "Performance and reliability").
EMBEDDED_PARTITIONS = 1
#: ... and on a cluster, where consumer groups scale by adding processes.
CLUSTER_PARTITIONS = 6


def new_topic_partitions(given: int | None, *, embedded: bool) -> int:
    """``--partitions`` when given, else the default for where the topics are created."""
    if given is not None:
        return given
    return EMBEDDED_PARTITIONS if embedded else CLUSTER_PARTITIONS


def standard_topics(settings: CommonSettings, partitions: int) -> dict[str, int]:
    return {
        settings.metrics_topic: partitions,
        settings.snapshots_topic: partitions,
        settings.dlq_topic: partitions,
    }


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


class _Thread(threading.Thread):
    """A component thread that keeps its exit code (1 when it raised)."""

    def __init__(self, name: str, target: Callable[[], int]) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.rc: int | None = None

    def run(self) -> None:
        try:
            self.rc = int(self._target_fn() or 0)
        except PerpstreamError as exc:  # the world's fault (a registry refusing the schema): one line
            log.error("%s failed: %s", self.name, exc)
            self.rc = 1
        except Exception:
            log.exception("%s failed", self.name)
            self.rc = 1


def _run(args: argparse.Namespace) -> int:
    if args.partitions is not None and args.partitions < 1:
        raise ConfigError(f"--partitions must be >= 1, got {args.partitions}")
    common = build_settings(QueryServerSettings, args, RUN_FLAGS)
    lock = locked_data_dir(Path(common.data_dir).resolve())
    try:
        return _run_locked(args, common)
    finally:
        lock.release()


def _run_locked(args: argparse.Namespace, common: QueryServerSettings) -> int:
    from perpstream.consumers.sink.service import run_sink
    from perpstream.consumers.sink.settings import SinkSettings
    from perpstream.consumers.snapshots.app import SnapshotService
    from perpstream.consumers.snapshots.settings import SnapshotSettings
    from perpstream.producer.app import ProducerApp
    from perpstream.producer.cli import settings_from_args

    configure_logging(common.log_level, common.log_format if "log_format" in common.model_fields_set
                      else "text")  # run's default: text for a terminal
    tune_gc(common.gc_threshold)
    telemetry, health = Telemetry(), Health()

    with contextlib.ExitStack() as stack:
        stop = stack.enter_context(stop_on_signals())
        bootstrap = common.kafka_bootstrap_servers
        if bootstrap is None:
            Path(common.data_dir).mkdir(parents=True, exist_ok=True)
            broker = stack.enter_context(TansuBroker(log_path=Path(common.data_dir, "broker.log")))
            bootstrap = broker.bootstrap_servers
            print(f"embedded broker on {bootstrap} (in memory: topics live as long as this run)")
        partitions = new_topic_partitions(args.partitions, embedded=common.kafka_bootstrap_servers is None)
        for line in ensure_topics(bootstrap, standard_topics(common, partitions), plan=common.topic_plan(),
                                  security=common.kafka_security()):
            print(f"warning: existing topic differs from the settings: {line}")
        dsn = common.resolved_clickhouse_dsn()
        client = open_clickhouse(dsn, **common.clickhouse_options())
        stack.callback(client.close)
        print(f"ClickHouse: {redact_dsn(dsn)}, database {common.clickhouse_database}")
        if dsn.startswith("chdb://") and not args.no_http:
            query_server = QueryServer(
                ReadOnlyQueries(dsn), host=common.http_host, port=common.http_port,
                password=common.http_password.get_secret_value() if common.http_password else None,
            ).start()
            stack.callback(query_server.stop)
            write_endpoint(common.data_dir, query_server.url)
            stack.callback(remove_endpoint, common.data_dir)
            print(f"queries (read-only ClickHouse HTTP interface): {query_server.url}  "
                  f"e.g. perpstream sql 'SELECT count() FROM {common.clickhouse_database}.metric_points'")

        shared = {"kafka_bootstrap_servers": bootstrap, "clickhouse_dsn": dsn,
                  "data_dir": common.data_dir}
        args.bootstrap_servers = bootstrap
        producer_settings = settings_from_args(args)
        sink_settings = build_settings(SinkSettings, values=shared)
        snap_settings = build_settings(SnapshotSettings, values=shared)
        if common.kafka_bootstrap_servers is None:
            # The embedded broker is new every run: consumer groups start from its beginning.
            overrides: dict[str, Any] = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
        else:
            overrides = {}

        stack.enter_context(operator_endpoints(telemetry, common.metrics_port, health))

        consumers_stop = threading.Event()
        producer_stop = threading.Event()
        snapshots = SnapshotService(snap_settings, client, telemetry, consumer_overrides=overrides,
                                    health=health)
        threads = [
            _Thread("sink", lambda: run_sink(sink_settings, client, consumers_stop, telemetry=telemetry,
                                             consumer_overrides=overrides, health=health)),
            _Thread("snapshots", functools.partial(snapshots.run, consumers_stop)),
        ]
        producer = ProducerApp(producer_settings, telemetry, health=health)
        producer_thread = _Thread("producer", functools.partial(producer.run, producer_stop))
        for t in threads:
            t.start()
        producer_thread.start()

        next_summary = time.monotonic() + args.summary_interval
        while producer_thread.is_alive() and not stop.is_set():
            if any(not t.is_alive() for t in threads):
                log.error("a consumer stopped unexpectedly; shutting down")
                break
            if time.monotonic() >= next_summary:
                next_summary += args.summary_interval
                _print_summary(telemetry)
            time.sleep(0.2)

        producer_stop.set()
        producer_thread.join()
        stop.clear()  # a second Ctrl+C skips the catch-up
        catch_up(telemetry, stop, threads)
        consumers_stop.set()
        for t in threads:
            t.join()
        _print_summary(telemetry)
        _print_tables(client, common.clickhouse_database)
        rcs = [producer_thread.rc or 0, *[t.rc or 0 for t in threads]]
        # Release every Kafka client before the embedded broker stops under them
        # (the telemetry's computed gauges hold the producer's publisher and the snapshot handlers).
        telemetry.detach_gauges()
        del producer, snapshots, threads, producer_thread
        gc.collect()
        return max(rcs)


def catch_up(telemetry: Telemetry, stop: threading.Event, consumers: Sequence[threading.Thread]) -> None:
    """Let the consumers store what the producer delivered: until stored + DLQ reach the
    delivered count, ``stop`` is set (a second Ctrl+C), a consumer thread ends, or
    :data:`CATCH_UP_TIMEOUT` passes."""
    deadline = time.monotonic() + CATCH_UP_TIMEOUT
    while time.monotonic() < deadline and not stop.is_set() and all(t.is_alive() for t in consumers):
        delivered = telemetry.total("points_delivered")
        stored = telemetry.total("records_stored") + telemetry.total("records_dlq")
        if stored >= delivered:
            return
        stop.wait(0.2)


def _print_summary(telemetry: Telemetry) -> None:
    t = telemetry.total
    print(
        f"published={t('points_published'):.0f} delivered={t('points_delivered'):.0f} "
        f"rejected_frames={t('frames_rejected'):.0f} stored={t('records_stored'):.0f} "
        f"dlq={t('records_dlq'):.0f} snapshots={t('snapshots_emitted'):.0f}",
        flush=True,
    )


def _print_tables(client: Any, database: str) -> None:
    with contextlib.suppress(Exception):
        points = client.command(f"SELECT count() FROM {database}.metric_points FINAL")
        snaps = client.command(f"SELECT count() FROM {database}.market_snapshots FINAL")
        print(f"ClickHouse {database}.metric_points: {points} rows, market_snapshots: {snaps} rows")
        rows = client.query(
            f"SELECT symbol, snapshot_time, mark_last, funding_last, oi_last, basis_last, "
            f"mark_volatility, stale FROM {database}.market_snapshots FINAL "
            f"WHERE window_s = 60 ORDER BY snapshot_time DESC, symbol LIMIT 5"
        ).result_rows
        for row in rows:
            print("  ", *row)
