"""Dead-letter queue writer: original key, value and headers plus the error.

A DLQ record is the evidence that an offset was skipped on purpose, so the
runtime commits past a rejected record only after the broker acknowledged its
DLQ copy (``acks=all``, idempotent producer, explicit flush and per-record
delivery check).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from consumers.exceptions import DlqError
from consumers.runtime.batch import Rejected
from schemas.topics import (
    DLQ_HEADER_ERROR,
    DLQ_HEADER_GROUP,
    DLQ_HEADER_OFFSET,
    DLQ_HEADER_PARTITION,
    DLQ_HEADER_REASON,
    DLQ_HEADER_TOPIC,
)
from service.telemetry import kafka_logging

log = logging.getLogger(__name__)

#: Longest error text kept in a header (the exception text of corrupt Avro can be long).
MAX_ERROR_LEN = 2_000


def dlq_headers(rej: Rejected, group_id: str) -> list[tuple[str, str | bytes | None]]:
    ours: list[tuple[str, str | bytes | None]] = [
        (DLQ_HEADER_ERROR, rej.error[:MAX_ERROR_LEN].encode("utf-8", "replace")),
        (DLQ_HEADER_REASON, rej.reason.encode()),
        (DLQ_HEADER_GROUP, group_id.encode()),
        (DLQ_HEADER_TOPIC, rej.topic.encode()),
        (DLQ_HEADER_PARTITION, str(rej.partition).encode()),
        (DLQ_HEADER_OFFSET, str(rej.offset).encode()),
    ]
    return list(rej.headers or []) + ours


class DlqWriter:
    def __init__(self, producer_config: Mapping[str, Any], topic: str, group_id: str) -> None:
        from confluent_kafka import Producer

        cfg = {"acks": "all", "enable.idempotence": True, "linger.ms": 5}
        cfg.update(producer_config)
        cfg.update(kafka_logging())
        self._producer = Producer(cfg)
        self.topic = topic
        self.group_id = group_id

    def send(self, rejected: Sequence[Rejected], timeout: float = 30.0) -> None:
        """Produce and wait for every acknowledgement; raise :class:`DlqError` otherwise."""
        if not rejected:
            return
        failed: list[str] = []
        acked = 0

        def on_delivery(err: Any, _msg: Any) -> None:
            nonlocal acked
            if err is not None:
                failed.append(str(err))
            else:
                acked += 1

        for rej in rejected:
            while True:
                try:
                    self._producer.produce(
                        self.topic, value=rej.value, key=rej.key,
                        headers=dlq_headers(rej, self.group_id), on_delivery=on_delivery,
                    )
                    break
                except BufferError:
                    self._producer.poll(0.1)
        remaining = self._producer.flush(timeout)
        if failed or remaining or acked != len(rejected):
            raise DlqError(
                f"DLQ {self.topic!r}: {acked}/{len(rejected)} acknowledged, "
                f"{remaining} still queued, errors: {failed[:3]}"
            )

    def close(self, timeout: float = 10.0) -> None:
        self._producer.flush(timeout)
