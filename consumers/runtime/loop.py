"""The consume loop both consumers run: poll → decode → handle → DLQ →
commit, one batch at a time, with at-least-once delivery that the handlers
turn into exactly-once storage.

Guarantees (what a handler may rely on):

- Batches are bounded by ``max_records`` and ``max_wait`` (memory is bounded
  by the batch size plus librdkafka's fetch queue, never by the topic).
- A partition's rows arrive in offset order; ``handle`` is only called for
  partitions assigned to this member, after ``on_assigned`` for them.
- Offsets are committed only after ``handle`` returned *and* every rejected
  record of the batch was acknowledged by the DLQ topic. Nothing is skipped
  without a DLQ copy.
- ``handle`` raising :class:`BackpressureError` (ClickHouse unavailable, the
  DLQ not acknowledging): the member pauses all its partitions, keeps calling
  ``consume`` (group membership and ``max.poll.interval.ms`` survive), and
  retries the *same* ``Batch`` object with exponential backoff until it
  succeeds, the partitions are revoked, or the loop is stopped; then it
  resumes by itself. An *unclassified* backpressure error is retried
  ``unclassified_attempts`` times per batch at most.
- ``handle`` raising any other :class:`ConsumerError` (ClickHouse rejecting
  the batch for good): the loop raises :class:`BatchFailedError` naming the
  batch's record ranges and the cause, commits nothing of the batch, and
  leaves the group. Any other exception is a bug and propagates as is.
- With a :class:`BatchJournal`, the range of each partition in a batch is
  journaled before the first ``handle`` call, and a member newly assigned a
  partition cuts its first batch at the journaled end. So a batch
  re-delivered after a crash or a rebalance has the same
  ``(topic, partition, first_offset, last_offset)`` as before, which makes an
  ``insert_deduplication_token`` built from it drop the re-insert.
- Revocation: uncommitted but handled offsets of the revoked partitions
  are committed, pending or collected records of them are dropped (the
  next owner re-reads them), then ``on_revoked`` is called. Lost
  partitions skip the commit. Both assignment styles of
  ``partition.assignment.strategy`` are served the same way:
  cooperative-sticky (the default) revokes and assigns only the partitions
  that move; an eager strategy (``range``, ``roundrobin``) revokes every
  partition before the member rejoins, and the assignment that follows is
  the member's whole new one (partitions it keeps are re-read from their
  committed offsets, their first batch cut at the journaled end).
- Kafka: a fatal client error stops the loop (:class:`FatalConsumerError`;
  :class:`FencedMemberError` when another consumer took this member's
  ``group.instance.id``);
  other client errors are counted and logged at most once per 30 s per kind.
  A failed commit is retried with the next batch (or while idle); commits
  failing for ``commit_timeout`` seconds, or refused for authorization, stop
  the loop (:class:`CommitFailedError`).
- ``run(stop)`` returns after the current batch is handled and committed once
  ``stop`` is set (graceful drain, bounded by ``drain_timeout``). It installs
  no signal handlers, so it runs in any thread;
  :func:`consumers.runtime.supervisor.run_workers` runs N members as threads
  of one process.

docs/sink.md ("Failures by edge") lists every failure and what an operator sees.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from perpstream.consumers.exceptions import (
    BackpressureError,
    BatchFailedError,
    CommitFailedError,
    ConsumerError,
    FatalConsumerError,
    FencedMemberError,
)
from perpstream.consumers.runtime.batch import Batch, TopicPartitionId
from perpstream.consumers.runtime.builder import BatchBuilder, RowDecoder
from perpstream.consumers.runtime.dlq import ACKED, DlqWriter
from perpstream.consumers.runtime.health import LagTrend
from perpstream.consumers.runtime.leave import LeaveError, leave_group
from perpstream.consumers.runtime.workarounds import StalledFetchKick
from perpstream.runtime.backoff import backoff
from perpstream.runtime.logs import RateLimitedLog
from perpstream.runtime.telemetry import Telemetry, kafka_logging

log = logging.getLogger(__name__)


class BatchHandler(Protocol):
    """What a consumer plugs into the loop. Called from the loop's thread only."""

    def on_assigned(self, partitions: list[TopicPartitionId]) -> None:
        """Partitions this member now owns; called before any of their records."""

    def on_revoked(self, partitions: list[TopicPartitionId]) -> None:
        """Partitions this member no longer owns (already committed as far as handled)."""

    def handle(self, batch: Batch) -> None:
        """Make the batch durable, or raise :class:`BackpressureError` to get it again."""

    def close(self) -> None:
        """The loop ended; release resources (not the shared ClickHouse client)."""


class BatchJournal(Protocol):
    """Where a batch's range is written before it is handled; ``topic_ids`` tell the
    incarnations of the topics apart (consumers/clickhouse.py, ClickHouseBatchJournal)."""

    def record(self, group_id: str, ranges: Mapping[TopicPartitionId, tuple[int, int]],
               topic_ids: Mapping[str, str] | None = None) -> None: ...

    def pending(
        self, group_id: str, partitions: Sequence[TopicPartitionId],
        topic_ids: Mapping[str, str] | None = None,
    ) -> Mapping[TopicPartitionId, tuple[int, int]]: ...


def topic_ids(config: Mapping[str, Any], topics: Sequence[str]) -> dict[str, str]:
    """Topic ids by name, so batch tokens differ between incarnations of a topic.

    A cluster that cannot describe topics (old brokers) gives no ids: tokens
    then rest on offsets alone, which is exact as long as topics are not recreated.
    """
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AdminClient

    out: dict[str, str] = {}
    try:
        admin = AdminClient({**_connection(config), **kafka_logging()})  # must outlive the futures
        futures = admin.describe_topics(TopicCollection(list(topics)), request_timeout=10)
        for name, fut in futures.items():
            out[name] = str(fut.result(timeout=15).topic_id)
    except Exception as exc:
        log.warning("topic ids unavailable; dedup tokens use offsets only", extra={"error": str(exc)})
    return out


def _connection(config: Mapping[str, Any]) -> dict[str, Any]:
    """The entries of a client config that say how to reach the cluster."""
    return {k: v for k, v in config.items() if k.startswith(("bootstrap.", "security.", "sasl.", "ssl."))}


#: Consumer settings the runtime depends on; a caller cannot override them.
FORCED_CONFIG = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
}
DEFAULT_CONFIG = {
    "auto.offset.reset": "earliest",
    "enable.partition.eof": False,
    "partition.assignment.strategy": "cooperative-sticky",
}
def is_fatal(err: Any) -> bool:
    """Whether a librdkafka error ends the client. A fatal error reaches the consumer's error
    callback and its consumed error events under the code ``_FATAL`` with ``fatal()`` false
    (the fence of a static member, for one): the code counts as much as the flag."""
    from confluent_kafka import KafkaError

    return bool(err.fatal()) or err.code() == KafkaError._FATAL


#: The assignors the loop serves: one cooperative, or eager ones (librdkafka refuses a mix).
COOPERATIVE_ASSIGNORS = frozenset({"cooperative-sticky"})
EAGER_ASSIGNORS = frozenset({"range", "roundrobin"})


def is_cooperative(strategy: str) -> bool:
    """Whether ``partition.assignment.strategy`` ``strategy`` rebalances incrementally.

    Raises :class:`ValueError` for an assignor the loop does not serve, or a mix of
    cooperative and eager ones.
    """
    names = {n.strip() for n in str(strategy).split(",") if n.strip()}
    unknown = names - COOPERATIVE_ASSIGNORS - EAGER_ASSIGNORS
    if not names or unknown:
        raise ValueError(f"partition.assignment.strategy {strategy!r}: unknown assignor(s) "
                         f"{sorted(unknown)}; known: {sorted(COOPERATIVE_ASSIGNORS | EAGER_ASSIGNORS)}")
    if names & COOPERATIVE_ASSIGNORS and names & EAGER_ASSIGNORS:
        raise ValueError(f"partition.assignment.strategy {strategy!r} mixes cooperative and eager assignors")
    return bool(names & COOPERATIVE_ASSIGNORS)

#: Commit errors no retry fixes: the member stops at once.
_COMMIT_REFUSED = frozenset({"GROUP_AUTHORIZATION_FAILED", "TOPIC_AUTHORIZATION_FAILED"})


class ConsumeLoop:
    """One consumer-group member. See the module docstring for the guarantees.

    ``consumer_config`` is a librdkafka dict (``bootstrap.servers`` at least;
    ``ConsumerSettings.consumer_config()`` builds one). ``decoder`` turns a
    message value into a row tuple, checking the contract as it goes, and
    raises :class:`~schemas.exceptions.DecodeError` (whose ``reason`` labels
    the DLQ record) otherwise; both consumers pass
    :func:`consumers.runtime.decoding.row_decoder`. ``dlq_topic=None`` makes a
    rejected record fatal instead (only for tests and tools); ``dlq_config``
    adds librdkafka settings to the DLQ producer (``message.max.bytes``).
    """

    def __init__(
        self,
        consumer_config: Mapping[str, Any],
        topics: Sequence[str],
        group_id: str,
        handler: BatchHandler,
        *,
        decoder: RowDecoder,
        dlq_topic: str | None,
        dlq_config: Mapping[str, Any] | None = None,
        telemetry: Telemetry | None = None,
        journal: BatchJournal | None = None,
        max_records: int = 20_000,
        max_wait: float = 0.5,
        poll_timeout: float = 0.5,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
        drain_timeout: float = 30.0,
        cut_wait: float = 30.0,
        unclassified_attempts: int = 10,
        commit_timeout: float = 600.0,
        dlq_timeout: float = 30.0,
        name: str = "member",
    ) -> None:
        cfg: dict[str, Any] = dict(DEFAULT_CONFIG)
        cfg.update(consumer_config)
        cfg.update(FORCED_CONFIG)
        cfg["group.id"] = group_id
        cfg.setdefault("client.id", f"{group_id}-{name}")
        self._config = cfg
        #: incremental rebalances (cooperative-sticky) or eager ones (range, roundrobin)
        self.cooperative = is_cooperative(cfg["partition.assignment.strategy"])
        self.topics = list(topics)
        self.group_id = group_id
        self.handler = handler
        self._decoder = decoder
        self._dlq_topic = dlq_topic
        self._dlq_config = dict(dlq_config or {})
        self.telemetry = telemetry or Telemetry()
        self._journal = journal
        self.max_records = max_records
        self.max_wait = max_wait
        self.poll_timeout = poll_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self.drain_timeout = drain_timeout
        self.cut_wait = cut_wait
        self.unclassified_attempts = unclassified_attempts
        self.commit_timeout = commit_timeout
        self.dlq_timeout = dlq_timeout
        self.name = name
        self._labels = {"group": group_id}
        self._log = RateLimitedLog(log)
        self._where = {"group": group_id, "member": name}

        self._consumer: Any = None
        self._dlq: DlqWriter | None = None
        self.assignment: set[TopicPartitionId] = set()
        self._paused = False
        self._pause_new = False
        self._carry: list[Any] = []
        self._cuts: dict[TopicPartitionId, list[int]] = {}
        self._topic_ids: dict[str, str] = {}
        #: the last offset delivered per partition while this member owns it
        self._delivered_to: dict[TopicPartitionId, int] = {}
        self._collecting: BatchBuilder | None = None
        self._pending: Batch | None = None
        #: handled, not yet committed (a commit failed): next offset per partition
        self._uncommitted: dict[TopicPartitionId, int] = {}
        self.committed: dict[TopicPartitionId, int] = {}
        #: since when commits have been failing (None: the last one worked), and the last error
        self._commit_failing_since: float | None = None
        self._commit_error = ""
        self._commit_refused: str | None = None
        #: a fatal error librdkafka reported through a callback; raised by the loop's thread
        self._fatal: Any = None
        self._kick = StalledFetchKick(
            max(5.0, 10 * max_wait),
            on_kick=lambda: self.telemetry.inc("fetch_restarts", 1, self._labels))
        # What liveness and readiness read (consumers.runtime.health), from another thread:
        #: between subscribe and shutdown
        self.running = False
        #: the last consume() call (monotonic): the loop is turning
        self.turned_at = time.monotonic()
        #: since when the pending batch has been failing with backpressure, and the last error
        self.retrying_since: float | None = None
        self.retry_error: BackpressureError | None = None
        self.lag_trend = LagTrend(tolerance=max_records)

    # -- public -------------------------------------------------------------------

    def run(self, stop: threading.Event) -> int:
        """Consume until ``stop`` is set; 0 after a clean drain, 1 if a batch was left unstored.

        Raises :class:`ConsumerError` subclasses when the member cannot go on
        (see the module docstring); the caller logs them.
        """
        from confluent_kafka import Consumer

        self._consumer = Consumer({**self._config, **kafka_logging(), "error_cb": self._on_client_error})
        self._topic_ids = topic_ids(self._config, self.topics)
        if self._dlq_topic is not None:
            self._dlq = DlqWriter({**_connection(self._config), **self._dlq_config}, self._dlq_topic,
                                  self.group_id, telemetry=self.telemetry)
        self._consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self.running = True
        log.info("consumer started", extra={**self._where, "topics": self.topics})
        rc = 0
        try:
            while not stop.is_set():
                if not self._paused:
                    self._kick.check(self._consumer, self.assignment)
                batch = self._collect(stop)
                if batch is None:
                    if self._uncommitted:
                        # A commit failed earlier (e.g. during a rebalance) and no new batch
                        # carries these partitions: retry it while idle.
                        self._commit({})
                    self._check_commits()
                    continue
                self._check_incarnation(batch)
                if not self._deliver(batch, stop):
                    rc = 1
                    break
                for tp, pb in batch.partitions.items():
                    self._delivered_to[tp] = pb.last_offset
                self._check_commits()
                self._kick.delivered(batch.partitions)
        finally:
            self._shutdown()
        return rc

    # -- Kafka client errors --------------------------------------------------------

    def _on_client_error(self, err: Any) -> None:
        """librdkafka's client-level errors (served inside ``consume``): brokers down,
        authentication, fatal errors. Counted, logged rate-limited; fatal ones stop the loop."""
        self.telemetry.inc("consumer_errors", 1, self._labels)
        if is_fatal(err):
            self._fatal = err
            return
        self._log.warning(f"client:{err.name()}", "Kafka consumer error",
                          {**self._where, "error": str(err), "code": err.name()})

    def _check_errors(self, errors: list[Any]) -> None:
        """Errors delivered as messages (partition-level: unknown topic, offsets out of range)."""
        for err in errors:
            self.telemetry.inc("consumer_errors", 1, self._labels)
            if is_fatal(err):
                raise self._fatal_error(err)
            self._log.warning(f"message:{err.name()}", "Kafka consumer error",
                              {**self._where, "error": str(err), "code": err.name()})

    def _raise_if_fatal(self) -> None:
        if self._fatal is not None:
            raise self._fatal_error(self._fatal)

    def _fatal_error(self, err: Any) -> FatalConsumerError:
        """The error a fatal client error stops the member with; a fenced static member says why."""
        from confluent_kafka import KafkaError

        if err.code() == KafkaError.FENCED_INSTANCE_ID or "fenced by other consumer" in str(err):
            instance = self._config.get("group.instance.id")
            return FencedMemberError(
                f"static member {instance!r} of group {self.group_id!r} was fenced: another consumer joined "
                f"with the same group.instance.id, so two live processes share one member name; give each "
                f"its own (--member-name / PERPSTREAM_MEMBER_NAME), or '' for dynamic membership ({err})")
        return FatalConsumerError(f"fatal Kafka consumer error: {err}")

    def _consume(self, n: int, timeout: float) -> list[Any]:
        from confluent_kafka import KafkaException

        self.turned_at = time.monotonic()
        try:
            msgs = self._consumer.consume(num_messages=n, timeout=timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args else None
            if err is None or not hasattr(err, "fatal"):
                raise
            if is_fatal(err):
                raise self._fatal_error(err) from exc
            self._check_errors([err])
            return []
        self._raise_if_fatal()
        return msgs

    # -- collecting ---------------------------------------------------------------

    def _collect(self, stop: threading.Event) -> Batch | None:
        b = BatchBuilder(self._decoder, self._cuts, self._topic_ids)
        self._collecting = b
        try:
            carry, self._carry = self._carry, []
            if carry:
                b.add(carry, self._carry)
            start = time.monotonic()
            deadline = start + self.max_wait
            while b.count < self.max_records and not stop.is_set():
                now = time.monotonic()
                if now >= deadline:
                    if not b.waiting_for_cut():
                        break
                    if now >= deadline + self.cut_wait:
                        log.warning("journaled batch end not reached; cutting where we are",
                                    extra={**self._where, "partitions": b.waiting_for_cut()})
                        for tp in b.waiting_for_cut():
                            self._cuts.pop(tp, None)
                        break
                    timeout = self.poll_timeout
                else:
                    timeout = min(self.poll_timeout, deadline - now)
                msgs = self._consume(self.max_records - b.count, max(timeout, 0.001))
                if msgs:
                    b.add(msgs, self._carry)
                    if b.errors:
                        errors, b.errors = b.errors, []
                        self._check_errors(errors)
        finally:
            self._collecting = None
        batch = b.batch()
        if batch is not None:
            self.telemetry.inc("records_consumed", b.consumed, self._labels)
        return batch

    # -- delivering ---------------------------------------------------------------

    def _deliver(self, batch: Batch, stop: threading.Event) -> bool:
        """Journal, handle (with retries), DLQ, commit. False = gave up on stop (nothing committed)."""
        self._pending = batch
        delays = backoff(self._backoff_initial, cap=self._backoff_max)
        stop_deadline: float | None = None
        journaled = self._journal is None
        handled = False
        unclassified = 0
        retried = False
        key = f"retry:{self.name}"
        try:
            while batch.partitions:
                try:
                    if not journaled:
                        self._record_journal(batch)
                        journaled = True
                    if not handled:
                        batch.attempts += 1
                        self.handler.handle(batch)
                        handled = True
                    self._send_dlq(batch)
                    break
                except BackpressureError as exc:
                    if exc.unclassified:
                        unclassified += 1
                        if unclassified >= self.unclassified_attempts:
                            raise self._failed(
                                batch, f"{exc} (an error no table classifies, {unclassified} attempts)"
                            ) from exc
                    self.telemetry.inc("batch_retries", 1, self._labels)
                    self.retry_error = exc
                    if self.retrying_since is None:
                        self.retrying_since = time.monotonic()
                    retry_after = exc.retry_after
                    delay = retry_after if retry_after is not None else next(delays)
                    retried = True
                    self._log.warning(key, "batch not stored yet; partitions paused, retrying", {
                        **self._where, "error": str(exc), "attempt": batch.attempts,
                        "retry_in_s": round(delay, 3), "batch": batch.describe()})
                    self._pause()
                    if stop.is_set():
                        if stop_deadline is None:
                            stop_deadline = time.monotonic() + self.drain_timeout
                        if time.monotonic() >= stop_deadline:
                            log.error("stopping with an unstored batch; it will be re-delivered",
                                      extra={**self._where, "batch": batch.describe()})
                            return False
                    self._wait_polling(delay)
                except FatalConsumerError:
                    raise  # the Kafka client, not this batch: nothing to name
                except ConsumerError as exc:
                    raise self._failed(batch, str(exc)) from exc
                except Exception:
                    log.error("handler failed on batch %s (a bug: traceback follows)", batch.describe(),
                              extra=self._where)
                    raise
            if batch.partitions:
                self._commit({tp: pb.last_offset + 1 for tp, pb in batch.partitions.items()})
                self.telemetry.inc("batches", 1, self._labels)
            if retried:
                self._log.reset(key)
                log.info("batch stored after retries", extra={**self._where, "attempts": batch.attempts})
            self._resume()
            self._update_lag()
            return True
        finally:
            self._pending = None
            self.retrying_since = self.retry_error = None

    def _failed(self, batch: Batch, cause: str) -> BatchFailedError:
        return BatchFailedError(
            f"batch {batch.describe()} cannot be stored, nothing of it is committed: {cause}", batch.ranges())

    def _record_journal(self, batch: Batch) -> None:
        assert self._journal is not None
        try:
            self._journal.record(self.group_id, batch.ranges(), self._topic_ids)
        except ConsumerError:
            raise
        except Exception as exc:
            raise BackpressureError(f"batch journal write failed: {exc}", unclassified=True) from exc

    def _send_dlq(self, batch: Batch) -> None:
        todo = [r for r in batch.rejected if r.dlq_state != ACKED]
        if not todo:
            return
        if self._dlq is None:
            raise ConsumerError(f"{len(todo)} rejected records and no DLQ: {todo[0].error}")
        try:
            self._dlq.send(batch.rejected, timeout=self.dlq_timeout, serve=self._serve_paused)
        finally:
            acked = [r for r in todo if r.dlq_state == ACKED]
            for reason, n in Counter(r.reason for r in acked).items():
                self.telemetry.inc("records_dlq", n, {"group": self.group_id, "reason": reason})
            for rej in acked:
                self._log.warning(f"dlq:{rej.reason}", "record sent to the DLQ", {
                    **self._where, "topic": rej.topic, "partition": rej.partition, "offset": rej.offset,
                    "reason": rej.reason, "error": rej.error[:300]})

    def _serve_paused(self, seconds: float) -> None:
        """Serve the group protocol while waiting on the DLQ (partitions paused meanwhile)."""
        self._pause()
        self._wait_polling(seconds)

    def _wait_polling(self, delay: float) -> None:
        """Sleep ``delay`` while serving the group protocol (partitions are paused)."""
        end = time.monotonic() + delay
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            if self._pause_new and self.assignment:
                self._consumer.pause(_tps(self.assignment))
                self._pause_new = False
            msgs = self._consume(1000, min(left, self.poll_timeout))
            if msgs:
                # Fetched before the pause took effect: they follow the pending batch.
                errors = [m.error() for m in msgs if m.error() is not None]
                self._carry.extend(m for m in msgs if m.error() is None)
                if errors:
                    self._check_errors(errors)

    # -- commits --------------------------------------------------------------------

    def _commit(self, offsets: dict[TopicPartitionId, int]) -> None:
        """Commit (up to 3 quick tries); on failure keep the offsets for the next commit.

        Never raises: it runs inside rebalance callbacks too. The loop's
        thread calls :meth:`_check_commits` to stop when commits keep failing.
        """
        from confluent_kafka import KafkaException, TopicPartition

        merged = {**self._uncommitted, **offsets}
        merged = {tp: o for tp, o in merged.items() if tp in self.assignment}
        if not merged:
            self._uncommitted.clear()
            self._commit_failing_since = None
            return
        tps = [TopicPartition(t, p, o) for (t, p), o in merged.items()]
        for attempt in range(3):
            try:
                result = self._consumer.commit(offsets=tps, asynchronous=False)
                bad = [tp for tp in (result or []) if tp.error is not None]
                if bad:
                    raise KafkaException(bad[0].error)
                self._uncommitted.clear()
                self.committed.update(merged)
                if self._commit_failing_since is not None:
                    self._log.reset("commit")
                    log.info("offset commits work again", extra=self._where)
                self._commit_failing_since = None
                return
            except KafkaException as exc:
                self.telemetry.inc("commit_failures", 1, self._labels)
                self._commit_error = str(exc)
                err = exc.args[0] if exc.args else None
                if err is not None and hasattr(err, "fatal"):
                    if is_fatal(err):
                        self._fatal = err
                        break
                    if err.name() in _COMMIT_REFUSED:
                        self._commit_refused = str(err)
                        break
                    if not err.retriable():
                        break
                if attempt < 2:
                    time.sleep(0.2 * (attempt + 1))
        # Stored but not committed: re-delivery is deduplicated downstream; retry with the next commit.
        self._uncommitted.update(merged)
        if self._commit_failing_since is None:
            self._commit_failing_since = time.monotonic()
        self._log.warning("commit", "offset commit failed; retrying with the next batch",
                          {**self._where, "error": self._commit_error, "partitions": len(merged)})

    @property
    def commit_failing(self) -> tuple[float, str] | None:
        """(since when, last error) while offset commits fail; None when the last one worked."""
        since = self._commit_failing_since
        return None if since is None else (since, self._commit_error)

    @property
    def poll_deadline(self) -> float:
        """librdkafka's max.poll.interval.ms in seconds: a member silent longer is out of the group."""
        return float(self._config.get("max.poll.interval.ms", 300_000)) / 1000

    def _check_commits(self) -> None:
        self._raise_if_fatal()
        if self._commit_refused is not None:
            raise CommitFailedError(f"offset commit refused: {self._commit_refused}")
        since = self._commit_failing_since
        if since is not None and time.monotonic() - since > self.commit_timeout:
            raise CommitFailedError(
                f"offset commits failing for {time.monotonic() - since:.0f} s "
                f"(commit_timeout {self.commit_timeout:.0f} s): {self._commit_error}")

    # -- pause / resume -------------------------------------------------------------

    def _pause(self) -> None:
        if not self._paused and self.assignment:
            self._consumer.pause(_tps(self.assignment))
        self._paused = True
        self.telemetry.set("paused", 1, self._where)

    def _resume(self) -> None:
        if self._paused:
            if self.assignment:
                self._consumer.resume(_tps(self.assignment))
            self._paused = False
            self.telemetry.set("paused", 0, self._where)
            log.info("partitions resumed", extra=self._where)

    # -- rebalance callbacks (run inside consume()) -------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        if self.cooperative:
            self.assignment.update(tps)  # incremental: what is added
        else:
            # eager: the whole new assignment; everything before it was revoked first
            stale = self.assignment - set(tps)
            if stale:
                log.warning("eager assignment without the revocation of partitions owned before",
                            extra={**self._where, "partitions": sorted(stale)})
                self._release(stale, lost=True)
            self.assignment = set(tps)
        if tps:
            self._refresh_topic_ids()
        if self._journal is not None and tps:
            try:
                pending = self._journal.pending(self.group_id, tps, self._topic_ids)
            except Exception as exc:
                # Without the journal a re-delivered batch may be cut differently:
                # ReplacingMergeTree still deduplicates it, only not before merges.
                log.error("batch journal unreadable; first batches cut freely",
                          extra={**self._where, "error": str(exc)})
                pending = {}
            for tp, (first, last) in pending.items():
                self._cuts[tp] = [first - 1, last]
        self.handler.on_assigned(tps)
        if self._paused:
            self._pause_new = True  # paused in _wait_polling once the client has assigned them
        log.info("partitions assigned", extra={**self._where, "partitions": tps})

    def _check_incarnation(self, batch: Batch) -> None:
        """A partition read again from an offset this member already delivered, without a
        rebalance in between, is a new incarnation of its topic: a broker that restarted
        with empty memory storage faster than the group noticed, so the client's fetch
        position was reset to the new topic's start. Its batches get the new topic id
        before their tokens are used (see :meth:`_refresh_topic_ids`)."""
        back = [tp for tp, pb in batch.partitions.items()
                if pb.first_offset <= self._delivered_to.get(tp, -1)]
        if not back:
            return
        log.warning("offsets went back without a rebalance; asking for the topics' ids",
                    extra={**self._where, "partitions": back})
        self._refresh_topic_ids()
        for tp in back:
            pb = batch.partitions[tp]
            pb.topic_id = self._topic_ids.get(pb.topic, pb.topic_id)
            self._delivered_to.pop(tp, None)

    def _refresh_topic_ids(self) -> None:
        """Ask again which incarnation of each topic this member reads. A topic can be
        recreated under a running member (an in-memory broker restarted, a topic deleted
        and created again): its offsets start at 0 again, and batches of the new
        incarnation must not carry the old one's dedup tokens, or ClickHouse would take
        them for inserts it already has and drop them. The group rebalances after such a
        change, so every assignment asks; when the cluster cannot answer, the ids known
        so far stay."""
        ids = topic_ids(self._config, self.topics)
        if not ids:
            return
        changed = {t for t, i in ids.items() if self._topic_ids.get(t) not in (None, i)}
        if changed:
            log.warning("topic recreated: batches of its new incarnation get tokens of their own",
                        extra={**self._where, "topics": sorted(changed)})
        # In place: the builder of the batch being collected holds this dict (an assignment
        # is served inside consume(), in the middle of collecting).
        self._topic_ids.update(ids)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._release({(p.topic, p.partition) for p in partitions}, lost=False)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._release({(p.topic, p.partition) for p in partitions}, lost=True)

    def _release(self, tps: set[TopicPartitionId], *, lost: bool) -> None:
        if not lost:
            todo = {tp: o for tp, o in self._uncommitted.items() if tp in tps}
            if todo:
                self._commit(todo)
        for tp in tps:
            self._uncommitted.pop(tp, None)
            self._cuts.pop(tp, None)
            self._delivered_to.pop(tp, None)
            self.telemetry.set("consumer_lag", 0, {"group": self.group_id, "topic": tp[0],
                                                   "partition": str(tp[1])})
        if not self._uncommitted:
            self._commit_failing_since = None  # what failed to commit is the next owner's now
        self._kick.forget(tps)
        if self._pending is not None:
            self._pending.drop(tps)
        if self._collecting is not None:
            self._collecting.drop(tps)
        self._carry = [m for m in self._carry if (m.topic(), m.partition()) not in tps]
        if self._paused and tps:
            # librdkafka keeps a partition's pause flag through revoke and re-assign:
            # clear it now, or a later assignment of it back to us is never fetched.
            try:
                self._consumer.resume(_tps(tps))
            except Exception as exc:  # lost partitions may be unknown to the client by now
                log.debug("resume of released partitions failed", extra={"error": str(exc)})
        self.assignment -= tps
        self.handler.on_revoked(sorted(tps))
        log.info("partitions lost" if lost else "partitions revoked",
                 extra={**self._where, "partitions": sorted(tps)})

    # -- lag ----------------------------------------------------------------------------

    def _update_lag(self) -> None:
        """Lag = fetch high watermark (cached from fetch responses) minus committed offset.

        The cached watermark needs no broker round trip and is right on both
        Apache Kafka and Tansu (whose ListOffsets answers are not).
        """
        from confluent_kafka import TopicPartition

        total = 0
        for tp in self.assignment:
            committed = self.committed.get(tp)
            if committed is None:
                continue
            try:
                _low, high = self._consumer.get_watermark_offsets(TopicPartition(*tp), cached=True)
            except Exception:
                continue
            if high is None or high < 0:
                continue
            total += max(0, high - committed)
            self.telemetry.set("consumer_lag", max(0, high - committed),
                               {"group": self.group_id, "topic": tp[0], "partition": str(tp[1])})
        self.lag_trend.update(total, time.monotonic())

    # -- shutdown ---------------------------------------------------------------------------

    def _shutdown(self) -> None:
        try:
            if self._consumer is not None:
                if self._uncommitted:
                    self._commit({})
                self._consumer.close()  # revoke callback, then LeaveGroup (a dynamic member only)
                self._leave_as_static_member()
        except Exception as exc:
            log.warning("consumer close failed", extra={**self._where, "error": str(exc)})
        finally:
            self._consumer = None
            self.running = False
            if self._dlq is not None:
                self._dlq.close()
            self.handler.close()
            log.info("consumer stopped", extra=self._where)


    def _leave_as_static_member(self) -> None:
        """A static member stopped on purpose gives its partitions up now, not after its
        session timeout (consumers/runtime/leave.py; docs/sink.md, "Restart recovery")."""
        instance = self._config.get("group.instance.id")
        if not instance:
            return
        try:
            leave_group(self._config, self.group_id, str(instance))
        except LeaveError as exc:
            log.warning("static member could not leave its group; the broker expires it after "
                        "session.timeout.ms", extra={**self._where, "error": str(exc)})
        else:
            log.info("static member left its group", extra={**self._where, "instance": instance})


def _tps(tps: set[TopicPartitionId]) -> list[Any]:
    from confluent_kafka import TopicPartition

    return [TopicPartition(t, p) for t, p in sorted(tps)]


__all__ = [
    "COOPERATIVE_ASSIGNORS",
    "DEFAULT_CONFIG",
    "EAGER_ASSIGNORS",
    "FORCED_CONFIG",
    "BatchHandler",
    "BatchJournal",
    "ConsumeLoop",
    "is_cooperative",
    "topic_ids",
]
