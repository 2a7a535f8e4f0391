"""Dead-letter queue writer: original key, value and headers plus the error.

A DLQ record is the evidence that an offset was skipped on purpose, so the
runtime commits past a rejected record only after the broker acknowledged its
DLQ copy (``acks=all``, idempotent producer, per-record delivery check).

The DLQ is never the reason a member stops (docs/sink.md, "Failures by edge"):

- a record the DLQ producer cannot send whole (larger than its
  ``message.max.bytes``, or refused by the broker as too large) goes there
  truncated: the value is cut to fit, and :data:`DLQ_HEADER_ORIGINAL_SIZE` /
  :data:`DLQ_HEADER_TRUNCATED` say how large it was and why it was cut; the
  topic, partition and offset headers say where the whole record still is;
- anything else that keeps a copy from being acknowledged (broker down, a
  full producer queue past its deadline, delivery timeouts) raises
  :class:`~consumers.exceptions.DlqError`, which the loop treats as
  backpressure: pause, retry later, never commit past an unacknowledged copy.
  A retry re-sends only the copies that are neither acknowledged nor still
  in flight;
- a fatal error of the idempotent producer makes the writer replace its
  producer (the copies in flight are sent again: at-least-once).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import KafkaException, Producer

from perpstream.consumers.exceptions import DlqError
from perpstream.consumers.runtime.batch import Rejected
from perpstream.runtime.logs import RateLimitedLog
from perpstream.runtime.telemetry import Telemetry, kafka_logging
from perpstream.schemas.topics import (
    DLQ_HEADER_DROPPED_HEADERS,
    DLQ_HEADER_ERROR,
    DLQ_HEADER_GROUP,
    DLQ_HEADER_OFFSET,
    DLQ_HEADER_ORIGINAL_KEY_SIZE,
    DLQ_HEADER_ORIGINAL_SIZE,
    DLQ_HEADER_PARTITION,
    DLQ_HEADER_REASON,
    DLQ_HEADER_TOPIC,
    DLQ_HEADER_TRUNCATED,
)

log = logging.getLogger(__name__)
_rate_limited = RateLimitedLog(log)


#: Longest error text kept in a header (the exception text of corrupt Avro can be long).
MAX_ERROR_LEN = 2_000
#: librdkafka's default ``message.max.bytes``.
DEFAULT_MAX_MESSAGE_BYTES = 1_000_000
#: Room left for the record framing librdkafka adds when it checks the size (measured below 100 bytes).
_FRAMING = 256
#: A key longer than this is cut when the original headers had to go as well.
_KEY_KEEP = 256

Serve = Callable[[float], None]
Header = tuple[str, str | bytes | None]

#: ``Rejected.dlq_state`` values (``""``: not sent, or sent and failed: send again)
IN_FLIGHT = "in_flight"
ACKED = "acked"


def dlq_headers(rej: Rejected, group_id: str) -> list[Header]:
    ours: list[Header] = [
        (DLQ_HEADER_ERROR, rej.error[:MAX_ERROR_LEN].encode("utf-8", "replace")),
        (DLQ_HEADER_REASON, rej.reason.encode()),
        (DLQ_HEADER_GROUP, group_id.encode()),
        (DLQ_HEADER_TOPIC, rej.topic.encode()),
        (DLQ_HEADER_PARTITION, str(rej.partition).encode()),
        (DLQ_HEADER_OFFSET, str(rej.offset).encode()),
    ]
    return list(rej.headers or []) + ours


def wire_size(key: bytes | None, value: bytes | None, headers: Sequence[Header]) -> int:
    """An upper bound of the size librdkafka checks against ``message.max.bytes``."""
    size = len(key or b"") + len(value or b"") + _FRAMING
    for name, v in headers:
        size += len(name.encode()) + len(v.encode() if isinstance(v, str) else v or b"") + 10
    return size


def fit(rej: Rejected, group_id: str, limit: int, cause: str
        ) -> tuple[bytes | None, bytes | None, list[Header], bool]:
    """Key, value and headers of the DLQ copy, cut to at most ``limit`` bytes; True if cut.

    In order, as far as needed: the value is cut (headers say its original
    size and ``cause``); then the original headers are left out and the key
    cut; then the error text is shortened. The last form is always a few
    hundred bytes, so every record gets a copy.
    """
    headers = dlq_headers(rej, group_id)
    key, value = rej.key, rej.value
    if wire_size(key, value, headers) <= limit:
        return key, value, headers, False
    original = len(value or b"")

    def marked(hdrs: list[Header], kept: int) -> list[Header]:
        return [*hdrs, (DLQ_HEADER_ORIGINAL_SIZE, str(original).encode()),
                (DLQ_HEADER_TRUNCATED, f"{cause}: value cut from {original} to {kept} bytes".encode())]

    room = limit - wire_size(key, b"", marked(headers, original))
    if room >= 0:
        return key, (value or b"")[:room], marked(headers, room), True
    bare = Rejected(rej.topic, rej.partition, rej.offset, None, None, None, rej.error, rej.reason)
    ours = dlq_headers(bare, group_id)
    extra: list[Header] = [
        (DLQ_HEADER_DROPPED_HEADERS, str(len(rej.headers or [])).encode())]
    if key is not None and len(key) > _KEY_KEEP:
        extra.append((DLQ_HEADER_ORIGINAL_KEY_SIZE, str(len(key)).encode()))
        key = key[:_KEY_KEEP]
    for error_len in (MAX_ERROR_LEN, 200):
        hdrs = [(n, v[:error_len] if n == DLQ_HEADER_ERROR and isinstance(v, bytes) else v)
                for n, v in ours] + extra
        room = limit - wire_size(key, b"", marked(hdrs, original))
        if room >= 0:
            return key, (value or b"")[:room], marked(hdrs, room), True
    return key, b"", marked(hdrs, 0), True


class DlqWriter:
    """Sends rejected records to the DLQ topic and waits for their acknowledgements.

    ``producer_config`` is a librdkafka dict (``bootstrap.servers`` at
    least); its ``message.max.bytes`` (librdkafka's default 1,000,000) is the
    size a copy is cut to.
    """

    def __init__(self, producer_config: Mapping[str, Any], topic: str, group_id: str, *,
                 telemetry: Telemetry | None = None, buffer_wait: float = 30.0) -> None:
        cfg: dict[str, Any] = {"acks": "all", "enable.idempotence": True, "linger.ms": 5}
        cfg.update(producer_config)
        self._config = cfg
        self.max_message_bytes = int(cfg.get("message.max.bytes", DEFAULT_MAX_MESSAGE_BYTES))
        self.topic = topic
        self.group_id = group_id
        self.telemetry = telemetry or Telemetry()
        self._labels = {"group": group_id}
        #: longest wait for room in a full producer queue before the batch backs off
        self.buffer_wait = buffer_wait
        self._fatal: Any = None
        # Per record being sent, by identity (the records live in the loop's pending batch):
        #: the size its copy must fit, once the broker refused a larger one
        self._limits: dict[int, int] = {}
        #: refused as too large by the broker: send again at once, cut to ``_limits``
        self._cut_harder: set[int] = set()
        #: the last error of a copy, for the DlqError message
        self._errors: dict[int, str] = {}
        self._producer = self._new_producer()

    def _new_producer(self) -> Any:

        return Producer({**self._config, **kafka_logging(), "error_cb": self._on_error})

    def _on_error(self, err: Any) -> None:
        """librdkafka's client-level errors (broker down, fatal idempotence errors)."""
        if err.fatal():
            self._fatal = err
        _rate_limited.warning(f"dlq-client:{self.topic}", "DLQ producer error",
                              {"topic": self.topic, "error": str(err)})

    def send(self, rejected: Sequence[Rejected], timeout: float = 30.0, serve: Serve | None = None) -> None:
        """Produce every copy not yet acknowledged or in flight, wait up to ``timeout``.

        Returns once every record of ``rejected`` is acknowledged; raises
        :class:`DlqError` otherwise (the caller backs off and calls again with
        the same records). ``serve(seconds)`` is called while waiting, so the
        caller's consumer keeps its group membership.
        """
        if not rejected:
            return
        if self._fatal is not None:
            self._replace_producer(rejected)
        deadline = time.monotonic() + timeout
        live = {id(r) for r in rejected}
        self._limits = {k: v for k, v in self._limits.items() if k in live}
        self._errors = {k: v for k, v in self._errors.items() if k in live}
        self._cut_harder &= live
        first = True
        while True:
            for rej in rejected:
                if not rej.dlq_state and (first or id(rej) in self._cut_harder):
                    self._produce(rej, deadline, serve)
            first = False
            self._producer.poll(0)
            waiting = [r for r in rejected if r.dlq_state != ACKED]
            if not waiting:
                return
            in_flight = sum(r.dlq_state == IN_FLIGHT for r in waiting)
            left = deadline - time.monotonic()
            if left <= 0 or self._fatal is not None or not (in_flight or self._cut_harder):
                # failed copies are sent again by the next call, after the caller's backoff
                errors = sorted({self._errors[id(r)] for r in waiting if id(r) in self._errors})
                raise DlqError(
                    f"DLQ {self.topic!r}: {len(rejected) - len(waiting)}/{len(rejected)} acknowledged, "
                    f"{in_flight} in flight, errors: {errors[:3]}"
                )
            self._producer.flush(min(left, 0.5))
            if serve is not None and any(r.dlq_state != ACKED for r in rejected):
                serve(0.01)  # still waiting: keep the consumer's group membership

    def _produce(self, rej: Rejected, deadline: float, serve: Serve | None) -> None:

        self._cut_harder.discard(id(rej))
        limit = self._limits.get(id(rej), self.max_message_bytes)
        cause = (f"MSG_SIZE_TOO_LARGE: refused by the broker, cut to {limit} bytes" if id(rej) in self._limits
                 else f"MSG_SIZE_TOO_LARGE: larger than the DLQ producer's message.max.bytes "
                      f"({self.max_message_bytes})")
        buffer_deadline = min(deadline, time.monotonic() + self.buffer_wait)
        for _ in range(8):  # each pass cuts the copy smaller; the last form always fits
            key, value, headers, cut = fit(rej, self.group_id, limit, cause)
            try:
                self._produce_waiting(rej, key, value, headers, buffer_deadline, serve)
            except KafkaException as exc:
                err = exc.args[0] if exc.args else None
                if err is not None and err.name() == "MSG_SIZE_TOO_LARGE":
                    # our size estimate was short of librdkafka's: cut harder
                    limit = max(1_000, wire_size(key, value, headers) // 2)
                    continue
                self._failed(rej, f"produce: {exc}")
                return
            rej.dlq_state = IN_FLIGHT
            if cut:
                self.telemetry.inc("dlq_truncated", 1, self._labels)
                log.warning("record sent to the DLQ truncated", extra={
                    "topic": rej.topic, "partition": rej.partition, "offset": rej.offset,
                    "original_size": len(rej.value or b""), "kept": len(value or b""), "cause": cause})
            return
        self._failed(rej, "produce: MSG_SIZE_TOO_LARGE after cutting the copy 8 times")

    def _produce_waiting(self, rej: Rejected, key: bytes | None, value: bytes | None,
                         headers: list[Header], buffer_deadline: float,
                         serve: Serve | None) -> None:
        """One produce; a full queue is waited for until ``buffer_deadline``, serving the consumer."""
        sent = wire_size(key, value, headers)

        def on_delivery(err: Any, _msg: Any) -> None:
            if err is None:
                rej.dlq_state = ACKED
                self._limits.pop(id(rej), None)
                self._errors.pop(id(rej), None)
                return
            rej.dlq_state = ""
            self._errors[id(rej)] = str(err)
            if err.name() == "MSG_SIZE_TOO_LARGE":
                # the broker's limit (the DLQ topic's max.message.bytes) is below ours
                self._limits[id(rej)] = max(1_000, sent // 2)
                self._cut_harder.add(id(rej))
            self.telemetry.inc("dlq_failures", 1, self._labels)

        while True:
            try:
                self._producer.produce(self.topic, value=value, key=key, headers=headers,
                                       on_delivery=on_delivery)
                return
            except BufferError:
                if time.monotonic() >= buffer_deadline:
                    self._failed(rej, f"producer queue full for {self.buffer_wait:.0f} s")
                    raise DlqError(f"DLQ {self.topic!r}: producer queue still full after "
                                   f"{self.buffer_wait:.0f} s") from None
                self._producer.poll(0.05)
                if serve is not None:
                    serve(0.05)

    def _failed(self, rej: Rejected, error: str) -> None:
        rej.dlq_state = ""
        self._errors[id(rej)] = error
        self.telemetry.inc("dlq_failures", 1, self._labels)

    def _replace_producer(self, rejected: Sequence[Rejected]) -> None:
        """A fatal producer error (idempotence state lost): start over with a new producer."""
        _rate_limited.warning(f"dlq-fatal:{self.topic}", "DLQ producer failed fatally; replacing it",
                              {"topic": self.topic, "error": str(self._fatal)})
        old, self._fatal = self._producer, None
        try:
            old.flush(0)
        except Exception as exc:
            log.debug("flush of the failed DLQ producer", extra={"error": str(exc)})
        for r in rejected:
            if r.dlq_state == IN_FLIGHT:
                r.dlq_state = ""  # fate unknown: send again (at-least-once)
        self._producer = self._new_producer()

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
