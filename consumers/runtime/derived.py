"""The handler shape of a group that derives records from its input (the snapshot group's
MarketSnapshots, the asset group's AssetSnapshots, docs/snapshots.md).

Per assigned partition an engine turns a batch into accepted inputs, output records and
checkpoints (:meth:`DerivingHandler._prepare`, the group's own); :class:`DerivingHandler`
makes them durable before ``handle`` returns, so before the runtime commits the offsets:

1. the records are sent to the output topic (:class:`~consumers.runtime.publisher.RecordPublisher`),
2. the accepted inputs and the records are written to ClickHouse (the sends overlap them),
3. the topic's acknowledgements are awaited,
4. the checkpoints are held, and written at most once per ``checkpoint_interval`` (and on
   revocation and stop): they say "everything up to here is durable", so they come last.

A step that fails raises (backpressure: the runtime hands the *same* batch again); the
batch's outputs were computed once and are kept, and only the steps not done yet run again
(the records are sent again when their acknowledgement failed). A partition assigned is
rebuilt lazily by the first batch of it (a ClickHouse outage is then backpressure, not an
error inside the rebalance callback).
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

from perpstream.consumers.exceptions import BackpressureError, ConsumerError
from perpstream.consumers.runtime.batch import Batch, TopicPartitionId
from perpstream.consumers.runtime.publisher import RecordPublisher
from perpstream.runtime.telemetry import Telemetry

#: What a checkpoint is kept per: a market (source, symbol), an asset ...
K = TypeVar("K")
E = TypeVar("E")


class OutputStore(Protocol[K]):
    """What :class:`DerivingHandler` writes through (the inputs are the group's own)."""

    def write_snapshots(self, records: Sequence[dict[str, Any]]) -> None: ...

    def write_checkpoints(self, last: Mapping[TopicPartitionId, Mapping[K, int]]) -> None: ...


S = TypeVar("S", bound=OutputStore[Any])


@dataclass
class PartitionOut(Generic[K]):
    """What one partition's part of a batch gave."""

    #: accepted inputs, as the group's store writes them
    inputs: list[Any] = field(default_factory=list)
    #: output records (those a rebuild emitted again first)
    records: list[dict[str, Any]] = field(default_factory=list)
    #: per key, the latest record time of this batch
    checkpoints: dict[K, int] = field(default_factory=dict)


@dataclass
class Prepared(Generic[K]):
    """A batch's outputs, kept until they are durable, and the steps done."""

    batch: Batch
    parts: dict[TopicPartitionId, PartitionOut[K]]
    done: set[str] = field(default_factory=set)


class DerivingHandler(abc.ABC, Generic[S, E, K]):
    """The :class:`~consumers.runtime.loop.BatchHandler` half both deriving groups share (module
    docstring); a group brings :meth:`_prepare`, :meth:`_write_inputs`, :meth:`_handled` and
    :meth:`_checkpoints_not_written`, and may extend :meth:`_forget`."""

    def __init__(
        self,
        store: S,
        publisher: RecordPublisher | None,
        *,
        telemetry: Telemetry | None = None,
        group_id: str = "",
        checkpoint_interval: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.publisher = publisher
        self.telemetry = telemetry or Telemetry()
        self._labels = {"group": group_id}
        self.engines: dict[TopicPartitionId, E] = {}
        self._restore: set[TopicPartitionId] = set()
        self._restored_out: dict[TopicPartitionId, list[dict[str, Any]]] = {}
        self._prepared: Prepared[K] | None = None
        self._lock = threading.Lock()
        #: seconds between checkpoint writes (0: every batch that emitted); see _checkpoint
        self._checkpoint_interval = checkpoint_interval
        self._clock = clock
        #: per partition, key -> latest record time whose outputs are durable, not yet written
        self._unwritten: dict[TopicPartitionId, dict[K, int]] = {}
        self._checkpoint_due = 0.0

    # -- what a group brings ------------------------------------------------------

    @abc.abstractmethod
    def _prepare(self, batch: Batch) -> Prepared[K]:
        """Feed the batch to the partitions' engines (rebuilt first where due)."""

    @abc.abstractmethod
    def _write_inputs(self, inputs: Mapping[TopicPartitionId, list[Any]]) -> None:
        """Write the accepted inputs of a batch, per partition."""

    @abc.abstractmethod
    def _handled(self, records: list[dict[str, Any]],
                 parts: Mapping[TopicPartitionId, PartitionOut[K]]) -> None:
        """A batch's outputs are durable: count them."""

    @abc.abstractmethod
    def _checkpoints_not_written(self, partitions: list[TopicPartitionId], exc: ConsumerError) -> None:
        """Say that the held checkpoints of ``partitions`` were not written at revocation or stop."""

    # -- BatchHandler -------------------------------------------------------------

    def on_assigned(self, partitions: list[TopicPartitionId]) -> None:
        # Rebuilt lazily in handle(): a ClickHouse outage then becomes backpressure
        # (pause and retry) instead of an error inside the rebalance callback.
        for tp in partitions:
            self._forget(tp)
            self._restore.add(tp)

    def on_revoked(self, partitions: list[TopicPartitionId]) -> None:
        # the next owner resumes from the checkpoints: write what this member vouches for
        self._write_checkpoints_now(partitions)
        for tp in partitions:
            self._forget(tp)
            self._restore.discard(tp)

    def _forget(self, tp: TopicPartitionId) -> E | None:
        """Drop a partition's state; returns its engine, if it had one."""
        with self._lock:
            engine = self.engines.pop(tp, None)
        self._restored_out.pop(tp, None)
        self._unwritten.pop(tp, None)
        return engine

    def handle(self, batch: Batch) -> None:
        prep = self._prepared
        if prep is None or prep.batch is not batch:
            prep = self._prepared = self._prepare(batch)
        parts = {tp: out for tp, out in prep.parts.items() if tp in batch.partitions}
        records = [r for out in parts.values() for r in out.records]
        # The checkpoints last: they say "every record up to here is durable". Records may go
        # before the inputs: they follow from the input, and a crash in between re-derives them.
        if "sent" not in prep.done:
            if self.publisher is not None:
                self.publisher.send(records)
            prep.done.add("sent")
        if "inputs" not in prep.done:
            self._write_inputs({tp: out.inputs for tp, out in parts.items()})
            prep.done.add("inputs")
        if "records" not in prep.done:
            self.store.write_snapshots(records)
            prep.done.add("records")
        if self.publisher is not None:
            try:
                self.publisher.wait()
            except BackpressureError:
                prep.done.discard("sent")
                raise
        self._checkpoint({tp: out.checkpoints for tp, out in parts.items()})
        self._prepared = None
        self._handled(records, parts)

    def close(self) -> None:
        self._write_checkpoints_now(list(self._unwritten))
        if self.publisher is not None:
            self.publisher.close()

    # -- checkpoints ----------------------------------------------------------------

    def _checkpoint(self, durable: Mapping[TopicPartitionId, Mapping[K, int]]) -> None:
        """Vouch for a handled batch's records; write the checkpoints at most once per interval.

        A checkpoint written later than it could be is never wrong, only older: a rebuild
        from it emits the records after it again, with the values they had. So the writes of
        several batches are coalesced into one insert, the cost being records emitted again
        for at most ``checkpoint_interval`` after a crash. Merging by max makes a retry of
        the same batch (a failed write) harmless.
        """
        for tp, keys in durable.items():
            if not keys:
                continue
            held = self._unwritten.setdefault(tp, {})
            for key, t in keys.items():
                if held.get(key, -1) < t:
                    held[key] = t
        if self._unwritten and self._clock() >= self._checkpoint_due:
            self.store.write_checkpoints(self._unwritten)
            self._unwritten = {}
            self._checkpoint_due = self._clock() + self._checkpoint_interval

    def _write_checkpoints_now(self, partitions: list[TopicPartitionId]) -> None:
        """Revocation and stop: write the held checkpoints of ``partitions`` if ClickHouse
        takes them; if not, the next owner emits again from the older ones (still exact)."""
        todo = {tp: self._unwritten.pop(tp) for tp in partitions if tp in self._unwritten}
        if not todo:
            return
        try:
            self.store.write_checkpoints(todo)
        except ConsumerError as exc:
            self._checkpoints_not_written(sorted(todo), exc)
