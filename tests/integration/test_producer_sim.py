"""Simulated market and replay file -> real broker: every point arrives, intact."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from perpstream.producer import binance
from perpstream.producer.app import SIM_SOURCE, ProducerApp
from perpstream.producer.settings import ProducerSettings
from perpstream.producer.sources import SimulatedMarket
from perpstream.runtime.telemetry import Telemetry
from tests.fakes import read_topic

pytestmark = pytest.mark.integration
START = 1_790_000_000_000


def _identity(r: dict) -> tuple:
    return (r["source"], r["symbol"], r["metric"], r["event_time"])


def test_replay_file_reaches_topic_exactly(
    kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path,
) -> None:
    frames = SimulatedMarket(20, seed=5, start_ms=START).frames(30)
    path = tmp_path / "replay.jsonl"
    expected: list[dict] = []
    with path.open("w") as fh:
        for n, (kind, text) in enumerate(frames):
            t = START + 10 * n
            fh.write(json.dumps({"k": kind, "t": t, "f": text}) + "\n")
            if kind == "ws":
                expected.extend(binance.points_from_message(json.loads(text), t))
            else:
                expected.append(binance.open_interest_point(json.loads(text), t))
        fh.write('{"k":"ws","t":1,"f":"{garbage"}\n')
    topic = topic_factory(3)
    telemetry = Telemetry()
    settings = ProducerSettings(kafka_bootstrap_servers=kafka_bootstrap, metrics_topic=topic,
                                source="replay", replay_file=str(path))
    rc = ProducerApp(settings, telemetry).run(threading.Event())  # returns when the file ends
    assert rc == 0
    got = read_topic(kafka_bootstrap, topic, expect=len(expected))
    assert sorted((r for _, r in got), key=_identity) == sorted(expected, key=_identity)
    assert all(k == r["symbol"].encode() for k, r in got)
    assert telemetry.get("points_delivered") == len(expected)
    assert telemetry.get("frames_rejected", {"reason": "bad_json"}) == 1


def test_sim_source_unthrottled_is_deterministic(
    kafka_bootstrap: str, topic_factory: Callable[..., str],
) -> None:
    topic = topic_factory(6)
    telemetry = Telemetry()
    settings = ProducerSettings(kafka_bootstrap_servers=kafka_bootstrap, metrics_topic=topic,
                                source="sim", sim_symbols=50, seed=11, sim_rate=0, sim_start_ms=START,
                                duration=0.5)
    assert ProducerApp(settings, telemetry).run(threading.Event()) == 0
    delivered = int(telemetry.get("points_delivered"))
    assert delivered > 1000 and delivered == telemetry.get("points_published")
    got = [r for _, r in read_topic(kafka_bootstrap, topic, expect=delivered)]
    assert len(got) == delivered
    # The same seed regenerates exactly these points (ingest time is the local clock).
    market = SimulatedMarket(50, seed=11, start_ms=START)
    expected: dict[tuple, float] = {}
    while len(expected) < delivered:
        for kind, text in market.tick():
            ps = (binance.points_from_message(json.loads(text), 0, SIM_SOURCE) if kind == "ws"
                  else [binance.open_interest_point(json.loads(text), 0, SIM_SOURCE)])
            expected.update((_identity(p), p["value"]) for p in ps)
    # simulated points carry a source of their own: never taken for the venue's
    assert {r["source"] for r in got} == {SIM_SOURCE} != {binance.SOURCE}
    assert all(expected[_identity(r)] == r["value"] for r in got)


def test_stop_event_from_another_thread_drains(
    kafka_bootstrap: str, topic_factory: Callable[..., str],
) -> None:
    topic = topic_factory(1)
    telemetry = Telemetry()
    settings = ProducerSettings(kafka_bootstrap_servers=kafka_bootstrap, metrics_topic=topic,
                                source="sim", sim_symbols=30, sim_rate=20)
    app = ProducerApp(settings, telemetry)
    stop = threading.Event()
    result: list[int] = []
    th = threading.Thread(target=lambda: result.append(app.run(stop)))
    th.start()
    assert app.started.wait(30)
    deadline = time.monotonic() + 60
    while telemetry.get("points_delivered") < 500 and time.monotonic() < deadline:
        th.join(0.1)
    stop.set()
    th.join(60)
    assert result == [0]
    assert telemetry.get("points_delivered") == telemetry.get("points_published")
    got = read_topic(kafka_bootstrap, topic, expect=int(telemetry.get("points_delivered")))
    assert len(got) == telemetry.get("points_delivered")
