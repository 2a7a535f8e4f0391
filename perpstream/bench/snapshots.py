"""Scenario ``snapshots``: the snapshot consumer next to the pure engine.

1. engine (the baseline): markPrice events at 1 s (5 metrics each) + open
   interest every 10 s for every symbol, in event-time order, through
   ``SnapshotEngine`` with the default windows (60, 300, 3600 s) and
   interval (5 s).
2. memory: the engine state of every symbol holding a full 1 h window of
   1 s marks (built with ``restore_symbol``; the state an uninterrupted run
   holds after an hour), measured as RSS growth and as array bytes.
3. consumer: the same kind of stream on a local Tansu topic, consumed by one
   ``perpstream snapshots`` member into embedded ClickHouse and the snapshots
   topic (decode, engine, points/snapshots/checkpoint inserts, Avro produce),
   timed from the partition assignment to the last commit. With ``cpu`` the
   scenario (member included) runs on that CPU and the broker on the others.
"""

from __future__ import annotations

import gc
import math
import os
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from confluent_kafka import Producer

from perpstream.bench.measure import Span, proc_cpu_s, proc_status_mb, report, row, target
from perpstream.consumers.clickhouse import open_client
from perpstream.consumers.snapshots.app import SnapshotService
from perpstream.consumers.snapshots.engine import SnapshotEngine
from perpstream.consumers.snapshots.settings import SnapshotSettings
from perpstream.local import TansuBroker, ensure_topics
from perpstream.schemas.codec import metric_point_codec
from perpstream.schemas.models import Metric

T0 = 1_767_225_600_000
SOURCE = "binance_usdm"


def stream(symbols: int, seconds: int, seed: int = 1) -> Iterator[dict[str, Any]]:
    rnd = random.Random(seed)
    marks = [10 + 100 * rnd.random() for _ in range(symbols)]
    names = [f"S{k:04d}USDT" for k in range(symbols)]
    for s in range(seconds):
        for k in range(symbols):
            et = T0 + s * 1000 + (k % 997)
            m = marks[k] = marks[k] * math.exp(rnd.gauss(0, 5e-4))
            sym = names[k]
            for metric, v in ((Metric.MARK_PRICE, m), (Metric.INDEX_PRICE, m * 1.0001),
                              (Metric.ESTIMATED_SETTLE_PRICE, m), (Metric.FUNDING_RATE, 1e-4),
                              (Metric.NEXT_FUNDING_TIME, 1.0)):
                yield {"source": SOURCE, "symbol": sym, "metric": metric, "value": v,
                       "event_time": et, "ingest_time": et + 5}
            if s % 10 == k % 10:
                yield {"source": SOURCE, "symbol": sym, "metric": Metric.OPEN_INTEREST, "value": 1e6 + s,
                       "event_time": et + 3, "ingest_time": et + 50}


def bench_engine(symbols: int, seconds: int) -> dict[str, Any]:
    points = [(r["source"], r["symbol"], r["metric"], r["value"], r["event_time"])
              for r in stream(symbols, seconds)]
    e = SnapshotEngine()
    add = e.add
    with Span() as span:
        for p in points:
            add(*p)
    return row("engine alone (SnapshotEngine.add)", len(points), span.wall_s, span.cpu_s, span.peak_rss_mb,
               role="baseline", snapshots=len(e.take_output()))


def bench_memory(symbols: int) -> dict[str, Any]:
    """RSS growth and array bytes of ``symbols`` engines each holding a full 1 h window."""
    gc.collect()
    before = proc_status_mb("VmRSS") or 0.0
    e = SnapshotEngine()
    rnd = random.Random(2)
    span = 3600
    for k in range(symbols):
        m = 10 + 100 * rnd.random()
        pts: list[tuple[str, int, float]] = []
        for s in range(span + 10):
            et = T0 + s * 1000
            m *= 1 + rnd.gauss(0, 5e-4)
            pts += [(Metric.MARK_PRICE, et, m), (Metric.INDEX_PRICE, et, m * 1.0001),
                    (Metric.FUNDING_RATE, et, 1e-4)]
            if s % 10 == 0:
                pts.append((Metric.OPEN_INTEREST, et + 3, 1e6 + s))
        # last emitted t = the end: the state an uninterrupted run holds after an hour
        e.restore_symbol(f"S{k:04d}USDT", SOURCE, pts, last_t=T0 + (span + 5) * 1000)
    e.take_output()  # emitted while restoring: not part of the state measured
    gc.collect()
    after = proc_status_mb("VmRSS") or 0.0
    arrays = sum(
        s.ts.itemsize * len(s.ts) + s.vs.itemsize * len(s.vs)
        for st in e._symbols.values() for s in st.series
    )
    return {"symbols": symbols, "points_held": e.point_count(), "rss_growth_mb": round(after - before, 1),
            "arrays_mb": round(arrays / 2**20, 1)}


def bench_consumer(symbols: int, seconds: int, batch: int, batch_max_ms: int,
                   engine: dict[str, Any]) -> dict[str, Any]:
    # Long: the scenario's one timed sequence (produce, consume, verify) reads best in order.
    codec = metric_point_codec()
    with TansuBroker() as broker, tempfile.TemporaryDirectory() as tmp:
        bs = broker.bootstrap_servers
        mine = os.sched_getaffinity(0)
        others = set(range(os.cpu_count() or 1)) - mine
        if len(mine) == 1 and others:
            # the member gets its core to itself: the broker (started with our affinity) moves off it
            for tid in os.listdir(f"/proc/{broker.pid}/task"):  # every thread of it
                os.sched_setaffinity(int(tid), others)
        ensure_topics(bs, {"m": 6, "snaps": 6, "dlq": 1})
        p = Producer({"bootstrap.servers": bs, "linger.ms": 50, "batch.num.messages": 10000,
                      "queue.buffering.max.messages": 1_000_000})
        n = 0
        for r in stream(symbols, seconds):
            while True:
                try:
                    p.produce("m", codec.encode(r), r["symbol"].encode())
                    break
                except BufferError:
                    p.poll(0.05)
            n += 1
        p.flush(120)
        client = open_client(f"chdb://{tmp}/ch")
        settings = SnapshotSettings(
            kafka_bootstrap_servers=bs, clickhouse_database="bench", metrics_topic="m",
            snapshots_topic="snaps", dlq_topic="dlq", group_id="bench", batch_max_records=batch,
            batch_max_ms=batch_max_ms,
        )
        svc = SnapshotService(settings, client,
                              consumer_overrides={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
        first: list[tuple[float, float]] = []
        in_handle = [0.0]
        orig = svc.make_handler

        def handler(s: SnapshotService, member: int) -> Any:
            h = orig(member)
            inner, inner_assigned = h.handle, h.on_assigned

            def assigned(partitions: Any) -> None:
                if partitions and not first:
                    # the clock starts when the group is joined
                    first.append((time.perf_counter(), proc_cpu_s()))
                inner_assigned(partitions)

            def timed(batch: Any) -> None:
                t0 = time.perf_counter()
                inner(batch)
                in_handle[0] += time.perf_counter() - t0

            h.on_assigned = assigned  # type: ignore[method-assign]
            h.handle = timed  # type: ignore[method-assign]
            return h

        svc._handler_factory = handler
        stop = threading.Event()
        with Span() as span:
            th = threading.Thread(target=svc.run, args=(stop,), daemon=True)
            th.start()
            while True:
                time.sleep(0.01)  # the members' own record of acknowledged commits
                done = sum(off for loop in list(svc.loops) for off in dict(loop.committed).values())
                if done >= n:
                    break
            end, cpu_end = time.perf_counter(), proc_cpu_s()
            stop.set()
            th.join(60)
        snaps = client.query("SELECT count() FROM bench.market_snapshots").result_rows[0][0]
        client.close()
    return row("snapshot consumer, one member", n, end - first[0][0], cpu_end - first[0][1],
               span.peak_rss_mb, baselines=[engine], snapshot_rows=snaps,
               handler_s=round(in_handle[0], 2), batch=batch, batch_max_ms=batch_max_ms)


def run(symbols: int = 700, seconds: int = 60, consumer_seconds: int = 180, batch: int = 50_000,
        batch_max_ms: int = 50, memory: bool = True, consumer: bool = True,
        cpu: int | None = None) -> dict[str, Any]:
    if cpu is not None:
        os.sched_setaffinity(0, {cpu})
    engine = bench_engine(symbols, seconds)
    rows = [engine]
    targets = [target("engine events/s", engine["events_per_s"], ">= 100,000",
                      engine["events_per_s"] >= 100_000)]
    notes = [f"cpus {sorted(os.sched_getaffinity(0))} of {os.cpu_count()}; gc threshold "
             f"{gc.get_threshold()[0]}; engine stream {symbols} symbols x {seconds} s, "
             f"{engine['snapshots']:,} snapshots"]
    extra: dict[str, Any] = {}
    if consumer:
        c = bench_consumer(symbols, consumer_seconds, batch, batch_max_ms, engine)
        rows.append(c)
        targets.append(target("consumer events/s", c["events_per_s"], ">= 100,000",
                              c["events_per_s"] >= 100_000))
        notes.append(f"consumer stream {symbols} symbols x {consumer_seconds} s; {c['handler_s']:.2f} s in "
                     "the handler, the rest in poll/decode/commit; CPU from the assignment to the last "
                     "commit, broker apart")
    if memory:
        m = extra["memory"] = bench_memory(symbols)
        targets.append(target(f"1 h window state, {symbols} symbols (RSS growth, MB)", m["rss_growth_mb"],
                              "<= 500", m["rss_growth_mb"] <= 500))
        notes.append(f"memory: {symbols} symbols x 1 h window at 1 s marks: {m['points_held']:,} points "
                     f"held, RSS +{m['rss_growth_mb']:,.0f} MB (arrays {m['arrays_mb']:,.0f} MB)")
    return report("snapshots", {"symbols": symbols, "seconds": seconds,
                                "consumer_seconds": consumer_seconds, "batch": batch,
                                "batch_max_ms": batch_max_ms, "cpu": cpu}, rows, targets, notes, **extra)
