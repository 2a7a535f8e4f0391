"""`perpstream record` writes live frames to a file; `--source replay` publishes them."""

from __future__ import annotations

import argparse
import json
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from perpstream.producer import binance, cli
from perpstream.producer.app import ProducerApp
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime.telemetry import Telemetry
from tests.fakes import read_topic
from tests.fakes.binance import FakeBinance

pytestmark = pytest.mark.integration


def test_record_then_replay(kafka_bootstrap: str, topic_factory: Callable[..., str], tmp_path: Path) -> None:
    out = tmp_path / "rec.jsonl"
    with FakeBinance(["AAAUSDT", "BBBUSDT"], tick=0.1) as fake:
        parser = argparse.ArgumentParser()
        cli.register(parser.add_subparsers())
        args = parser.parse_args(["record", "--symbols", "AAAUSDT,BBBUSDT", "--duration", "2",
                                  "--ws-url", fake.ws_url, "--rest-url", fake.rest_url,
                                  "--oi-interval", "0.5", "--out", str(out), "--log-format", "text"])
        assert args.func(args) == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    kinds = {e["k"] for e in lines}
    assert kinds == {"ws", "oi"}
    expected = {}
    for e in lines:
        pts = (binance.points_from_message(json.loads(e["f"]), e["t"]) if e["k"] == "ws"
               else [binance.open_interest_point(json.loads(e["f"]), e["t"])])
        expected.update({(p["symbol"], p["metric"], p["event_time"]): p for p in pts})
    # Every recorded point is one the server sent.
    assert set(expected) <= set(fake.expected_points())

    topic = topic_factory(2)
    settings = ProducerSettings(kafka_bootstrap_servers=kafka_bootstrap, metrics_topic=topic,
                                source="replay", replay_file=str(out))
    assert ProducerApp(settings, Telemetry()).run(threading.Event()) == 0
    got = {(r["symbol"], r["metric"], r["event_time"]): r
           for _, r in read_topic(kafka_bootstrap, topic, expect=len(expected))}
    assert got == expected  # ingest times too: a replay is reproducible
