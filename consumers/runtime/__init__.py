"""The consume-loop runtime shared by every perpstream consumer group.

Public surface: :class:`ConsumeLoop` (one member), :func:`run_workers` (N
members as threads), :class:`BatchHandler` (what a consumer implements),
:class:`Batch` / :class:`PartitionBatch` / :class:`Rejected` (what it
receives), :class:`BatchJournal` (optional, for identical re-delivered
batches). Guarantees are listed in ``consumers.runtime.loop``.
"""

from __future__ import annotations

from consumers.exceptions import BackpressureError
from consumers.runtime.batch import Batch, PartitionBatch, Rejected, TopicPartitionId
from consumers.runtime.dlq import DlqWriter, dlq_headers
from consumers.runtime.loop import BatchHandler, BatchJournal, ConsumeLoop, run_workers

__all__ = [
    "BackpressureError",
    "Batch",
    "BatchHandler",
    "BatchJournal",
    "ConsumeLoop",
    "DlqWriter",
    "PartitionBatch",
    "Rejected",
    "TopicPartitionId",
    "dlq_headers",
    "run_workers",
]
