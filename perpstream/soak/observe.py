"""What the soak watches while it runs: the flow of data, a broker's replicas, the DLQ.

The :class:`Sampler` turns the exchange's sent identities and both groups'
committed offsets into monotone progress, so a fault is recovered when what it
stopped grows again; :class:`KafkaView` says when every replica is back in sync
on Apache Kafka (docs/soak.md, "Faults" and "Apache Kafka").
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

from perpstream.runtime.telemetry import kafka_logging
from perpstream.schemas.topics import DLQ_TOPIC, METRICS_TOPIC
from perpstream.soak.processes import SoakError, wait_until

SINK_GROUP = "soak-sink"
SNAPSHOTS_GROUP = "soak-snapshots"
#: The groups' committed offsets live here: a broker is back in sync when no partition of it, nor
#: of the product's topics, is under-replicated.
OFFSETS_TOPIC = "__consumer_offsets"
#: The soak's own Kafka clients (sampler, watermarks, replica sync) give up on a request after this
#: long, so that a hung broker costs a sample, not librdkafka's 60 s socket timeout.
VIEW_TIMEOUT_MS = 5000


@dataclass
class PastEnds:
    """Waits for both groups to commit, on every partition that had records, past that
    partition's end at a fault: records produced after it, consumed and stored."""

    ends: dict[int, int]
    at: float | None = None

    def reached(self, offsets: dict[str, list[int] | None]) -> bool:
        for parts in offsets.values():
            if parts is None:
                return False
            if any(parts[p] <= end for p, end in self.ends.items() if end > 0):
                return False
        return True


class Sampler:
    """Samples, every ``period`` s, what each fault stops: the exchange's sent mark and
    open-interest identities and the committed offsets of both groups. Each series is
    turned into monotone progress (a reset, e.g. a new broker's offsets, counts from 0)."""

    SERIES = ("exchange_mark", "exchange_oi", "sink_committed", "snapshots_committed")

    def __init__(self, fake: Any, bootstrap: str, partitions: int, t0: float, period: float = 0.25) -> None:
        self._fake = fake
        self._t0 = t0
        self._period = period
        self._tps = [TopicPartition(METRICS_TOPIC, p) for p in range(partitions)]
        self._consumers = {
            name: Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                            "socket.timeout.ms": VIEW_TIMEOUT_MS, **kafka_logging()})
            for name, group in (("sink_committed", SINK_GROUP), ("snapshots_committed", SNAPSHOTS_GROUP))
        }
        self._watches: list[PastEnds] = []
        self._last: dict[str, int] = {}
        self.progress: dict[str, int] = dict.fromkeys(self.SERIES, 0)
        self.seq = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for c in self._consumers.values():
            with contextlib.suppress(Exception):
                c.close()

    def committed_parts(self, name: str) -> list[int] | None:
        """The group's committed offset of each partition (0 where none), or None if unknown now."""
        try:
            got = self._consumers[name].committed(self._tps, timeout=3)
        except Exception:
            return None
        # a partition in error counts 0 (Tansu answers one without a commit in a new topic so)
        return [max(tp.offset, 0) for tp in got]

    def committed(self, name: str) -> int | None:
        parts = self.committed_parts(name)
        return None if parts is None else sum(parts)

    def _sample(self) -> tuple[dict[str, int | None], dict[str, list[int] | None]]:
        parts = {name: self.committed_parts(name) for name in ("sink_committed", "snapshots_committed")}
        return {
            "exchange_mark": len(self._fake.sent_mark), "exchange_oi": len(self._fake.sent_oi),
            **{name: None if p is None else sum(p) for name, p in parts.items()},
        }, parts

    def watch_past(self, ends: dict[int, int]) -> PastEnds:
        """From now on, note the first sample in which both groups are past ``ends``."""
        w = PastEnds(dict(ends))
        with self._cond:
            self._watches.append(w)
        return w

    def wait_past(self, w: PastEnds, timeout: float) -> float | None:
        """Monotonic time of the first sample past ``w``'s ends (since it was set), or None."""
        with self._cond:
            if self._cond.wait_for(lambda: w.at is not None, timeout) and w in self._watches:
                self._watches.remove(w)
            return w.at

    def _run(self) -> None:
        while not self._stop.is_set():
            values, parts = self._sample()
            now = time.monotonic()
            with self._cond:
                for w in self._watches:
                    if w.at is None and w.reached(parts):
                        w.at = now
                for name, v in values.items():
                    if v is None:
                        continue
                    prev = self._last.get(name)
                    if prev is not None:
                        self.progress[name] += v - prev if v >= prev else v
                    self._last[name] = v
                self.seq += 1
                self._cond.notify_all()
            self._stop.wait(self._period)

    def fresh(self, timeout: float = 30.0) -> dict[str, int]:
        """The progress of a sample taken entirely after this call."""
        with self._cond:
            target = self.seq + 2
            if not self._cond.wait_for(lambda: self.seq >= target, timeout):
                raise SoakError("the sampler stopped answering")
            return dict(self.progress)

    def wait_growth(self, name: str, baseline: int, timeout: float) -> float | None:
        """Monotonic time of the first sample with ``name`` past ``baseline``, or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.progress[name] <= baseline:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 1.0))
            return time.monotonic()


class KafkaView:
    """The soak's look at an Apache Kafka cluster: each metrics partition's end, and whether
    every replica of the topics that matter is in sync (docs/soak.md, "Apache Kafka")."""

    def __init__(self, bootstrap: str, partitions: int, topics: list[str]) -> None:
        common = {"bootstrap.servers": bootstrap, "socket.timeout.ms": VIEW_TIMEOUT_MS, **kafka_logging()}
        self._admin = AdminClient(common)
        self.partitions = partitions
        self.topics = [*topics, OFFSETS_TOPIC]

    def ends(self, timeout: float = 60.0) -> dict[int, int]:
        """The high watermark of each metrics partition, asked of each leader as the metadata
        names it now (a consumer's cached leader can be one that has lost the partition)."""
        deadline = time.monotonic() + timeout
        out: dict[int, int] = {}
        while True:
            ask = {TopicPartition(METRICS_TOPIC, p): OffsetSpec.latest()
                   for p in range(self.partitions) if p not in out}
            for tp, fut in self._admin.list_offsets(ask, request_timeout=5).items():
                with contextlib.suppress(Exception):
                    out[tp.partition] = int(fut.result().offset)
            if len(out) == self.partitions:
                return out
            if time.monotonic() > deadline:
                lacking = sorted(set(range(self.partitions)) - set(out))
                raise SoakError(f"no end offset for metrics partitions {lacking}")
            time.sleep(0.5)

    def under_replicated(self) -> int | None:
        """Partitions of :attr:`topics` with fewer in-sync replicas than replicas (or no leader),
        None when the metadata cannot be had."""
        try:
            md = self._admin.list_topics(timeout=5)
        except Exception:
            return None
        n = 0
        for name in self.topics:
            topic = md.topics.get(name)
            if topic is None or topic.error is not None:
                return None
            for part in topic.partitions.values():
                if part.error is not None or part.leader < 0 or len(part.isrs) < len(part.replicas):
                    n += 1
        return n

    def wait_in_sync(self, timeout: float) -> None:
        wait_until(lambda: self.under_replicated() == 0, timeout,
                   "every replica of the product topics and the group offsets to be in sync", 0.5)


def read_dlq(bootstrap: str, quiet: float = 3.0, timeout: float = 60.0) -> int:
    """Records on the DLQ topic now, read from the start until ``quiet`` s without one."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "soak-dlq-reader", "enable.auto.commit": False,
                  **kafka_logging()})
    n = 0
    try:
        c.assign([TopicPartition(DLQ_TOPIC, 0, 0)])
        deadline, last = time.monotonic() + timeout, time.monotonic()
        while time.monotonic() - last < quiet and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                n += 1
                last = time.monotonic()
        return n
    finally:
        c.close()
