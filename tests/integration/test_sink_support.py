"""Helpers shared by the sink and runtime integration tests (no tests here)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from perpstream.consumers.sink.settings import SinkSettings
from perpstream.schemas.codec import metric_point_codec

METRICS = ("mark_price", "index_price", "funding_rate", "open_interest")
T0 = 1_760_000_000_000


def make_points(n_distinct: int, symbols: int = 20) -> list[dict[str, Any]]:
    """Distinct identities with a value derived from the identity (so re-sends are equal)."""
    out = []
    for i in range(n_distinct):
        sym = f"SYM{i % symbols}USDT"
        metric = METRICS[(i // symbols) % len(METRICS)]
        et = T0 + (i // (symbols * len(METRICS))) * 1000
        out.append({"source": "binance_usdm", "symbol": sym, "metric": metric,
                    "value": 100.0 + i * 0.25, "event_time": et, "ingest_time": et + 7})
    return out


def produce(bootstrap: str, topic: str, records: Iterable[dict[str, Any]],
            raw: Iterable[tuple[bytes | None, bytes, int | None]] = ()) -> int:
    """Encode and produce ``records`` (key = symbol), then ``raw`` (key, value, partition)."""
    codec = metric_point_codec()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True,
                  "queue.buffering.max.messages": 500_000})
    n = 0
    for rec in records:
        while True:
            try:
                p.produce(topic, key=rec["symbol"].encode(), value=codec.encode(rec))
                break
            except BufferError:
                p.poll(0.05)
        n += 1
        if n % 10_000 == 0:
            p.poll(0)
    for key, value, partition in raw:
        if partition is None:
            p.produce(topic, key=key, value=value)
        else:
            p.produce(topic, key=key, value=value, partition=partition)
        n += 1
    assert p.flush(60) == 0
    return n


def settings_for(bootstrap: str, database: str, topic: str, dlq: str, group: str,
                 **kw: Any) -> SinkSettings:
    base: dict[str, Any] = {"batch_max_records": 5_000, "batch_max_ms": 200,
                            "retry_backoff_initial_ms": 100, "retry_backoff_max_ms": 1_000}
    base.update(kw)
    return SinkSettings(kafka_bootstrap_servers=bootstrap, clickhouse_database=database,
                        metrics_topic=topic, dlq_topic=dlq, group_id=group, **base)


def committed_total(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        res = c.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=20)
        return {tp.partition: tp.offset for tp in res}
    finally:
        c.close()



def read_dlq(bootstrap: str, topic: str, expected: int, timeout: float = 60.0) -> list[Any]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"dlq-reader-{time.time_ns()}",
                  "auto.offset.reset": "earliest", "enable.auto.commit": False,
                  "session.timeout.ms": 6000})
    c.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < expected and time.monotonic() < deadline:
            for m in c.consume(100, timeout=0.5):
                if m.error() is None:
                    out.append(m)
        # a little longer, to see extra (unexpected) records too
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            out.extend(m for m in c.consume(100, timeout=0.2) if m.error() is None)
    finally:
        c.close()
    return out


class Runner:
    """Runs a callable(stop) -> int in a thread; ``stop()`` joins it."""

    def __init__(self, fn: Callable[[threading.Event], int]) -> None:
        self.stop_event = threading.Event()
        self.rc: int | None = None
        self.error: BaseException | None = None

        def target() -> None:
            try:
                self.rc = fn(self.stop_event)
            except BaseException as exc:
                self.error = exc

        self.thread = threading.Thread(target=target, daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 120.0) -> int | None:
        self.stop_event.set()
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "consumer did not drain"
        if self.error is not None:
            raise self.error
        return self.rc
