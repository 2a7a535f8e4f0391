"""Sink throughput: topic -> rows durable in ClickHouse, next to a baseline.

    .venv/bin/python -m benchmarks.sink_bench [--events 500000] [--partitions 6]
        [--batch 20000] [--profile]

Baseline: the same rows (already decoded dicts) inserted straight into the
same table layout with clickhouse-connect's Arrow insert, same batch size,
same engine, same run. Floor: a bare confluent-kafka consumer reading the
same topic (``consume`` and ``value()``, nothing else), and the ceiling it
implies for any sink that consumes with it and then inserts like the
baseline, one after the other. Sink: one member (one process, one thread) from a new
group at the earliest offset until every offset is committed; the clock
starts when the partitions are assigned (group join time on Tansu is a
broker artefact, printed apart). Memory: peak RSS (VmHWM) before and after
the sink run; the sink holds one batch, not the topic.

Uses PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS if set, else a local Tansu broker;
always an embedded ClickHouse in a temp directory.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
import threading
import time
import uuid
from typing import Any

import pyarrow as pa
from confluent_kafka import Consumer, Producer, TopicPartition

from consumers.clickhouse import open_client
from consumers.runtime.batch import Batch, TopicPartitionId
from consumers.sink.handler import _SCHEMA, ClickHouseSink
from consumers.sink.migrations import migrate_sink
from consumers.sink.service import sink_loop
from consumers.sink.settings import SinkSettings
from perpstream.local import TansuBroker, ensure_topics
from schemas.codec import metric_point_codec
from service.settings import CommonSettings
from service.tuning import tune_gc

METRICS = ("mark_price", "index_price", "estimated_settle_price", "funding_rate", "open_interest")


def vm_hwm_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_hwm() -> None:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


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


def baseline(client: Any, db: str, records: list[dict[str, Any]], batch: int) -> float:
    client.command(f"CREATE TABLE {db}.baseline AS {db}.metric_points")
    start = time.perf_counter()
    for i in range(0, len(records), batch):
        client.insert_arrow("baseline", to_arrow(records[i:i + batch]), database=db)
    return time.perf_counter() - start


class TimedSink(ClickHouseSink):
    def __init__(self, *a: Any, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.assigned_at: float | None = None

    def on_assigned(self, partitions: list[TopicPartitionId]) -> None:
        if partitions and self.assigned_at is None:
            self.assigned_at = time.perf_counter()

    def handle(self, batch: Batch) -> None:
        super().handle(batch)


def bare_consume(bootstrap: str, topic: str, partitions: int, n: int, batch: int) -> float:
    """Seconds for a bare consumer to read ``n`` records (assign, no group, no decode)."""
    # the sink's own librdkafka settings (fetch queue size and backoff), no group membership
    settings = SinkSettings(kafka_bootstrap_servers=bootstrap, group_id=f"bench-bare-{uuid.uuid4().hex[:6]}")
    cfg = settings.consumer_config()
    c = Consumer({**cfg, "enable.auto.commit": False})
    try:
        c.assign([TopicPartition(topic, p, 0) for p in range(partitions)])
        got = 0
        start = time.perf_counter()
        while got < n:
            msgs = c.consume(batch, 5.0)
            if not msgs:
                raise RuntimeError(f"bare consumer stalled after {got:,} records")
            for m in msgs:
                m.value()
            got += len(msgs)
        return time.perf_counter() - start
    finally:
        c.close()


def committed_sum(bootstrap: str, group: str, topic: str, partitions: int) -> int:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        res = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20)
        return sum(max(tp.offset, 0) for tp in res)
    finally:
        c.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--profile", action="store_true", help="cProfile the sink run, print the top entries")
    ap.add_argument("--gc-threshold", type=int, default=CommonSettings().gc_threshold,
                    help="as the commands apply at start-up (gc_threshold); 0 = the interpreter's default")
    args = ap.parse_args()
    tune_gc(args.gc_threshold)  # what `perpstream sink` does; the baseline runs under it too

    broker = None
    bootstrap = os.environ.get("PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        broker = TansuBroker().start()
        bootstrap = broker.bootstrap_servers
    try:
        topic, dlq, group = f"bench-{uuid.uuid4().hex[:8]}", f"bench-dlq-{uuid.uuid4().hex[:8]}", "bench-sink"
        ensure_topics(bootstrap, {topic: args.partitions, dlq: 1})
        records = make_records(args.events)
        t = time.perf_counter()
        produce_all(bootstrap, topic, records)
        print(f"produced {args.events:,} events to {args.partitions} partitions "
              f"in {time.perf_counter() - t:.1f} s")

        client = open_client(f"chdb://{tempfile.mkdtemp(prefix='sink-bench-')}")
        db = "bench"
        migrate_sink(client, db)
        base_s = baseline(client, db, records, args.batch)
        base_rate = args.events / base_s
        del records
        print(f"baseline  clickhouse-connect insert_arrow of the same rows: {base_rate:>12,.0f} rows/s "
              f"({base_s:.2f} s)")
        bare_s = bare_consume(bootstrap, topic, args.partitions, args.events, args.batch)
        ceiling = args.events / (bare_s + base_s)
        print(f"floor     bare consume() + value() of the topic:            {args.events / bare_s:>12,.0f} "
              f"records/s ({bare_s:.2f} s)")
        print(f"ceiling   bare consume, then the baseline insert:           {ceiling:>12,.0f} events/s "
              f"= {ceiling / base_rate:.2f}x the baseline, before any decoding or bookkeeping")

        settings = SinkSettings(kafka_bootstrap_servers=bootstrap, clickhouse_database=db,
                                metrics_topic=topic, dlq_topic=dlq, group_id=group,
                                batch_max_records=args.batch)
        handler = TimedSink(client, db, group_id=group)
        loop = sink_loop(settings, client, handler=handler,
                         consumer_overrides={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        stop = threading.Event()
        hwm_before = vm_hwm_mb()
        reset_hwm()
        started = time.perf_counter()
        done_at: list[float] = []

        def watch() -> None:
            # the member's own record of acknowledged commits (cheaper than asking the broker)
            while sum(dict(loop.committed).values()) < args.events:
                time.sleep(0.01)
            done_at.append(time.perf_counter())
            stop.set()

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        prof = cProfile.Profile() if args.profile else None
        if prof:
            prof.enable()
        rc = loop.run(stop)
        if prof:
            prof.disable()
        watcher.join()
        hwm_sink = vm_hwm_mb()
        assigned = handler.assigned_at or started
        sink_s = done_at[0] - assigned
        sink_rate = args.events / sink_s
        assert committed_sum(bootstrap, group, topic, args.partitions) == args.events
        rows = client.query(f"SELECT count() FROM {db}.metric_points").result_rows[0][0]
        print(f"sink      topic -> rows durable, offsets committed:     {sink_rate:>12,.0f} events/s "
              f"({sink_s:.2f} s after assignment; group join took {assigned - started:.1f} s)")
        print(f"ratio     sink / baseline: {sink_rate / base_rate:.2f}x   "
              "(target >= 0.6x, >= 150,000 events/s)")
        print(f"rows      {rows:,} stored of {args.events:,} produced; loop exit code {rc}")
        print(f"memory    peak RSS {hwm_before:,.0f} MB before the sink run (includes the baseline's "
              f"rows in memory), {hwm_sink:,.0f} MB during it (batch {args.batch:,})")
        if prof:
            pstats.Stats(prof).sort_stats("tottime").print_stats(18)
    finally:
        if broker is not None:
            broker.stop()


if __name__ == "__main__":
    main()
