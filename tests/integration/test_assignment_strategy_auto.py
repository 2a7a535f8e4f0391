"""The default partition assignment strategy (``auto``) against the real broker: range on
the local Tansu broker, cooperative-sticky on Apache Kafka, decided before subscribing."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest

from consumers.runtime.loop import ConsumeLoop, choose_assignment_strategy, cluster_facts
from consumers.settings import ConsumerSettings
from tests.conftest import TEST_CONSUMER_CONFIG
from tests.integration.test_sink_support import Runner
from tests.waiting import wait_for

pytestmark = pytest.mark.integration


class _Idle:
    def on_assigned(self, partitions: list[tuple[str, int]]) -> None: ...
    def on_revoked(self, partitions: list[tuple[str, int]]) -> None: ...
    def handle(self, batch: object) -> None: ...
    def close(self) -> None: ...


def test_a_consumer_with_default_settings_uses_range_on_tansu(
    broker_kind: str, kafka_bootstrap: str, topic_factory: Callable[..., str],
    group_factory: Callable[..., str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="consumers.runtime.loop")
    facts = cluster_facts({"bootstrap.servers": kafka_bootstrap}, threading.Event())
    assert facts is not None
    expected = {"tansu": "range", "kafka": "cooperative-sticky"}.get(
        broker_kind, choose_assignment_strategy("auto", facts)[0])
    if broker_kind == "tansu":  # what the decision keys on, as Tansu 0.6 answers it
        assert (facts.cluster_id, facts.broker_ids) == ("tansu_cluster", frozenset({111}))

    settings = ConsumerSettings(kafka_bootstrap_servers=kafka_bootstrap, group_id=group_factory())
    assert settings.partition_assignment_strategy == "auto"
    lp = ConsumeLoop(settings.consumer_config(0, **TEST_CONSUMER_CONFIG), [topic_factory(2)],
                     settings.group_id, _Idle(), decoder=lambda v: (v,), dlq_topic=None)  # type: ignore[arg-type]
    assert lp.assignment_strategy is None
    runner = Runner(lp.run)
    try:
        wait_for(lambda: lp.running or runner.error, timeout=30, what="the member subscribed")
        assert runner.error is None
        assert (lp.assignment_strategy, lp._config["partition.assignment.strategy"]) == (expected, expected)
        assert lp.cooperative is (expected == "cooperative-sticky")
    finally:
        assert runner.stop() == 0
    decided = [r for r in caplog.records if r.getMessage() == "partition assignment strategy"]
    assert [(r.strategy, r.reason.startswith("auto:")) for r in decided] == [(expected, True)]  # type: ignore[attr-defined]
