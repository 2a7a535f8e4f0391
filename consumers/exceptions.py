"""Errors the consumers raise on purpose, all under :class:`PerpstreamError`.

The runtime treats them differently, so the distinction matters (the tables
are in docs/sink.md, "Failures by edge"):

- :class:`BackpressureError` (and :class:`StoreUnavailableError`,
  :class:`DlqError`): "not now, same batch later" — pause, back off, retry,
  never commit, never drop.
- :class:`StoreRejectedError`: the store refused the batch for a reason a
  retry cannot fix; the member stops with :class:`BatchFailedError`, which
  names the batch's record ranges, without committing it.
- :class:`FatalConsumerError` (and :class:`FencedMemberError`),
  :class:`CommitFailedError`: the Kafka side of the member is unusable; the
  member stops.

Every one of them is logged without a traceback (the fault is the world's,
not a bug); anything else escaping a handler is a bug and is logged with one.
"""

from __future__ import annotations

from collections.abc import Mapping

from perpstream.errors import PerpstreamError

TopicPartitionId = tuple[str, int]


class ConsumerError(PerpstreamError):
    """Root of the consumers' errors."""


class BackpressureError(ConsumerError):
    """A handler cannot store this batch now (store down, overloaded, timing out).

    The runtime pauses the member's partitions, keeps polling so the group
    membership survives, and retries the *same* batch after ``retry_after``
    seconds (or its own backoff when None). Raise it only when a retry of the
    identical batch is safe, i.e. the store deduplicates it.

    ``unclassified``: the cause is an error nobody classified (an unknown
    ClickHouse error code, an unexpected exception type). The runtime retries
    it only a bounded number of times per batch, then stops the member: an
    unknown error is worth a few retries (it may be a hiccup no table lists
    yet), but an unknown error that never clears must become visible rather
    than wedge the partitions forever.
    """

    def __init__(self, message: str, *, retry_after: float | None = None,
                 unclassified: bool = False) -> None:
        super().__init__(message)
        self.retry_after = retry_after
        self.unclassified = unclassified


class StoreUnavailableError(BackpressureError):
    """ClickHouse refused or failed a request for a transient reason; the batch will be retried."""


class StoreRejectedError(ConsumerError):
    """ClickHouse refused a request for a reason retrying cannot fix (schema, permissions).

    ``code``/``name`` are the ClickHouse server error code and its symbolic
    name when known (``53``, ``TYPE_MISMATCH``).
    """

    def __init__(self, message: str, *, code: int | None = None, name: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.name = name


class DlqError(BackpressureError):
    """The DLQ did not acknowledge every record yet; offsets past them stay uncommitted.

    A backpressure error: the DLQ is never the reason a member stops.
    """


class BatchFailedError(ConsumerError):
    """A batch can never be stored; the member stops without committing it.

    The message names every partition's record range (``topic[partition]
    first..last``) and the cause, so an operator can find the records.
    """

    def __init__(self, message: str, ranges: Mapping[TopicPartitionId, tuple[int, int]]) -> None:
        super().__init__(message)
        self.ranges = dict(ranges)


class MigrationError(ConsumerError):
    """A schema migration failed or the recorded history disagrees with the code."""


class FatalConsumerError(ConsumerError):
    """The Kafka client reported a fatal error (or no DLQ is configured for a
    rejected record); the member must stop."""


class FencedMemberError(FatalConsumerError):
    """The broker fenced this static member: another consumer joined the group with the same
    ``group.instance.id`` (two live processes with one member name). Permanent: restarting
    either process only fences the other one."""


class CommitFailedError(ConsumerError):
    """Offset commits kept failing past the configured deadline, or for a
    reason retrying cannot fix (authorization); the member stops."""
