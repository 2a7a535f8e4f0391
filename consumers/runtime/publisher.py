"""Publishing a consumer's output records to a topic, acknowledged before offsets are committed.

A consumer that writes derived records (the snapshot group's MarketSnapshots and
the asset group's AssetSnapshots, docs/snapshots.md) may commit its input offsets
only once the broker holds them: :meth:`RecordPublisher.send` enqueues a batch,
:meth:`RecordPublisher.wait` returns once every record is acknowledged and raises
:class:`~consumers.exceptions.BackpressureError` otherwise, so the consume loop
(docs/sink.md, "The consume runtime") pauses and hands the same batch again.
Sending before the ClickHouse inserts and waiting after them overlaps the two.

The producer is idempotent (docs/kafka.md): a retry after a leader failover
neither duplicates nor reorders a key's records within one producer session. A
record re-sent after the client was replaced is an identical duplicate by
identity (at-least-once; readers keep one per identity).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from confluent_kafka import Producer

from perpstream.consumers.exceptions import BackpressureError
from perpstream.runtime.telemetry import kafka_logging

log = logging.getLogger(__name__)

Record = dict[str, Any]


class RecordPublisher:
    """``encode(record)`` as the value, ``key_of(record)`` as the key, to ``topic``.

    ``buffer_wait``: the longest wait for room in a full producer queue before
    backpressure, so the runtime keeps serving the group while it backs off
    instead of this thread blocking. ``flush_timeout``: the longest wait for
    acknowledgements in :meth:`wait`. ``label`` names the topic in the errors
    (``snapshots topic 'x': ...``), ``client_name`` the client in the log line
    of its replacement (``replacing the snapshot producer``).
    """

    def __init__(self, producer_config: Mapping[str, Any], topic: str,
                 encode: Callable[[Record], bytes], key_of: Callable[[Record], bytes], *,
                 flush_timeout: float = 30.0, buffer_wait: float = 10.0, label: str = "topic",
                 client_name: str = "producer") -> None:
        cfg: dict[str, Any] = {"acks": "all", "enable.idempotence": True, "linger.ms": 20,
                               "compression.type": "lz4"}
        cfg.update(producer_config)
        self._config = cfg
        self.topic = topic
        self._encode = encode
        self._key_of = key_of
        self._flush_timeout = flush_timeout
        self._buffer_wait = buffer_wait
        self._label = label
        self._client_name = client_name
        self._failed = 0
        self._error: str | None = None
        self._fatal: Any = None
        self._producer = self._new_producer()

    def _new_producer(self) -> Any:
        return Producer({**self._config, **kafka_logging(), "error_cb": self._on_error})

    def _on_error(self, err: Any) -> None:
        """A fatal error (the idempotent producer's state lost, its id fenced or expired) leaves
        the client unusable: :meth:`wait` replaces it and the batch is sent again."""
        if err.fatal():
            self._fatal = err

    def _on_delivery(self, err: Any, _msg: Any) -> None:
        if err is not None:
            self._failed += 1
            self._error = str(err)

    def send(self, records: Sequence[Record]) -> None:
        """Enqueue; :meth:`wait` awaits the acknowledgements."""
        self._failed, self._error = 0, None
        produce, topic, cb = self._producer.produce, self.topic, self._on_delivery
        for r in records:
            value, key = self._encode(r), self._key_of(r)
            deadline: float | None = None
            while True:
                try:
                    produce(topic, value, key, on_delivery=cb)
                    break
                except BufferError:
                    now = time.monotonic()
                    deadline = deadline or now + self._buffer_wait
                    if now >= deadline:
                        raise BackpressureError(
                            f"{self._label} {self.topic!r}: producer queue still full after "
                            f"{self._buffer_wait:.0f} s") from None
                    self._producer.poll(0.05)

    def wait(self) -> None:
        """Return once the broker acknowledged everything sent; else backpressure.

        Records still queued after the flush timeout belong to a client that may
        never deliver them (a broker restarted in place forgets the idempotent
        producer's id and librdkafka retries forever), and a fatal error leaves the
        client unusable: both ways the client is replaced and the caller sends the
        whole batch again.
        """
        left = self._producer.flush(self._flush_timeout)
        if self._fatal is not None or left:
            cause = f"failed fatally ({self._fatal})" if self._fatal is not None else f"{left} unacknowledged"
            self._fatal = None
            self._failed = 0
            log.warning(f"replacing the {self._client_name}", extra={"topic": self.topic, "cause": cause})
            self._replace()
            raise BackpressureError(f"{self._label} {self.topic!r}: {cause}; producer replaced, the batch "
                                    f"is sent again")
        if self._failed:
            failed, self._failed = self._failed, 0
            raise BackpressureError(f"{self._label} {self.topic!r}: {failed} failed ({self._error})")

    def _replace(self) -> None:
        """A new client; the old one's messages are dropped (the batch is sent again)."""
        old, self._producer = self._producer, self._new_producer()
        with contextlib.suppress(Exception):
            old.purge()
            old.flush(0)

    def publish(self, records: Sequence[Record]) -> None:
        self.send(records)
        self.wait()

    def close(self) -> None:
        """Flush and release the client (its threads would otherwise outlive the member)."""
        self._producer.flush(5.0)
        close = getattr(self._producer, "close", None)
        if close is not None:
            close()
