"""The foundation end to end: Avro MetricPoints keyed by symbol through a real
broker and a consumer group of three members."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from collections.abc import Callable

import pytest
from confluent_kafka import Consumer, Producer

from perpstream.schemas.codec import metric_point_codec
from tests.conftest import TEST_CONSUMER_CONFIG

pytestmark = pytest.mark.integration

N_EVENTS = 10_000
N_SYMBOLS = 50
METRICS = ["mark_price", "index_price", "estimated_settle_price", "funding_rate", "open_interest"]


def _points() -> list[dict[str, object]]:
    """Per symbol, ``value`` is a sequence number so per-key order is checkable."""
    out = []
    for i in range(N_EVENTS):
        sym = f"SYM{i % N_SYMBOLS:03d}USDT"
        seq = i // N_SYMBOLS
        out.append({
            "source": "binance_usdm", "symbol": sym, "metric": METRICS[seq % len(METRICS)],
            "value": float(seq), "event_time": 1_781_419_401_000 + seq * 1000,
            "ingest_time": 1_781_419_401_000 + seq * 1000 + 7,
        })
    return out


def test_10k_points_through_a_three_member_group_exactly_once_in_key_order(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str]
) -> None:
    topic = topic_factory(partitions=6)
    group = group_factory()
    codec = metric_point_codec()
    stop = threading.Event()
    received: dict[int, list[tuple[int, int, bytes, bytes]]] = defaultdict(list)
    assigned: dict[int, set[int]] = defaultdict(set)
    lock = threading.Lock()
    errors: list[BaseException] = []

    def member(idx: int) -> None:
        def on_assign(c: Consumer, parts: list) -> None:
            with lock:
                assigned[idx].update(p.partition for p in parts)

        def on_revoke(c: Consumer, parts: list) -> None:
            with lock:
                assigned[idx].difference_update(p.partition for p in parts)

        c = Consumer({
            "bootstrap.servers": kafka_bootstrap, "group.id": group,
            "auto.offset.reset": "earliest", "enable.auto.commit": False,
            "partition.assignment.strategy": "cooperative-sticky", **TEST_CONSUMER_CONFIG,
        })
        try:
            c.subscribe([topic], on_assign=on_assign, on_revoke=on_revoke)
            while not stop.is_set():
                msgs = c.consume(500, 0.2)
                for m in msgs:
                    if m.error():
                        raise RuntimeError(m.error())
                    with lock:
                        received[idx].append((m.partition(), m.offset(), m.key(), m.value()))
                if msgs:
                    c.commit(asynchronous=False)
        except BaseException as exc:  # surfaced to the test thread
            errors.append(exc)
        finally:
            c.close()

    threads = [threading.Thread(target=member, args=(i,), daemon=True) for i in range(3)]
    for t in threads:
        t.start()
    # Produce only once the group is stable, so no partition changes hands mid-test.
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with lock:
            if sum(len(s) for s in assigned.values()) == 6 and all(assigned[i] for i in range(3)):
                break
        time.sleep(0.2)
    else:
        stop.set()
        pytest.fail(f"group never settled: {dict(assigned)}")

    points = _points()
    producer = Producer({
        "bootstrap.servers": kafka_bootstrap, "enable.idempotence": True, "acks": "all",
        "compression.type": "zstd", "linger.ms": 5,
    })
    failures: list[str] = []
    for p in points:
        producer.produce(
            topic, key=str(p["symbol"]).encode(), value=codec.encode(p),
            on_delivery=lambda err, _m: failures.append(str(err)) if err else None,
        )
        producer.poll(0)
    assert producer.flush(30) == 0
    assert failures == []

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not errors:
        with lock:
            if sum(len(v) for v in received.values()) >= N_EVENTS:
                break
        time.sleep(0.2)
    time.sleep(1.0)  # anything extra (a duplicate) would arrive now
    stop.set()
    for t in threads:
        t.join(30)
    assert errors == []

    all_msgs = [m for v in received.values() for m in v]
    assert len(all_msgs) == N_EVENTS, "every event exactly once"
    assert len({(p, o) for p, o, _, _ in all_msgs}) == N_EVENTS
    decoded = [codec.decode(v) for _, _, _, v in all_msgs]
    key = lambda r: (r["symbol"], r["metric"], r["event_time"])  # noqa: E731
    assert sorted(map(key, decoded)) == sorted(map(key, points))
    # Every member got work, and one symbol's events all sit in one partition,
    # read in production order.
    assert all(received[i] for i in range(3))
    for msgs in received.values():
        for part in {p for p, _, _, _ in msgs}:
            arrival = [o for p, o, _, _ in msgs if p == part]
            assert arrival == sorted(arrival), "a partition was read out of offset order"
    by_symbol: dict[bytes, list[tuple[int, int, float]]] = defaultdict(list)
    for (part, off, k, _), rec in zip(all_msgs, decoded, strict=True):
        assert k == rec["symbol"].encode()
        by_symbol[k].append((part, off, rec["value"]))
    for k, seq in by_symbol.items():
        assert len({p for p, _, _ in seq}) == 1, f"{k!r} spread over partitions"
        in_offset_order = [v for _, _, v in sorted(seq)]
        assert in_offset_order == sorted(in_offset_order), f"{k!r} out of order"
        assert len(seq) == N_EVENTS // N_SYMBOLS
