"""Errors the consumers raise on purpose, all under :class:`PerpstreamError`.

The runtime treats them differently, so the distinction matters:
:class:`BackpressureError` means "not now, same batch later" (pause, back off,
retry, never commit, never drop); every other error ends the consume loop
without committing, so the batch is re-delivered to whoever owns the
partitions next.
"""

from __future__ import annotations

from schemas.exceptions import PerpstreamError


class ConsumerError(PerpstreamError):
    """Root of the consumers' errors."""


class BackpressureError(ConsumerError):
    """A handler cannot store this batch now (store down, overloaded, timing out).

    The runtime pauses the member's partitions, keeps polling so the group
    membership survives, and retries the *same* batch after ``retry_after``
    seconds (or its own backoff when None). Raise it only when a retry of the
    identical batch is safe, i.e. the store deduplicates it.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class StoreUnavailableError(BackpressureError):
    """ClickHouse refused or failed an insert; the batch will be retried."""


class DlqError(ConsumerError):
    """The DLQ did not acknowledge every record; offsets past them stay uncommitted."""


class MigrationError(ConsumerError):
    """A schema migration failed or the recorded history disagrees with the code."""


class FatalConsumerError(ConsumerError):
    """The Kafka client reported a fatal error; the member must stop."""
