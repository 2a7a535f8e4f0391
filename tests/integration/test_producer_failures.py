"""Permanent faults at the producer's edges stop it loudly instead of looping
(docs/producer.md, "Failures by edge"); a symbol Binance refuses is dropped
while everything else goes on."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from perpstream.kafka_runtime import KafkaCluster
from perpstream.local import ensure_topics
from perpstream.producer.app import ProducerApp
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime.telemetry import Telemetry
from tests.fakes.binance import FakeBinance, live_producer
from tests.waiting import wait_for

pytestmark = pytest.mark.integration




def running(fake: FakeBinance, bootstrap: str, topic: str, telemetry: Telemetry,
            **overrides: Any) -> Any:
    return live_producer(fake, bootstrap, topic, telemetry, **{"oi_interval": 0.5, "flush_timeout": 5.0,
                                                                **overrides})


def test_websocket_handshake_404_stops_with_the_cause(
    kafka_bootstrap: str, topic_factory: Callable[..., str],
) -> None:
    telemetry = Telemetry()
    with FakeBinance(["AAAUSDT"], tick=0.1) as fake, \
            running(fake, kafka_bootstrap, topic_factory(1), telemetry, symbols="AAAUSDT",
                    binance_ws_url=fake.ws_url.replace("/market", "/wrong")) as (app, th, result, _):
        th.join(60)
    assert result == [1]
    assert app.failure is not None and app.failure.edge == "binance_websocket"
    assert "http_404" in app.failure.cause
    assert telemetry.get("ws_connect_failures", {"reason": "http_404"}) == 1  # tried once, not forever


def test_refused_symbol_is_dropped_and_the_rest_streams_on(
    kafka_bootstrap: str, topic_factory: Callable[..., str],
) -> None:
    telemetry = Telemetry()
    with FakeBinance(["AAAUSDT", "BBBUSDT"], tick=0.1) as fake, \
            running(fake, kafka_bootstrap, topic_factory(1), telemetry,
                    symbols="AAAUSDT,BBBUSDT,NOPEUSDT") as (app, th, result, _):
        wait_for(lambda: telemetry.get("oi_symbols_dropped") == 1, what="unknown symbol dropped")
        refused = [r for r in fake.rest_requests if r[1] == "NOPEUSDT"]
        n = len(fake.sent_oi)
        wait_for(lambda: len(fake.sent_oi) >= n + 6, what="the other symbols still polled")
        assert [r for r in fake.rest_requests if r[1] == "NOPEUSDT"] == refused == [
            ("openInterest", "NOPEUSDT", 400)]
        before = telemetry.get("points_published")
        wait_for(lambda: telemetry.get("points_published") > before + 20, what="marks still streaming")
        assert th.is_alive() and app.failure is None
    assert result == [0]


def test_rest_endpoint_404_stops_with_the_cause(
    kafka_bootstrap: str, topic_factory: Callable[..., str],
) -> None:
    telemetry = Telemetry()
    with FakeBinance(["AAAUSDT"], tick=0.1) as fake, \
            running(fake, kafka_bootstrap, topic_factory(1), telemetry,
                    symbols="AAAUSDT") as (app, th, result, _):
        wait_for(lambda: len(fake.sent_oi) >= 1, what="first open interest")
        fake.fail_rest(404, 1)
        th.join(60)
    assert result == [1]
    assert app.failure is not None and app.failure.edge == "binance_rest" and "404" in app.failure.cause
    assert telemetry.get("rest_requests", {"endpoint": "openInterest", "status": "404"}) == 1


#: the one user of the SASL broker below: its credentials
SASL_ADMIN = {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
              "sasl.username": "admin", "sasl.password": "admin-secret"}


@pytest.fixture
def sasl_bootstrap(kafka_bootstrap: str, on_tansu: bool, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """(bootstrap, topic) of a broker whose client listener wants SASL/PLAIN: the session's
    Tansu (which refuses every handshake), or an Apache Kafka node of its own whose client
    listener speaks SASL_PLAINTEXT with one user."""
    if on_tansu:
        yield kafka_bootstrap, "t-sasl"
        return
    jaas = ('org.apache.kafka.common.security.plain.PlainLoginModule required username="admin" '
            'password="admin-secret" user_admin="admin-secret";')
    overrides = {"listener.security.protocol.map": "PLAINTEXT:SASL_PLAINTEXT,CONTROLLER:PLAINTEXT",
                 "sasl.enabled.mechanisms": "PLAIN", "sasl.mechanism.inter.broker.protocol": "PLAIN",
                 "listener.name.plaintext.plain.sasl.jaas.config": jaas}
    with KafkaCluster(tmp_path / "kafka", nodes=1, heap_mb=256, overrides=overrides,
                      client_config=SASL_ADMIN) as cluster:
        ensure_topics(cluster.bootstrap_servers, {"t-sasl": 1}, security=SASL_ADMIN)
        yield cluster.bootstrap_servers, "t-sasl"


def test_kafka_authentication_failure_stops_with_the_cause(sasl_bootstrap: tuple[str, str]) -> None:
    """A client that can never authenticate: the producer exits 1 naming the cause
    (librdkafka alone would retry the handshake for as long as the process lives)."""
    kafka_bootstrap, topic = sasl_bootstrap
    telemetry = Telemetry()
    settings = ProducerSettings(kafka_bootstrap_servers=kafka_bootstrap, metrics_topic=topic,
                                source="sim", sim_symbols=2, flush_timeout=5.0)
    app = ProducerApp(settings, telemetry, kafka_extra={
        "security.protocol": "SASL_PLAINTEXT", "sasl.mechanism": "PLAIN",
        "sasl.username": "nobody", "sasl.password": "wrong"})
    result: list[int] = []
    th = threading.Thread(target=lambda: result.append(app.run(threading.Event())), daemon=True)
    th.start()
    th.join(60)
    assert not th.is_alive() and result == [1]
    assert app.failure is not None and app.failure.edge == "kafka"
    assert "authentication" in app.failure.cause
