"""Test doubles of the outside world (the exchange), and reading helpers.

The fakes are real servers on loopback sockets, never mocks: the producer
talks to them exactly as it talks to Binance.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from perpstream.schemas.codec import metric_point_codec


def read_topic(
    bootstrap: str, topic: str, *, expect: int | None = None, timeout: float = 60.0,
    idle: float = 3.0, consumer_config: dict[str, Any] | None = None,
    until: Callable[[list[tuple[bytes, dict[str, Any]]]], bool] | None = None, quiet: float = 1.0,
) -> list[tuple[bytes, dict[str, Any]]]:
    """Every (key, decoded MetricPoint) on ``topic`` from the start.

    Stops ``quiet`` seconds without records after ``until(records)`` became
    true (0: at once, for a topic still being written), or when ``expect`` records were
    read (then one quiet second to catch extras), or after ``idle`` seconds
    without a record once something was read, or at ``timeout``.
    """
    from confluent_kafka import Consumer

    codec = metric_point_codec()
    c = Consumer({
        "bootstrap.servers": bootstrap, "group.id": f"read-{uuid.uuid4().hex[:8]}",
        "auto.offset.reset": "earliest", "enable.auto.commit": False,
        **(consumer_config or {"session.timeout.ms": 6000, "heartbeat.interval.ms": 500}),
    })
    c.subscribe([topic])
    out: list[tuple[bytes, dict[str, Any]]] = []
    deadline = time.monotonic() + timeout
    last = time.monotonic()
    satisfied = False
    try:
        while time.monotonic() < deadline:
            msgs = c.consume(10_000, 0.5)
            now = time.monotonic()
            for m in msgs:
                if m.error():
                    continue
                out.append((m.key(), codec.decode(m.value())))
            if msgs:
                last = now
            if until is not None:
                if not satisfied and until(out):
                    satisfied = True
                if satisfied and now - last >= quiet:
                    break
                continue
            if expect is not None and len(out) >= expect and now - last >= min(idle, 1.0):
                break
            if expect is None and out and now - last >= idle:
                break
    finally:
        c.close()
    return out
