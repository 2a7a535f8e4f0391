"""Broker down for a while, then back: nothing is lost, the process survives.

Uses a dedicated Tansu broker (not the session one) so it can be stopped and a
new one started on the same port. Tansu keeps topics in memory, so the new
broker starts empty: the test creates the topic again and checks that every
point is on one broker or the other.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest

from perpstream.local import TansuBroker, ensure_topics, free_port
from perpstream.producer import binance
from perpstream.producer.app import ProducerApp
from perpstream.producer.encoding import MetricPointEncoder
from perpstream.producer.publisher import Publisher, producer_config
from perpstream.producer.settings import ProducerSettings
from perpstream.producer.sources import SimulatedMarket
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.codec import metric_point_codec
from tests.fakes import read_topic
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
START = 1_790_000_000_000



def test_broker_outage_loses_nothing(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    topic = "outage-metrics"
    telemetry = Telemetry()
    first = TansuBroker(port=port, log_path=tmp_path / "tansu1.log").start()
    second: TansuBroker | None = None
    try:
        ensure_topics(first.bootstrap_servers, {topic: 3})
        settings = ProducerSettings(
            kafka_bootstrap_servers=first.bootstrap_servers, metrics_topic=topic, source="sim",
            sim_symbols=5, seed=3, sim_rate=5, sim_start_ms=START, kafka_delivery_timeout_ms=4000,
            flush_timeout=60,
        )
        app = ProducerApp(settings, telemetry)
        stop = threading.Event()
        result: list[int] = []
        th = threading.Thread(target=lambda: result.append(app.run(stop)), daemon=True)
        th.start()
        wait_for(lambda: telemetry.get("points_delivered") >= 300, what="first deliveries")

        # Everything published up to now must be acknowledged before the outage.
        published_before = int(telemetry.get("points_published"))
        wait_for(lambda: telemetry.get("points_delivered") >= published_before, what="acks before outage")
        acked_before = set(_sim_identities(published_before))
        on_first = read_topic(first.bootstrap_servers, topic, timeout=60,
                              until=lambda recs: acked_before <= _ids(recs), quiet=0)
        assert acked_before <= _ids(on_first)
        # Crash-like stop. Tansu keeps topics in memory, so whatever it acked
        # after the read above dies with it: those points are accounted for below.
        first.stop(timeout=0.2)
        published_at_crash = int(telemetry.get("points_published"))
        acked_at_crash = int(telemetry.get("points_delivered"))

        outage_start = telemetry.get("points_published")
        wait_for(lambda: telemetry.get("points_published") > outage_start + 300, what="producing on")
        wait_for(lambda: telemetry.total("delivery_failures") > 0, what="delivery failures counted")
        assert th.is_alive()

        second = TansuBroker(port=port, log_path=tmp_path / "tansu2.log").start()
        ensure_topics(second.bootstrap_servers, {topic: 3})
        resumed = telemetry.get("points_delivered")
        wait_for(lambda: telemetry.get("points_delivered") > resumed + 300, what="deliveries resume")
        stop.set()
        th.join(120)
        assert result == [0], "producer did not drain cleanly"
        published = int(telemetry.get("points_published"))
        assert telemetry.get("points_delivered") >= published
        order = _sim_identities(published)
        expected = set(order)
        wanted = set(order[published_at_crash:]) - _ids(on_first)
        on_second = read_topic(second.bootstrap_servers, topic, timeout=90,
                               until=lambda recs: wanted <= _ids(recs))
    finally:
        first.stop()
        if second is not None:
            second.stop()

    # The seed regenerates every point the producer published: each is on a
    # broker, except at most what the first broker acked after it was read.
    missing = expected - _ids(on_first) - _ids(on_second)
    late = [k for k in order[published_at_crash:] if k in missing]
    assert not late, f"{len(late)} points published after the crash lost, e.g. {late[:3]}"
    lost_with_broker = max(0, acked_at_crash - len(on_first))
    assert len(missing) <= lost_with_broker, (
        f"{len(missing)} points lost, more than the {lost_with_broker} acked by the dead broker")
    assert telemetry.total("delivery_retries") > 0
    assert telemetry.total("points_dropped") == 0


def test_a_broker_restarted_at_once_without_our_producer_state_is_written_to_again(
        tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The broker comes back before anything timed out, knowing nothing of our
    producer id: librdkafka alone would retry forever (UNKNOWN_PRODUCER_ID, epoch
    bumped locally); the publisher replaces the stalled client and delivers on."""
    port = free_port()
    topic = "restart-metrics"
    telemetry = Telemetry()
    first = TansuBroker(port=port, log_path=tmp_path / "tansu1.log").start()
    second: TansuBroker | None = None
    stop = threading.Event()
    try:
        ensure_topics(first.bootstrap_servers, {topic: 3})
        settings = ProducerSettings(
            kafka_bootstrap_servers=first.bootstrap_servers, metrics_topic=topic, source="sim",
            sim_symbols=5, seed=3, sim_rate=5, sim_start_ms=START, kafka_delivery_timeout_ms=4000,
            flush_timeout=60,
        )
        app = ProducerApp(settings, telemetry)
        result: list[int] = []
        th = threading.Thread(target=lambda: result.append(app.run(stop)), daemon=True)
        th.start()
        wait_for(lambda: telemetry.get("points_delivered") >= 300, what="first deliveries")
        first.stop(timeout=0.2)
        second = TansuBroker(port=port, log_path=tmp_path / "tansu2.log").start()
        ensure_topics(second.bootstrap_servers, {topic: 3})
        resumed = telemetry.get("points_delivered")
        wait_for(lambda: telemetry.get("points_delivered") > resumed + 300, 60, "deliveries resume")
        stop.set()
        th.join(120)
        assert result == [0], "producer did not drain cleanly"
        assert telemetry.total("points_dropped") == 0
    finally:
        stop.set()
        first.stop()
        if second is not None:
            second.stop()


def _ids(records: list[tuple[bytes, dict]]) -> set[tuple[str, str, int]]:
    return {(r["symbol"], r["metric"], r["event_time"]) for _, r in records}


def _sim_identities(n: int) -> list[tuple[str, str, int]]:
    market = SimulatedMarket(5, seed=3, start_ms=START)
    out: list[tuple[str, str, int]] = []
    while len(out) < n:
        for kind, text in market.tick():
            ps = (binance.points_from_message(json.loads(text), 0) if kind == "ws"
                  else [binance.open_interest_point(json.loads(text), 0)])
            out.extend((p["symbol"], p["metric"], p["event_time"]) for p in ps)
    return out[:n]


def test_points_a_hung_broker_never_took_are_resent_in_event_time_order(
        tmp_path) -> None:  # type: ignore[no-untyped-def]
    """A broker that hangs (SIGSTOP: requests in flight, never answered) until deliveries
    time out: the publisher retires the client, and each symbol's points reach the topic in
    event-time order once it answers again. Re-sent behind newer points they would be late
    for the snapshot consumer, which never applies a point more than its allowed lateness
    behind the symbol's newest (librdkafka's purge hands in-flight messages, the oldest,
    back last)."""
    topic = "hung-metrics"
    symbols = [f"HUNG{i:02d}USDT" for i in range(12)]
    telemetry = Telemetry()
    encoder = MetricPointEncoder(metric_point_codec())
    broker = TansuBroker(port=free_port(), log_path=tmp_path / "tansu.log").start()
    suspended = False
    try:
        ensure_topics(broker.bootstrap_servers, {topic: 3})
        pub = Publisher(producer_config(broker.bootstrap_servers, linger_ms=5, delivery_timeout_ms=3000),
                        topic, telemetry, order_key=encoder.event_time)
        sent: list[tuple[str, int]] = []

        def tick() -> None:  # one point per symbol, 10 ms of event time after the last
            et = START + 10 * (len(sent) // len(symbols))
            for s in symbols:
                pub.publish(s.encode(), encoder.encode({
                    "source": "binance_usdm", "symbol": s, "metric": "mark_price", "value": 1.0,
                    "event_time": et, "ingest_time": et}))
                sent.append((s, et))
            pub.poll(0.01)

        deadline = time.monotonic() + 60
        while pub.delivered < 20 * len(symbols):
            assert time.monotonic() < deadline, "no deliveries before the broker was suspended"
            tick()
        assert broker.pid is not None
        os.kill(broker.pid, signal.SIGSTOP)
        suspended = True
        deadline = time.monotonic() + 60
        while telemetry.total("producer_recreated") == 0:
            assert time.monotonic() < deadline, "the client of a hung broker was never replaced"
            tick()
        os.kill(broker.pid, signal.SIGCONT)
        suspended = False
        for _ in range(20):
            tick()
        assert pub.flush(60) == 0
        assert telemetry.total("points_dropped") == 0

        want = {(s, et) for s, et in sent}
        records = read_topic(broker.bootstrap_servers, topic, timeout=60,
                             until=lambda recs: want <= {(r["symbol"], r["event_time"]) for _, r in recs})
        seen: set[tuple[str, int]] = set()
        last: dict[str, int] = {}
        behind: list[tuple[str, int, int]] = []
        for _, r in records:  # the topic's order per partition (a symbol lives in one)
            ident = (r["symbol"], r["event_time"])
            if ident in seen:  # a copy of an in-flight request the broker did take: harmless
                continue
            seen.add(ident)
            if r["event_time"] < last.get(r["symbol"], -1):
                behind.append((r["symbol"], r["event_time"], last[r["symbol"]]))
            last[r["symbol"]] = max(r["event_time"], last.get(r["symbol"], -1))
        assert seen == want
        assert behind == [], f"{len(behind)} points after a newer point of their symbol: {behind[:5]}"
    finally:
        if suspended and broker.pid is not None:
            os.kill(broker.pid, signal.SIGCONT)
        broker.stop()
