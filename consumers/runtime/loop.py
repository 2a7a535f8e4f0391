"""The consume loop both consumers run: poll → decode → validate → handle →
DLQ → commit, one batch at a time, with at-least-once delivery that the
handlers turn into exactly-once storage.

Guarantees (what a handler may rely on):

- Batches are bounded by ``max_records`` and ``max_wait`` (memory is bounded
  by the batch size plus librdkafka's fetch queue, never by the topic).
- A partition's records arrive in offset order; ``handle`` is only called for
  partitions assigned to this member, after ``on_assigned`` for them.
- Offsets are committed only after ``handle`` returned *and* every rejected
  record of the batch was acknowledged by the DLQ topic. Nothing is skipped
  without a DLQ copy.
- ``handle`` raising :class:`BackpressureError`: the member pauses all its
  partitions, keeps calling ``consume`` (group membership and
  ``max.poll.interval.ms`` survive), and retries the *same* ``Batch`` object
  with exponential backoff until it succeeds, the partitions are revoked, or
  the loop is stopped; then it resumes by itself. Any other exception stops
  the loop without committing.
- With a :class:`BatchJournal`, the range of each partition in a batch is
  journaled before the first ``handle`` call, and a member newly assigned a
  partition cuts its first batch at the journaled end. So a batch
  re-delivered after a crash or a rebalance has the same
  ``(topic, partition, first_offset, last_offset)`` as before, which makes an
  ``insert_deduplication_token`` built from it drop the re-insert.
- Revocation (cooperative-sticky, incremental): uncommitted but handled
  offsets of the revoked partitions are committed, pending or collected
  records of them are dropped (the next owner re-reads them), then
  ``on_revoked`` is called. Lost partitions skip the commit.
- ``run(stop)`` returns after the current batch is handled and committed once
  ``stop`` is set (graceful drain, bounded by ``drain_timeout``). It installs
  no signal handlers, so it runs in any thread; :func:`run_workers` runs N
  members as threads of one process.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from consumers.exceptions import BackpressureError, DlqError, FatalConsumerError
from consumers.runtime.batch import Batch, PartitionBatch, Rejected, TopicPartitionId
from consumers.runtime.dlq import DlqWriter
from schemas.exceptions import DecodeError
from service.backoff import backoff
from service.telemetry import Telemetry, kafka_logging

log = logging.getLogger(__name__)

Decoder = Callable[[bytes], dict[str, Any]]
Validator = Callable[[dict[str, Any]], None]
#: Decodes *and* validates one value into a tuple (raises DecodeError like the pair above).
RowDecoder = Callable[[bytes], tuple[Any, ...]]


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
    def record(self, group_id: str, ranges: Mapping[TopicPartitionId, tuple[int, int]]) -> None: ...

    def pending(
        self, group_id: str, partitions: Sequence[TopicPartitionId]
    ) -> Mapping[TopicPartitionId, tuple[int, int]]: ...


def topic_ids(config: Mapping[str, Any], topics: Sequence[str]) -> dict[str, str]:
    """Topic ids by name, so batch tokens differ between incarnations of a topic.

    A cluster that cannot describe topics (old brokers) gives no ids: tokens
    then rest on offsets alone, which is exact as long as topics are not recreated.
    """
    from confluent_kafka import TopicCollection
    from confluent_kafka.admin import AdminClient

    admin_cfg = {k: v for k, v in config.items()
                 if k.startswith(("bootstrap.", "security.", "sasl.", "ssl."))}
    out: dict[str, str] = {}
    try:
        admin = AdminClient({**admin_cfg, **kafka_logging()})  # must outlive the futures
        futures = admin.describe_topics(TopicCollection(list(topics)), request_timeout=10)
        for name, fut in futures.items():
            out[name] = str(fut.result(timeout=15).topic_id)
    except Exception as exc:
        log.warning("topic ids unavailable; dedup tokens use offsets only", extra={"error": str(exc)})
    return out


#: Consumer settings the runtime depends on; a caller cannot override them.
FORCED_CONFIG = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "partition.assignment.strategy": "cooperative-sticky",
}
DEFAULT_CONFIG = {"auto.offset.reset": "earliest", "enable.partition.eof": False}


class ConsumeLoop:
    """One consumer-group member. See the module docstring for the guarantees.

    ``consumer_config`` is a librdkafka dict (``bootstrap.servers`` at least;
    ``ConsumerSettings.consumer_config()`` builds one). ``decode`` turns a
    message value into a dict and raises :class:`DecodeError` (whose
    ``reason`` labels the DLQ record); ``validate`` raises a ``DecodeError``
    subclass for contract violations. ``decode_rows`` (opt-in) replaces both:
    it decodes and validates a value into a tuple, and valid records land in
    ``PartitionBatch.rows`` instead of ``records`` (no dict per record).
    ``dlq_topic=None`` makes a rejected record fatal instead (only for tests
    and tools).
    """

    def __init__(
        self,
        consumer_config: Mapping[str, Any],
        topics: Sequence[str],
        group_id: str,
        handler: BatchHandler,
        *,
        decode: Decoder,
        validate: Validator | None = None,
        decode_rows: RowDecoder | None = None,
        dlq_topic: str | None,
        telemetry: Telemetry | None = None,
        journal: BatchJournal | None = None,
        max_records: int = 20_000,
        max_wait: float = 0.5,
        poll_timeout: float = 0.5,
        backoff_initial: float = 0.2,
        backoff_max: float = 30.0,
        drain_timeout: float = 30.0,
        cut_wait: float = 30.0,
        name: str = "member",
    ) -> None:
        cfg: dict[str, Any] = dict(DEFAULT_CONFIG)
        cfg.update(consumer_config)
        cfg.update(FORCED_CONFIG)
        cfg["group.id"] = group_id
        cfg.setdefault("client.id", f"{group_id}-{name}")
        self._config = cfg
        self.topics = list(topics)
        self.group_id = group_id
        self.handler = handler
        self._decode = decode
        self._validate = validate
        self._decode_rows = decode_rows
        self._dlq_topic = dlq_topic
        self.telemetry = telemetry or Telemetry()
        self._journal = journal
        self.max_records = max_records
        self.max_wait = max_wait
        self.poll_timeout = poll_timeout
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self.drain_timeout = drain_timeout
        self.cut_wait = cut_wait
        self.name = name
        self._labels = {"group": group_id}

        self._consumer: Any = None
        self._dlq: DlqWriter | None = None
        self.assignment: set[TopicPartitionId] = set()
        self._paused = False
        self._pause_new = False
        self._carry: list[Any] = []
        self._cuts: dict[TopicPartitionId, list[int]] = {}
        self._topic_ids: dict[str, str] = {}
        self._collecting: _Builder | None = None
        self._pending: Batch | None = None
        #: handled, not yet committed (a commit failed): next offset per partition
        self._uncommitted: dict[TopicPartitionId, int] = {}
        self.committed: dict[TopicPartitionId, int] = {}
        self._last_data: dict[TopicPartitionId, float] = {}
        self._next_stall_check = 0.0
        #: a partition with a backlog and no records for this long gets its fetch restarted
        self.stall_after = max(5.0, 10 * max_wait)

    # -- public -------------------------------------------------------------------

    def run(self, stop: threading.Event) -> int:
        """Consume until ``stop`` is set; 0 after a clean drain, 1 if a batch was left unstored."""
        from confluent_kafka import Consumer

        self._consumer = Consumer({**self._config, **kafka_logging()})
        self._topic_ids = topic_ids(self._config, self.topics)
        if self._dlq_topic is not None:
            producer_cfg = {
                k: v for k, v in self._config.items()
                if k.startswith(("bootstrap.", "security.", "sasl.", "ssl."))
            }
            self._dlq = DlqWriter(producer_cfg, self._dlq_topic, self.group_id)
        self._consumer.subscribe(
            self.topics, on_assign=self._on_assign, on_revoke=self._on_revoke, on_lost=self._on_lost
        )
        log.info("consumer started", extra={"group": self.group_id, "member": self.name,
                                            "topics": self.topics})
        rc = 0
        try:
            while not stop.is_set():
                self._kick_stalled_fetches()
                batch = self._collect(stop)
                if batch is None:
                    if self._uncommitted:
                        # A commit failed earlier (e.g. during a rebalance) and no new batch
                        # carries these partitions: retry it while idle.
                        self._commit({})
                    continue
                if not self._deliver(batch, stop):
                    rc = 1
                    break
                for tp in batch.partitions:
                    self._last_data[tp] = time.monotonic()
        finally:
            self._shutdown()
        return rc

    # -- collecting ---------------------------------------------------------------

    def _collect(self, stop: threading.Event) -> Batch | None:
        b = _Builder(self._decode, self._validate, self._cuts, self._topic_ids,
                     decode_rows=self._decode_rows)
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
                                    extra={"group": self.group_id, "partitions": b.waiting_for_cut()})
                        for tp in b.waiting_for_cut():
                            self._cuts.pop(tp, None)
                        break
                    timeout = self.poll_timeout
                else:
                    timeout = min(self.poll_timeout, deadline - now)
                msgs = self._consumer.consume(num_messages=self.max_records - b.count,
                                              timeout=max(timeout, 0.001))
                if msgs:
                    b.add(msgs, self._carry)
                    if b.errors:
                        self._check_errors(b)
        finally:
            self._collecting = None
        if not b.parts:
            return None
        batch = Batch(b.parts, b.rejected)
        self.telemetry.inc("records_consumed", b.consumed, self._labels)
        return batch

    def _check_errors(self, b: _Builder) -> None:
        errors, b.errors = b.errors, []
        for err in errors:
            self.telemetry.inc("consumer_errors", 1, self._labels)
            if err.fatal():
                raise FatalConsumerError(f"fatal Kafka consumer error: {err}")
            log.warning("consumer error", extra={"group": self.group_id, "error": str(err)})

    # -- delivering ---------------------------------------------------------------

    def _deliver(self, batch: Batch, stop: threading.Event) -> bool:
        """Handle (with retries), DLQ, commit. False = gave up on stop (nothing committed)."""
        self._pending = batch
        delays = backoff(self._backoff_initial, cap=self._backoff_max)
        stop_deadline: float | None = None
        journaled = self._journal is None
        handled = False
        dlq_done = False
        try:
            while batch.partitions:
                try:
                    if not journaled:
                        assert self._journal is not None
                        try:
                            self._journal.record(self.group_id, batch.ranges())
                        except Exception as exc:
                            raise BackpressureError(f"batch journal write failed: {exc}") from exc
                        journaled = True
                    if not handled:
                        batch.attempts += 1
                        self.handler.handle(batch)
                        handled = True
                    if not dlq_done:
                        self._send_dlq(batch.rejected)
                        dlq_done = True
                    break
                except (BackpressureError, DlqError) as exc:
                    self.telemetry.inc("batch_retries", 1, self._labels)
                    retry_after = getattr(exc, "retry_after", None)
                    delay = retry_after if retry_after is not None else next(delays)
                    log.warning(
                        "batch not stored yet; pausing and retrying",
                        extra={"group": self.group_id, "member": self.name, "error": str(exc),
                               "attempt": batch.attempts, "retry_in_s": round(delay, 3)},
                    )
                    self._pause()
                    if stop.is_set():
                        if stop_deadline is None:
                            stop_deadline = time.monotonic() + self.drain_timeout
                        if time.monotonic() >= stop_deadline:
                            log.error("stopping with an unstored batch; it will be re-delivered",
                                      extra={"group": self.group_id, "member": self.name})
                            return False
                    self._wait_polling(delay)
            if batch.partitions:
                self._commit({tp: pb.last_offset + 1 for tp, pb in batch.partitions.items()})
                self.telemetry.inc("batches", 1, self._labels)
            self._resume()
            self._update_lag()
            return True
        finally:
            self._pending = None

    def _send_dlq(self, rejected: list[Rejected]) -> None:
        if not rejected:
            return
        if self._dlq is None:
            raise FatalConsumerError(f"{len(rejected)} rejected records and no DLQ: {rejected[0].error}")
        self._dlq.send(rejected)
        for rej in rejected:
            self.telemetry.inc("records_dlq", 1, {"group": self.group_id, "reason": rej.reason})
            log.warning(
                "record sent to the DLQ",
                extra={"group": self.group_id, "topic": rej.topic, "partition": rej.partition,
                       "offset": rej.offset, "reason": rej.reason, "error": rej.error[:300]},
            )

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
            msgs = self._consumer.consume(num_messages=1000, timeout=min(left, self.poll_timeout))
            if msgs:
                # Fetched before the pause took effect: they follow the pending batch.
                self._carry.extend(m for m in msgs if m.error() is None)

    def _commit(self, offsets: dict[TopicPartitionId, int]) -> None:
        from confluent_kafka import KafkaException, TopicPartition

        merged = {**self._uncommitted, **offsets}
        merged = {tp: o for tp, o in merged.items() if tp in self.assignment}
        if not merged:
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
                return
            except KafkaException as exc:
                self.telemetry.inc("commit_failures", 1, self._labels)
                log.warning("offset commit failed", extra={"group": self.group_id, "attempt": attempt + 1,
                                                           "error": str(exc)})
                err = exc.args[0] if exc.args else None
                if err is not None and hasattr(err, "retriable") and not err.retriable():
                    break
                time.sleep(0.2 * (attempt + 1))
        # Stored but not committed: re-delivery is deduplicated downstream; retry with the next commit.
        self._uncommitted.update(merged)

    # -- pause / resume -------------------------------------------------------------

    def _pause(self) -> None:
        if not self._paused and self.assignment:
            self._consumer.pause(_tps(self.assignment))
        self._paused = True
        self.telemetry.set("paused", 1, {"group": self.group_id, "member": self.name})

    def _resume(self) -> None:
        if self._paused:
            if self.assignment:
                self._consumer.resume(_tps(self.assignment))
            self._paused = False
            self.telemetry.set("paused", 0, {"group": self.group_id, "member": self.name})
            log.info("partitions resumed", extra={"group": self.group_id, "member": self.name})

    # -- rebalance callbacks (run inside consume()) -------------------------------------

    def _on_assign(self, consumer: Any, partitions: list[Any]) -> None:
        tps = [(p.topic, p.partition) for p in partitions]
        self.assignment.update(tps)
        if self._journal is not None and tps:
            try:
                pending = self._journal.pending(self.group_id, tps)
            except Exception as exc:
                # Without the journal a re-delivered batch may be cut differently:
                # ReplacingMergeTree still deduplicates it, only not before merges.
                log.error("batch journal unreadable; first batches cut freely",
                          extra={"group": self.group_id, "error": str(exc)})
                pending = {}
            for tp, (first, last) in pending.items():
                self._cuts[tp] = [first - 1, last]
        self.handler.on_assigned(tps)
        if self._paused:
            self._pause_new = True  # paused in _wait_polling once the client has assigned them
        log.info("partitions assigned", extra={"group": self.group_id, "member": self.name,
                                               "partitions": tps})

    def _on_revoke(self, consumer: Any, partitions: list[Any]) -> None:
        self._release(partitions, lost=False)

    def _on_lost(self, consumer: Any, partitions: list[Any]) -> None:
        self._release(partitions, lost=True)

    def _release(self, partitions: list[Any], *, lost: bool) -> None:
        tps = {(p.topic, p.partition) for p in partitions}
        if not lost:
            todo = {tp: o for tp, o in self._uncommitted.items() if tp in tps}
            if todo:
                self._commit(todo)
        for tp in tps:
            self._uncommitted.pop(tp, None)
            self._cuts.pop(tp, None)
            self._last_data.pop(tp, None)
            self.telemetry.set("consumer_lag", 0, {"group": self.group_id, "topic": tp[0],
                                                   "partition": str(tp[1])})
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
                 extra={"group": self.group_id, "member": self.name, "partitions": sorted(tps)})

    def _kick_stalled_fetches(self) -> None:
        """Restart the fetch of partitions that have a backlog but deliver nothing.

        Seen on Tansu after cooperative rebalances: a partition stays assigned
        and unpaused, the broker holds records past our position, and the
        fetcher never returns them. A seek to the current position restarts
        that partition's fetch without skipping or repeating anything. On a
        healthy broker the condition never holds for ``stall_after`` seconds.
        """
        now = time.monotonic()
        if now < self._next_stall_check or self._paused or not self.assignment:
            return
        self._next_stall_check = now + 1.0
        from confluent_kafka import TopicPartition

        idle = [tp for tp in self.assignment if now - self._last_data.setdefault(tp, now) > self.stall_after]
        if not idle:
            return
        for pos in self._consumer.position(_tps(set(idle))):
            tp = (pos.topic, pos.partition)
            self._last_data[tp] = now
            if pos.offset < 0:
                continue  # nothing consumed yet: the committed/reset offset is still being resolved
            # The cached watermark cannot tell "caught up" from "stalled" (it is only
            # refreshed by the fetches that stopped), so an idle partition is restarted
            # every ``stall_after`` seconds; a seek to the position is cheap and exact.
            log.debug("restarting the fetch of an idle partition",
                      extra={"group": self.group_id, "member": self.name, "topic": tp[0],
                             "partition": tp[1], "offset": pos.offset})
            self.telemetry.inc("fetch_restarts", 1, self._labels)
            self._consumer.seek(TopicPartition(tp[0], tp[1], pos.offset))

    # -- lag ----------------------------------------------------------------------------

    def _update_lag(self) -> None:
        """Lag = fetch high watermark (cached from fetch responses) minus committed offset.

        The cached watermark needs no broker round trip and is right on both
        Apache Kafka and Tansu (whose ListOffsets answers are not).
        """
        from confluent_kafka import TopicPartition

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
            self.telemetry.set("consumer_lag", max(0, high - committed),
                               {"group": self.group_id, "topic": tp[0], "partition": str(tp[1])})

    # -- shutdown ---------------------------------------------------------------------------

    def _shutdown(self) -> None:
        try:
            if self._consumer is not None:
                if self._uncommitted:
                    self._commit({})
                self._consumer.close()  # leaves the group: revoke callback, then LeaveGroup
        except Exception as exc:
            log.warning("consumer close failed", extra={"group": self.group_id, "error": str(exc)})
        finally:
            self._consumer = None
            if self._dlq is not None:
                self._dlq.close()
            self.handler.close()
            log.info("consumer stopped", extra={"group": self.group_id, "member": self.name})


def _tps(tps: set[TopicPartitionId]) -> list[Any]:
    from confluent_kafka import TopicPartition

    return [TopicPartition(t, p) for t, p in sorted(tps)]


class _Builder:
    """Accumulates one batch. The per-message loop is the consumer's hot path."""

    __slots__ = (
        "_cuts",
        "_decode",
        "_decode_rows",
        "_topic_ids",
        "_validate",
        "closed",
        "consumed",
        "count",
        "errors",
        "parts",
        "rejected",
    )

    def __init__(self, decode: Decoder, validate: Validator | None,
                 cuts: dict[TopicPartitionId, list[int]],
                 topic_ids: Mapping[str, str] | None = None, *,
                 decode_rows: RowDecoder | None = None) -> None:
        self._topic_ids = topic_ids or {}
        self._decode_rows = decode_rows
        self._decode = decode
        self._validate = validate
        self._cuts = cuts
        self.parts: dict[TopicPartitionId, PartitionBatch] = {}
        self.rejected: list[Rejected] = []
        self.closed: set[TopicPartitionId] = set()
        self.count = 0
        self.consumed = 0
        self.errors: list[Any] = []

    def waiting_for_cut(self) -> list[TopicPartitionId]:
        """Partitions whose journaled batch end has not been reached yet."""
        return [tp for tp in self.parts if tp in self._cuts and tp not in self.closed]

    def drop(self, tps: set[TopicPartitionId]) -> None:
        for tp in tps:
            pb = self.parts.pop(tp, None)
            if pb is not None:
                self.count = max(0, self.count - (pb.last_offset - pb.first_offset + 1))
        self.rejected = [r for r in self.rejected if (r.topic, r.partition) not in tps]

    def add(self, msgs: list[Any], carry: list[Any]) -> None:
        parts = self.parts
        decode: Callable[[bytes], Any] = self._decode
        validate = self._validate
        rows = self._decode_rows is not None
        if rows:
            decode = self._decode_rows  # type: ignore[assignment]
            validate = None
        cuts = self._cuts
        closed = self.closed
        rejected = self.rejected
        n = 0
        # The partition batch of the previous message: consume() returns runs of
        # one partition, so most messages skip the tuple and the dict lookup.
        last_topic: Any = None
        last_partition = -1
        pb: PartitionBatch | None = None
        out_append: Any = None
        off_append: Any = None
        for m in msgs:
            err = m.error()
            if err is not None:
                self.errors.append(err)
                continue
            off = m.offset()
            topic = m.topic()
            partition = m.partition()
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
                out_append = pb.rows.append if rows else pb.records.append
                off_append = pb.offsets.append
            assert pb is not None
            pb.last_offset = off
            n += 1
            value = m.value()
            try:
                if value is None:
                    raise DecodeError("record has no value (tombstone)")
                rec = decode(value)
                if validate is not None:
                    validate(rec)
            except DecodeError as exc:
                rejected.append(Rejected(topic, partition, off, m.key(), value, m.headers(),
                                         str(exc), exc.reason))
                continue
            out_append(rec)
            off_append(off)
        self.count += n
        self.consumed += n


def run_workers(
    make_loop: Callable[[int], ConsumeLoop], workers: int, stop: threading.Event,
    *, name: str = "consumer",
) -> int:
    """Run ``workers`` members of one group as threads; return the worst exit code.

    A member that dies sets ``stop`` for all: the process exits non-zero and
    its supervisor restarts it, rather than running on with fewer members.
    """
    codes = [0] * workers
    loops = [make_loop(i) for i in range(workers)]

    def target(i: int) -> None:
        try:
            codes[i] = loops[i].run(stop)
        except Exception:
            log.exception("consumer member crashed", extra={"member": i, "consumer": name})
            codes[i] = 1
            stop.set()

    threads = [threading.Thread(target=target, args=(i,), name=f"{name}-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    return max(codes) if codes else 0


__all__ = [
    "BatchHandler",
    "BatchJournal",
    "ConsumeLoop",
    "run_workers",
]
