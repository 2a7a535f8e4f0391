"""The composition root of ``perpstream run`` and ``perpstream up``: one :class:`Pipeline`.

Built from a :class:`~perpstream.pipeline.spec.PipelineSpec` and a supervision
policy (``run``: fail fast; ``up``: restart with backoff), it owns everything
the process starts, in this order, and :meth:`Pipeline.stop` closes it in the
reverse one:

1. the local broker (unless the spec names a cluster) and the topics;
2. the ClickHouse client, and on the embedded store (chdb) a read-only session
   of its own and the query server on it, with the endpoint file other
   processes find it by (docs/query-server.md);
3. the operator endpoints (``/metrics``, ``/healthz``, ``/readyz``);
4. the components under one :class:`~perpstream.runtime.supervisor.Supervisor`:
   producer, sink, snapshots, assets. Each body builds its component afresh (a failed
   component's clients are not reused) and drops it when it returns, so no
   Kafka client outlives its run.

:meth:`Pipeline.drain` is the orderly end: the producer stops and flushes, the
consumers store what was delivered (bounded), then stop and commit.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the client module costs ~0.17 s of `perpstream --help` (-X importtime)
    from clickhouse_connect.driver.client import Client

from perpstream.consumers.assets.app import AssetService
from perpstream.consumers.sink.service import run_sink
from perpstream.consumers.snapshots.app import SnapshotService
from perpstream.errors import ConfigError
from perpstream.local import ensure_topics, open_clickhouse
from perpstream.pipeline.broker import LocalBroker
from perpstream.pipeline.spec import PipelineSpec
from perpstream.producer.app import ProducerApp
from perpstream.producer.backfill import run_backfill
from perpstream.query_server import QueryServer, ReadOnlyQueries
from perpstream.runtime.endpoint import remove_endpoint, write_endpoint
from perpstream.runtime.health import Health
from perpstream.runtime.supervisor import Component, Policy, Supervisor
from perpstream.runtime.telemetry import Telemetry, operator_endpoints

log = logging.getLogger("perpstream.pipeline")

#: How long the consumers may take to store what the producer delivered, on stop.
CATCH_UP_TIMEOUT = 60.0
#: How long a component may take to end once asked (the producer flushes within its
#: flush timeout; a consumer commits): past it, the stop goes on and says which one hangs.
JOIN_TIMEOUT = 60.0
CONSUMERS = ("sink", "snapshots", "assets")

Progress = Callable[[str], AbstractContextManager[None]]


@contextlib.contextmanager
def quietly(_what: str) -> Iterator[None]:
    yield


class Pipeline:
    """Start, drain and stop one pipeline (see the module doc). Also a context manager:
    ``with Pipeline(spec, policy) as p:`` starts it and stops it on the way out."""

    def __init__(self, spec: PipelineSpec, policy: Policy, *, telemetry: Telemetry, health: Health,
                 out: TextIO = sys.stdout, progress: Progress = quietly, thread_prefix: str = "") -> None:
        self.spec = spec
        self.telemetry = telemetry
        self.health = health
        self.supervisor = Supervisor(policy, telemetry=telemetry, health=health, thread_prefix=thread_prefix)
        self._out = out
        self._progress = progress
        self._stack = contextlib.ExitStack()
        self.broker: LocalBroker | None = None
        self.bootstrap = spec.root.kafka_bootstrap_servers or ""
        self.client: Client | None = None
        self.queries: ReadOnlyQueries | None = None
        self.endpoint_url: str | None = None

    @property
    def components(self) -> dict[str, Component]:
        return self.supervisor.components

    def __enter__(self) -> Pipeline:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Everything of the module doc, in order; on a failure what was started is stopped."""
        try:
            self._start_broker()
            self._open_store()
            self._stack.enter_context(operator_endpoints(self.telemetry, self.spec.root.metrics_port,
                                                         self.health))
            self._start_components(self.spec.bound(self.bootstrap))
        except BaseException:
            self.stop()
            raise

    def _start_broker(self) -> None:
        spec = self.spec
        with self._progress("starting the local broker" if spec.broker else "creating topics"):
            if spec.broker is not None:
                self.broker = LocalBroker(spec.data_dir, self.telemetry, spec.broker)
                self._stack.callback(self.broker.stop)
                self.bootstrap = self.broker.bootstrap
                self.health.add_readiness("broker", self.broker.readiness)
            differences = ensure_topics(self.bootstrap, dict(spec.topics), plan=spec.root.topic_plan(),
                                        security=spec.root.kafka_security())
        for line in differences:
            print(f"warning: existing topic differs from the settings: {line}", file=self._out, flush=True)

    def _open_store(self) -> None:
        """The ClickHouse client; on chdb, a read-only session for the queries of other
        processes and of the live view, and the query server. Each is closed explicitly in
        :meth:`stop`: a chdb session holds the directory's engine until it is closed."""
        spec = self.spec
        with self._progress("opening ClickHouse"):
            client = self.client = open_clickhouse(spec.dsn, **spec.root.clickhouse_options())
            self._stack.callback(client.close)
        if not spec.dsn.startswith("chdb://"):
            return
        queries = self.queries = ReadOnlyQueries(spec.dsn)
        self._stack.callback(queries.close)
        if not spec.serve_queries:
            return
        root = spec.root
        server = QueryServer(queries, host=root.http_host, port=root.http_port,
                             password=root.http_password.get_secret_value() if root.http_password else None)
        server.start()
        self._stack.callback(server.stop)
        self.endpoint_url = server.url
        write_endpoint(spec.data_dir, server.url)
        self._stack.callback(remove_endpoint, spec.data_dir)

    def _start_components(self, spec: PipelineSpec) -> None:
        add = self.supervisor.add
        add("sink", functools.partial(self._sink, spec))
        add("snapshots", functools.partial(self._snapshots, spec))
        add("assets", functools.partial(self._assets, spec))
        history_due = threading.Event()
        if spec.backfill is not None:
            history_due.set()
        add("producer", functools.partial(self._producer, spec, history_due=history_due))
        # on the way out: the components end before what they use is closed, and the
        # telemetry's computed gauges let go of their Kafka clients
        self._stack.callback(self.telemetry.detach_gauges)
        self._stack.callback(self._stop_components)
        self.supervisor.start()

    def _sink(self, spec: PipelineSpec, stop: threading.Event) -> int:
        return run_sink(spec.sink, self.client, stop, telemetry=self.telemetry,
                        consumer_overrides=dict(spec.consumer_overrides), health=self.health)

    def _snapshots(self, spec: PipelineSpec, stop: threading.Event) -> int:
        return SnapshotService(spec.snapshots, self.client, self.telemetry,
                               consumer_overrides=dict(spec.consumer_overrides), health=self.health).run(stop)

    def _assets(self, spec: PipelineSpec, stop: threading.Event) -> int:
        return AssetService(spec.assets, self.client, self.telemetry,
                            consumer_overrides=dict(spec.consumer_overrides), health=self.health).run(stop)

    def _producer(self, spec: PipelineSpec, stop: threading.Event, *, history_due: threading.Event) -> int:
        if spec.backfill is not None and history_due.is_set():
            # History first, in event-time order, so the snapshot windows are warm when the
            # first live point arrives (docs/snapshots.md, "Warm at minute one"). Once only:
            # a restarted producer goes straight back to live.
            history_due.clear()
            for venue in spec.backfill.venue_list:  # each venue's history, where it serves one
                log.info("backfill before going live", extra={"venue": venue,
                                                              "since": spec.backfill.backfill_since})
                try:
                    rc = run_backfill(spec.backfill, self.telemetry, stop, venue=venue)
                except ConfigError as exc:  # nothing to ask this venue for (no symbols named)
                    log.warning("no backfill of this venue", extra={"venue": venue, "reason": str(exc)})
                    continue
                if stop.is_set():
                    return 0
                if rc != 0:
                    log.warning("the backfill did not deliver everything (see above); going live anyway: "
                                "`perpstream backfill --venue ... --since ...` fills the rest",
                                extra={"venue": venue})
        return ProducerApp(spec.producer, self.telemetry, health=self.health).run(stop)

    def drain(self, interrupt: threading.Event, timeout: float = CATCH_UP_TIMEOUT) -> None:
        """Producer first (it flushes), then the consumers store what was delivered (until
        ``interrupt``, a consumer ends, or ``timeout``), then they stop and commit."""
        with self._progress("stopping the producer (flushing what it holds)"):
            self.supervisor.stop(["producer"])
            self._join(["producer"])
        consumers = [self.components[n] for n in CONSUMERS]
        with self._progress("storing what was delivered"):
            catch_up(self.telemetry, interrupt, consumers, timeout)
        with self._progress("stopping the consumers (committing)"):
            self._stop_components()

    def _stop_components(self) -> None:
        self.supervisor.stop()
        self._join(list(self.components))

    def _join(self, names: list[str]) -> None:
        hanging = self.supervisor.join(names, timeout=JOIN_TIMEOUT)
        if hanging:
            log.error("still running %.0f s after being asked to stop: %s; going on without them",
                      JOIN_TIMEOUT, ", ".join(hanging))

    def stop(self) -> None:
        """Close what :meth:`start` opened, in reverse order; a second call does nothing."""
        self._stack.close()

    def exit_code(self) -> int:
        return self.supervisor.exit_code()


def catch_up(telemetry: Telemetry, stop: threading.Event, consumers: Sequence[threading.Thread],
             timeout: float = CATCH_UP_TIMEOUT) -> None:
    """Let the consumers store what the producer delivered: until stored + DLQ reach the
    delivered count, ``stop`` is set (a second Ctrl+C), a consumer thread ends, or
    ``timeout`` passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not stop.is_set() and all(t.is_alive() for t in consumers):
        delivered = telemetry.total("points_delivered")
        stored = telemetry.total("records_stored") + telemetry.total("records_dlq")
        if stored >= delivered:
            return
        stop.wait(0.2)
