"""The REST gate on fake time: spacing, the per-minute budget from
X-MBX-USED-WEIGHT-1M, 429 Retry-After and the 418 ban. No real sleeping: the
gate's sleep advances the fake clock."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Coroutine
from typing import Any

import pytest

from perpstream.producer.failures import RestFault
from perpstream.producer.rest import DEFAULT_RETRY_AFTER_418, DEFAULT_RETRY_AFTER_429, RestGate, query_url
from perpstream.runtime.telemetry import Telemetry


class FakeTime:
    """Monotonic and wall clocks that only move when the code under test sleeps."""

    def __init__(self, wall: float = 1_790_000_000.0) -> None:
        self.mono = 1000.0
        self.wall_offset = wall - self.mono
        self.slept: list[float] = []

    def clock(self) -> float:
        return self.mono

    def wall(self) -> float:
        return self.mono + self.wall_offset

    async def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.slept.append(seconds)
        self.mono += seconds
        await asyncio.sleep(0)


def gate(t: FakeTime, limit: int = 2400, share: float = 0.5) -> RestGate:
    return RestGate(Telemetry(), limit, share, clock=t.clock, wall=t.wall, sleep=t.sleep)


def run(coro: Coroutine[Any, Any, Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 10))


def test_budget_and_spacing_follow_the_share() -> None:
    g = gate(FakeTime(), limit=2400, share=0.5)
    assert g.budget == 1200 and g.min_spacing == 0.05


def test_requests_are_spread_evenly() -> None:
    t = FakeTime()
    g = gate(t, limit=240, share=0.5)  # 120 a minute: one every 0.5 s

    async def main() -> list[float]:
        times = []
        for _ in range(5):
            await g.acquire()
            times.append(t.clock())
        return times

    times = run(main())
    assert [b - a for a, b in itertools.pairwise(times)] == pytest.approx([0.5] * 4)


def test_spent_weight_waits_for_the_next_minute() -> None:
    t = FakeTime(wall=60 * 29_833_333 + 10.0)  # 10 s into a minute
    g = gate(t, limit=100, share=0.5)
    start_minute = int(t.wall() // 60)
    g.observe({"X-MBX-USED-WEIGHT-1M": "50"})  # the whole budget of this minute is used
    run(g.acquire())
    assert int(t.wall() // 60) == start_minute + 1  # released only once the minute rolled over
    assert all(s <= 1.0 for s in t.slept)  # in short naps, so a change is noticed
    g.observe({"X-MBX-USED-WEIGHT-1M": "3"})
    before = t.clock()
    run(g.acquire())
    assert t.clock() - before == pytest.approx(g.min_spacing)  # only the spacing


def test_429_pauses_every_call_for_retry_after() -> None:
    t = FakeTime()
    g = gate(t)
    paused = g.on_answer(RestFault.RATE_LIMITED, {"Retry-After": "7", "X-MBX-USED-WEIGHT-1M": "2400"})
    assert paused == 7.0 and g.paused and g.used_weight == 2400
    start = t.clock()
    run(g.acquire())
    assert t.clock() - start >= 7.0
    assert not g.paused
    assert g.on_answer(RestFault.RATE_LIMITED, {}) == DEFAULT_RETRY_AFTER_429


def test_418_stops_every_call_until_the_ban_ends() -> None:
    t = FakeTime()
    g = gate(t)
    assert g.on_answer(RestFault.BANNED, {"Retry-After": "120"}) == 120.0
    assert g.telemetry.get("rest_bans") == 1
    telemetry_paused = g.telemetry.snapshot()["rest_paused"][()]
    assert telemetry_paused == 1.0
    start = t.clock()

    async def main() -> list[float]:
        got: list[float] = []

        async def caller() -> None:
            await g.acquire()
            got.append(t.clock())

        await asyncio.gather(*(caller() for _ in range(3)))
        return got

    released = run(main())
    assert min(released) - start >= 120.0  # nobody got through during the ban
    assert g.on_answer(RestFault.BANNED, {"Retry-After": "x"}) == DEFAULT_RETRY_AFTER_418


def test_a_longer_pause_is_not_shortened() -> None:
    g = gate(FakeTime())
    g.pause(100, "banned")
    until = g.paused_until
    g.pause(1, "rate_limited")
    assert g.paused_until == until and g.pause_reason == "banned"


def test_other_answers_do_not_pause() -> None:
    g = gate(FakeTime())
    for fault in (None, RestFault.RETRY, RestFault.REFUSED, RestFault.PERMANENT):
        assert g.on_answer(fault, {"X-MBX-USED-WEIGHT-1M": "5"}) is None
    assert not g.paused and g.used_weight == 5


def test_query_strings_are_utf8_percent_encoded() -> None:
    url = query_url("https://fapi.binance.com/fapi/v1/openInterest", {"symbol": "币安人生USDT"})
    assert url.raw_query_string == "symbol=%E5%B8%81%E5%AE%89%E4%BA%BA%E7%94%9FUSDT"
    assert str(query_url("http://h/x", {"symbol": "BTCUSDT_261225"})) == "http://h/x?symbol=BTCUSDT_261225"
    assert str(query_url("http://h/x", {})) == "http://h/x"
