"""``perpstream up``: the embedded pipeline a user lives with.

One command brings up, in this process, everything the product needs on a
machine with nothing installed: a local broker (Tansu, a child process, or
Apache Kafka), the topics, embedded ClickHouse (chdb) under ``--data-dir``,
the producer, the sink and the snapshot consumer, plus the read-only
ClickHouse HTTP interface other processes query (docs/query-server.md). It is
the :class:`~perpstream.pipeline.Pipeline` of ``perpstream run`` under
another policy, with the live view:

- **Prerequisites first** (:mod:`.prerequisites`): each thing the run needs is
  checked and listed before anything starts; what is missing is named, with
  what to do.
- **Supervision**: restart with backoff
  (:class:`~perpstream.runtime.supervisor.RestartWithBackoff`): a failed
  component is logged, counted (``component_restarts{component}``) and started
  again after a jittered, growing delay (1 s up to 60 s, reset after a minute
  of good running). A configuration error is permanent: it stops the whole run
  with the one line naming the setting (exit 2). The local broker is watched
  the same way and restarted on its port (:mod:`perpstream.pipeline.broker`).
- **One owner per data directory**: a second ``up`` or ``run`` on the same
  directory says which process runs there and where it answers queries, and
  exits 1 (perpstream.pipeline.locked_data_dir).
- **Stop**: Ctrl+C (or SIGTERM, or ``--duration``) stops the producer first
  and flushes it, lets the consumers store what was delivered (bounded),
  stops them, and says where the data is and how to query it. Starting again
  on the same directory continues with the stored data: the embedded broker
  is new each run (it keeps topics in memory), and the sink's deduplication
  tokens carry the topic's id, so nothing stored before is stored twice.

The live terminal view (:mod:`.view`, perpstream.dashboard) shows what runs;
without a terminal, or with ``--no-ui``, periodic log lines say the same.
"""

from __future__ import annotations

import argparse
import functools
import logging
import os
import sys
import threading
import time
from pathlib import Path

from rich.console import Console

from perpstream.consumers.assets.settings import AssetSettings
from perpstream.consumers.sink.settings import SinkSettings
from perpstream.consumers.snapshots.settings import SnapshotSettings
from perpstream.dashboard import Dashboard, LiveBoard, log_fields
from perpstream.errors import ConfigError
from perpstream.pipeline import RUN_FLAGS, Pipeline, PipelineSpec, QueryServerSettings, build_spec
from perpstream.pipeline.broker import local_broker_engine
from perpstream.pipeline.commands import add_embedded_flags, add_market_flags
from perpstream.pipeline.lock import holding
from perpstream.producer.cli import PRODUCER_SETTINGS, settings_from_args, source_option
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime.health import Health
from perpstream.runtime.settings import SettingsUse, build_settings, declare_settings
from perpstream.runtime.signals import stop_on_signals
from perpstream.runtime.supervisor import RestartWithBackoff, State
from perpstream.runtime.telemetry import Telemetry, configure_logging
from perpstream.runtime.tuning import tune_gc
from perpstream.up.prerequisites import check_prerequisites, report_prerequisites
from perpstream.up.view import (
    component_notes,
    component_states,
    describe_source,
    final_report,
    log_beside_the_view,
    progress,
    ready_line,
)

log = logging.getLogger("perpstream.up")

#: The producer's delivery timeout on the local broker (unless set): how long after a restart
#: of that broker the producer takes to notice and replace its client.
EMBEDDED_DELIVERY_TIMEOUT_MS = 20_000
#: Restart delays of a failed component: 1 s growing to 60 s, reset after a minute of good running.
RESTARTS = RestartWithBackoff(first=1.0, factor=2.0, cap=60.0, healthy_after=60.0)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    # argparse declarations only: long, and clearer in one place than split
    p = sub.add_parser(
        "up",
        help="the whole pipeline on this machine, supervised, with a live view and a query endpoint",
        description="Local broker, embedded ClickHouse, producer, sink, snapshots and assets in one "
        "supervised process. Ctrl+C drains and stops; starting again continues with the stored data.",
    )
    p.add_argument("--source", type=source_option("live", "sim"), default=("live", None),
                   metavar="live|sim|replay:FILE",
                   help="where observations come from (default live: Binance USD-M futures)")
    add_market_flags(p)
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
    add_embedded_flags(p)
    p.add_argument("--no-ui", action="store_true",
                   help="no live view: periodic log lines (also when stdout is not a terminal)")
    p.add_argument("--summary-interval", type=float, default=10.0,
                   help="seconds between status lines without the live view (default 10)")
    p.add_argument("--log-level", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--log-format", choices=["json", "text"])
    p.set_defaults(func=up_main)
    declare_settings(p, SettingsUse(QueryServerSettings, RUN_FLAGS), PRODUCER_SETTINGS,
                     SettingsUse(SinkSettings), SettingsUse(SnapshotSettings), SettingsUse(AssetSettings))


def up_main(args: argparse.Namespace) -> int:
    root = build_settings(QueryServerSettings, args, RUN_FLAGS)
    spec = _spec(args, root)
    with holding(spec.data_dir):
        ui = not args.no_ui and sys.stdout.isatty()
        configure_logging(args.log_level or root.log_level,
                          args.log_format or ("text" if sys.stderr.isatty() else root.log_format))
        console = Console() if ui else None
        if console is not None:
            log_beside_the_view(spec.data_dir / "up.log", console)
        tune_gc(root.gc_threshold)
        print(f"perpstream up: {describe_source(spec.producer)}; data in {spec.data_dir}", flush=True)
        print("checking prerequisites", flush=True)
        report_prerequisites(check_prerequisites(root, spec.producer, spec.broker or "tansu"), sys.stdout)
        return _up(args, spec, console)


def _spec(args: argparse.Namespace, root: QueryServerSettings) -> PipelineSpec:
    """Settings of every component first: a bad one fails before anything starts."""
    source, replay_file = args.source
    if replay_file is not None and not Path(replay_file).is_file():
        raise ConfigError(f"--source replay:{replay_file}: no such file "
                          "(give a file written by `perpstream record`)")
    ns = argparse.Namespace(**vars(args))  # --source stays (source, replay file): settings_from_args
    ns.duration = None  # the whole run stops on --duration, not the producer alone
    ns.metrics_port = None  # served once, by this process
    ns.bootstrap_servers = root.kafka_bootstrap_servers
    if source == "live" and not args.symbols and args.all is None:
        ns.all = True
    producer = settings_from_args(ns)
    if producer.source == "live":
        producer.require_live_symbols()
    cluster = root.kafka_bootstrap_servers is not None
    broker = args.broker if cluster else local_broker_engine(args.broker, Path(root.data_dir).resolve())
    return build_spec(root, _on_local_broker(producer, broker == "tansu"), broker=broker,
                      partitions=args.partitions, serve_queries=not args.no_http,
                      backfill_since=args.backfill)


def _on_local_broker(producer: ProducerSettings, in_memory: bool) -> ProducerSettings:
    """A local broker that restarted has forgotten the producer: its client is replaced after
    a delivery timeout with nothing delivered (docs/producer.md), kept short here."""
    if not in_memory or "PERPSTREAM_KAFKA_DELIVERY_TIMEOUT_MS" in os.environ:
        return producer
    return producer.model_copy(update={"kafka_delivery_timeout_ms": EMBEDDED_DELIVERY_TIMEOUT_MS})


def _up(args: argparse.Namespace, spec: PipelineSpec, console: Console | None) -> int:
    started_wall, started = time.time(), time.monotonic()
    telemetry = Telemetry()
    with stop_on_signals() as interrupt, Pipeline(
            spec, RESTARTS, telemetry=telemetry, health=Health(), progress=progress(console is not None),
            thread_prefix="up-") as pipeline:
        print(ready_line(pipeline), flush=True)
        dashboard = Dashboard(telemetry, pipeline.queries or pipeline.client, database=spec.database,
                              data_dir=spec.data_dir, endpoint_url=pipeline.endpoint_url,
                              notes_fn=functools.partial(component_notes, pipeline.components,
                                                         pipeline.broker))
        view = LiveBoard(dashboard, console) if console is not None else None
        try:
            rc = _watch(args, interrupt, started, pipeline, dashboard, view)
        finally:
            if view is not None:
                view.close()
        interrupt.clear()  # a second Ctrl+C skips the catch-up
        pipeline.drain(interrupt)
        print(final_report(pipeline.client, spec.database, spec.data_dir, telemetry,
                           time.time() - started_wall), flush=True)
        return rc


def _watch(args: argparse.Namespace, interrupt: threading.Event, started: float, pipeline: Pipeline,
           dashboard: Dashboard, view: LiveBoard | None) -> int:
    """Until Ctrl+C, --duration or a permanent failure: 0, or the exit code of that failure.
    Redraws the view about once a second, or logs a status line every ``--summary-interval``."""
    deadline = started + args.duration if args.duration else None
    interval = 1.0 if view is not None else args.summary_interval
    next_update = time.monotonic() + (0.0 if view is not None else interval)
    announced_finish = False
    producer = pipeline.components["producer"]
    while not interrupt.wait(0.2):
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            log.info("duration reached; stopping")
            break
        failed = next((c for c in pipeline.components.values() if c.fatal is not None), None)
        if failed is not None:
            print(f"perpstream up: configuration error in {failed.component}: {failed.fatal}",
                  file=sys.stderr, flush=True)
            return 2
        if pipeline.broker is not None:
            pipeline.broker.watch(pipeline.spec.topics)
        if producer.state is State.FINISHED and not announced_finish:
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
                log.info("status", extra={**fields, **component_states(pipeline.components)})
    return 0
