"""The asset consumer-group member: MarketSnapshots in, AssetSnapshots out to ClickHouse
``asset_snapshots`` and to the assets topic (Avro, key = asset).

It plugs an :class:`AssetHandler` into the shared consume loop
(``consumers.runtime``): decoding, DLQ and offset commits are the runtime's;
the handler owns one :class:`~consumers.assets.engine.AssetEngine` per assigned
partition. The snapshot group keys its records by asset, so every venue's
market of one asset is on one partition and one engine sees them all
(docs/snapshots.md, "Cross-venue asset snapshots").

State recovery: why a restart or a rebalance gives the records of an uninterrupted run
-------------------------------------------------------------------------------------
Per asset the engine holds ``last`` (the last emitted snapshot time), ``M``
(the largest accepted time) and the pending rows (accepted, time not emitted).
After each ``add``, every accepted time ``< M - L`` has been emitted and
nothing else (``L`` = lateness): emission takes exactly the pending times
below ``M - L``, and ``M`` only grows. So the state is a function of the set
``A`` of accepted rows and of ``last``: pending = rows of ``A`` after ``last``,
``M`` = their largest time (the row at ``M`` is never emitted: ``M < M - L`` is false).

Persisted before ``handle`` returns (so before the offsets are committed), in
either order: the batch's accepted rows (``asset_inputs``) and its records
(``asset_snapshots`` and the topic, acknowledged); then, at most once per
``checkpoint_interval`` (and on revocation and stop), per asset the last time
whose records are durable (``asset_checkpoints``): a checkpoint ``c <= last``.

On assignment, the first batch of a partition rebuilds it: ``restore(asset, c)``
for each checkpoint, then the stored accepted rows after ``c`` in time order.

- Each re-added row is accepted again (its time is after ``c``, its identity
  once in the table). Fed in time order, a time ``t`` is emitted only when a
  row later than ``t + L`` comes, so after every row of ``t``: the record of
  ``t`` holds *all* stored rows of ``t``. In the original run the record of
  ``t`` held every row accepted for ``t``, and a row of ``t`` arriving after
  that emission is late, never accepted nor stored. So a re-emitted record is
  the one emitted before, never one of a partial set; ReplacingMergeTree
  keeps one row and readers of the topic see an identical duplicate.
- The times emitted during the rebuild are the stored times after ``c`` and
  below ``M - L``: those the original run had emitted (the invariant), so
  ``last`` and the pending rows come back as they were.
- The stored rows may include those of a batch handled but not committed
  (a crash before the commit): the state is then that after this batch, and
  its rows, read again, are duplicates or late, as they were.
- A batch that must be retried (ClickHouse or the topic unavailable: the
  runtime hands the *same* batch again) is not re-applied to the engine: its
  outputs are computed once and kept until they are durable.

Nothing depends on another group's tables: ``market_snapshots`` holds rows
this engine found late, which a rebuild from it would wrongly accept.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from perpstream.consumers.assets.engine import ACCEPTED, OUTCOMES, AssetEngine, AssetEngineConfig
from perpstream.consumers.assets.settings import AssetSettings
from perpstream.consumers.assets.store import AssetRecovery, AssetStore, migrate_assets
from perpstream.consumers.assets.wire import (
    ROW_FIELDS,
    asset_key,
    asset_snapshot_codec,
    market_snapshot_reader,
    snapshot_row_decoder,
)
from perpstream.consumers.exceptions import ConsumerError
from perpstream.consumers.runtime.batch import Batch, TopicPartitionId
from perpstream.consumers.runtime.derived import DerivingHandler, PartitionOut, Prepared
from perpstream.consumers.runtime.health import watch_members
from perpstream.consumers.runtime.loop import ConsumeLoop
from perpstream.consumers.runtime.publisher import RecordPublisher
from perpstream.consumers.runtime.supervisor import run_workers
from perpstream.runtime.health import Health
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.codec import registry_client, subject_for

log = logging.getLogger(__name__)


def rebuild_engine(config: AssetEngineConfig, recoveries: Iterable[AssetRecovery]) -> AssetEngine:
    """The engine of a partition as it was at its last stored state (module docstring):
    each checkpoint restored, then the stored accepted rows after it in time order. The
    records this emits again are left in the engine's output."""
    engine = AssetEngine(config)
    recs = list(recoveries)
    for r in recs:
        if r.last_t is not None:
            engine.restore(r.asset, r.last_t)
    rows = sorted((row for r in recs for row in r.rows),
                  key=lambda x: (x["snapshot_time"], x["window_s"], x["source"], x["symbol"]))
    for row in rows:
        engine.add(row)
    return engine


class AssetHandler(DerivingHandler[AssetStore, AssetEngine, str]):
    """The :class:`~consumers.runtime.loop.BatchHandler` of the asset group (module docstring);
    the order in which a batch's outputs are made durable is :mod:`consumers.runtime.derived`'s."""

    def __init__(
        self,
        store: AssetStore,
        config: AssetEngineConfig,
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

    # -- DerivingHandler ------------------------------------------------------------

    def _write_inputs(self, inputs: Mapping[TopicPartitionId, list[Any]]) -> None:
        """The accepted rows, each ``(asset, row in ROW_FIELDS order)``."""
        self.store.write_inputs(inputs)

    def _handled(self, records: list[dict[str, Any]],
                 parts: Mapping[TopicPartitionId, PartitionOut[str]]) -> None:
        self.telemetry.inc("asset_snapshots_emitted", len(records), self._labels)

    def _checkpoints_not_written(self, partitions: list[TopicPartitionId], exc: ConsumerError) -> None:
        log.warning("asset checkpoints not written; the next owner emits their records again",
                    extra={"partitions": partitions, "error": str(exc)})

    def pending_rows(self) -> int:
        """Rows held for asset snapshots not emitted yet, over this member's partitions."""
        with self._lock:
            return sum(e.pending_rows() for e in self.engines.values())

    # -- internals ----------------------------------------------------------------

    def _engine(self, tp: TopicPartitionId) -> AssetEngine:
        engine = self.engines.get(tp)
        if engine is None or tp in self._restore:
            started = time.perf_counter()
            recs = self.store.load_partition(tp[0], tp[1])
            engine = rebuild_engine(self.config, recs)
            self._restored_out[tp] = engine.take_output()
            with self._lock:
                self.engines[tp] = engine
            self._restore.discard(tp)
            log.info("asset partition state rebuilt", extra={
                "topic": tp[0], "partition": tp[1], "assets": len(recs),
                "rows": sum(len(r.rows) for r in recs),
                "pending": engine.pending_rows(), "reemitted": len(self._restored_out[tp]),
                "seconds": round(time.perf_counter() - started, 3)})
        return engine

    def _prepare(self, batch: Batch) -> Prepared[str]:
        # Rebuild every partition first: a failed read leaves no engine half-fed.
        for tp in batch.partitions:
            self._engine(tp)
        parts: dict[TopicPartitionId, PartitionOut[str]] = {}
        for tp, pb in batch.partitions.items():
            engine = self.engines[tp]
            before = engine.counters.as_dict()
            out: PartitionOut[str] = PartitionOut()
            out.records = self._restored_out.pop(tp, [])
            for row in pb.rows:
                rec = dict(zip(ROW_FIELDS, row, strict=True))
                if engine.add(rec) == ACCEPTED:
                    key = engine.key(rec["source"], rec["symbol"])
                    assert key is not None  # accepted rows have one
                    out.inputs.append((key.asset, row))
            out.records.extend(engine.take_output())
            for r in out.records:
                if out.checkpoints.get(r["asset"], -1) < r["snapshot_time"]:
                    out.checkpoints[r["asset"]] = r["snapshot_time"]
            after = engine.counters.as_dict()
            for name in OUTCOMES:
                if after[name] != before[name]:
                    self.telemetry.inc("asset_rows", after[name] - before[name],
                                       {**self._labels, "outcome": name})
            parts[tp] = out
        return Prepared(batch, parts)


class AssetService:
    """The asset group in this process: ``settings.workers`` members sharing one ClickHouse
    client and one Telemetry. ``perpstream assets``, ``perpstream run`` and ``perpstream up``
    use it; it installs no signal handlers."""

    def __init__(
        self,
        settings: AssetSettings,
        client: Any,
        telemetry: Telemetry | None = None,
        *,
        consumer_overrides: Mapping[str, Any] | None = None,
        producer_overrides: Mapping[str, Any] | None = None,
        handler_factory: Callable[[AssetService, int], AssetHandler] | None = None,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        #: with a registry, the members' liveness and readiness are its component ``assets``
        self.health = health
        self.client = client
        self.telemetry = telemetry or Telemetry()
        self._consumer_overrides = dict(consumer_overrides or {})
        self._producer_overrides = dict(producer_overrides or {})
        self._handler_factory = handler_factory
        self.handlers: list[AssetHandler] = []
        self.loops: list[ConsumeLoop] = []
        self.telemetry.describe("asset_rows_pending", "MarketSnapshot rows held for asset snapshots "
                                "not emitted yet")
        self.telemetry.gauge_fn("asset_rows_pending",
                                lambda: float(sum(h.pending_rows() for h in list(self.handlers))))

    def migrate(self) -> None:
        migrate_assets(self.client, self.settings.clickhouse_database)

    def make_handler(self, member: int = 0) -> AssetHandler:
        s = self.settings
        registry = registry_client(s.schema_registry_config())
        codec = asset_snapshot_codec(registry, subject_for(s.assets_topic) if registry else None,
                                     auto_register=s.schema_registry_auto_register)
        codec.header()  # the schema id, registered or looked up: a registry refusing fails at start-up
        producer_cfg = {"bootstrap.servers": s.require_bootstrap(), **s.kafka_security(),
                        **self._producer_overrides}
        return AssetHandler(
            AssetStore(self.client, s.clickhouse_database, s.group_id),
            s.engine_config(),
            RecordPublisher(producer_cfg, s.assets_topic, codec.encode, asset_key),
            telemetry=self.telemetry,
            group_id=s.group_id,
            checkpoint_interval=s.asset_checkpoint_interval_ms / 1000,
        )

    def make_loop(self, member: int = 0) -> ConsumeLoop:
        s = self.settings
        handler = (self._handler_factory or AssetService.make_handler)(self, member)
        self.handlers.append(handler)
        loop = ConsumeLoop(
            s.consumer_config(member, **self._consumer_overrides),
            [s.snapshots_topic],
            s.group_id,
            handler,
            decoder=snapshot_row_decoder(market_snapshot_reader(registry_client(s.schema_registry_config()))),
            dlq_topic=s.dlq_topic,
            dlq_config=s.dlq_config(),
            telemetry=self.telemetry,
            **s.loop_options(),
            name=f"assets-{member}",
        )
        self.loops.append(loop)
        return loop

    def run(self, stop: threading.Event) -> int:
        """Migrate, then run the members until ``stop``; the worst exit code."""
        self.settings.require_bootstrap()
        watch_members(self.health, "assets", self.loops)
        try:
            self.migrate()
            return run_workers(self.make_loop, self.settings.workers, stop, name="assets")
        finally:
            if self.health is not None:
                self.health.stopped("assets")
