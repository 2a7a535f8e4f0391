"""The ``auto`` partition assignment strategy: range on Tansu, cooperative-sticky elsewhere,
decided from what the cluster says of itself; a configured strategy wins."""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
from typing import Any

import pytest

from consumers.runtime import loop as loop_module
from consumers.runtime.loop import (
    ClusterFacts,
    ConsumeLoop,
    choose_assignment_strategy,
    is_kafka_cluster_id,
    tansu_evidence,
)
from consumers.settings import ConsumerSettings

#: what Tansu 0.6 answers when started without --cluster-id (perpstream.local.TansuBroker)
TANSU = ClusterFacts("tansu_cluster", frozenset({111}))
#: a Tansu started with --cluster-id: its node id is still 111
TANSU_NAMED = ClusterFacts("mycluster", frozenset({111}))
#: Apache Kafka: a random UUID in URL-safe base64 (docker-compose's KRaft node, a 3-broker cluster)
KAFKA = ClusterFacts("MkU3OEVBNTcwNTJENDM2Qg", frozenset({1}))
KAFKA_3 = ClusterFacts("4L6g3nShT-eMCtK--X86sw", frozenset({0, 1, 2}))


def test_auto_is_range_on_tansu_and_cooperative_sticky_elsewhere() -> None:
    for facts in (TANSU, TANSU_NAMED):
        strategy, reason = choose_assignment_strategy("auto", facts)
        assert strategy == "range" and "Tansu" in reason, facts
    for facts in (KAFKA, KAFKA_3,
                  ClusterFacts("redpanda.0d1f6b9a-5a51-4a5e-9c8e-2b7c5d3e4f10", frozenset({0})),
                  ClusterFacts(None, frozenset({0})),  # a broker too old to send a cluster id
                  # node 111 alone is no proof: a Kafka id says it is Apache Kafka
                  ClusterFacts("MkU3OEVBNTcwNTJENDM2Qg", frozenset({111}))):
        strategy, reason = choose_assignment_strategy("auto", facts)
        assert strategy == "cooperative-sticky" and reason.startswith("auto: not a Tansu"), facts
    with pytest.raises(ValueError, match="facts"):
        choose_assignment_strategy("auto", None)


def test_a_configured_strategy_wins_on_any_cluster() -> None:
    for facts in (TANSU, KAFKA, None):
        for strategy in ("cooperative-sticky", "range", "roundrobin"):
            assert choose_assignment_strategy(strategy, facts) == (strategy, "configured")
    with pytest.raises(ValueError, match="unknown"):
        choose_assignment_strategy("sticky", KAFKA)


def test_kafka_cluster_ids_and_tansu_evidence() -> None:
    assert is_kafka_cluster_id("MkU3OEVBNTcwNTJENDM2Qg") and is_kafka_cluster_id("4L6g3nShT-eMCtK--X86sw")
    for not_kafka in ("tansu_cluster", "mycluster", "", None, "MkU3OEVBNTcwNTJENDM2Q!", "x" * 23):
        assert not is_kafka_cluster_id(not_kafka), not_kafka
    assert "Tansu's default" in (tansu_evidence(TANSU) or "")
    assert "node 111" in (tansu_evidence(TANSU_NAMED) or "")
    assert tansu_evidence(KAFKA) is None


def _loop(**settings: Any) -> ConsumeLoop:
    cfg = ConsumerSettings(kafka_bootstrap_servers="127.0.0.1:1", **settings).consumer_config()
    return ConsumeLoop(cfg, ["t"], "g", handler=_Handler(), decoder=lambda v: (v,),  # type: ignore[arg-type]
                       dlq_topic=None)


class _Handler:
    closed = False

    def close(self) -> None:
        self.closed = True


class _Started(Exception):
    """Raised by the stand-in Consumer: the loop got as far as creating it."""


def _start(lp: ConsumeLoop, monkeypatch: pytest.MonkeyPatch, facts: ClusterFacts | None,
           stop: threading.Event | None = None) -> dict[str, Any]:
    """Run ``lp`` up to the creation of its librdkafka consumer, the cluster answering ``facts``;
    the config the consumer would have been created with."""
    import confluent_kafka

    seen: dict[str, Any] = {}

    def consumer(config: dict[str, Any]) -> None:
        seen.update(config)
        raise _Started

    monkeypatch.setattr(loop_module, "cluster_facts", lambda config, stop: facts)
    monkeypatch.setattr(confluent_kafka, "Consumer", consumer)
    with contextlib.suppress(_Started):
        assert lp.run(stop or threading.Event()) == 0
    return seen


def test_the_loop_decides_auto_before_it_creates_its_consumer_and_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="consumers.runtime.loop")
    on_tansu = _loop()
    assert _start(on_tansu, monkeypatch, TANSU)["partition.assignment.strategy"] == "range"
    assert (on_tansu.assignment_strategy, on_tansu.cooperative) == ("range", False)
    decided = [r for r in caplog.records if r.getMessage() == "partition assignment strategy"]
    assert len(decided) == 1 and decided[0].levelno == logging.INFO
    assert decided[0].strategy == "range" and "Tansu" in decided[0].reason  # type: ignore[attr-defined]

    on_kafka = _loop()
    assert _start(on_kafka, monkeypatch, KAFKA)["partition.assignment.strategy"] == "cooperative-sticky"
    assert on_kafka.cooperative is True

    explicit = _loop(partition_assignment_strategy="cooperative-sticky")  # wins on Tansu too
    assert _start(explicit, monkeypatch, TANSU)["partition.assignment.strategy"] == "cooperative-sticky"
    assert explicit.strategy_reason == "configured"


def test_a_loop_stopped_before_the_cluster_answers_joins_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    lp = _loop()
    stop = threading.Event()
    stop.set()
    assert _start(lp, monkeypatch, None, stop) == {}  # no consumer created
    assert lp.assignment_strategy is None and lp.handler.closed  # type: ignore[attr-defined]


def test_cluster_facts_waits_for_the_cluster_and_gives_up_on_stop(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unreachable: asked again (never a guess), and None as soon as the member is stopped."""
    stop = threading.Event()
    calls: list[str] = []

    class Admin:
        def __init__(self, config: dict[str, Any]) -> None:
            pass

        def describe_cluster(self, request_timeout: float) -> Any:
            calls.append("describe")
            raise RuntimeError("timed out")

        def list_topics(self, timeout: float) -> Any:
            calls.append("metadata")
            if calls.count("metadata") == 2:
                stop.set()
            raise RuntimeError("timed out")

    monkeypatch.setattr("confluent_kafka.admin.AdminClient", Admin)
    monkeypatch.setattr(stop, "wait", lambda timeout: stop.is_set())  # no real pause between attempts
    assert loop_module.cluster_facts({"bootstrap.servers": "127.0.0.1:1"}, stop) is None
    assert calls == ["describe", "metadata", "describe", "metadata"]


def test_cluster_facts_falls_back_to_metadata(monkeypatch: pytest.MonkeyPatch) -> None:
    class Metadata:
        cluster_id = "tansu_cluster"
        brokers = {111: object()}

    class Admin:
        def __init__(self, config: dict[str, Any]) -> None:
            pass

        def describe_cluster(self, request_timeout: float) -> Any:
            raise RuntimeError("UNSUPPORTED_VERSION")

        def list_topics(self, timeout: float) -> Any:
            return Metadata()

    monkeypatch.setattr("confluent_kafka.admin.AdminClient", Admin)
    assert loop_module.cluster_facts({"bootstrap.servers": "127.0.0.1:1"}, threading.Event()) == TANSU


@pytest.mark.parametrize("command", ["sink", "snapshots"])
def test_the_assignment_strategy_flag_maps_to_the_setting(
    command: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    from consumers.sink import cli as sink_cli
    from consumers.snapshots import cli as snapshots_cli

    monkeypatch.delenv("PERPSTREAM_PARTITION_ASSIGNMENT_STRATEGY", raising=False)
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    (sink_cli if command == "sink" else snapshots_cli).register(sub)
    build = sink_cli.settings_from_args if command == "sink" else snapshots_cli.settings_from
    assert build(parser.parse_args([command])).partition_assignment_strategy == "auto"
    for strategy in ("auto", "cooperative-sticky", "range", "roundrobin"):
        args = parser.parse_args([command, "--assignment-strategy", strategy])
        assert build(args).partition_assignment_strategy == strategy
    with pytest.raises(SystemExit):
        parser.parse_args([command, "--assignment-strategy", "sticky"])
