"""Building one batch from polled messages: decode, set rejects aside, cut at journaled ends.

Pure: no Kafka client, no clock, no I/O. It reads only the accessors of
``confluent_kafka.Message`` listed in :class:`Message`, so tests drive it
with small stand-ins, and the consume loop (``consumers.runtime.loop``) owns
everything that talks to the broker. The per-message loop in
:meth:`BatchBuilder.add` is the consumers' hot path (about 0.6 µs a record,
docs/sink.md "Benchmark"), which is why it caches the partition of the
previous message instead of looking it up every time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from perpstream.consumers.runtime.batch import Batch, PartitionBatch, Rejected, TopicPartitionId
from perpstream.schemas.exceptions import DecodeError

#: Decodes *and* validates one message value into a row; raises
#: :class:`~schemas.exceptions.DecodeError` (whose ``reason`` labels the DLQ record).
RowDecoder = Callable[[bytes], tuple[Any, ...]]


class Message(Protocol):
    """The accessors of ``confluent_kafka.Message`` the builder uses."""

    def error(self) -> Any: ...
    def topic(self) -> str | None: ...
    def partition(self) -> int | None: ...
    def offset(self) -> int | None: ...
    def key(self) -> bytes | None: ...
    def value(self) -> bytes | None: ...
    def headers(self) -> list[tuple[str, bytes]] | None: ...


class BatchBuilder:
    """Accumulates one batch.

    ``cuts`` maps a partition to journaled batch boundaries ``[first - 1,
    last, ...]`` (see ``consumers.clickhouse.ClickHouseBatchJournal``): the
    builder ends that partition's part of the batch exactly at a journaled
    ``last`` so a re-delivered batch is cut as before, and hands the messages
    after it to ``carry`` (the next batch). It consumes the entries it
    passes, and shares the dict with the loop across batches.

    Messages carrying an error are not records: they are collected in
    :attr:`errors` for the loop to judge (the builder does not know Kafka's
    error types).
    """

    __slots__ = (
        "_cuts",
        "_decode",
        "_topic_ids",
        "closed",
        "consumed",
        "count",
        "errors",
        "parts",
        "rejected",
    )

    def __init__(self, decode: RowDecoder, cuts: dict[TopicPartitionId, list[int]],
                 topic_ids: Mapping[str, str] | None = None) -> None:
        self._decode = decode
        self._cuts = cuts
        self._topic_ids = topic_ids or {}
        self.parts: dict[TopicPartitionId, PartitionBatch] = {}
        self.rejected: list[Rejected] = []
        #: partitions whose journaled end was reached: later messages go to ``carry``
        self.closed: set[TopicPartitionId] = set()
        #: offsets in the batch (valid and rejected): what ``max_records`` bounds
        self.count = 0
        #: offsets consumed into this builder, for the ``records_consumed`` counter
        self.consumed = 0
        self.errors: list[Any] = []

    def waiting_for_cut(self) -> list[TopicPartitionId]:
        """Partitions whose journaled batch end has not been reached yet."""
        return [tp for tp in self.parts if tp in self._cuts and tp not in self.closed]

    def drop(self, tps: set[TopicPartitionId]) -> None:
        """Forget revoked partitions (their next owner re-reads them)."""
        for tp in tps:
            pb = self.parts.pop(tp, None)
            if pb is not None:
                self.count = max(0, self.count - (pb.last_offset - pb.first_offset + 1))
        self.rejected = [r for r in self.rejected if (r.topic, r.partition) not in tps]

    def batch(self) -> Batch | None:
        """The batch built so far, or None when no record arrived."""
        return Batch(self.parts, self.rejected) if self.parts else None

    def add(self, msgs: Iterable[Message], carry: list[Any]) -> None:
        # Long: the per-record loop of every consumer, kept in one frame with its lookups bound
        # to locals, so a record costs no extra call; `perpstream bench sink` measures it.
        parts = self.parts
        decode = self._decode
        cuts = self._cuts
        closed = self.closed
        rejected = self.rejected
        n = 0
        # The partition batch of the previous message: consume() returns runs of
        # one partition, so most messages skip the tuple and the dict lookup.
        last_topic: Any = None
        last_partition: Any = -1
        pb: PartitionBatch | None = None
        row_append: Any = None
        off_append: Any = None
        for m in msgs:
            err = m.error()
            if err is not None:
                self.errors.append(err)
                continue
            off: Any = m.offset()
            topic: Any = m.topic()
            partition: Any = m.partition()
            if partition != last_partition or topic != last_topic or cuts or closed:
                tp = (topic, partition)
                if tp in closed:
                    carry.append(m)
                    last_topic = None  # re-check the next message
                    continue
                pb = parts.get(tp)
                if cuts:
                    c = cuts.get(tp)
                    if c is not None:
                        if pb is None:
                            while c and c[0] < off:
                                c.pop(0)
                        if c and off >= c[0]:
                            if off > c[0] and pb is not None:
                                # the journaled end is missing (compacted): end the batch before it
                                c.pop(0)
                                closed.add(tp)
                                carry.append(m)
                                last_topic = None
                                continue
                            c.pop(0)
                            closed.add(tp)
                        if not c:
                            del cuts[tp]
                if pb is None:
                    pb = parts[tp] = PartitionBatch(topic, partition, off, off,
                                                    topic_id=self._topic_ids.get(topic, ""))
                last_topic = topic
                last_partition = partition
                row_append = pb.rows.append
                off_append = pb.offsets.append
            assert pb is not None
            pb.last_offset = off
            n += 1
            value = m.value()
            try:
                if value is None:
                    raise DecodeError("record has no value (tombstone)")
                row = decode(value)
            except DecodeError as exc:
                rejected.append(Rejected(topic, partition, off, m.key(), value, m.headers(),
                                         str(exc), exc.reason))
                continue
            row_append(row)
            off_append(off)
        self.count += n
        self.consumed += n
