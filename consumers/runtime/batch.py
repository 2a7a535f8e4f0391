"""What a handler receives: one batch of decoded rows, grouped by partition."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

TopicPartitionId = tuple[str, int]


@dataclass(slots=True)
class PartitionBatch:
    """The rows of one partition in a batch, in offset order.

    ``first_offset``/``last_offset`` span every offset consumed for this
    partition in the batch, including records routed to the DLQ, so they are
    the same on every re-delivery of the batch: use them for dedup tokens.
    ``rows[i]`` is the loop's decoder's tuple (for MetricPoints
    :data:`~consumers.runtime.decoding.ROW_FIELDS`) for the message at
    ``offsets[i]``. A partition may have no valid rows at all (everything
    went to the DLQ); its offsets are still committed.
    """

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    #: The topic's id (a UUID, new for every incarnation of the topic). Offsets
    #: restart at 0 when a topic is recreated or an in-memory broker restarts,
    #: so without it a new batch could reuse an old token and be dropped.
    topic_id: str = ""

    @property
    def tp(self) -> TopicPartitionId:
        return (self.topic, self.partition)

    @property
    def dedup_token(self) -> str:
        return f"{self.topic}:{self.topic_id}:{self.partition}:{self.first_offset}:{self.last_offset}"


@dataclass(slots=True)
class Rejected:
    """A record that could not be decoded or broke the contract: goes to the DLQ as is.

    ``dlq_state`` is the DLQ writer's: ``""`` not sent yet, ``"in_flight"``
    produced and not acknowledged, ``"acked"`` durable in the DLQ. A retried
    batch re-sends only what is neither, so a DLQ outage does not turn into
    duplicate DLQ records.
    """

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None
    error: str
    reason: str
    dlq_state: str = ""


@dataclass(slots=True)
class Batch:
    """One unit of work: handed to :meth:`BatchHandler.handle`, committed as a whole.

    A retried batch is this very object again (same rows, same offsets), so
    a handler may rely on retries being byte-identical.
    """

    partitions: dict[TopicPartitionId, PartitionBatch]
    rejected: list[Rejected]
    attempts: int = 0

    def __len__(self) -> int:
        """Number of valid rows (what the handler stores)."""
        return sum(len(pb.rows) for pb in self.partitions.values())

    def ranges(self) -> dict[TopicPartitionId, tuple[int, int]]:
        return {tp: (pb.first_offset, pb.last_offset) for tp, pb in self.partitions.items()}

    def describe(self) -> str:
        """The record ranges, for an operator: ``topic[0] 100..199, topic[3] 7..42``."""
        ranges = sorted(self.ranges().items())
        return ", ".join(f"{t}[{p}] {first}..{last}" for (t, p), (first, last) in ranges)

    def drop(self, partitions: set[TopicPartitionId]) -> None:
        """Forget revoked partitions: their new owner re-reads them from the committed offset."""
        for tp in partitions:
            self.partitions.pop(tp, None)
        self.rejected = [r for r in self.rejected if (r.topic, r.partition) not in partitions]
