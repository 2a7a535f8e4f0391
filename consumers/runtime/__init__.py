"""The consume-loop runtime shared by every perpstream consumer group.

Public surface: :class:`ConsumeLoop` (one member: the librdkafka adapter,
``loop``, of the member's pure core :class:`MemberCore`, ``member``),
:func:`run_workers` (N members as threads, ``supervisor``),
:class:`BatchHandler` (what a consumer implements), :class:`Batch` /
:class:`PartitionBatch` / :class:`Rejected` (what it receives, ``batch``),
:class:`BatchBuilder` (how a batch is cut, ``builder``), :class:`BatchJournal`
(optional, for identical re-delivered batches), :class:`DlqWriter`. The
guarantees are listed in ``consumers.runtime.loop`` and the core in docs/sink.md
("The consume runtime"); Kafka errors are sorted in ``consumers.failures``; broker-specific
workarounds live apart in ``consumers.runtime.workarounds``.
"""

from __future__ import annotations

from perpstream.consumers.exceptions import BackpressureError
from perpstream.consumers.runtime.batch import Batch, PartitionBatch, Rejected, TopicPartitionId
from perpstream.consumers.runtime.builder import BatchBuilder, RowDecoder
from perpstream.consumers.runtime.dlq import DlqWriter, dlq_headers
from perpstream.consumers.runtime.loop import BatchHandler, BatchJournal, ConsumeLoop
from perpstream.consumers.runtime.member import MemberCore
from perpstream.consumers.runtime.supervisor import run_workers

__all__ = [
    "BackpressureError",
    "Batch",
    "BatchBuilder",
    "BatchHandler",
    "BatchJournal",
    "ConsumeLoop",
    "DlqWriter",
    "MemberCore",
    "PartitionBatch",
    "Rejected",
    "RowDecoder",
    "TopicPartitionId",
    "dlq_headers",
    "run_workers",
]
