"""The fake Binance USD-M (:mod:`perpstream.fakes.binance`, re-exported here so
the tests keep importing it from ``tests.fakes.binance``) and
:func:`live_producer`, the real producer pointed at it on a thread."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from perpstream.fakes.binance import GARBAGE, FakeBinance, contract_entry, is_delivery

if TYPE_CHECKING:
    from perpstream.producer.app import ProducerApp
    from perpstream.runtime.health import Health
    from perpstream.runtime.telemetry import Telemetry

__all__ = ["GARBAGE", "FakeBinance", "contract_entry", "is_delivery", "live_producer"]


@contextmanager
def live_producer(
    fake: FakeBinance, bootstrap: str, topic: str, telemetry: Telemetry, *, health: Health | None = None,
    **overrides: Any,
) -> Iterator[tuple[ProducerApp, threading.Thread, list[int], threading.Event]]:
    """The real producer (live source) pointed at ``fake``, on a thread: yields the
    app, its thread, its exit code once it has one, and its stop event; stops it on exit.
    ``overrides`` are settings; ``health`` is the app's health registry."""
    from perpstream.producer.app import ProducerApp
    from perpstream.producer.settings import ProducerSettings
    from perpstream.runtime.backoff import factory

    opts: dict[str, Any] = {
        "kafka_bootstrap_servers": bootstrap, "metrics_topic": topic, "source": "live",
        "binance_ws_url": fake.ws_url, "binance_rest_url": fake.rest_url,
        "oi_interval": 1.0, "ws_silence_timeout": 2.0, "summary_interval": 5.0,
    }
    opts.update(overrides)
    app = ProducerApp(ProducerSettings(**opts), telemetry, backoff_factory=factory(0.05, cap=0.5),
                      health=health)
    stop = threading.Event()
    result: list[int] = []
    th = threading.Thread(target=lambda: result.append(app.run(stop)), daemon=True)
    th.start()
    try:
        yield app, th, result, stop
    finally:
        stop.set()
        th.join(90)
    assert not th.is_alive(), "producer did not stop"
