"""The consume loop both consumers run: a librdkafka adapter around the member's
core (``consumers.runtime.member``), which decides; this module polls, builds
batches, calls the handler, the journal, the DLQ and the commits, and feeds
their results back. docs/sink.md ("The consume runtime") describes both.

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
- Revocation: uncommitted but handled offsets of the revoked partitions are
  committed (a failed commit is tried again at once, at most
  ``consumers.failures.REVOKE_COMMIT_ATTEMPTS`` times, never with a sleep;
  then it is given up, counted in ``commits_abandoned`` and logged: the next
  owner re-reads those batches and the store deduplicates them), pending or
  collected records of them are dropped, then ``on_revoked`` is called. Lost
  partitions skip the commit. Cooperative (``cooperative-sticky``, the
  default) and eager (``range``, ``roundrobin``) assignors are both served.
- Kafka errors are sorted by ``consumers.failures`` (docs/failures.md): fatal
  and refused ones stop the loop (:class:`FatalConsumerError`;
  :class:`FencedMemberError` when another consumer took this member's
  ``group.instance.id``); transient ones are counted and logged at most once
  per 30 s per kind. A failed commit is retried with the next batch (or while
  idle); commits failing for ``commit_timeout`` seconds, or refused for
  authorization, stop the loop (:class:`CommitFailedError`).
- ``run(stop)`` returns after the current batch is handled and committed once
  ``stop`` is set (graceful drain, bounded by ``drain_timeout``). It installs
  no signal handlers, so it runs in any thread;
  :func:`consumers.runtime.supervisor.run_workers` runs N members as threads
  of one process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaException, TopicCollection, TopicPartition
from confluent_kafka.admin import AdminClient

from perpstream.consumers.exceptions import BackpressureError, ConsumerError
from perpstream.consumers.failures import KafkaFailure, KafkaFault, classify, kafka_error_of
from perpstream.consumers.runtime.batch import Batch, TopicPartitionId
from perpstream.consumers.runtime.builder import BatchBuilder, RowDecoder
from perpstream.consumers.runtime.dlq import ACKED, DlqWriter
from perpstream.consumers.runtime.health import LagTrend
from perpstream.consumers.runtime.leave import LeaveError, leave_group
from perpstream.consumers.runtime.member import (
    Abandon,
    Action,
    Assigned,
    Commit,
    Fail,
    Handle,
    MemberCore,
    Pause,
    RecordJournal,
    RefreshTopicIds,
    Released,
    Resume,
    SendDlq,
    Stored,
)
from perpstream.consumers.runtime.workarounds import StalledFetchKick
from perpstream.runtime.backoff import backoff
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


class ConsumeLoop:
    """One consumer-group member: the librdkafka adapter of a :class:`MemberCore`.

    See the module docstring for the guarantees. ``consumer_config`` is a
    librdkafka dict (``bootstrap.servers`` at least;
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
        # Long: the adapter's wiring, one assignment per setting it takes and per piece of state
        # the health checks read from another thread (consumers.runtime.health).
        cfg: dict[str, Any] = dict(DEFAULT_CONFIG)
        cfg.update(consumer_config)
        cfg.update(FORCED_CONFIG)
        cfg["group.id"] = group_id
        cfg.setdefault("client.id", f"{group_id}-{name}")
        self._config = cfg
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
        self.dlq_timeout = dlq_timeout
        self.name = name
        self._labels = {"group": group_id}
        self._where = {"group": group_id, "member": name}
        instance = cfg.get("group.instance.id")
        self.core = MemberCore(
            group_id, name, cooperative=is_cooperative(cfg["partition.assignment.strategy"]),
            journal=journal is not None, dlq=dlq_topic is not None,
            backoff=lambda: backoff(backoff_initial, cap=backoff_max), telemetry=self.telemetry,
            unclassified_attempts=unclassified_attempts, commit_timeout=commit_timeout,
            drain_timeout=drain_timeout, cut_wait=cut_wait,
            instance=str(instance) if instance else None)

        self._consumer: Any = None
        self._dlq: DlqWriter | None = None
        self._carry: list[Any] = []
        self._collecting: BatchBuilder | None = None
        #: a failure reached inside a librdkafka callback; raised by the loop's thread
        self._deferred: Fail | None = None
        self._abandoned = False
        self._kick = StalledFetchKick(
            max(5.0, 10 * max_wait),
            on_kick=lambda: self.telemetry.inc("fetch_restarts", 1, self._labels))
        # What liveness and readiness read (consumers.runtime.health), from another thread:
        #: between subscribe and shutdown
        self.running = False
        #: the last consume() call (monotonic): the loop is turning
        self.turned_at = time.monotonic()
        self.lag_trend = LagTrend(tolerance=max_records)

    # -- what the core knows, for callers and health checks --------------------------------

    @property
    def cooperative(self) -> bool:
        """Incremental rebalances (cooperative-sticky) or eager ones (range, roundrobin)."""
        return self.core.cooperative

    @property
    def assignment(self) -> set[TopicPartitionId]:
        return self.core.assignment

    @property
    def committed(self) -> dict[TopicPartitionId, int]:
        return self.core.committed

    @property
    def paused(self) -> bool:
        return self.core.paused

    @property
    def retrying_since(self) -> float | None:
        return self.core.retrying_since

    @property
    def retry_error(self) -> BackpressureError | None:
        return self.core.retry_error

    @property
    def commit_failing(self) -> tuple[float, str] | None:
        """(since when, last error) while offset commits fail; None when the last one worked."""
        return self.core.commit_failing

    @property
    def unclassified_attempts(self) -> int:
        return self.core.unclassified_attempts

    @property
    def commit_timeout(self) -> float:
        return self.core.commit_timeout

    @property
    def poll_deadline(self) -> float:
        """librdkafka's max.poll.interval.ms in seconds: a member silent longer is out of the group."""
        return float(self._config.get("max.poll.interval.ms", 300_000)) / 1000

    # -- public -------------------------------------------------------------------

    def run(self, stop: threading.Event) -> int:
        """Consume until ``stop`` is set; 0 after a clean drain, 1 if a batch was left unstored.

        Raises :class:`ConsumerError` subclasses when the member cannot go on
        (see the module docstring); the caller logs them.
        """

        self._consumer = Consumer({**self._config, **kafka_logging(), "error_cb": self._on_client_error})
        self.core.topic_ids_known(topic_ids(self._config, self.topics))
        if self._dlq_topic is not None:
            self._dlq = DlqWriter({**_connection(self._config), **self._dlq_config}, self._dlq_topic,
                                  self.group_id, telemetry=self.telemetry)
        self._consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        self.running = True
        log.info("consumer started", extra={**self._where, "topics": self.topics})
        try:
            while not self.core.finished and not self._abandoned:
                if stop.is_set() and not self.core.stopping:
                    self._perform(self.core.stop(time.monotonic()))
                    continue
                if self.core.pending is not None:  # a batch waits for its retry
                    self._wait_polling(self._until_due())
                    self._perform(self.core.tick(time.monotonic()))
                    continue
                if not self.core.paused:
                    self._kick.check(self._consumer, self.core.assignment)
                batch = self._collect(stop)
                if batch is None:
                    self._perform(self.core.tick(time.monotonic()))
                else:
                    self._perform(self.core.collected(batch, time.monotonic()))
        finally:
            self._shutdown()
        return 1 if self._abandoned else 0

    def _until_due(self) -> float:
        due = self.core.next_deadline()
        return self.poll_timeout if due is None else max(0.0, due - time.monotonic())

    # -- performing the core's actions ------------------------------------------------

    def _perform(self, actions: list[Action], *, in_callback: bool = False) -> None:
        """Carry out ``actions`` in order; the results they produce are fed back to the core,
        whose answers are carried out before the rest. Inside a librdkafka callback a failure
        is kept and raised once ``consume`` returned."""
        todo = deque(actions)
        while todo:
            action = todo.popleft()
            more = self._do(action)
            if isinstance(action, Fail):
                if in_callback:
                    self._deferred = self._deferred or action
                    continue
                raise action.error from action.cause
            todo.extendleft(reversed(more))

    def _do(self, action: Action) -> list[Action]:
        now = time.monotonic
        if isinstance(action, Handle):
            return self.core.handled(self._handle(action.batch), now())
        if isinstance(action, Commit):
            return self.core.commit_done(action, self._commit(action.offsets), now())
        if isinstance(action, RecordJournal):
            return self.core.journal_done(self._record_journal(action.batch), now())
        if isinstance(action, SendDlq):
            return self._send_dlq(action.batch)
        if isinstance(action, Stored):
            self._kick.delivered(action.batch.partitions)
            self._update_lag()
        elif isinstance(action, Pause | Resume):
            self._pause_resume(action)
        elif isinstance(action, Assigned):
            self.handler.on_assigned(list(action.partitions))
            log.info("partitions assigned", extra={**self._where, "partitions": list(action.partitions)})
        elif isinstance(action, Released):
            self._released(set(action.partitions), action.lost)
        elif isinstance(action, RefreshTopicIds):
            self.core.topic_ids_known(topic_ids(self._config, self.topics))
        elif isinstance(action, Abandon):
            self._abandoned = True
        return []

    def _handle(self, batch: Batch) -> ConsumerError | None:
        try:
            self.handler.handle(batch)
        except ConsumerError as exc:
            return exc
        except Exception:
            log.error("handler failed on batch %s (a bug: traceback follows)", batch.describe(),
                      extra=self._where)
            raise
        return None

    def _record_journal(self, batch: Batch) -> ConsumerError | None:
        assert self._journal is not None
        try:
            self._journal.record(self.group_id, batch.ranges(), self.core.topic_ids)
        except ConsumerError as exc:
            return exc
        except Exception as exc:
            err = BackpressureError(f"batch journal write failed: {exc}", unclassified=True)
            err.__cause__ = exc
            return err
        return None

    def _send_dlq(self, batch: Batch) -> list[Action]:
        assert self._dlq is not None
        todo = [r for r in batch.rejected if r.dlq_state != ACKED]
        error: ConsumerError | None = None
        try:
            self._dlq.send(batch.rejected, timeout=self.dlq_timeout, serve=self._serve_paused)
        except ConsumerError as exc:
            error = exc
        acked = [r for r in todo if r.dlq_state == ACKED]
        return self.core.dlq_done(acked, error, time.monotonic())

    def _pause_resume(self, action: Pause | Resume) -> None:
        tps = _tps(set(action.partitions))
        if isinstance(action, Pause):
            self._consumer.pause(tps)
            return
        try:
            self._consumer.resume(tps)
        except Exception as exc:  # released partitions may be unknown to the client by now
            log.debug("resume of partitions failed", extra={"error": str(exc)})

    # -- Kafka client errors --------------------------------------------------------

    def _on_client_error(self, err: Any) -> None:
        """librdkafka's client-level errors (served inside ``consume``): brokers down,
        authentication, fatal errors; sorted by consumers.failures."""
        self._perform(self.core.client_error(classify(err), time.monotonic()), in_callback=True)

    def _check_errors(self, errors: list[Any]) -> None:
        """Errors delivered as messages (partition-level: unknown topic, offsets out of range)."""
        for err in errors:
            self._perform(self.core.client_error(classify(err), time.monotonic(), "message"))

    def _consume(self, n: int, timeout: float) -> list[Any]:

        self.turned_at = time.monotonic()
        self._perform(self.core.before_poll())
        try:
            msgs = self._consumer.consume(num_messages=n, timeout=timeout)
        except KafkaException as exc:
            err = kafka_error_of(exc)
            if err is None:
                raise
            self._perform(self.core.client_error(classify(err), time.monotonic(), "message"))
            msgs = []
        if self._deferred is not None:
            failure, self._deferred = self._deferred, None
            raise failure.error from failure.cause
        return msgs

    # -- collecting ---------------------------------------------------------------

    def _collect(self, stop: threading.Event) -> Batch | None:
        b = BatchBuilder(self._decoder, self.core.cuts, self.core.topic_ids)
        self._collecting = b
        try:
            carry, self._carry = self._carry, []
            if carry:
                b.add(carry, self._carry)
            deadline = time.monotonic() + self.max_wait
            while b.count < self.max_records and not stop.is_set():
                now = time.monotonic()
                if now >= deadline:
                    if self.core.collecting_done(b.waiting_for_cut(), now, deadline):
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

    def _serve_paused(self, seconds: float) -> None:
        """Serve the group protocol while waiting on the DLQ (partitions paused meanwhile)."""
        self._perform(self.core.pause_for_dlq())
        self._wait_polling(seconds)

    def _wait_polling(self, delay: float) -> None:
        """Wait ``delay`` while serving the group protocol (partitions are paused)."""
        end = time.monotonic() + delay
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return
            msgs = self._consume(1000, min(left, self.poll_timeout))
            if msgs:
                # Fetched before the pause took effect: they follow the pending batch.
                errors = [m.error() for m in msgs if m.error() is not None]
                self._carry.extend(m for m in msgs if m.error() is None)
                if errors:
                    self._check_errors(errors)

    # -- commits --------------------------------------------------------------------

    def _commit(self, offsets: dict[TopicPartitionId, int]) -> KafkaFailure | None:
        """One synchronous commit; its failure, sorted, for the core to judge. Never sleeps:
        it runs inside rebalance callbacks too."""

        tps = [TopicPartition(t, p, o) for (t, p), o in offsets.items()]
        try:
            result = self._consumer.commit(offsets=tps, asynchronous=False)
        except KafkaException as exc:
            err = kafka_error_of(exc)
            return classify(err) if err is not None else KafkaFailure(KafkaFault.RETRY, "unknown", str(exc))
        bad = [tp for tp in (result or []) if tp.error is not None]
        return classify(bad[0].error) if bad else None

    # -- rebalance callbacks (run inside consume()) -------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        if tps:
            # Every assignment asks which incarnation of each topic this member reads: a
            # topic recreated under a running member must not reuse the old one's tokens.
            self.core.topic_ids_known(topic_ids(self._config, self.topics))
        journaled: Mapping[TopicPartitionId, tuple[int, int]] = {}
        if self._journal is not None and tps:
            try:
                journaled = self._journal.pending(self.group_id, tps, self.core.topic_ids)
            except Exception as exc:
                # Without the journal a re-delivered batch may be cut differently:
                # ReplacingMergeTree still deduplicates it, only not before merges.
                log.error("batch journal unreadable; first batches cut freely",
                          extra={**self._where, "error": str(exc)})
        self._perform(self.core.assigned(tps, journaled, time.monotonic()), in_callback=True)

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self._perform(self.core.revoked(tps, time.monotonic()), in_callback=True)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self._perform(self.core.lost(tps, time.monotonic()), in_callback=True)

    def _released(self, tps: set[TopicPartitionId], lost: bool) -> None:
        for t, p in tps:
            self.telemetry.set("consumer_lag", 0, {"group": self.group_id, "topic": t, "partition": str(p)})
        self._kick.forget(tps)
        if self._collecting is not None:
            self._collecting.drop(tps)
        self._carry = [m for m in self._carry if (m.topic(), m.partition()) not in tps]
        self.handler.on_revoked(sorted(tps))
        log.info("partitions lost" if lost else "partitions revoked",
                 extra={**self._where, "partitions": sorted(tps)})

    # -- lag ----------------------------------------------------------------------------

    def _update_lag(self) -> None:
        """Lag = fetch high watermark (cached from fetch responses) minus committed offset.

        The cached watermark needs no broker round trip and is right on both
        Apache Kafka and Tansu (whose ListOffsets answers are not).
        """

        total = 0
        for tp in self.core.assignment:
            committed = self.core.committed.get(tp)
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
                self._perform(self.core.closing(), in_callback=True)
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
