"""Frame sources that need no exchange: the simulated market and replay files,
plus the recorder that writes replay files.

They produce the very frames Binance sends (combined-stream markPrice text,
openInterest response bodies) and hand them to the same :class:`FrameSink`
as the live source, so normalisation is exercised identically.

Replay file format (JSON lines, one frame each, written by ``perpstream
record``)::

    {"k": "ws", "t": <ingest ms>, "f": "<raw websocket message text>"}
    {"k": "oi", "t": <ingest ms>, "f": "<raw openInterest response body>"}
    {"k": "pi", "t": <ingest ms>, "f": "<raw premiumIndex response body>"}

Replayed points keep the recorded ingest time, so replaying a file twice gives
byte-identical events.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import IO, Any

from perpstream.producer import binance
from perpstream.producer.exceptions import PermanentFailure
from perpstream.producer.ingest import FrameSink
from perpstream.runtime.logs import RateLimitedLog

log = logging.getLogger(__name__)
_rlog = RateLimitedLog(log)

#: How many frames a fast source hands over before yielding to the event loop.
_YIELD_EVERY = 256
_FUNDING_PERIOD_MS = 8 * 3600 * 1000
#: How long a pausable source waits for Kafka to take points again before the
#: producer gives up with an error (Kafka has accepted nothing for that long: the
#: overflow only drains when librdkafka's queue has room).
BACKPRESSURE_DEADLINE = 600.0


def now_ms() -> int:
    return time.time_ns() // 1_000_000


async def wait_uncongested(sink: FrameSink, stop: asyncio.Event,
                           deadline: float = BACKPRESSURE_DEADLINE) -> None:
    """Backpressure for sources that can pause: wait while the sink's buffer is full,
    at most ``deadline`` seconds; then :class:`PermanentFailure` (exit non-zero)."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    # librdkafka offers no "queue has room" notification to await, so poll.
    while sink.congested and not stop.is_set():
        waited = loop.time() - started
        if waited > deadline:
            raise PermanentFailure("kafka", f"Kafka has taken no point for {deadline:.0f} s while the "
                                   "source waited (backpressure deadline); is the cluster reachable?")
        if waited > 5.0:
            _rlog.warning("backpressure", "source paused: Kafka is not taking points",
                          {"waited_s": round(waited, 1), "deadline_s": deadline})
        await asyncio.sleep(0.01)


class SimulatedMarket:
    """A seeded synthetic market: the same seed gives the same frames.

    Each symbol's mark price is a geometric random walk; the index tracks it
    with a small basis, the estimated settle price tracks the index, the
    funding rate walks around 1 bp, and open interest walks too. Event times
    advance like the 1 s markPrice stream (one frame per symbol per second,
    a few ms apart), open interest every ``oi_interval_ms``.
    """

    def __init__(self, n_symbols: int, seed: int, start_ms: int, oi_interval_ms: int = 10_000) -> None:
        self.rng = random.Random(seed)
        self.symbols = [f"SIM{i:04d}USDT" for i in range(n_symbols)]
        self._streams = [binance.mark_price_stream(s) for s in self.symbols]
        self.start_ms = start_ms - start_ms % 1000
        self.oi_interval_ms = max(1000, oi_interval_ms)
        r = self.rng
        self._mark = [math.exp(r.uniform(-2, 11)) for _ in self.symbols]
        self._basis = [r.gauss(0, 2e-4) for _ in self.symbols]
        self._funding = [r.gauss(1e-4, 5e-5) for _ in self.symbols]
        self._oi = [r.uniform(1e3, 1e7) for _ in self.symbols]
        self.tick_index = 0

    def tick(self) -> Iterator[tuple[str, str]]:
        """Frames of the next simulated second: ``("ws", text)`` / ``("oi", text)``."""
        r = self.rng
        t0 = self.start_ms + self.tick_index * 1000
        next_funding = (t0 // _FUNDING_PERIOD_MS + 1) * _FUNDING_PERIOD_MS
        gauss = r.gauss
        for n, sym in enumerate(self.symbols):
            m = self._mark[n] = self._mark[n] * math.exp(gauss(0, 5e-4))
            b = self._basis[n] = 0.98 * self._basis[n] + gauss(0, 2e-5)
            f = self._funding[n] = 0.999 * self._funding[n] + 1e-7 + gauss(0, 2e-6)
            idx = m / (1 + b)
            settle = idx * (1 + gauss(0, 5e-5))
            e = t0 + n % 97
            yield "ws", (
                f'{{"stream":"{self._streams[n]}","data":{{"e":"markPriceUpdate","E":{e},'
                f'"s":"{sym}","p":"{m:.8f}","ap":"{m:.8f}","P":"{settle:.8f}","i":"{idx:.8f}",'
                f'"r":"{f:.8f}","T":{next_funding}}}}}'
            )
        if (t0 - self.start_ms) % self.oi_interval_ms == 0:
            for n, sym in enumerate(self.symbols):
                oi = self._oi[n] = max(0.0, self._oi[n] * (1 + gauss(0, 1e-3)))
                yield "oi", f'{{"symbol":"{sym}","openInterest":"{oi:.3f}","time":{t0 + 500 + n % 97}}}'
        self.tick_index += 1

    def state(self, n: int) -> tuple[float, float, float, float]:
        """Symbol ``n``'s mark price, basis, funding rate and open interest after the last
        tick: the simulated venues (``producer.sim_venues``) walk around the same market."""
        return self._mark[n], self._basis[n], self._funding[n], self._oi[n]

    def frames(self, seconds: int) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        for _ in range(seconds):
            out.extend(self.tick())
        return out


class SimSource:
    """Runs a :class:`SimulatedMarket` at ``rate`` simulated seconds per wall
    second (1.0 = real-time pace for demos, 0 = as fast as the sink takes it)."""

    def __init__(self, market: SimulatedMarket, rate: float = 1.0,
                 backpressure_deadline: float = BACKPRESSURE_DEADLINE) -> None:
        self.market = market
        self.rate = rate
        self.backpressure_deadline = backpressure_deadline

    async def run(self, sink: FrameSink, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        n = 0
        while not stop.is_set():
            if self.rate > 0:
                due = started + self.market.tick_index / self.rate
                delay = due - loop.time()
                if delay > 0:
                    try:
                        await asyncio.wait_for(stop.wait(), delay)
                        return
                    except TimeoutError:
                        pass
            ingest = now_ms()
            for kind, text in self.market.tick():
                if kind == "ws":
                    sink.on_ws_frame(text, ingest)
                else:
                    sink.on_open_interest(text, ingest)
                n += 1
                if n % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                    if sink.congested:
                        await wait_uncongested(sink, stop, self.backpressure_deadline)
                    ingest = now_ms()
            await asyncio.sleep(0)


class ReplaySource:
    """Replays a recorded file; returns when the file is exhausted."""

    def __init__(self, path: str | Path, rate: float = 0.0,
                 backpressure_deadline: float = BACKPRESSURE_DEADLINE) -> None:
        self.path = Path(path)
        self.rate = rate
        self.backpressure_deadline = backpressure_deadline
        self.bad_lines = 0

    async def run(self, sink: FrameSink, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        first_t: int | None = None
        with self.path.open("r", encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                if stop.is_set():
                    return
                try:
                    entry = json.loads(line)
                    kind, t, frame = entry["k"], int(entry["t"]), entry["f"]
                except (ValueError, KeyError, TypeError):
                    self.bad_lines += 1
                    continue
                if self.rate > 0:
                    first_t = t if first_t is None else first_t
                    delay = started + (t - first_t) / 1000 / self.rate - loop.time()
                    if delay > 0:
                        await asyncio.sleep(delay)
                if kind == "oi":
                    sink.on_open_interest(frame, t)
                elif kind == "pi":
                    sink.on_premium_index(frame, t)
                else:
                    sink.on_ws_frame(frame, t)
                if n % _YIELD_EVERY == 0:
                    await asyncio.sleep(0)
                    if sink.congested:
                        await wait_uncongested(sink, stop, self.backpressure_deadline)


class Recorder:
    """A :class:`FrameSink` that writes raw frames to a replay file (``perpstream record``)."""

    def __init__(self, out: IO[str]) -> None:
        self._out = out
        self.frames = 0

    @property
    def congested(self) -> bool:
        return False

    def on_ws_frame(self, raw: str | bytes, ingest_ms: int) -> Any | None:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
        if '"stream"' not in text[:64]:
            try:
                msg = json.loads(text)
            except ValueError:
                msg = None
            if binance.is_control(msg):
                return msg
        self._write("ws", ingest_ms, text)
        return None

    def on_open_interest(self, raw: str | bytes, ingest_ms: int) -> None:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
        self._write("oi", ingest_ms, text)

    def on_premium_index(self, raw: str | bytes, ingest_ms: int,
                         symbols: frozenset[str] | None = None) -> int:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else raw
        self._write("pi", ingest_ms, text)
        return 0

    def on_funding_intervals(self, hours: Mapping[str, float], ingest_ms: int) -> None:
        """Not recorded: a replay file holds frames, and intervals come from a REST listing."""

    def _write(self, kind: str, t: int, frame: str) -> None:
        self._out.write(json.dumps({"k": kind, "t": t, "f": frame}, separators=(",", ":")) + "\n")
        self.frames += 1
