"""The live source against a fake Binance (real websocket + HTTP servers) and
the real broker: completeness, faults, rotation and listing changes."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from perpstream.producer.app import ProducerApp
from perpstream.runtime.telemetry import Telemetry
from tests.fakes import read_topic
from tests.fakes.binance import FakeBinance, live_producer
from tests.waiting import wait_for

pytestmark = pytest.mark.integration




def symbols(n: int) -> list[str]:
    return [f"C{i:03d}USDT" for i in range(n)]


@contextmanager
def producing(fake: FakeBinance, bootstrap: str, topic: str, telemetry: Telemetry,
              **overrides: Any) -> Iterator[ProducerApp]:
    with live_producer(fake, bootstrap, topic, telemetry, **overrides) as (app, _, result, _):
        yield app
    assert result == [0]


def settle(fake: FakeBinance, telemetry: Telemetry) -> None:
    """Stop the fake's clock and wait until the producer has handled all it was sent."""
    fake.paused = True
    last = -1.0
    stable_since = time.monotonic()
    while time.monotonic() - stable_since < 1.5:
        cur = telemetry.get("points_published")
        if cur != last:
            last, stable_since = cur, time.monotonic()
        time.sleep(0.1)


def assert_complete(fake: FakeBinance, bootstrap: str, topic: str) -> list[dict[str, Any]]:
    """Every point the server sent is on the topic with exactly the value sent."""
    expected = fake.expected_points()
    got = [r for _, r in read_topic(bootstrap, topic, expect=len(expected))]
    seen = {(r["symbol"], r["metric"], r["event_time"]): r["value"] for r in got}
    missing = [k for k in expected if k not in seen]
    assert not missing, f"{len(missing)} of {len(expected)} points missing, e.g. {missing[:5]}"
    assert all(seen[k] == v for k, v in expected.items())
    return got


def test_fifty_symbols_arrive_complete(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(6)
    telemetry = Telemetry()
    with FakeBinance(symbols(50), tick=0.2) as fake, \
            producing(fake, kafka_bootstrap, topic, telemetry, symbols=",".join(symbols(50)),
                      ws_streams_per_connection=20):
        wait_for(lambda: fake.k >= 15 and len(fake.open_streams()) == 50, what="50 streams")
        wait_for(lambda: len({s for s, _ in fake.sent_oi}) == 50, what="open interest of all symbols")
        settle(fake, telemetry)
        # 50 streams sharded 20 + 20 + 10 (waited for: on a loaded machine one may be reconnecting)
        wait_for(lambda: len(fake.conns) == 3 and len(fake.open_streams()) == 50,
                 what="three connections")
        assert sorted(len(c.streams) for c in list(fake.conns)) == [10, 20, 20]
    got = assert_complete(fake, kafka_bootstrap, topic)
    assert {r["metric"] for r in got} == {"mark_price", "index_price", "estimated_settle_price",
                                          "funding_rate", "next_funding_time", "open_interest",
                                          "funding_interval_hours"}
    # fundingInfo: the adjusted symbols with their hours, every other perpetual 8 h, once each
    intervals = sorted((r["symbol"], r["value"]) for r in got if r["metric"] == "funding_interval_hours")
    assert intervals == sorted((s, float(fake.funding_interval_hours(s))) for s in symbols(50))
    assert telemetry.get("points_delivered") == telemetry.get("points_published")
    assert telemetry.total("rest_requests") >= 50
    assert telemetry.get("frames_received", {"kind": "open_interest"}) >= 50


def test_recovers_from_drop_garbage_and_silence(
    kafka_bootstrap: str, topic_factory: Callable[..., str],
) -> None:
    topic = topic_factory(3)
    telemetry = Telemetry()
    syms = symbols(5)
    with FakeBinance(syms, tick=0.1) as fake, \
            producing(fake, kafka_bootstrap, topic, telemetry, symbols=",".join(syms),
                      ws_silence_timeout=1.0):
        wait_for(lambda: telemetry.get("points_published") > 50, what="first points")

        assert fake.drop_connections() == 1
        wait_for(lambda: telemetry.get("reconnects", {"reason": "closed"}) >= 1, what="reconnect after drop")
        wait_for(lambda: fake.connections_total >= 2 and len(fake.open_streams()) == 5, what="resubscribed")

        fake.send_garbage()
        wait_for(lambda: telemetry.total("frames_rejected") >= 4, what="garbage counted")

        n = fake.connections_total
        fake.mute_connections()
        wait_for(lambda: telemetry.get("reconnects", {"reason": "silence"}) >= 1, what="silence watchdog")
        wait_for(lambda: fake.connections_total > n and len(fake.open_streams()) == 5, what="back")
        before = telemetry.get("points_published")
        wait_for(lambda: telemetry.get("points_published") > before + 50, what="data after silence")
        settle(fake, telemetry)
    assert_complete(fake, kafka_bootstrap, topic)
    assert telemetry.get("frames_rejected", {"reason": "bad_json"}) >= 1
    assert telemetry.get("frames_rejected", {"reason": "missing_field"}) >= 1
    assert telemetry.get("frames_rejected", {"reason": "non_finite"}) >= 1
    assert telemetry.get("frames_rejected", {"reason": "not_object"}) >= 1


def test_recovers_from_refused_connections(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(3)
    telemetry = Telemetry()
    syms = symbols(4)
    with FakeBinance(syms, tick=0.1) as fake:
        fake.refuse_connections(1.5)  # the producer starts while the exchange refuses
        with producing(fake, kafka_bootstrap, topic, telemetry, symbols=",".join(syms)):
            wait_for(lambda: telemetry.total("ws_connect_failures") >= 2, what="refused handshakes")
            wait_for(lambda: telemetry.get("points_published") > 40, what="data after refusal")
            fake.refuse_connections(1.5)
            fake.drop_connections()
            wait_for(lambda: fake.refused >= 4 and len(fake.open_streams()) == 4, what="second recovery")
            before = telemetry.get("points_published")
            wait_for(lambda: telemetry.get("points_published") > before + 40, what="data again")
            settle(fake, telemetry)
    assert_complete(fake, kafka_bootstrap, topic)


def test_rest_429_and_418_are_honoured(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(3)
    telemetry = Telemetry()
    syms = symbols(3)
    with FakeBinance(syms, tick=0.1) as fake, \
            producing(fake, kafka_bootstrap, topic, telemetry, symbols=",".join(syms), oi_interval=0.3):
        wait_for(lambda: len(fake.sent_oi) >= 3, what="first open interest")
        fake.fail_rest(429, 1, retry_after=1)
        wait_for(lambda: telemetry.get("rest_requests", {"endpoint": "openInterest", "status": "429"}) == 1,
                 what="429 seen")
        fake.fail_rest(500, 2)
        wait_for(lambda: telemetry.get("rest_requests", {"endpoint": "openInterest", "status": "500"}) == 2,
                 what="500s seen")
        fake.fail_rest(418, 1, retry_after=3)
        wait_for(lambda: telemetry.get("rest_bans") == 1, what="ban seen")
        time.sleep(0.3)  # requests already on the wire when the 418 came back may still land
        banned_at = len(fake.rest_requests)
        time.sleep(1.0)  # within the ban: no REST call at all
        assert len(fake.rest_requests) == banned_at
        n = len(fake.sent_oi)
        wait_for(lambda: len(fake.sent_oi) >= n + 6, what="polling resumes after the ban")
        settle(fake, telemetry)
    assert_complete(fake, kafka_bootstrap, topic)
    assert telemetry.snapshot()["rest_weight_used"][()] >= 1  # from X-MBX-USED-WEIGHT-1M


def test_rotation_loses_nothing(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(3)
    telemetry = Telemetry()
    syms = symbols(6)
    with FakeBinance(syms, tick=0.1) as fake, \
            producing(fake, kafka_bootstrap, topic, telemetry, symbols=",".join(syms), ws_max_lifetime=1.5,
                      # settle() silences the fake for ~2.5 s (open interest settles within a
                      # poll round); that is not the silence this test is about
                      ws_silence_timeout=5.0):
        wait_for(lambda: telemetry.get("ws_rotations") >= 3, what="three rotations")
        settle(fake, telemetry)
    assert_complete(fake, kafka_bootstrap, topic)
    assert fake.connections_total >= 4
    assert telemetry.total("reconnects") == 0  # rotations are not reconnects


def test_listing_changes_are_followed(kafka_bootstrap: str, topic_factory: Callable[..., str]) -> None:
    topic = topic_factory(3)
    telemetry = Telemetry()
    with FakeBinance(["AAAUSDT", "BBBUSDT", "CCCUSDT", "DDDUSDT_261225"], tick=0.1) as fake, \
            producing(fake, kafka_bootstrap, topic, telemetry, all_symbols=True, exchange_info_interval=0.5,
                      stream_mode="per_symbol"):  # --all reads the all-market stream unless told
        wait_for(lambda: fake.open_streams() == {"aaausdt@markPrice@1s", "bbbusdt@markPrice@1s",
                                                 "cccusdt@markPrice@1s"}, what="perpetuals subscribed")
        fake.set_listing(["BBBUSDT", "CCCUSDT", "EEEUSDT"])
        wait_for(lambda: fake.open_streams() == {"bbbusdt@markPrice@1s", "cccusdt@markPrice@1s",
                                                 "eeeusdt@markPrice@1s"}, what="listing change followed")
        wait_for(lambda: any(s == "EEEUSDT" for s, _ in fake.sent_oi), what="new symbol polled")
        settle(fake, telemetry)
    assert fake.unsubscribes == [["aaausdt@markPrice@1s"]]
    got = assert_complete(fake, kafka_bootstrap, topic)
    assert "EEEUSDT" in {r["symbol"] for r in got}
    assert "DDDUSDT_261225" not in {r["symbol"] for r in got}
    assert telemetry.get("symbols_followed") == 3


def test_all_market_stream_keeps_only_wanted_symbols(
    kafka_bootstrap: str, topic_factory: Callable[..., str],
) -> None:
    topic = topic_factory(2)
    telemetry = Telemetry()
    with FakeBinance(["AAAUSDT", "BBBUSDT", "CCCUSDT"], tick=0.1) as fake, \
            producing(fake, kafka_bootstrap, topic, telemetry, symbols="AAAUSDT,BBBUSDT",
                      stream_mode="all_market"):
        wait_for(lambda: fake.open_streams() == {"!markPrice@arr@1s"}, what="array stream subscribed")
        wait_for(lambda: telemetry.get("points_published") > 100, what="points")
        settle(fake, telemetry)
    expected = {k: v for k, v in fake.expected_points().items() if k[0] != "CCCUSDT"}
    records = [r for _, r in read_topic(kafka_bootstrap, topic, expect=len(expected) + 2)]
    got = {(r["symbol"], r["metric"], r["event_time"]): r["value"]
           for r in records if r["metric"] != "funding_interval_hours"}
    assert got == expected
    # the followed symbols' funding intervals, once each (fundingInfo lists BBBUSDT at 4 h)
    assert sorted((r["symbol"], r["value"]) for r in records if r["metric"] == "funding_interval_hours") \
        == [("AAAUSDT", 8.0), ("BBBUSDT", 4.0)]
