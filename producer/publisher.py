"""Kafka publishing: idempotent producer, bounded buffer, loud delivery failures.

Buffering has two bounded stages:

1. librdkafka's own queue (``queue.buffering.max.messages``): messages handed
   to the client and not yet acknowledged. While the broker is down it fills.
2. An overflow deque here (``overflow_max_points``): points that arrived while
   stage 1 was full. Sources that can wait (replay, simulated market) pause
   while it is non-empty (:attr:`Publisher.congested`); the live websocket
   keeps being read (Binance disconnects slow readers, and its frames would be
   lost anyway), so when the overflow is full too the *oldest* waiting point
   is dropped to make room, counted as ``points_dropped{reason="buffer_full"}``
   and logged. The newest data is the most valuable for market context, and
   every drop is visible.

Every librdkafka error is sorted by ``producer.failures.classify_kafka``
(table in docs/producer.md, "Failures by edge"). A failed delivery is never
dropped silently: a retriable failure (broker down past
``delivery.timeout.ms``, unknown partition while a topic is recreated, purge
after a fatal producer error) re-enqueues the message; a message Kafka will
never take (too large, invalid) is logged at ERROR and counted as dropped
with its reason; a fatal idempotence error recreates the client (bounded:
:data:`~producer.failures.KAFKA_MAX_RECREATES` within
:data:`~producer.failures.KAFKA_RECREATE_WINDOW` seconds). A client whose
deliveries time out while nothing at all was delivered for a whole delivery
timeout is replaced too (``producer_recreated{reason="stalled"}``): it may be
waiting on a broker that is down (a fresh client waits the same way, at no
cost), or stuck on a state the broker no longer has; for example a broker that
restarted without its producer state answers UNKNOWN_PRODUCER_ID, and
librdkafka bumps the epoch locally and retries forever. That replacement does
not count towards the fatal limit, since an outage is not a fault of ours.

Order is kept across timeouts and client replacements. Everything in the
client is older than everything in the overflow, so a message the client gives
back goes to the *front* of the overflow, never behind newer points. A
timed-out message is older than the ones still in the client, so re-sending
it behind them would reorder a symbol's points (the snapshot consumer takes a
point more than its allowed lateness behind the symbol's newest as late and
never applies it): a timeout therefore retires the whole client when it still
holds messages (``reason="timeout"``, or ``"stalled"`` as above; at most one
replacement per delivery timeout, since the new client's messages start a new
timeout), and what it gives back is re-sent in event-time order
(``order_key``). The sort is needed because librdkafka's purge returns
in-flight messages, the oldest, after the queued ones. Not covered: a
message failed at once for an unknown partition or topic (a topic deleted or
shrunk under the producer) goes to the front of the overflow but newer points
already in the client may pass it; retiring the client for those would loop
as fast as they fail.
Authentication
and authorisation failures, an invalid topic or config set :attr:`Publisher.failure`,
and the app stops with that cause and exits non-zero (nothing would ever be
delivered). Retries may duplicate an event; the identity dedupes it downstream.

All methods are called from one thread (the producer's event loop thread);
delivery callbacks run inside :meth:`poll`, on that same thread.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer

from perpstream.producer.exceptions import PermanentFailure
from perpstream.producer.failures import (
    KAFKA_MAX_RECREATES,
    KAFKA_RECREATE_WINDOW,
    KafkaFault,
    classify_kafka,
    kafka_reason,
)
from perpstream.runtime.logs import RateLimitedLog
from perpstream.runtime.telemetry import Telemetry, kafka_logging

log = logging.getLogger(__name__)

EDGE = "kafka"


def producer_config(
    bootstrap_servers: str,
    *,
    compression: str = "zstd",
    linger_ms: int = 20,
    batch_size: int = 1_000_000,
    buffer_max_messages: int = 100_000,
    delivery_timeout_ms: int = 120_000,
    extra: dict[str, Any] | None = None,
    security: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The librdkafka settings the producer runs with (idempotent, acks=all); ``security``
    is ``CommonSettings.kafka_security()`` (TLS, SASL)."""
    cfg: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers,
        **(security or {}),
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": compression,
        "linger.ms": linger_ms,
        "batch.size": batch_size,
        "queue.buffering.max.messages": buffer_max_messages,
        "queue.buffering.max.kbytes": 256 * 1024,
        "delivery.timeout.ms": delivery_timeout_ms,
        "reconnect.backoff.ms": 100,
        "reconnect.backoff.max.ms": 5_000,
        "client.id": "perpstream-producer",
    }
    cfg.update(extra or {})
    return cfg


class Publisher:
    """Produces (key, value) pairs to one topic; see the module doc for buffering."""

    def __init__(
        self,
        config: dict[str, Any],
        topic: str,
        telemetry: Telemetry,
        *,
        overflow_max_points: int = 100_000,
        clock: Callable[[], float] = time.monotonic,
        order_key: Callable[[bytes], int] | None = None,
    ) -> None:
        self.topic = topic
        self._config = dict(config)
        self._telemetry = telemetry
        self._overflow: deque[tuple[bytes, bytes]] = deque()
        #: messages the client gave back (failed deliveries to retry), in callback order
        self._returned: list[tuple[bytes, bytes]] = []
        #: the order to re-send them in: a message value -> its event time (stable sort)
        self._order_key = order_key
        self._timed_out = False
        self._overflow_max = overflow_max_points
        self._capacity = int(config.get("queue.buffering.max.messages", 100_000)) + overflow_max_points
        self.enqueued = 0
        self.delivered = 0
        #: points librdkafka refused for good (dropped and counted, never delivered)
        self._rejected = 0
        self._fatal: KafkaError | None = None
        #: Set when Kafka will never accept anything from us (see the module doc).
        self.failure: PermanentFailure | None = None
        self._clock = clock
        self._recreated_at: deque[float] = deque()
        self._last_delivered_at = clock()
        self._stalled = False
        self._delivery_timeout = float(
            config.get("delivery.timeout.ms", config.get("message.timeout.ms", 300_000))) / 1000
        self._rlog = RateLimitedLog(log, 5.0, clock=clock)
        self._producer = self._new_producer()
        telemetry.gauge_fn("buffer_fill", self.fill)
        telemetry.gauge_fn("buffer_messages", lambda: float(self.pending))

    def _new_producer(self) -> Producer:
        cfg = dict(self._config)
        cfg["on_delivery"] = self._on_delivery
        cfg["error_cb"] = self._on_error
        cfg.update(kafka_logging())
        return Producer(cfg)

    # -- hot path -----------------------------------------------------------------

    def publish(self, key: bytes, value: bytes) -> None:
        """Hand one message to Kafka; never blocks. Full buffers go to the overflow."""
        if self._overflow:
            self._hold(key, value)
            return
        try:
            self._producer.produce(self.topic, value, key)
        except (BufferError, KafkaException) as exc:
            self._refused(key, value, exc)
            return
        self.enqueued += 1

    def publish_many(self, batch: list[tuple[bytes, list[bytes]]]) -> None:
        """:meth:`publish` of each value of each ``(key, values)``, in order: the points of
        one websocket frame in one call. While the client takes them this is one plain
        ``produce`` per point; from the first it refuses, every point left goes through
        :meth:`publish`, so buffering, overflow order and counting are those of a call per
        point."""
        if self._overflow:
            for key, values in batch:
                for value in values:
                    self._hold(key, value)
            return
        produce = self._producer.produce
        topic = self.topic
        n = 0
        try:
            for key, values in batch:
                for value in values:
                    produce(topic, value, key)
                    n += 1
        except (BufferError, KafkaException) as exc:
            self.enqueued += n
            rest = itertools.islice(((k, v) for k, vs in batch for v in vs), n, None)
            key, value = next(rest)  # the point just refused
            self._refused(key, value, exc)
            for key, value in rest:
                self.publish(key, value)
            return
        self.enqueued += n

    def _refused(self, key: bytes, value: bytes, exc: BufferError | KafkaException) -> None:
        """The client refused a point: a full queue is served once and tried again, then the
        point waits in the overflow; a Kafka error is sorted (:meth:`_on_produce_error`)."""
        if isinstance(exc, KafkaException):
            self._on_produce_error(exc, key, value)
            return
        self._producer.poll(0)
        if self._timed_out or self._stalled or self._fatal is not None:
            self._hold(key, value)  # the client is retired at the next poll: wait behind it
            return
        try:
            self._producer.produce(self.topic, value, key)
        except BufferError:
            self._hold(key, value)
            return
        except KafkaException as exc2:
            self._on_produce_error(exc2, key, value)
            return
        self.enqueued += 1

    def _on_produce_error(self, exc: KafkaException, key: bytes, value: bytes) -> None:
        """produce() refuses when the client is in a fatal state (keep the point and
        let :meth:`poll` recreate the client), for a message it can never send
        (dropped and counted), or for a programming error (raised)."""
        err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
        if err is None:
            raise exc
        fault = classify_kafka(err)
        if fault is KafkaFault.RECREATE:
            if self._fatal is None:
                self._fatal = err
            self._hold(key, value)
        elif fault is KafkaFault.REJECTED:
            self._reject(err, key)
        elif fault is KafkaFault.FATAL:
            self._fail(err)
            self._hold(key, value)
        else:
            raise exc

    def _hold(self, key: bytes, value: bytes) -> None:
        if len(self._overflow) >= self._overflow_max:
            if not self._overflow:
                self._drop(1, "buffer_full")
                return
            self._overflow.popleft()
            self._drop(1, "buffer_full")
        self._overflow.append((key, value))

    def _drop(self, n: int, reason: str) -> None:
        self._telemetry.inc("points_dropped", n, {"reason": reason})
        self._rlog.error("drop", "points dropped: local buffer full while Kafka is not accepting", {
            "reason": reason, "pending": self.pending,
            "dropped_total": self._telemetry.total("points_dropped")})

    def _reject(self, err: KafkaError, key: bytes | None) -> None:
        self._rejected += 1
        reason = kafka_reason(err)
        self._telemetry.inc("points_dropped", 1, {"reason": reason})
        self._rlog.error(f"reject:{reason}", "Kafka can never take this point; dropped",
                         {"reason": reason, "error": err.str(), "key": key})

    def _fail(self, err: KafkaError, cause: str | None = None) -> None:
        if self.failure is None:
            self.failure = PermanentFailure(EDGE, cause or f"{kafka_reason(err)}: {err.str()}")
            log.error("Kafka refuses this producer for good; stopping", extra={
                "error": err.str(), "reason": kafka_reason(err), "cause": self.failure.cause})

    @property
    def congested(self) -> bool:
        """True while points wait in the overflow: pausable sources should wait."""
        return bool(self._overflow)

    @property
    def pending(self) -> int:
        """Messages not yet acknowledged (librdkafka queue + overflow)."""
        return len(self._producer) + len(self._overflow) + len(self._returned)

    def fill(self) -> float:
        return self.pending / self._capacity if self._capacity else 0.0

    # -- servicing ----------------------------------------------------------------

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery callbacks, recover from fatal errors, drain the overflow."""
        self._serve(timeout)
        if self._fatal is not None:
            self._recreate()
        elif self._stalled:
            log.error("no delivery for a whole delivery timeout while deliveries time out; "
                      "replacing the Kafka producer", extra={"delivery_timeout_s": self._delivery_timeout})
            self._replace("stalled")
        elif self._timed_out:
            self._timed_out = False
            if self.enqueued - self.delivered - self._rejected > 0:
                # newer points are still in the client: they must not overtake what timed out.
                # Counted by the publisher, not len(producer), which also counts the client's
                # own events (a connection error waiting to be served) and replaced it for them.
                log.warning("deliveries timed out; replacing the Kafka producer so that they are "
                            "re-sent before newer points",
                            extra={"delivery_timeout_s": self._delivery_timeout})
                self._replace("timeout")
        if self._returned:
            self._requeue_returned()
        while self._overflow and self._fatal is None:
            key, value = self._overflow[0]
            try:
                self._producer.produce(self.topic, value, key)
            except BufferError:
                break
            except KafkaException as exc:
                err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
                fault = classify_kafka(err) if err is not None else None
                if fault is KafkaFault.REJECTED:
                    self._overflow.popleft()
                    self._reject(exc.args[0], key)
                    continue
                if fault is KafkaFault.RECREATE:
                    self._fatal = err
                elif fault is KafkaFault.FATAL:
                    self._fail(exc.args[0])
                else:
                    raise
                break
            self._overflow.popleft()
            self.enqueued += 1

    def _serve(self, timeout: float, flush: bool = False) -> None:
        """``poll``/``flush`` that turn a raised fatal error into a recreate request."""
        try:
            if flush:
                self._producer.flush(timeout)
            else:
                self._producer.poll(timeout)
        except KafkaException as exc:
            err = exc.args[0] if exc.args and isinstance(exc.args[0], KafkaError) else None
            if err is None or classify_kafka(err) is not KafkaFault.RECREATE:
                raise
            if self._fatal is None:
                log.error("fatal Kafka producer error; the producer will be recreated",
                          extra={"error": err.str()})
                self._fatal = err

    def _on_delivery(self, err: KafkaError | None, msg: Any) -> None:
        if err is None:
            self.delivered += 1
            self._last_delivered_at = self._clock()
            return
        if err.code() == KafkaError._MSG_TIMED_OUT:
            self._timed_out = True
            if self._clock() - self._last_delivered_at >= self._delivery_timeout:
                self._stalled = True
        reason = kafka_reason(err)
        self._telemetry.inc("delivery_failures", 1, {"reason": reason})
        fault = classify_kafka(err)
        if fault is KafkaFault.REJECTED:
            self._reject(err, msg.key())
            return
        if fault is KafkaFault.FATAL:
            self._fail(err)
        # Re-enqueue (also after a fatal error: the point is counted at stop if it is
        # never delivered), ahead of the overflow (:meth:`_requeue_returned`).
        self._telemetry.inc("delivery_retries", 1)
        self._rlog.warning("retry", "delivery failed; point re-enqueued for another attempt",
                           {"reason": reason, "error": err.str(), "pending": self.pending})
        self._returned.append((msg.key(), msg.value()))
        self.enqueued -= 1

    def _requeue_returned(self) -> None:
        """Put what the client gave back in front of the overflow, in event-time order."""
        back, self._returned = self._returned, []
        if self._order_key is not None and len(back) > 1:
            key = self._order_key
            try:
                back.sort(key=lambda kv: key(kv[1]))
            except Exception as exc:  # a value we did not encode: keep the callback order
                log.warning("could not order the re-sent points; re-sending them as returned",
                            extra={"error": repr(exc), "points": len(back)})
        self._overflow.extendleft(reversed(back))

    def _on_error(self, err: KafkaError) -> None:
        fault = classify_kafka(err)
        if fault is KafkaFault.RECREATE:
            log.error("fatal Kafka producer error; the producer will be recreated",
                      extra={"error": err.str()})
            self._fatal = err
        elif fault is KafkaFault.FATAL:
            self._fail(err)
        else:
            reason = kafka_reason(err)
            self._telemetry.inc("kafka_errors", 1, {"reason": reason})
            self._rlog.warning(f"client:{reason}", "Kafka client error", {"error": err.str()})

    def _recreate(self) -> None:
        """An idempotent producer that hit a fatal error (e.g. the broker lost our
        producer id) cannot produce again: purge its queue into the overflow via
        the delivery callbacks and start a fresh one. A cluster that keeps doing
        that is broken: past the limit the failure is permanent."""
        now = self._clock()
        window = self._recreated_at
        while window and now - window[0] > KAFKA_RECREATE_WINDOW:
            window.popleft()
        if len(window) >= KAFKA_MAX_RECREATES and self._fatal is not None:
            err, self._fatal = self._fatal, None
            self._fail(err, f"the idempotent producer failed fatally {len(window) + 1} times within "
                       f"{KAFKA_RECREATE_WINDOW:.0f} s; last: {err.str()}")
            return
        window.append(now)
        self._fatal = None
        self._replace("fatal")

    def _replace(self, reason: str) -> None:
        """Purge the client's queue into the overflow (through the delivery callbacks)
        and start a fresh client."""
        self._telemetry.inc("producer_recreated", 1, {"reason": reason})
        self._last_delivered_at = self._clock()
        old = self._producer
        before = len(self._returned)
        with contextlib.suppress(KafkaException):
            old.purge(in_queue=True, in_flight=True, blocking=False)
        # Purged messages come back through the delivery callback (re-enqueued).
        for _ in range(50):
            with contextlib.suppress(KafkaException):
                old.poll(0.01)
            if not len(old):
                break
        if len(old):
            log.error("failed producer kept messages after purge; they are lost",
                      extra={"lost": len(old)})
            self._telemetry.inc("points_dropped", len(old), {"reason": "fatal_producer"})
        log.warning("Kafka producer recreated", extra={"requeued": len(self._returned) - before})
        self._producer = self._new_producer()
        # what the old client reported while it was purged concerns it only
        self._stalled = self._timed_out = False
        self._fatal = None

    def flush(self, timeout: float) -> int:
        """Drain overflow and queue within ``timeout`` seconds; returns what is left."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.poll(0)
            if not self.pending:
                return 0
            self._serve(min(0.2, max(0.0, deadline - time.monotonic())), flush=True)
        self.poll(0)
        return self.pending

    def close(self, timeout: float) -> int:
        left = self.flush(timeout)
        if left:
            log.error("stopping with undelivered points", extra={"undelivered": left})
            self._telemetry.inc("points_dropped", left, {"reason": "undelivered_at_stop"})
            self._overflow.clear()
            self._producer.purge(in_queue=True, in_flight=True, blocking=False)
            self._returned.clear()
        return left
