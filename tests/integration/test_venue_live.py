"""A venue's live source under what the world does to it, on the fake Bybit (the state machine
and the listing loop are the same for every venue; docs/producer.md "Venues"):

- listings that change at run time: a new perpetual is subscribed on the open connection, a
  delisted one unsubscribed, without a reconnect;
- a connection dropped by the venue, and one that stays open but goes silent: replaced,
  everything resubscribed, points flow again;
- the venue's REST limit answered with HTTP 403: calls pause, the stream goes on.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from perpstream.fakes.bybit import FakeBybit
from perpstream.producer.app import ProducerApp
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime.telemetry import Telemetry
from tests.fakes import read_topic
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@contextmanager
def producing(fake: FakeBybit, bootstrap: str, topic: str, **overrides: object) -> Iterator[
        tuple[ProducerApp, Telemetry]]:
    """``perpstream produce --venues bybit`` on a thread of this process, pointed at ``fake``."""
    settings = ProducerSettings(
        venues="bybit", bybit_ws_url=fake.ws_url, bybit_rest_url=fake.rest_url,
        kafka_bootstrap_servers=bootstrap, metrics_topic=topic, exchange_info_interval=0.5,
        backoff_initial=0.2, backoff_cap=1.0, flush_timeout=30, **overrides,
    )
    telemetry = Telemetry()
    app = ProducerApp(settings, telemetry)
    stop = threading.Event()
    result: list[int] = []
    th = threading.Thread(target=lambda: result.append(app.run(stop)), daemon=True)
    th.start()
    try:
        yield app, telemetry
    finally:
        stop.set()
        th.join(60)
    assert result == [0], "the producer did not stop cleanly"


def subscribed(fake: FakeBybit) -> set[str]:
    return {s for c in list(fake.conns) for s in c.topics}


def marks_after(fake: FakeBybit, bootstrap: str, topic: str, symbol: str, ts: int) -> Callable[[], bool]:
    def check() -> bool:
        recs = read_topic(bootstrap, topic, timeout=5, quiet=0)
        return any(r["symbol"] == symbol and r["metric"] == "mark_price" and r["event_time"] > ts
                   for _, r in recs)
    return check


def test_listing_changes_are_followed_on_the_open_connection(
        kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(3)
    with FakeBybit(["BTCUSDT", "ETHUSDT"], rate=5) as fake, producing(fake, kafka_bootstrap, topic):
        wait_for(lambda: subscribed(fake) == {"BTCUSDT", "ETHUSDT"}, what="the listing subscribed")
        connections = fake.connections_total
        fake.listing = sorted([*fake.listing, "1000PEPEUSDT"])
        wait_for(lambda: "1000PEPEUSDT" in subscribed(fake), what="the new perpetual subscribed")
        fake.listing = ["1000PEPEUSDT", "BTCUSDT"]
        wait_for(lambda: subscribed(fake) == {"1000PEPEUSDT", "BTCUSDT"},
                 what="the delisted one unsubscribed")
        assert fake.connections_total == connections  # no reconnect for either change
        wait_for(marks_after(fake, kafka_bootstrap, topic, "1000PEPEUSDT", 0),
                 what="the new symbol's points")


def test_a_dropped_and_a_silent_connection_are_replaced_and_resubscribed(
        kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(3)
    with FakeBybit(["BTCUSDT", "ETHUSDT"], rate=5) as fake, \
            producing(fake, kafka_bootstrap, topic) as (_, telemetry):
        wait_for(lambda: subscribed(fake) == {"BTCUSDT", "ETHUSDT"}, what="subscribed")
        fake.drop_connections()
        wait_for(lambda: telemetry.total("reconnects") >= 1 and subscribed(fake) == {"BTCUSDT", "ETHUSDT"},
                 what="reconnected and resubscribed")
        dropped_at = fake.start_ms + fake.k * fake.tick_ms
        wait_for(marks_after(fake, kafka_bootstrap, topic, "ETHUSDT", dropped_at),
                 what="points after the drop")
        fake.mute_connections()  # open, but nothing comes: the watchdog must notice (10 s on Bybit)
        muted_at = fake.start_ms + fake.k * fake.tick_ms
        wait_for(lambda: telemetry.get("reconnects", {"reason": "silence"}) >= 1, timeout=40,
                 what="the silent socket replaced")
        wait_for(marks_after(fake, kafka_bootstrap, topic, "BTCUSDT", muted_at),
                 what="points after the silence")


def test_the_venues_rest_limit_pauses_calls_and_the_stream_goes_on(
        kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(3)
    # two requests in any 5 s, and a listing read every half second: the fake answers 403
    with FakeBybit(["BTCUSDT"], rate=5, rest_limit=2) as fake, \
            producing(fake, kafka_bootstrap, topic) as (_, telemetry):
        wait_for(lambda: any(status == 403 for _, _, status in fake.rest_requests), what="a 403")
        wait_for(lambda: telemetry.total("rest_pauses") >= 1, what="the pause counted")
        refused = sum(1 for _, _, status in fake.rest_requests if status == 403)
        k = fake.k
        wait_for(lambda: fake.k >= k + 15, what="three more seconds")
        # paused: no request hammers the limit; the websocket keeps streaming meanwhile
        assert sum(1 for _, _, status in fake.rest_requests if status == 403) <= refused + 1
        wait_for(marks_after(fake, kafka_bootstrap, topic, "BTCUSDT", fake.start_ms + k * fake.tick_ms),
                 what="points while REST is paused")
