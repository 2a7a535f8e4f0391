"""Scenario ``sink``: topic -> rows durable in ClickHouse, next to two baselines.

Baseline: the same rows (already decoded dicts) inserted straight into the
same table layout with clickhouse-connect's Arrow insert, same batch size,
same engine, same run. Floor: a bare confluent-kafka consumer reading the
same topic (``consume`` and ``value()``, nothing else); ceiling: that
consume followed by the baseline insert, one after the other (its time is
the sum of the two), what any sink that consumes with it and then inserts
like the baseline would reach before decoding or bookkeeping. Sink: one
member (one process, one thread) from a new group at the earliest offset
until every offset is committed; the clock starts when the partitions are
assigned (group join time on Tansu is a broker artefact, reported apart).
CPU-seconds and peak RSS are this process's over each stretch (the embedded
engine runs in it; the broker does not).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import tempfile
import threading
import time
import uuid
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, Producer, TopicPartition

from perpstream.bench.measure import Span, proc_cpu_s, report, row, target
from perpstream.bench.produce import broker_bootstrap
from perpstream.consumers.clickhouse import open_client
from perpstream.consumers.runtime.batch import Batch, TopicPartitionId
from perpstream.consumers.sink.handler import _SCHEMA, ClickHouseSink
from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.consumers.sink.service import sink_loop
from perpstream.consumers.sink.settings import SinkSettings
from perpstream.local import ensure_topics
from perpstream.schemas.codec import metric_point_codec
from perpstream.schemas.models import Metric

METRICS = (Metric.MARK_PRICE, Metric.INDEX_PRICE, Metric.ESTIMATED_SETTLE_PRICE, Metric.FUNDING_RATE,
           Metric.OPEN_INTEREST)


def make_records(n: int, symbols: int = 200) -> list[dict[str, Any]]:
    t0 = 1_760_000_000_000
    out = []
    for i in range(n):
        et = t0 + (i // (symbols * len(METRICS))) * 1000
        out.append({"source": "binance_usdm", "symbol": f"SYM{i % symbols}USDT",
                    "metric": METRICS[(i // symbols) % len(METRICS)], "value": 100.0 + (i % 977) * 0.01,
                    "event_time": et, "ingest_time": et + 3})
    return out


def produce_all(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    codec = metric_point_codec()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "batch.size": 1_000_000,
                  "queue.buffering.max.messages": 1_000_000, "compression.type": "lz4"})
    for i, rec in enumerate(records):
        while True:
            try:
                p.produce(topic, key=rec["symbol"].encode(), value=codec.encode(rec))
                break
            except BufferError:
                p.poll(0.05)
        if i % 50_000 == 0:
            p.poll(0)
    assert p.flush(120) == 0


def to_arrow(records: list[dict[str, Any]]) -> pa.Table:
    """The baseline's own conversion: columns straight from decoded dicts."""
    return pa.Table.from_arrays(
        [pa.array([r[f.name] for r in records], f.type) for f in _SCHEMA], schema=_SCHEMA,
    )


def baseline(client: Any, db: str, records: list[dict[str, Any]], batch: int) -> Span:
    """The same rows, already decoded, inserted batch by batch with ``insert_arrow``."""
    client.command(f"CREATE TABLE {db}.baseline AS {db}.metric_points")
    with Span() as span:
        for i in range(0, len(records), batch):
            client.insert_arrow("baseline", to_arrow(records[i:i + batch]), database=db)
    return span


class TimedSink(ClickHouseSink):
    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.assigned_at: float | None = None

    def on_assigned(self, partitions: list[TopicPartitionId]) -> None:
        if partitions and self.assigned_at is None:
            self.assigned_at = time.perf_counter()

    def handle(self, batch: Batch) -> None:
        super().handle(batch)


def bare_consume(bootstrap: str, topic: str, partitions: int, n: int, batch: int) -> Span:
    """A bare consumer reading ``n`` records (assign, no group, no decode)."""
    # the sink's own librdkafka settings (fetch queue size and backoff), no group membership
    settings = SinkSettings(kafka_bootstrap_servers=bootstrap, group_id=f"bench-bare-{uuid.uuid4().hex[:6]}")
    cfg = settings.consumer_config()
    c = Consumer({**cfg, "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got = 0
        with Span() as span:
            while got < n:
                msgs = c.consume(batch, 5.0)
                if not msgs:
                    raise RuntimeError(f"bare consumer stalled after {got:,} records")
                for m in msgs:
                    m.value()
                got += len(msgs)
        return span
    finally:
        c.close()


def committed_sum(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        res = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20)
        return sum(max(tp.offset, 0) for tp in res)
    finally:
        c.close()


def run(events: int = 500_000, partitions: int = 6, batch: int = 20_000,
        profile: bool = False) -> dict[str, Any]:
    """The scenario; with ``profile``, the sink run is cProfiled and the top entries are a note."""
    # Long: the scenario's one timed sequence (produce, consume, verify) reads best in order.
    notes: list[str] = []
    with broker_bootstrap() as bootstrap, tempfile.TemporaryDirectory(prefix="sink-bench-") as tmp:
        topic, dlq, group = f"bench-{uuid.uuid4().hex[:8]}", f"bench-dlq-{uuid.uuid4().hex[:8]}", "bench-sink"
        ensure_topics(bootstrap, {topic: partitions, dlq: 1})
        records = make_records(events)
        t = time.perf_counter()
        produce_all(bootstrap, topic, records)
        notes.append(f"produced {events:,} events to {partitions} partitions "
                     f"in {time.perf_counter() - t:.1f} s")

        client = open_client(f"chdb://{tmp}/ch")
        db = "bench"
        migrate_sink(client, db)
        base_span = baseline(client, db, records, batch)
        del records
        base = row("direct insert_arrow of decoded rows", events, base_span.wall_s, base_span.cpu_s,
                   base_span.peak_rss_mb, role="baseline")
        bare = bare_consume(bootstrap, topic, partitions, events, batch)
        floor = row("bare consume() + value() (floor)", events, bare.wall_s, bare.cpu_s, bare.peak_rss_mb,
                    role="reference")
        ceiling = row("bare consume, then the insert (ceiling)", events, bare.wall_s + base_span.wall_s,
                      bare.cpu_s + base_span.cpu_s,
                      max(bare.peak_rss_mb or 0.0, base_span.peak_rss_mb or 0.0) or None,
                      baselines=[base], role="baseline")

        settings = SinkSettings(kafka_bootstrap_servers=bootstrap, clickhouse_database=db,
                                metrics_topic=topic, dlq_topic=dlq, group_id=group,
                                batch_max_records=batch)
        handler = TimedSink(client, db, group_id=group)
        loop = sink_loop(settings, client, handler=handler,
                         consumer_overrides={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        stop = threading.Event()
        done_at: list[float] = []
        cpu_at_done: list[float] = []

        def watch() -> None:
            # the member's own record of acknowledged commits (cheaper than asking the broker)
            while sum(dict(loop.committed).values()) < events:
                time.sleep(0.01)
            done_at.append(time.perf_counter())
            cpu_at_done.append(proc_cpu_s())
            stop.set()

        watcher = threading.Thread(target=watch, daemon=True)
        prof = None
        if profile:
            prof = cProfile.Profile()
        with Span() as span:
            started = time.perf_counter()
            cpu0 = proc_cpu_s()
            watcher.start()
            if prof:
                prof.enable()
            rc = loop.run(stop)
            if prof:
                prof.disable()
            watcher.join()
        assigned = handler.assigned_at or started
        sink_s = done_at[0] - assigned
        stored = committed_sum(bootstrap, group, topic, partitions)
        rows_in = client.query(f"SELECT count() FROM {db}.metric_points").result_rows[0][0]
        sink = row("sink: topic -> rows durable, offsets committed", events, sink_s, cpu_at_done[0] - cpu0,
                   span.peak_rss_mb, baselines=[base, ceiling], group_join_s=round(assigned - started, 2),
                   committed=stored, rows=rows_in, loop_rc=rc)
        client.close()
    if prof:
        out = io.StringIO()
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(18)
        notes.append("cProfile of the sink run (tottime):\n" + out.getvalue())
    notes.append(f"group join took {sink['group_join_s']:.1f} s (not in the sink's time); "
                 f"{rows_in:,} rows stored, {stored:,} offsets committed; CPU of the sink includes the join")
    r_base, r_ceiling = sink["ratios"][base["name"]], sink["ratios"][ceiling["name"]]
    return report(
        "sink", {"events": events, "partitions": partitions, "batch": batch},
        [base, floor, ceiling, sink],
        [target("sink / ceiling", r_ceiling, ">= 0.85", r_ceiling >= 0.85),
         target("sink / direct insert", r_base, ">= 0.6", r_base >= 0.6),
         target("sink events/s", sink["events_per_s"], ">= 150,000", sink["events_per_s"] >= 150_000)],
        notes,
    )
