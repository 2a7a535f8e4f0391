"""The snapshot consumer-group member: MetricPoints in, MarketSnapshots out to
ClickHouse ``market_snapshots`` and to the snapshots topic (Avro, key = asset).

It plugs a :class:`SnapshotHandler` into the shared consume loop
(``consumers.runtime``): decoding, DLQ and offset commits are the runtime's;
the handler owns one :class:`SnapshotEngine` per assigned partition (the
key is the symbol, so a symbol lives in exactly one partition, with every
venue's market of that symbol: state is per (source, symbol)).

State recovery — why a restart or a rebalance resumes exactly
-------------------------------------------------------------
The engine's state after the points up to offset ``o`` of a partition is a
function of the points it *applied* (late ones are never applied) and of the
last snapshot time emitted per market (source, symbol). 1 and 2 are persisted before
``handle`` returns (so before the offsets are committed), 3 after them:

1. ``snapshot_points``: the points applied in this batch;
2. the snapshots: ``market_snapshots`` and the topic (acknowledged);
3. ``snapshot_checkpoints``: per market, the last snapshot time emitted —
   held and written at most once per ``checkpoint_interval`` (and on
   revocation and stop): an older checkpoint only makes a restore re-emit more.

(1 and 2 may happen in either order, the topic sends overlap the inserts;
only 3 must come last.)

When a member is assigned a partition, the first batch of it rebuilds each
market from those tables (``SnapshotStore.load_partition``): the applied
points with ``event_time > checkpoint - max window`` plus the latest point
per metric (and the latest mark/index pair) before that, with the watermark
back at the largest applied event time. The batch is then re-read from the
committed offset. Why the result is identical to an uninterrupted run:

- A snapshot for ``t`` reads only applied points with ``event_time <= t``
  and every one of them was applied *before* ``t`` was emitted (after it, it
  would have been late). So the restored points give the same values for
  every ``t`` not yet checkpointed; snapshots the restored watermark already
  allows (a crash between steps 1 and 3, or with checkpoints held) are
  emitted again at restore, with the values they had — ReplacingMergeTree
  keeps one row, consumers of the topic see an identical duplicate
  (at-least-once, idempotent by identity).
- Re-read points that were applied before the crash are duplicates now;
  points late then are late now (the restored last time is never earlier
  than theirs). Counters of late/duplicate points may count a re-read twice;
  the snapshots do not change.
- Nothing depends on the sink group: recovery reads only this group's tables.

A batch that must be retried (ClickHouse or the topic unavailable: the
runtime pauses and hands the *same* batch again) is not re-applied to the
engine: its outputs are computed once and kept until they are durable.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from perpstream.consumers.assets.keys import partition_key
from perpstream.consumers.exceptions import ConsumerError
from perpstream.consumers.runtime.batch import Batch, TopicPartitionId
from perpstream.consumers.runtime.decoding import row_decoder
from perpstream.consumers.runtime.derived import DerivingHandler, PartitionOut, Prepared
from perpstream.consumers.runtime.health import watch_members
from perpstream.consumers.runtime.loop import ConsumeLoop
from perpstream.consumers.runtime.publisher import RecordPublisher
from perpstream.consumers.runtime.supervisor import run_workers
from perpstream.consumers.snapshots.engine import (
    ACCEPTED,
    METRIC_CODES,
    OUTCOMES,
    EngineConfig,
    Market,
    SnapshotEngine,
)
from perpstream.consumers.snapshots.settings import SnapshotSettings
from perpstream.consumers.snapshots.store import SnapshotStore, migrate_snapshots
from perpstream.consumers.snapshots.wire import snapshot_encoder
from perpstream.runtime.health import Health
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.codec import (
    market_snapshot_codec,
    metric_point_codec,
    registry_client,
    subject_for,
)

log = logging.getLogger(__name__)


def snapshot_key(snapshot: dict[str, Any]) -> bytes:
    """The Kafka key of a MarketSnapshot: its market's asset (the symbol when it has none), so
    one asset's markets share a partition for the asset group (docs/snapshots.md,
    "Partitioning: one asset, one partition")."""
    return partition_key(snapshot["source"], snapshot["symbol"])


class SnapshotHandler(DerivingHandler[SnapshotStore, SnapshotEngine, Market]):
    """The :class:`~consumers.runtime.loop.BatchHandler` of the snapshot group; the order in
    which a batch's outputs are made durable is :mod:`consumers.runtime.derived`'s."""

    def __init__(
        self,
        store: SnapshotStore,
        config: EngineConfig,
        publisher: RecordPublisher | None,
        *,
        telemetry: Telemetry | None = None,
        group_id: str = "",
        checkpoint_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(store, publisher, telemetry=telemetry, group_id=group_id,
                         checkpoint_interval=checkpoint_interval, clock=clock)
        self.config = config
        #: (source, symbol) -> (latest snapshot time, its stale flag), for the freshness gauge
        self.latest: dict[Market, tuple[int, bool]] = {}

    # -- DerivingHandler ------------------------------------------------------------

    def _forget(self, tp: TopicPartitionId) -> SnapshotEngine | None:
        engine = super()._forget(tp)
        if engine is not None:
            with self._lock:
                for m in engine.markets:
                    self.latest.pop(m, None)
        return engine

    def _write_inputs(self, inputs: Mapping[TopicPartitionId, list[Any]]) -> None:
        """The applied points, each ``(source, symbol, metric, event_time, value)``."""
        self.store.write_points(inputs)

    def _handled(self, records: list[dict[str, Any]],
                 parts: Mapping[TopicPartitionId, PartitionOut[Market]]) -> None:
        self.telemetry.inc("snapshots_emitted", len(records), self._labels)
        self.telemetry.inc("snapshot_points_applied", sum(len(o.inputs) for o in parts.values()),
                           self._labels)
        with self._lock:
            for s in records:
                market = (s["source"], s["symbol"])
                cur = self.latest.get(market)
                if cur is None or s["snapshot_time"] >= cur[0]:
                    self.latest[market] = (s["snapshot_time"], s["stale"])

    def _checkpoints_not_written(self, partitions: list[TopicPartitionId], exc: ConsumerError) -> None:
        log.warning("checkpoints not written; the next owner re-emits their snapshots",
                    extra={"partitions": partitions, "error": str(exc)})

    # -- internals ----------------------------------------------------------------

    def _engine(self, tp: TopicPartitionId) -> SnapshotEngine:
        engine = self.engines.get(tp)
        if engine is None or tp in self._restore:
            engine = SnapshotEngine(self.config)
            started = time.perf_counter()
            recs = self.store.load_partition(tp[0], tp[1], self.config.max_window_ms)
            for r in recs:
                engine.restore_symbol(r.symbol, r.source, r.points, last_t=r.last_t,
                                      carry_bound=r.carry_bound, carry_basis=r.carry_basis)
            self._restored_out[tp] = engine.take_output()
            self.engines[tp] = engine
            self._restore.discard(tp)
            log.info("partition state rebuilt", extra={
                "topic": tp[0], "partition": tp[1], "markets": len(recs),
                "points": engine.point_count(), "reemitted": len(self._restored_out[tp]),
                "seconds": round(time.perf_counter() - started, 3)})
        return engine

    def _prepare(self, batch: Batch) -> Prepared[Market]:
        # Rebuild every partition first: a failed read leaves no engine half-fed.
        for tp in batch.partitions:
            self._engine(tp)
        parts: dict[TopicPartitionId, PartitionOut[Market]] = {}
        for tp, pb in batch.partitions.items():
            engine = self.engines[tp]
            before = engine.counters.as_dict()
            out: PartitionOut[Market] = PartitionOut()
            out.records = self._restored_out.pop(tp, [])
            pts = out.inputs
            add = engine.add
            used = METRIC_CODES
            ignored = 0
            # rows: (source, symbol, metric, event_time, value, ingest_time), see ROW_FIELDS
            for source, symbol, metric, et, value, _ in pb.rows:
                if metric not in used:
                    ignored += 1
                    continue
                if add(source, symbol, metric, value, et) == ACCEPTED:
                    pts.append((source, symbol, metric, et, value))
            engine.counters.ignored += ignored
            out.records.extend(engine.take_output())
            for s in out.records:
                t = s["snapshot_time"]
                market = (s["source"], s["symbol"])
                if out.checkpoints.get(market, -1) < t:
                    out.checkpoints[market] = t
            after = engine.counters.as_dict()
            for name in OUTCOMES:
                if after[name] != before[name]:
                    self.telemetry.inc("snapshot_points", after[name] - before[name],
                                       {**self._labels, "outcome": name})
            parts[tp] = out
        return Prepared(batch, parts)

    def stale_markets(self, now_ms: int | None = None) -> list[Market]:
        """Markets (source, symbol) whose context cannot be trusted now: the latest
        snapshot is stale, or none arrived for longer than a mark may be old plus the
        emission delay (interval + lateness)."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        slack = self.config.interval_ms + self.config.allowed_lateness_ms + self.config.mark_stale_ms
        with self._lock:
            return sorted(s for s, (t, stale) in self.latest.items() if stale or now_ms - t > slack)


class SnapshotService:
    """The snapshot group in this process: ``settings.workers`` members sharing
    one ClickHouse client and one Telemetry. ``perpstream snapshots`` and
    ``perpstream run`` both use it; it installs no signal handlers."""

    def __init__(
        self,
        settings: SnapshotSettings,
        client: Any,
        telemetry: Telemetry | None = None,
        *,
        consumer_overrides: Mapping[str, Any] | None = None,
        producer_overrides: Mapping[str, Any] | None = None,
        handler_factory: Callable[[SnapshotService, int], SnapshotHandler] | None = None,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        #: with a registry, the members' liveness and readiness are its component ``snapshots``
        self.health = health
        self.client = client
        self.telemetry = telemetry or Telemetry()
        self._consumer_overrides = dict(consumer_overrides or {})
        self._producer_overrides = dict(producer_overrides or {})
        self._handler_factory = handler_factory
        self.handlers: list[SnapshotHandler] = []
        self.loops: list[ConsumeLoop] = []
        self.telemetry.describe("snapshot_stale_symbols",
                                "markets (source, symbol) whose context is stale now")
        self.telemetry.gauge_fn("snapshot_stale_symbols", lambda: float(len(self.stale_markets())))

    def migrate(self) -> None:
        migrate_snapshots(self.client, self.settings.clickhouse_database)

    def make_handler(self, member: int = 0) -> SnapshotHandler:
        s = self.settings
        registry = registry_client(s.schema_registry_config())
        codec = market_snapshot_codec(registry, subject_for(s.snapshots_topic) if registry else None,
                                      auto_register=s.schema_registry_auto_register)
        codec.header()  # the schema id, registered or looked up: a registry refusing fails at start-up
        producer_cfg = {"bootstrap.servers": s.require_bootstrap(), **s.kafka_security(),
                        **self._producer_overrides}
        return SnapshotHandler(
            SnapshotStore(self.client, s.clickhouse_database, s.group_id),
            s.engine_config(),
            # Idempotent like the other producers: a retry after a leader failover can neither
            # duplicate nor reorder a symbol's snapshots within one producer session (docs/kafka.md).
            RecordPublisher(producer_cfg, s.snapshots_topic, snapshot_encoder(codec), snapshot_key,
                            label="snapshots topic", client_name="snapshot producer"),
            telemetry=self.telemetry,
            group_id=s.group_id,
            checkpoint_interval=s.snapshot_checkpoint_interval_ms / 1000,
        )

    def make_loop(self, member: int = 0) -> ConsumeLoop:
        s = self.settings
        handler = (self._handler_factory or SnapshotService.make_handler)(self, member)
        self.handlers.append(handler)
        codec = metric_point_codec(registry_client(s.schema_registry_config()))
        loop = ConsumeLoop(
            s.consumer_config(member, **self._consumer_overrides),
            [s.metrics_topic],
            s.group_id,
            handler,
            # the runtime's shared decoder and checks: both groups accept and reject the same records
            decoder=row_decoder(codec),
            dlq_topic=s.dlq_topic,
            dlq_config=s.dlq_config(),
            telemetry=self.telemetry,
            **s.loop_options(),
            name=f"snapshots-{member}",
        )
        self.loops.append(loop)
        return loop

    def stale_markets(self, now_ms: int | None = None) -> list[Market]:
        out: set[Market] = set()
        for h in list(self.handlers):
            out.update(h.stale_markets(now_ms))
        return sorted(out)

    def run(self, stop: threading.Event) -> int:
        """Migrate, then run the members until ``stop``; the worst exit code."""
        self.settings.require_bootstrap()
        watch_members(self.health, "snapshots", self.loops)
        try:
            self.migrate()
            return run_workers(self.make_loop, self.settings.workers, stop, name="snapshots")
        finally:
            if self.health is not None:
                self.health.stopped("snapshots")
