"""Simulated market and replay files feed the same normalisation path."""

from __future__ import annotations

import asyncio
import io
import itertools
import json
from pathlib import Path
from typing import Any

from perpstream.producer import binance
from perpstream.producer.sources import Recorder, ReplaySource, SimSource, SimulatedMarket
from perpstream.runtime.backoff import backoff


class ListSink:
    congested = False

    def __init__(self) -> None:
        self.ws: list[tuple[str, int]] = []
        self.oi: list[tuple[str, int]] = []

    def on_ws_frame(self, raw: str | bytes, ingest_ms: int) -> Any | None:
        self.ws.append((str(raw), ingest_ms))
        return None

    def on_open_interest(self, raw: str | bytes, ingest_ms: int) -> None:
        self.oi.append((str(raw), ingest_ms))


def test_simulated_market_is_deterministic_and_valid() -> None:
    a = SimulatedMarket(5, seed=7, start_ms=1_790_000_000_000, oi_interval_ms=10_000).frames(25)
    b = SimulatedMarket(5, seed=7, start_ms=1_790_000_000_000, oi_interval_ms=10_000).frames(25)
    c = SimulatedMarket(5, seed=8, start_ms=1_790_000_000_000, oi_interval_ms=10_000).frames(25)
    assert a == b and a != c
    ws = [f for k, f in a if k == "ws"]
    oi = [f for k, f in a if k == "oi"]
    assert len(ws) == 125 and len(oi) == 15  # ticks 0, 10, 20
    points = [p for f in ws for p in binance.points_from_message(json.loads(f), 1)]
    assert len(points) == 125 * 5
    times = sorted({p["event_time"] for p in points if p["symbol"] == "SIM0000USDT"})
    assert times == [1_790_000_000_000 + 1000 * i for i in range(25)]
    for f in oi:
        binance.open_interest_point(json.loads(f), 1)


def test_sim_source_unthrottled_stops_on_event() -> None:
    sink = ListSink()

    async def main() -> None:
        stop = asyncio.Event()
        source = SimSource(SimulatedMarket(3, 1, 1_790_000_000_000), rate=0)
        task = asyncio.create_task(source.run(sink, stop))
        while len(sink.ws) < 3000:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())
    assert len(sink.ws) >= 3000


def test_record_then_replay_gives_the_same_frames(tmp_path: Path) -> None:
    frames = SimulatedMarket(4, seed=2, start_ms=1_790_000_000_000).frames(12)
    buf = io.StringIO()
    rec = Recorder(buf)
    assert rec.on_ws_frame('{"result":null,"id":3}', 5) == {"result": None, "id": 3}  # not recorded
    for n, (kind, text) in enumerate(frames):
        if kind == "ws":
            rec.on_ws_frame(text, 1000 + n)
        else:
            rec.on_open_interest(text, 1000 + n)
    path = tmp_path / "r.jsonl"
    path.write_text(buf.getvalue() + "not json\n")
    sink = ListSink()
    src = ReplaySource(path)
    asyncio.run(src.run(sink, asyncio.Event()))
    assert [f for f, _ in sink.ws] == [t for k, t in frames if k == "ws"]
    assert [f for f, _ in sink.oi] == [t for k, t in frames if k == "oi"]
    assert src.bad_lines == 1


def test_backoff_grows_caps_and_jitters() -> None:
    delays = list(itertools.islice(backoff(1.0, 2.0, 10.0), 12))
    assert 0 <= delays[0] <= 1.0
    assert all(d <= 10.0 for d in delays) and delays[-1] >= 8.0
    assert delays[1] < delays[4]
