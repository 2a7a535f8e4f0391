"""The REST gate: pauses (429/418) and the used-weight budget hold requests back."""

from __future__ import annotations

import asyncio
import time

from producer.rest import RestGate
from service.telemetry import Telemetry


def test_budget_and_spacing_follow_the_share() -> None:
    gate = RestGate(Telemetry(), limit=2400, share=0.5)
    assert gate.budget == 1200 and gate.min_spacing == 0.05


def test_pause_holds_requests_until_it_ends() -> None:
    async def main() -> None:
        gate = RestGate(Telemetry(), limit=2400, share=1.0)
        gate.pause(3600, "banned")
        task = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0.3)
        assert not task.done()  # banned: nothing may be sent
        gate.paused_until = 0.0  # the ban ends
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_spent_weight_waits_for_the_next_minute() -> None:
    async def main() -> None:
        gate = RestGate(Telemetry(), limit=100, share=0.5)
        gate.observe({"X-MBX-USED-WEIGHT-1M": "50"})
        task = asyncio.create_task(gate.acquire())
        await asyncio.sleep(0.3)
        if int(time.time() // 60) == gate._used_minute:  # not if the minute just rolled over
            assert not task.done()
        gate.observe({"X-MBX-USED-WEIGHT-1M": "3"})  # a new minute began
        await asyncio.wait_for(task, 10)

    asyncio.run(main())


def test_a_longer_pause_is_not_shortened() -> None:
    gate = RestGate(Telemetry())
    gate.pause(100, "banned")
    until = gate.paused_until
    gate.pause(1, "rate_limited")
    assert gate.paused_until == until and gate.pause_reason == "banned"
