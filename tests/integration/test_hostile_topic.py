"""Hostile records on a real topic, through the sink into ClickHouse (boundary 4).

A few hundred generated records (perpstream/fakes/hostile/records.py: truncated, lying
lengths, wrong framing, contract breaks, random bytes, CJK symbols...),
tombstones and one record at the producer's size limit, interleaved with
valid records, go onto a fresh topic; the sink consumes them into a fresh
database. Every record the reference accepts (``metric_point_codec().decode``
+ ``check_metric_point``) must be stored once with its exact values, every
other one must be on the DLQ topic with the reason the reference gives, and
stored + dead-lettered must equal produced.
"""

from __future__ import annotations

import random
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from confluent_kafka import Producer

from perpstream.consumers.runtime.decoding import ROW_FIELDS
from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.consumers.sink.service import run_sink
from perpstream.fakes.hostile.outcomes import blob
from perpstream.fakes.hostile.records import HEADER, codec, record_case, reference, valid_record
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.topics import (
    DLQ_HEADER_ERROR,
    DLQ_HEADER_GROUP,
    DLQ_HEADER_OFFSET,
    DLQ_HEADER_ORIGINAL_SIZE,
    DLQ_HEADER_PARTITION,
    DLQ_HEADER_REASON,
    DLQ_HEADER_TOPIC,
    DLQ_HEADER_TRUNCATED,
)
from tests.conftest import TEST_CONSUMER_CONFIG
from tests.integration.test_sink_support import Runner, committed_total, read_dlq, settings_for

pytestmark = pytest.mark.integration

#: librdkafka's default message.max.bytes: what the test's producer (and the DLQ's) may send.
MAX_MESSAGE = 1_000_000
PARTITIONS = 3


@dataclass
class Entry:
    key: bytes | None
    value: bytes | None
    family: str
    row: tuple[Any, ...] | None = None  # stored as this row, or
    reason: str | None = None  # dead-lettered with this reason
    where: tuple[int, int] | None = None  # (partition, offset) once delivered


def _identity(row: tuple[Any, ...]) -> tuple[Any, ...]:
    r = dict(zip(ROW_FIELDS, row, strict=True))
    return (r["source"], r["symbol"], r["metric"], r["event_time"])


def _mix(rng: random.Random) -> list[Entry]:
    entries: list[Entry] = []
    seen: set[tuple[Any, ...]] = set()

    def add(key: bytes | None, value: bytes | None, family: str) -> None:
        if value is None:
            entries.append(Entry(key, None, family, reason="undecodable"))
            return
        ref = reference(value)
        if isinstance(ref[0], type):
            entries.append(Entry(key, value, family, reason=str(ref[1])))
        elif _identity(ref) not in seen:  # one record per identity: FINAL keeps one of the same identity
            seen.add(_identity(ref))
            entries.append(Entry(key, value, family, row=ref))

    for _ in range(260):
        case = record_case(rng)
        if len(case.data) < MAX_MESSAGE - 10_000:  # the 1 MB strings of the "huge" family cannot be produced
            add(rng.choice([None, b"k", b"BTCUSDT", blob(rng, 8)]), case.data, case.family)
    for _ in range(240):
        rec = valid_record(rng)
        add(rec["symbol"].encode(), codec().encode(rec), "valid")
    for i in range(8):
        add(f"tombstone-{i}".encode(), None, "tombstone")
    # at the producer's limit: as large as librdkafka lets the test send; its DLQ copy (plus headers) is not
    add(b"k-limit", HEADER + blob(rng, MAX_MESSAGE - 200), "at_limit")
    rng.shuffle(entries)
    return entries


def _produce(bootstrap: str, topic: str, entries: list[Entry]) -> None:
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True,
                  "message.max.bytes": MAX_MESSAGE})
    errors: list[str] = []

    def delivered(entry: Entry) -> Callable[[Any, Any], None]:
        def cb(err: Any, msg: Any) -> None:
            if err is not None:
                errors.append(str(err))
            else:
                entry.where = (msg.partition(), msg.offset())
        return cb

    for n, e in enumerate(entries):
        # the partition spreads the mix; the key stays what the test chose (None included)
        p.produce(topic, key=e.key, value=e.value, partition=n % PARTITIONS, on_delivery=delivered(e))
        p.poll(0)
    assert p.flush(60) == 0 and not errors, errors
    assert all(e.where is not None for e in entries)


def _bits(x: float) -> bytes:
    return struct.pack("<d", x)


def _wait(cond: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(0.5)


def test_hostile_records_are_stored_exactly_or_dead_lettered_with_a_reason(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, ch_database: str,
) -> None:
    entries = _mix(random.Random(20_260_101))
    valid = [e for e in entries if e.row is not None]
    dead = [e for e in entries if e.reason is not None]
    assert len(valid) > 250 and len(dead) > 150  # a real mix, whatever the generators do
    topic, dlq, group = topic_factory(PARTITIONS), topic_factory(1), group_factory()
    _produce(kafka_bootstrap, topic, entries)

    migrate_sink(clickhouse, ch_database)
    telemetry = Telemetry()
    settings = settings_for(kafka_bootstrap, ch_database, topic, dlq, group, batch_max_records=100)
    runner = Runner(lambda stop: run_sink(settings, clickhouse, stop, telemetry=telemetry,
                                          consumer_overrides=TEST_CONSUMER_CONFIG))
    try:
        def all_committed() -> bool:
            return sum(committed_total(kafka_bootstrap, group, topic, PARTITIONS).values()) == len(entries)

        _wait(all_committed, 60, "every offset committed")
        assert runner.thread.is_alive()
    finally:
        assert runner.stop() == 0

    # every valid record stored once, exactly
    cols = ", ".join(f"toUnixTimestamp64Milli({c})" if c.endswith("_time") else c for c in ROW_FIELDS)
    rows = clickhouse.query(f"SELECT {cols} FROM {ch_database}.metric_points FINAL").result_rows
    stored = {_identity(tuple(r)): tuple(r) for r in rows}
    expected = {_identity(e.row): e.row for e in valid if e.row is not None}
    assert len(rows) == len(stored) == len(expected)
    assert set(stored) == set(expected)
    v = ROW_FIELDS.index("value")
    for ident, row in expected.items():
        got = stored[ident]
        assert got[:v] + got[v + 1:] == row[:v] + row[v + 1:], ident
        assert _bits(got[v]) == _bits(row[v]), (ident, got[v], row[v])
    not_final = clickhouse.query(f"SELECT count() FROM {ch_database}.metric_points").result_rows[0][0]
    assert not_final == len(expected)  # no row inserted twice

    # every other record on the DLQ, once, with its reason and its original bytes
    copies = read_dlq(kafka_bootstrap, dlq, len(dead))
    by_place = {e.where: e for e in dead}
    seen: set[tuple[int, int]] = set()
    for m in copies:
        h = dict(m.headers() or [])
        assert h[DLQ_HEADER_TOPIC] == topic.encode() and h[DLQ_HEADER_GROUP] == group.encode()
        place = (int(h[DLQ_HEADER_PARTITION]), int(h[DLQ_HEADER_OFFSET]))
        assert place in by_place and place not in seen, place
        seen.add(place)
        e = by_place[place]
        assert h[DLQ_HEADER_REASON] == str(e.reason).encode(), (e.family, h[DLQ_HEADER_REASON], e.reason)
        assert h[DLQ_HEADER_ERROR]
        assert m.key() == e.key
        if DLQ_HEADER_TRUNCATED in h:  # only what the DLQ producer cannot send whole
            assert e.family == "at_limit" and e.value is not None
            assert h[DLQ_HEADER_ORIGINAL_SIZE] == str(len(e.value)).encode()
            assert len(m.value()) > MAX_MESSAGE - 10_000 and e.value.startswith(m.value())
        else:
            assert m.value() == e.value, e.family
    assert seen == set(by_place)
    assert len(stored) + len(copies) == len(entries)
    assert telemetry.total("records_dlq") == len(dead)
    assert telemetry.total("records_stored") == len(valid)
