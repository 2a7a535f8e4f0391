"""Broker workarounds: code that exists for a broker's bug, not for Kafka's semantics.

:class:`StalledFetchKick` is for Tansu, the embedded development broker
(README, "Local broker: known differences from Apache Kafka"). After
cooperative rebalances, a partition can stay assigned and unpaused while the
broker holds records past the consumer's position, and librdkafka's fetcher
never returns them. A seek to the current position restarts that
partition's fetch without skipping or repeating anything.

The cached watermark cannot tell "caught up" from "stalled" (it is refreshed
only by the fetches that stopped), so every partition idle for
``stall_after`` seconds is restarted; a seek to the position is cheap and
exact, and on Apache Kafka it only costs one fetch request per idle
partition every ``stall_after`` seconds. Delete this module once Tansu is
fixed or no longer the local broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from consumers.runtime.batch import TopicPartitionId

log = logging.getLogger(__name__)


class StalledFetchKick:
    """Restarts the fetch of assigned partitions that delivered nothing for ``stall_after`` seconds.

    The loop calls :meth:`delivered` for the partitions of every batch,
    :meth:`forget` when partitions leave, and :meth:`check` once per
    iteration while not paused (a paused partition delivers nothing on purpose).
    """

    def __init__(self, stall_after: float, *, on_kick: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after = stall_after
        self._on_kick = on_kick
        self._clock = clock
        self._last_data: dict[TopicPartitionId, float] = {}
        self._next_check = 0.0

    def delivered(self, tps: Iterable[TopicPartitionId]) -> None:
        now = self._clock()
        for tp in tps:
            self._last_data[tp] = now

    def forget(self, tps: Iterable[TopicPartitionId]) -> None:
        for tp in tps:
            self._last_data.pop(tp, None)

    def check(self, consumer: Any, assignment: set[TopicPartitionId]) -> None:
        now = self._clock()
        if now < self._next_check or not assignment:
            return
        self._next_check = now + 1.0
        idle = [tp for tp in assignment if now - self._last_data.setdefault(tp, now) > self.stall_after]
        if not idle:
            return
        from confluent_kafka import TopicPartition

        for pos in consumer.position([TopicPartition(t, p) for t, p in sorted(idle)]):
            tp = (pos.topic, pos.partition)
            self._last_data[tp] = now
            if pos.offset < 0:
                continue  # nothing consumed yet: the committed/reset offset is still being resolved
            log.debug("restarting the fetch of an idle partition",
                      extra={"topic": tp[0], "partition": tp[1], "offset": pos.offset})
            if self._on_kick is not None:
                self._on_kick()
            consumer.seek(TopicPartition(tp[0], tp[1], pos.offset))
