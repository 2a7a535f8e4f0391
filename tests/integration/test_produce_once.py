"""``perpstream produce --once`` and ``--source rest`` against the fake Binance.

``--once``: exactly one observation per metric per symbol (five from
premiumIndex, three for a delivery contract, plus open interest), the values
the fake answered, then exit 0; a symbol Binance refuses makes it exit 1 with
the reason. ``--source rest`` keeps polling rounds until stopped.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from perpstream.producer import binance
from perpstream.producer.app import ProducerApp
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime.backoff import factory
from perpstream.runtime.telemetry import Telemetry
from tests.fakes import read_topic
from tests.fakes.binance import FakeBinance
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ["1000PEPEUSDT", "BTCUSDT", "币安人生USDT", "BTCUSDT_261225"]


def test_once_publishes_one_observation_per_metric_per_symbol(
    kafka_bootstrap: str, topic_factory: Callable[..., str],
) -> None:
    topic = topic_factory(3)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8")
    with FakeBinance(SYMBOLS) as fake:
        cmd = [sys.executable, "-m", "perpstream.cli", "produce", "--once", "--symbols", ",".join(SYMBOLS),
               "--rest-url", fake.rest_url, "--bootstrap-servers", kafka_bootstrap, "--topic", topic]
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        expected = {}
        for item in fake.sent_premium:
            d = {"e": "markPriceUpdate", "E": item["time"], "s": item["symbol"], "p": item["markPrice"],
                 "i": item["indexPrice"], "P": item["estimatedSettlePrice"], "r": item["lastFundingRate"],
                 "T": item["nextFundingTime"]}
            for p in binance.mark_price_points(d, 0):
                expected[(p["symbol"], p["metric"], p["event_time"])] = p["value"]
        for d in fake.sent_oi.values():
            p = binance.open_interest_point(d, 0)
            expected[(p["symbol"], p["metric"], p["event_time"])] = p["value"]
        bad = subprocess.run([*cmd[:-2], "--topic", topic_factory(1), "--symbols", "BTCUSDT,NOPEUSDT"],
                             env=env, capture_output=True, text=True, timeout=120)
    records = [r for _, r in read_topic(kafka_bootstrap, topic, expect=len(expected))]
    per = Counter((r["symbol"], r["metric"]) for r in records)
    assert set(per.values()) == {1}
    assert len(per) == 3 * 6 + 4  # the delivery contract has no funding metrics
    assert {(r["symbol"], r["metric"], r["event_time"]): r["value"] for r in records} == expected
    assert bad.returncode == 1
    assert "NOPEUSDT" in bad.stderr and "one-shot round incomplete" in bad.stderr


def test_source_rest_polls_rounds_until_stopped(
    kafka_bootstrap: str, topic_factory: Callable[..., str],
) -> None:
    topic = topic_factory(3)
    with FakeBinance(SYMBOLS[:2]) as fake:
        settings = ProducerSettings(kafka_bootstrap_servers=kafka_bootstrap, metrics_topic=topic,
                                    source="rest", symbols=",".join(SYMBOLS[:2]),
                                    binance_rest_url=fake.rest_url, rest_poll_interval=0.3)
        app = ProducerApp(settings, Telemetry(), backoff_factory=factory(0.05, cap=0.5))
        stop = threading.Event()
        rc: list[int] = []
        th = threading.Thread(target=lambda: rc.append(app.run(stop)), daemon=True)
        th.start()
        try:
            wait_for(lambda: sum(1 for e, _, _ in fake.history_requests if e == "premiumIndex") >= 6,
                     timeout=60, what="three rounds")
        finally:
            stop.set()
            th.join(60)
    assert rc == [0]
    records = [r for _, r in read_topic(kafka_bootstrap, topic, idle=2.0)]
    assert len({(r["symbol"], r["event_time"]) for r in records if r["metric"] == "mark_price"}) >= 3
