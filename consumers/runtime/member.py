"""The logic of one consumer-group member, as a pure state machine.

No Kafka client, no threads, no sleeps, no clock of its own: like the
producer's ``producer.ws_protocol``, :class:`MemberCore` is fed what happened,
with the monotonic time it happened at, and answers with actions; the
librdkafka adapter (``consumers.runtime.loop.ConsumeLoop``) performs them and
feeds their results back. docs/sink.md ("The consume runtime") has the
picture; the guarantees it keeps are in ``consumers.runtime.loop``.

======================================  =============================================
event (method)                          typical actions
======================================  =============================================
:meth:`~MemberCore.assigned`            ``Assigned``; the journal's ranges become cuts
:meth:`~MemberCore.revoked` /           ``Commit`` what is handled and not committed
:meth:`~MemberCore.lost`                (revoked only), ``Resume``, ``Released``
:meth:`~MemberCore.collected`           ``RefreshTopicIds`` (offsets went back),
                                        ``RecordJournal``, ``Handle``
:meth:`~MemberCore.journal_done` /      the next step, or ``Pause`` and a retry
:meth:`~MemberCore.handled` /           deadline, or ``Fail``
:meth:`~MemberCore.dlq_done`
:meth:`~MemberCore.commit_done`         a retried ``Commit`` (revocation), ``Fail``
:meth:`~MemberCore.client_error`        ``Fail`` for fatal and refused errors
:meth:`~MemberCore.tick`                the due retry step, ``Commit`` while idle,
                                        ``Fail`` when commits failed too long,
                                        ``Abandon`` at the drain deadline
:meth:`~MemberCore.stop`                starts the drain
======================================  =============================================

:meth:`~MemberCore.next_deadline` says when ``tick`` is due next. Offsets in a
``Commit`` are only ever ``last_offset + 1`` of a batch the handler returned
from (and whose rejected records the DLQ acknowledged): nothing is committed
past what is durable.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from perpstream.consumers.exceptions import (
    BackpressureError,
    BatchFailedError,
    CommitFailedError,
    ConsumerError,
    FatalConsumerError,
)
from perpstream.consumers.failures import (
    ABANDONED_COUNTER,
    CLIENT_COUNTER,
    COMMIT_COUNTER,
    REVOKE_COMMIT_ATTEMPTS,
    KafkaFailure,
    KafkaFault,
    member_error,
)
from perpstream.consumers.runtime.batch import Batch, Rejected, TopicPartitionId
from perpstream.runtime.backoff import BackoffFactory
from perpstream.runtime.logs import RateLimitedLog
from perpstream.runtime.telemetry import Telemetry

#: The adapter's logger: lines keep the name they had before the core was split out, so an
#: operator's log filters see every decision of a member under one name.
log = logging.getLogger("perpstream.consumers.runtime.loop")

Offsets = dict[TopicPartitionId, int]

# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Commit:
    """Commit these next offsets synchronously; report with :meth:`MemberCore.commit_done`."""

    offsets: Offsets
    #: inside a revocation: retried at once within a budget, then given up
    revoking: bool = False
    attempt: int = 1


@dataclass(frozen=True, slots=True)
class Pause:
    partitions: tuple[TopicPartitionId, ...]


@dataclass(frozen=True, slots=True)
class Resume:
    partitions: tuple[TopicPartitionId, ...]


@dataclass(frozen=True, slots=True)
class Assigned:
    """Tell the handler it owns ``partitions`` now."""

    partitions: tuple[TopicPartitionId, ...]


@dataclass(frozen=True, slots=True)
class Released:
    """Forget ``partitions`` (collected and carried records, gauges), then tell the handler."""

    partitions: tuple[TopicPartitionId, ...]
    lost: bool


@dataclass(frozen=True, slots=True)
class RefreshTopicIds:
    """Ask the cluster for the topics' ids; report with :meth:`MemberCore.topic_ids_known`."""


@dataclass(frozen=True, slots=True)
class RecordJournal:
    batch: Batch


@dataclass(frozen=True, slots=True)
class Handle:
    batch: Batch


@dataclass(frozen=True, slots=True)
class SendDlq:
    """Send the batch's rejected records not yet acknowledged; report with :meth:`MemberCore.dlq_done`."""

    batch: Batch


@dataclass(frozen=True, slots=True)
class Stored:
    """The batch is durable and its commit was asked for (lag, the stall workaround)."""

    batch: Batch


@dataclass(frozen=True, slots=True)
class Fail:
    """The member cannot go on: raise ``error`` (from ``cause``)."""

    error: ConsumerError
    cause: BaseException | None = None


@dataclass(frozen=True, slots=True)
class Abandon:
    """Stopping with an unstored batch: end the run with status 1 (it is re-delivered)."""

    batch: Batch


Action = (Commit | Pause | Resume | Assigned | Released | RefreshTopicIds | RecordJournal | Handle
          | SendDlq | Stored | Fail | Abandon)

_JOURNAL, _HANDLE, _DLQ = "journal", "handle", "dlq"


class MemberCore:
    """One member's decisions; see the module doc. Not thread-safe, no I/O.

    Reads for health checks (``consumers.runtime.health``): :attr:`assignment`,
    :attr:`paused`, :attr:`retrying_since`, :attr:`retry_error`,
    :attr:`commit_failing`, :attr:`committed`.
    """

    def __init__(
        self, group_id: str, name: str = "member", *, cooperative: bool = True,
        journal: bool = False, dlq: bool = True, backoff: BackoffFactory,
        telemetry: Telemetry | None = None, unclassified_attempts: int = 10,
        commit_timeout: float = 600.0, commit_retry_interval: float = 1.0,
        drain_timeout: float = 30.0, cut_wait: float = 30.0, instance: str | None = None,
    ) -> None:
        self.group_id = group_id
        self.name = name
        self.cooperative = cooperative
        self.journal = journal
        self.dlq = dlq
        self._backoff = backoff
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.unclassified_attempts = unclassified_attempts
        self.commit_timeout = commit_timeout
        self.commit_retry_interval = commit_retry_interval
        self.drain_timeout = drain_timeout
        self.cut_wait = cut_wait
        self.instance = instance
        self._labels = {"group": group_id}
        self._where = {"group": group_id, "member": name}
        self._now = 0.0
        self._rlog = RateLimitedLog(log, clock=lambda: self._now)

        self.assignment: set[TopicPartitionId] = set()
        #: journaled batch boundaries per partition, shared with the batch builder
        self.cuts: dict[TopicPartitionId, list[int]] = {}
        #: topic ids by name, shared with the batch builder (updated in place)
        self.topic_ids: dict[str, str] = {}
        #: the last offset delivered per partition while this member owns it
        self.delivered_to: dict[TopicPartitionId, int] = {}
        #: handled, not yet committed (a commit failed): next offset per partition
        self.uncommitted: Offsets = {}
        self.committed: Offsets = {}
        self.paused = False
        #: partitions assigned while paused: paused once the client has taken them
        self._pause_new: set[TopicPartitionId] = set()
        self._commit_failing_since: float | None = None
        self._commit_error = ""
        self._next_commit_at = 0.0
        self.failure: Fail | None = None

        # the batch in hand
        self.pending: Batch | None = None
        self._step = _JOURNAL
        self._delays: Iterator[float] = iter(())
        self._unclassified = 0
        self._retried = False
        self.retry_at: float | None = None
        #: since when the pending batch has been failing with backpressure, and the last error
        self.retrying_since: float | None = None
        self.retry_error: BackpressureError | None = None
        self._back: list[TopicPartitionId] = []

        self.stopping = False
        self._stop_deadline: float | None = None

    # -- introspection ---------------------------------------------------------------------

    @property
    def commit_failing(self) -> tuple[float, str] | None:
        """(since when, last error) while offset commits fail; None when the last one worked."""
        since = self._commit_failing_since
        return None if since is None else (since, self._commit_error)

    @property
    def finished(self) -> bool:
        """Stopping, and no batch in hand: the adapter may close the client."""
        return self.stopping and self.pending is None

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has something to do next (None: nothing is scheduled)."""
        due = [t for t in (self.retry_at, self._stop_deadline) if t is not None]
        if self.uncommitted and self.pending is None:  # with a batch in hand, its commit carries them
            due.append(self._next_commit_at)
        if self._commit_failing_since is not None:
            due.append(self._commit_failing_since + self.commit_timeout)
        return min(due) if due else None

    # -- assignment ------------------------------------------------------------------------

    def assigned(self, partitions: Iterable[TopicPartitionId],
                 journaled: Mapping[TopicPartitionId, tuple[int, int]], now: float) -> list[Action]:
        """``partitions`` are added (cooperative) or are the whole new assignment (eager);
        ``journaled`` holds the journal's latest range of each (docs/sink.md, "Rebalancing")."""
        self._now = now
        tps = set(partitions)
        out: list[Action] = []
        if not self.cooperative:
            stale = self.assignment - tps
            if stale:
                log.warning("eager assignment without the revocation of partitions owned before",
                            extra={**self._where, "partitions": sorted(stale)})
                out += self._release(stale, lost=True)
            self.assignment = set()
        self.assignment |= tps
        for tp, (first, last) in journaled.items():
            if tp in tps:
                self.cuts[tp] = [first - 1, last]
        if self.paused:
            self._pause_new |= tps
        out.append(Assigned(tuple(sorted(tps))))
        return out

    def revoked(self, partitions: Iterable[TopicPartitionId], now: float) -> list[Action]:
        """Handled offsets of ``partitions`` are committed first; the rest is the next owner's."""
        self._now = now
        tps = set(partitions)
        todo = {tp: o for tp, o in self.uncommitted.items() if tp in tps}
        out: list[Action] = [Commit(todo, revoking=True)] if todo else []
        return out + self._release(tps, lost=False)

    def lost(self, partitions: Iterable[TopicPartitionId], now: float) -> list[Action]:
        """Partitions the group took away (this member was evicted): never committed."""
        self._now = now
        return self._release(set(partitions), lost=True)

    def _release(self, tps: set[TopicPartitionId], *, lost: bool) -> list[Action]:
        for tp in tps:
            self.uncommitted.pop(tp, None)
            self.cuts.pop(tp, None)
            self.delivered_to.pop(tp, None)
        self._pause_new -= tps
        if not self.uncommitted:
            self._commit_failing_since = None  # what failed to commit is the next owner's now
        if self.pending is not None:
            self.pending.drop(tps)
        self.assignment -= tps
        out: list[Action] = []
        if self.paused and tps:
            # librdkafka keeps a partition's pause flag through revoke and re-assign:
            # clear it now, or a later assignment of it back to us is never fetched.
            out.append(Resume(tuple(sorted(tps))))
        out.append(Released(tuple(sorted(tps)), lost))
        return out

    def before_poll(self) -> list[Action]:
        """Pause partitions assigned while paused (the client has taken them by now)."""
        if not (self._pause_new and self.paused):
            return []
        tps, self._pause_new = tuple(sorted(self._pause_new & self.assignment)), set()
        return [Pause(tps)] if tps else []

    def topic_ids_known(self, ids: Mapping[str, str]) -> None:
        """The cluster's answer to :class:`RefreshTopicIds` (empty: it could not tell). A
        changed id is a recreated topic: batches of the new incarnation get tokens of their own."""
        if not ids:
            return
        changed = {t for t, i in ids.items() if self.topic_ids.get(t) not in (None, i)}
        if changed:
            log.warning("topic recreated: batches of its new incarnation get tokens of their own",
                        extra={**self._where, "topics": sorted(changed)})
        self.topic_ids.update(ids)  # in place: the builder of the batch being collected holds it
        if self.pending is not None:
            for tp in self._back:
                pb = self.pending.partitions.get(tp)
                if pb is not None:
                    pb.topic_id = self.topic_ids.get(pb.topic, pb.topic_id)
        self._back = []

    # -- collecting ------------------------------------------------------------------------

    def collecting_done(self, waiting: list[TopicPartitionId], now: float, deadline: float) -> bool:
        """Whether a batch being collected is complete at ``now``: its ``deadline`` passed and no
        partition waits for its journaled end, or one waited ``cut_wait`` longer in vain."""
        if now < deadline or not waiting:
            return now >= deadline
        if now < deadline + self.cut_wait:
            return False
        log.warning("journaled batch end not reached; cutting where we are",
                    extra={**self._where, "partitions": waiting})
        for tp in waiting:
            self.cuts.pop(tp, None)
        return True

    def collected(self, batch: Batch, now: float) -> list[Action]:
        """A new batch: journal it, handle it, send its rejects to the DLQ, commit it."""
        self._now = now
        assert self.pending is None, "one batch at a time"
        self.pending = batch
        self._step = _JOURNAL if self.journal else _HANDLE
        self._delays = self._backoff()
        self._unclassified = 0
        self._retried = False
        out: list[Action] = []
        # A partition read again from an offset already delivered, without a rebalance in
        # between, is a new incarnation of its topic (an in-memory broker restarted faster
        # than the group noticed): its batches need the new topic id before tokens are used.
        back = [tp for tp, pb in batch.partitions.items() if pb.first_offset <= self.delivered_to.get(tp, -1)]
        if back:
            log.warning("offsets went back without a rebalance; asking for the topics' ids",
                        extra={**self._where, "partitions": back})
            for tp in back:
                self.delivered_to.pop(tp, None)
            self._back = back
            out.append(RefreshTopicIds())
        return out + self._next_step()

    def _next_step(self) -> list[Action]:
        batch = self.pending
        assert batch is not None
        if not batch.partitions:  # every partition of it was revoked meanwhile
            return self._finish(batch, commit=False)
        if self._step == _JOURNAL:
            return [RecordJournal(batch)]
        if self._step == _HANDLE:
            batch.attempts += 1
            return [Handle(batch)]
        if any(r.dlq_state != "acked" for r in batch.rejected):
            if not self.dlq:
                todo = [r for r in batch.rejected if r.dlq_state != "acked"]
                return self._failed(batch, ConsumerError(
                    f"{len(todo)} rejected records and no DLQ: {todo[0].error}"))
            return [SendDlq(batch)]
        return self._finish(batch, commit=True)

    def journal_done(self, error: ConsumerError | None, now: float) -> list[Action]:
        return self._step_done(_HANDLE, error, now)

    def handled(self, error: ConsumerError | None, now: float) -> list[Action]:
        """The handler returned (``error`` None) or raised a :class:`ConsumerError`."""
        return self._step_done(_DLQ, error, now)

    def dlq_done(self, acked: list[Rejected], error: ConsumerError | None, now: float) -> list[Action]:
        """``acked``: records the DLQ acknowledged in this attempt (counted and logged here)."""
        self._now = now
        for reason, n in Counter(r.reason for r in acked).items():
            self.telemetry.inc("records_dlq", n, {"group": self.group_id, "reason": reason})
        for rej in acked:
            self._rlog.warning(f"dlq:{rej.reason}", "record sent to the DLQ", {
                **self._where, "topic": rej.topic, "partition": rej.partition, "offset": rej.offset,
                "reason": rej.reason, "error": rej.error[:300]})
        return self._step_done(_DLQ, error, now)

    def _step_done(self, following: str, error: ConsumerError | None, now: float) -> list[Action]:
        self._now = now
        batch = self.pending
        assert batch is not None, "no batch in hand"
        if error is None:
            self._step = following
            return self._next_step()
        if isinstance(error, BackpressureError):
            return self._backpressure(batch, error, now)
        if isinstance(error, FatalConsumerError):
            return self._fail(error)  # the Kafka client, not this batch: nothing to name
        return self._failed(batch, error)

    def _backpressure(self, batch: Batch, exc: BackpressureError, now: float) -> list[Action]:
        """Pause, and try the same step again later; bounded for unclassified errors and on stop."""
        if exc.unclassified:
            self._unclassified += 1
            if self._unclassified >= self.unclassified_attempts:
                more = f" (an error no table classifies, {self._unclassified} attempts)"
                return self._failed(batch, exc, more)
        self.telemetry.inc("batch_retries", 1, self._labels)
        self.retry_error = exc
        if self.retrying_since is None:
            self.retrying_since = now
        delay = exc.retry_after if exc.retry_after is not None else next(self._delays)
        self._retried = True
        self._rlog.warning(f"retry:{self.name}", "batch not stored yet; partitions paused, retrying", {
            **self._where, "error": str(exc), "attempt": batch.attempts, "retry_in_s": round(delay, 3),
            "batch": batch.describe()})
        out = self._pause()
        if self.stopping:
            if self._stop_deadline is None:
                self._stop_deadline = now + self.drain_timeout
            if now >= self._stop_deadline:
                return out + self._abandon(batch)
            delay = min(delay, self._stop_deadline - now)
        self.retry_at = now + delay
        return out

    def _finish(self, batch: Batch, *, commit: bool) -> list[Action]:
        out: list[Action] = []
        if commit:
            for tp, pb in batch.partitions.items():
                self.delivered_to[tp] = pb.last_offset
            out += self._commit({tp: pb.last_offset + 1 for tp, pb in batch.partitions.items()})
            self.telemetry.inc("batches", 1, self._labels)
        if self._retried:
            self._rlog.reset(f"retry:{self.name}")
            log.info("batch stored after retries", extra={**self._where, "attempts": batch.attempts})
        self._clear_pending()
        out += self._resume()
        if commit:
            out.append(Stored(batch))
        return out + self._check_commits()

    def _clear_pending(self) -> None:
        self.pending = None
        self.retry_at = self._stop_deadline = None
        self.retrying_since = self.retry_error = None
        self._back = []

    def _failed(self, batch: Batch, cause: ConsumerError, more: str = "") -> list[Action]:
        error = BatchFailedError(
            f"batch {batch.describe()} cannot be stored, nothing of it is committed: {cause}{more}",
            batch.ranges())
        return self._fail(error, cause)

    def _fail(self, error: ConsumerError, cause: BaseException | None = None) -> list[Action]:
        self.failure = Fail(error, cause)
        return [self.failure]

    def _abandon(self, batch: Batch) -> list[Action]:
        log.error("stopping with an unstored batch; it will be re-delivered",
                  extra={**self._where, "batch": batch.describe()})
        self._clear_pending()
        return [Abandon(batch)]

    # -- pause / resume --------------------------------------------------------------------

    def _pause(self) -> list[Action]:
        if self.paused:
            return []
        self.paused = True
        self.telemetry.set("paused", 1, self._where)
        return [Pause(tuple(sorted(self.assignment)))] if self.assignment else []

    def _resume(self) -> list[Action]:
        if not self.paused:
            return []
        self.paused = False
        self._pause_new.clear()
        self.telemetry.set("paused", 0, self._where)
        log.info("partitions resumed", extra=self._where)
        return [Resume(tuple(sorted(self.assignment)))] if self.assignment else []

    def pause_for_dlq(self) -> list[Action]:
        """The DLQ writer waits for acknowledgements: stop fetching meanwhile."""
        return self._pause()

    # -- commits ---------------------------------------------------------------------------

    def _commit(self, offsets: Offsets) -> list[Action]:
        merged = {tp: o for tp, o in {**self.uncommitted, **offsets}.items() if tp in self.assignment}
        if not merged:
            self.uncommitted.clear()
            self._commit_failing_since = None
            return []
        return [Commit(merged)]

    def commit_done(self, commit: Commit, failure: KafkaFailure | None, now: float) -> list[Action]:
        """The answer to ``commit`` (``failure`` None: the broker took every offset)."""
        self._now = now
        if failure is None:
            self.committed.update(commit.offsets)
            for tp, o in commit.offsets.items():
                if self.uncommitted.get(tp, o + 1) <= o:
                    del self.uncommitted[tp]
            if not commit.revoking and self._commit_failing_since is not None and not self.uncommitted:
                self._rlog.reset("commit")
                log.info("offset commits work again", extra=self._where)
                self._commit_failing_since = None
            return []
        self.telemetry.inc(COMMIT_COUNTER, 1, self._labels)
        self._commit_error = failure.text
        if failure.fault is KafkaFault.FATAL:
            return self._fail(member_error(failure, self.group_id, self.instance))
        if failure.fault is KafkaFault.REFUSED:
            return self._fail(CommitFailedError(f"offset commit refused: {failure.text}"))
        if commit.revoking:
            if commit.attempt < REVOKE_COMMIT_ATTEMPTS:
                return [Commit(commit.offsets, revoking=True, attempt=commit.attempt + 1)]
            self.telemetry.inc(ABANDONED_COUNTER, len(commit.offsets), self._labels)
            log.warning("offsets of revoked partitions not committed; their next owner re-reads the "
                        "batches, which the store deduplicates", extra={
                            **self._where, "error": failure.text, "attempts": commit.attempt,
                            "offsets": sorted(commit.offsets.items())})
            return []
        for tp, o in commit.offsets.items():
            if tp in self.assignment and o > self.uncommitted.get(tp, -1):
                self.uncommitted[tp] = o
        if self._commit_failing_since is None:
            self._commit_failing_since = now
        self._next_commit_at = now + self.commit_retry_interval
        self._rlog.warning("commit", "offset commit failed; retrying with the next batch",
                           {**self._where, "error": failure.text, "code": failure.name,
                            "partitions": len(commit.offsets)})
        return self._check_commits()

    def _check_commits(self) -> list[Action]:
        since = self._commit_failing_since
        if since is not None and self._now - since >= self.commit_timeout:
            return self._fail(CommitFailedError(
                f"offset commits failing for {self._now - since:.0f} s "
                f"(commit_timeout {self.commit_timeout:.0f} s): {self._commit_error}"))
        return []

    # -- the client's errors ---------------------------------------------------------------

    def client_error(self, failure: KafkaFailure, now: float, where: str = "client") -> list[Action]:
        """An error of the client (error callback) or of a partition (an error event)."""
        self._now = now
        if failure.fault is KafkaFault.IGNORE:
            return []
        self.telemetry.inc(CLIENT_COUNTER, 1, self._labels)
        if failure.fault in (KafkaFault.FATAL, KafkaFault.REFUSED):
            return self._fail(member_error(failure, self.group_id, self.instance))
        self._rlog.warning(f"{where}:{failure.name}", "Kafka consumer error",
                           {**self._where, "error": failure.text, "code": failure.name})
        return []

    # -- time and stop ---------------------------------------------------------------------

    def tick(self, now: float) -> list[Action]:
        """What is due at ``now``: a retry step, a commit left over, the commit clock."""
        self._now = now
        out: list[Action] = []
        if self.pending is not None and self.retry_at is not None and now >= self.retry_at:
            self.retry_at = None
            out += self._next_step()
        elif self.pending is None and self.uncommitted and now >= self._next_commit_at:
            # A commit failed earlier (e.g. during a rebalance) and no new batch carries
            # these partitions: retry it while idle.
            out += self._commit({})
        return out + self._check_commits()

    def stop(self, now: float) -> list[Action]:
        """Drain: the batch in hand is finished (its retries bounded by ``drain_timeout``)."""
        self._now = now
        if self.stopping:
            return []
        self.stopping = True
        if self.pending is not None and self.retry_at is not None:
            self._stop_deadline = now + self.drain_timeout
            self.retry_at = min(self.retry_at, self._stop_deadline)
        return []

    def closing(self) -> list[Action]:
        """The client is about to close: commit what is handled and not committed yet."""
        return self._commit({}) if self.uncommitted else []


__all__ = [
    "Abandon",
    "Action",
    "Assigned",
    "Commit",
    "Fail",
    "Handle",
    "MemberCore",
    "Pause",
    "RecordJournal",
    "RefreshTopicIds",
    "Released",
    "Resume",
    "SendDlq",
    "Stored",
]
