"""Snapshot throughput and memory for 700 symbols. Prints figures; asserts nothing.

    .venv/bin/python -m benchmarks.snapshots_bench [--cpu 0] [--symbols 700] [--seconds 60]
        [--consumer-seconds 180] [--skip-memory] [--skip-consumer]

1. engine: markPrice events at 1 s (5 metrics each) + open interest every
   10 s for every symbol, in event-time order, through ``SnapshotEngine``
   with the default windows (60, 300, 3600 s) and interval (5 s).
2. memory: the engine state of every symbol holding a full 1 h window of
   1 s marks (built with ``restore_symbol``; the state an uninterrupted run
   holds after an hour), measured as RSS growth and as array bytes.
3. consumer: the same kind of stream on a local Tansu topic, consumed by one
   ``perpstream snapshots`` member into embedded ClickHouse and the snapshots
   topic (decode, engine, points/snapshots/checkpoint inserts, Avro produce),
   timed from the partition assignment to the last commit. With ``--cpu N``
   the benchmark (member included) runs on CPU N and the broker on the others.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import random
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any

from service.settings import CommonSettings
from service.tuning import tune_gc

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
            for metric, v in (("mark_price", m), ("index_price", m * 1.0001),
                              ("estimated_settle_price", m), ("funding_rate", 1e-4),
                              ("next_funding_time", 1.0)):
                yield {"source": SOURCE, "symbol": sym, "metric": metric, "value": v,
                       "event_time": et, "ingest_time": et + 5}
            if s % 10 == k % 10:
                yield {"source": SOURCE, "symbol": sym, "metric": "open_interest", "value": 1e6 + s,
                       "event_time": et + 3, "ingest_time": et + 50}


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def bench_engine(symbols: int, seconds: int) -> None:
    from consumers.snapshots.engine import SnapshotEngine

    points = [(r["source"], r["symbol"], r["metric"], r["value"], r["event_time"])
              for r in stream(symbols, seconds)]
    e = SnapshotEngine()
    add = e.add
    t = time.perf_counter()
    for p in points:
        add(*p)
    el = time.perf_counter() - t
    n = len(points)
    print(f"engine:   {n:,} events ({symbols} symbols x {seconds} s) in {el:.2f} s = "
          f"{n / el:,.0f} events/s; {len(e.out):,} snapshots ({len(e.out) / el:,.0f}/s)")


def bench_memory(symbols: int) -> None:
    from consumers.snapshots.engine import SnapshotEngine

    gc.collect()
    before = rss_mb()
    e = SnapshotEngine()
    rnd = random.Random(2)
    span = 3600
    for k in range(symbols):
        m = 10 + 100 * rnd.random()
        pts: list[tuple[str, int, float]] = []
        for s in range(span + 10):
            et = T0 + s * 1000
            m *= 1 + rnd.gauss(0, 5e-4)
            pts += [("mark_price", et, m), ("index_price", et, m * 1.0001), ("funding_rate", et, 1e-4)]
            if s % 10 == 0:
                pts.append(("open_interest", et + 3, 1e6 + s))
        # last emitted t = the end: the state an uninterrupted run holds after an hour
        e.restore_symbol(f"S{k:04d}USDT", SOURCE, pts, last_t=T0 + (span + 5) * 1000)
    e.out.clear()
    gc.collect()
    after = rss_mb()
    arrays = sum(
        s.ts.itemsize * len(s.ts) + s.vs.itemsize * len(s.vs)
        for st in e._symbols.values() for s in st.series
    )
    print(f"memory:   {symbols} symbols x 1 h window at 1 s marks: {e.point_count():,} points held, "
          f"RSS +{after - before:,.0f} MB (arrays {arrays / 2**20:,.0f} MB)")


def bench_consumer(symbols: int, seconds: int, batch: int, batch_max_ms: int = 50) -> None:
    from confluent_kafka import Producer

    from consumers.clickhouse import open_client
    from consumers.snapshots.app import SnapshotService
    from consumers.snapshots.settings import SnapshotSettings
    from perpstream.local import TansuBroker, ensure_topics
    from schemas.codec import metric_point_codec

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
        first: list[float] = []
        in_handle = [0.0]
        orig = svc.make_handler

        def handler(s: SnapshotService, member: int) -> Any:
            h = orig(member)
            inner, inner_assigned = h.handle, h.on_assigned

            def assigned(partitions: Any) -> None:
                if partitions and not first:
                    first.append(time.perf_counter())  # the clock starts when the group is joined
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
        cpu0 = time.process_time()
        th = threading.Thread(target=svc.run, args=(stop,), daemon=True)
        th.start()
        while True:
            time.sleep(0.01)  # the members' own record of acknowledged commits
            done = sum(off for loop in list(svc.loops) for off in dict(loop.committed).values())
            if done >= n:
                break
        end = time.perf_counter()
        cpu = time.process_time() - cpu0
        stop.set()
        th.join(60)
        el = end - first[0]
        snaps = client.query("SELECT count() FROM bench.market_snapshots").result_rows[0][0]
        print(f"consumer: {n:,} events ({symbols} symbols x {seconds} s) in {el:.2f} s = "
              f"{n / el:,.0f} events/s (process CPU {cpu:.1f} s incl. group join; {snaps:,} snapshot rows; "
              f"{in_handle[0]:.2f} s in the handler, the rest in poll/decode/commit; "
              f"batch {batch:,}, batch_max_ms {batch_max_ms})")
        client.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=700)
    ap.add_argument("--seconds", type=int, default=60, help="event time of the engine's stream")
    ap.add_argument("--consumer-seconds", type=int, default=180,
                    help="event time of the consumer's stream (long enough that start-up does not dominate)")
    ap.add_argument("--batch", type=int, default=50_000, help="consumer batch_max_records")
    ap.add_argument("--batch-max-ms", type=int, default=50,
                    help="consumer batch_max_ms. A backlog fills every batch by size; the time bound only "
                         "decides how long the last, partial batch waits for records that never come")
    ap.add_argument("--skip-consumer", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--gc-threshold", type=int, default=CommonSettings().gc_threshold,
                    help="as the commands apply at start-up (gc_threshold); 0 = the interpreter's default")
    ap.add_argument("--cpu", type=int, default=None,
                    help="pin the benchmark to this one CPU (the broker it starts runs on the others)")
    a = ap.parse_args()
    if a.cpu is not None:
        os.sched_setaffinity(0, {a.cpu})
    tune_gc(a.gc_threshold)  # what `perpstream snapshots` does
    print(f"cpus:     {sorted(os.sched_getaffinity(0))} of {os.cpu_count()}; "
          f"gc threshold {gc.get_threshold()[0]}")
    bench_engine(a.symbols, a.seconds)
    if not a.skip_memory:
        bench_memory(a.symbols)
    if not a.skip_consumer:
        bench_consumer(a.symbols, a.consumer_seconds, a.batch, a.batch_max_ms)


if __name__ == "__main__":
    main()
