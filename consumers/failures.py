"""What goes wrong between a consumer-group member and Kafka, sorted in one table.

A member meets librdkafka errors in four places: the client's error callback,
error events handed out by ``consume()``, a ``KafkaException`` raised by
``consume()``, and the answer to an offset commit. Each is turned into a
:class:`KafkaFailure` by :func:`classify` here, and the member's core
(``consumers.runtime.member``) acts on its :class:`KafkaFault` and nothing
else, so the table in docs/failures.md ("Kafka consume and commit") and the
behaviour cannot drift apart. The producer's edges are sorted the same way in
``producer.failures``.

Dispositions (:class:`Disposition`, docs/failures.md):

- **transient**: the world fixes it (a broker restarts, the coordinator moves,
  the group rebalances). librdkafka reconnects by itself; a failed commit is
  kept and tried again. Counted every time, logged at most once per 30 s per
  kind (``perpstream.runtime.logs.RateLimitedLog``).
- **permanent**: retrying cannot help (authentication, authorization). The
  member stops with one line naming the cause; exit 1.
- **fatal**: this member's client is dead (librdkafka's fatal errors, a fenced
  static member). The member stops; a fenced one says which name is shared.
- **ignored**: information, not a fault (end of partition): neither counted nor
  logged.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from confluent_kafka import KafkaError

from perpstream.consumers.exceptions import FatalConsumerError, FencedMemberError


class Disposition(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    FATAL = "fatal"
    IGNORED = "ignored"


class KafkaFault(StrEnum):
    """What one librdkafka error means for the member."""

    #: Information (``_PARTITION_EOF``): nothing to do.
    IGNORE = "ignore"
    #: The cluster is slow or away (brokers down, timeouts, the coordinator moving, a
    #: partition without a leader): librdkafka retries; a commit is tried again.
    RETRY = "retry"
    #: The group moved on (rebalance in progress, an old generation, this member
    #: evicted for polling too rarely): the member rejoins by itself; offsets of
    #: partitions it still owns afterwards are committed then.
    REBALANCE = "rebalance"
    #: Authentication or authorization refused: no retry can succeed; the member stops.
    REFUSED = "refused"
    #: The client is unusable (a fatal error, a fenced static member); the member stops.
    FATAL = "fatal"


DISPOSITION: Final[dict[KafkaFault, Disposition]] = {
    KafkaFault.IGNORE: Disposition.IGNORED,
    KafkaFault.RETRY: Disposition.TRANSIENT,
    KafkaFault.REBALANCE: Disposition.TRANSIENT,
    KafkaFault.REFUSED: Disposition.PERMANENT,
    KafkaFault.FATAL: Disposition.FATAL,
}

#: The table: every librdkafka code the member treats apart from "transient, retry".
#: Codes not listed are :attr:`KafkaFault.RETRY` unless their fatal flag is set.
FAULTS: Final[dict[int, KafkaFault]] = {
    KafkaError._PARTITION_EOF: KafkaFault.IGNORE,
    KafkaError._NO_OFFSET: KafkaFault.RETRY,  # auto.offset.reset=error only; the runtime sets earliest
    KafkaError.REBALANCE_IN_PROGRESS: KafkaFault.REBALANCE,
    KafkaError.ILLEGAL_GENERATION: KafkaFault.REBALANCE,
    KafkaError.UNKNOWN_MEMBER_ID: KafkaFault.REBALANCE,
    KafkaError.STALE_MEMBER_EPOCH: KafkaFault.REBALANCE,
    KafkaError._ASSIGNMENT_LOST: KafkaFault.REBALANCE,
    KafkaError._MAX_POLL_EXCEEDED: KafkaFault.REBALANCE,
    KafkaError.FENCED_INSTANCE_ID: KafkaFault.FATAL,
    KafkaError._FATAL: KafkaFault.FATAL,
    KafkaError.TOPIC_AUTHORIZATION_FAILED: KafkaFault.REFUSED,
    KafkaError.GROUP_AUTHORIZATION_FAILED: KafkaFault.REFUSED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED: KafkaFault.REFUSED,
    KafkaError.SASL_AUTHENTICATION_FAILED: KafkaFault.REFUSED,
    KafkaError.UNSUPPORTED_SASL_MECHANISM: KafkaFault.REFUSED,
    KafkaError.ILLEGAL_SASL_STATE: KafkaFault.REFUSED,
    KafkaError._AUTHENTICATION: KafkaFault.REFUSED,
}

#: The counter each place a failure is met adds to (docs/sink.md, "Counters").
CLIENT_COUNTER: Final = "consumer_errors"
COMMIT_COUNTER: Final = "commit_failures"
#: Offsets of revoked partitions given up after :data:`REVOKE_COMMIT_ATTEMPTS` failed commits.
ABANDONED_COUNTER: Final = "commits_abandoned"
#: Commits tried inside a revocation before its offsets are left to the next owner. No
#: sleep between them: each synchronous commit already waits for the coordinator's answer.
REVOKE_COMMIT_ATTEMPTS: Final = 3


@dataclass(frozen=True, slots=True)
class KafkaFailure:
    """A librdkafka error, sorted: what the member's core receives instead of the error."""

    fault: KafkaFault
    #: librdkafka's symbolic code name (``_TRANSPORT``): the rate-limit key and the log's ``code``
    name: str
    text: str

    @property
    def disposition(self) -> Disposition:
        return DISPOSITION[self.fault]


def is_fatal(err: Any) -> bool:
    """Whether a librdkafka error ends the client. A fatal error reaches the consumer's error
    callback and its consumed error events under the code ``_FATAL`` with ``fatal()`` false
    (the fence of a static member, for one): the code counts as much as the flag."""
    return bool(err.fatal()) or err.code() == KafkaError._FATAL


def classify(err: Any) -> KafkaFailure:
    """Sort a ``KafkaError`` (or the first argument of a ``KafkaException``)."""
    fault = KafkaFault.FATAL if is_fatal(err) else FAULTS.get(err.code(), KafkaFault.RETRY)
    return KafkaFailure(fault, str(err.name()), str(err))


def kafka_error_of(exc: BaseException) -> Any:
    """The ``KafkaError`` a ``KafkaException`` carries, or None when it carries none."""
    err = exc.args[0] if exc.args else None
    return err if err is not None and hasattr(err, "fatal") else None


def member_error(failure: KafkaFailure, group_id: str, instance: str | None) -> FatalConsumerError:
    """The error a fatal failure stops the member with; a fenced static member says why
    (docs/sink.md, "Restart recovery": two live processes with one member name)."""
    if failure.name == "FENCED_INSTANCE_ID" or "fenced by other consumer" in failure.text:
        return FencedMemberError(
            f"static member {instance!r} of group {group_id!r} was fenced: another consumer joined "
            f"with the same group.instance.id, so two live processes share one member name; give each "
            f"its own (--member-name / PERPSTREAM_MEMBER_NAME), or '' for dynamic membership "
            f"({failure.text})")
    if failure.fault is KafkaFault.REFUSED:
        return FatalConsumerError(f"Kafka refused this member: {failure.text}")
    return FatalConsumerError(f"fatal Kafka consumer error: {failure.text}")


__all__ = [
    "ABANDONED_COUNTER",
    "CLIENT_COUNTER",
    "COMMIT_COUNTER",
    "DISPOSITION",
    "FAULTS",
    "REVOKE_COMMIT_ATTEMPTS",
    "Disposition",
    "KafkaFailure",
    "KafkaFault",
    "classify",
    "is_fatal",
    "kafka_error_of",
    "member_error",
]
