"""What a handler receives: one batch of decoded records, grouped by partition."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

TopicPartitionId = tuple[str, int]


@dataclass(slots=True)
class PartitionBatch:
    """The records of one partition in a batch, in offset order.

    ``first_offset``/``last_offset`` span every offset consumed for this
    partition in the batch, including records routed to the DLQ, so they are
    the same on every re-delivery of the batch: use them for dedup tokens.
    ``records[i]`` is the decoded dict (timestamps as epoch-ms ints) of the
    message at ``offsets[i]``. A partition may have no valid records at all
    (everything went to the DLQ); its offsets are still committed.

    A loop given a row decoder (opt-in; both consumers use it) fills ``rows``
    instead of ``records``: ``rows[i]`` is the decoder's tuple for the message
    at ``offsets[i]``, and ``records`` stays empty.
    """

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    records: list[dict[str, Any]] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    #: The topic's id (a UUID, new for every incarnation of the topic). Offsets
    #: restart at 0 when a topic is recreated or an in-memory broker restarts,
    #: so without it a new batch could reuse an old token and be dropped.
    topic_id: str = ""
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    @property
    def tp(self) -> TopicPartitionId:
        return (self.topic, self.partition)

    @property
    def dedup_token(self) -> str:
        return f"{self.topic}:{self.topic_id}:{self.partition}:{self.first_offset}:{self.last_offset}"


@dataclass(slots=True)
class Rejected:
    """A record that could not be decoded or broke the contract: goes to the DLQ as is."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]] | None
    error: str
    reason: str


@dataclass(slots=True)
class Batch:
    """One unit of work: handed to :meth:`BatchHandler.handle`, committed as a whole.

    A retried batch is this very object again (same records, same offsets), so
    a handler may rely on retries being byte-identical.
    """

    partitions: dict[TopicPartitionId, PartitionBatch]
    rejected: list[Rejected]
    attempts: int = 0

    def __len__(self) -> int:
        """Number of valid records (what the handler stores)."""
        return sum(len(pb.records) + len(pb.rows) for pb in self.partitions.values())

    def records(self) -> Iterator[tuple[PartitionBatch, int, dict[str, Any]]]:
        """Every valid record with its partition batch and offset (dict records only)."""
        for pb in self.partitions.values():
            for off, rec in zip(pb.offsets, pb.records, strict=True):
                yield pb, off, rec

    def ranges(self) -> dict[TopicPartitionId, tuple[int, int]]:
        return {tp: (pb.first_offset, pb.last_offset) for tp, pb in self.partitions.items()}

    def drop(self, partitions: set[TopicPartitionId]) -> None:
        """Forget revoked partitions: their new owner re-reads them from the committed offset."""
        for tp in partitions:
            self.partitions.pop(tp, None)
        self.rejected = [r for r in self.rejected if (r.topic, r.partition) not in partitions]
