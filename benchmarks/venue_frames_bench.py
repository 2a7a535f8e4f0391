"""What a venue frame costs the producer's own code, in this process.

Run: ``python -m benchmarks.venue_frames_bench [--symbols 500] [--swaps 250] [--seconds 4] [--repeat 7]``.

Bybit ``tickers`` deltas (mark and index every message, open interest every third, the
funding rate every tenth, after one snapshot per symbol) and OKX pushes (``index-tickers``
every 100 ms, ``mark-price`` every 200 ms, ``open-interest`` every 3 s), built as each
venue's public docs give them, go through :class:`~perpstream.producer.venue_ingest.VenueIngest`
exactly as the producer runs it: the venue's parser, funding intervals, conflation
(``--conflate-ms 1000``, the pump's tick every 500 frames) and the Avro encoder, publishing
to a target that only counts. No socket, no Kafka: the figure is perpstream's own work per
frame, the part above the websocket library's receive that ``perpstream bench frames``
measures whole (docs/producer.md, "Frame path cost").

The baseline, measured in the same run on the same frames, is the JSON parse alone
(``load_json``): the least any reader of these frames pays. Each figure is the least of
``--repeat`` passes (CPU time of this process), since interference only ever adds.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Sequence
from typing import Any

from perpstream.producer import bybit, okx
from perpstream.producer.binance import load_json
from perpstream.producer.encoding import MetricPointEncoder
from perpstream.producer.venue import FrameParser, Instrument
from perpstream.producer.venue_ingest import VenueIngest
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.codec import metric_point_codec

T0 = 1_781_419_401_000


class CountingTarget:
    """A publish target that keeps nothing."""

    congested = False

    def __init__(self) -> None:
        self.points = 0

    def publish(self, key: bytes, value: bytes) -> None:
        self.points += 1


def _dumps(msg: dict[str, Any]) -> str:
    return json.dumps(msg, separators=(",", ":"))


def bybit_frames(symbols: int, seconds: int) -> list[str]:
    """A snapshot per symbol, then ``seconds`` x 10 deltas per symbol."""
    out = []
    for s in range(symbols):
        sym = f"SYM{s:04d}USDT"
        out.append(_dumps({"topic": f"tickers.{sym}", "type": "snapshot", "cs": 1, "ts": T0, "data": {
            "symbol": sym, "tickDirection": "PlusTick", "price24hPcnt": "0.01", "lastPrice": "100.1",
            "prevPrice24h": "99", "highPrice24h": "101", "lowPrice24h": "98", "prevPrice1h": "100",
            "markPrice": "100.12", "indexPrice": "100.11", "openInterest": "12345.6",
            "openInterestValue": "1234567.8", "turnover24h": "1000000", "volume24h": "10000",
            "nextFundingTime": "1781424000000", "fundingRate": "0.0001", "bid1Price": "100.0",
            "bid1Size": "1", "ask1Price": "100.2", "ask1Size": "2", "fundingIntervalHour": "8",
            "fundingCap": "0.005"}}))
    for k in range(seconds * 10):
        for s in range(symbols):
            sym = f"SYM{s:04d}USDT"
            data = {"symbol": sym, "markPrice": f"{100 + k * 0.01:.2f}",
                    "indexPrice": f"{100 + k * 0.011:.3f}"}
            if k % 3 == 0:
                data["openInterest"] = f"{12345 + k}"
            if k % 10 == 0:
                data["fundingRate"] = f"0.000{k % 9 + 1}"
            out.append(_dumps({"topic": f"tickers.{sym}", "type": "delta", "data": data, "cs": k,
                               "ts": T0 + 100 * k + s % 100}))
    return out


def okx_listing(swaps: int) -> dict[str, Instrument]:
    out = {}
    for i in range(swaps):
        inst, index = f"SYM{i:04d}-USDT-SWAP", f"SYM{i:04d}-USDT"
        out[inst] = Instrument(inst, f"SYM{i:04d}", "USDT", okx.swap_streams(inst, index))
    return out


def okx_frames(swaps: int, seconds: int) -> list[str]:
    """``seconds`` of each swap's index (10/s), mark (5/s) and open interest (1/3 s) pushes."""
    out = []
    for k in range(seconds * 10):
        ts = str(T0 + 100 * k)
        for i in range(swaps):
            index, inst = f"SYM{i:04d}-USDT", f"SYM{i:04d}-USDT-SWAP"
            out.append(_dumps({"arg": {"channel": "index-tickers", "instId": index}, "data": [{
                "instId": index, "idxPx": f"{100 + k * 0.01:.2f}", "high24h": "101", "low24h": "99",
                "open24h": "100", "sodUtc0": "100", "sodUtc8": "100", "ts": ts}]}))
            if k % 2 == 0:
                out.append(_dumps({"arg": {"channel": "mark-price", "instId": inst}, "data": [{
                    "instType": "SWAP", "instId": inst, "markPx": f"{100 + k * 0.012:.3f}", "ts": ts}]}))
            if k % 30 == 0:
                out.append(_dumps({"arg": {"channel": "open-interest", "instId": inst}, "data": [{
                    "instId": inst, "instType": "SWAP", "oi": "1000", "oiCcy": "100", "oiUsd": "10000",
                    "ts": ts}]}))
    return out


def _least(run: Callable[[], None], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.process_time()
        run()
        best = min(best, time.process_time() - t)
    return best


def measure(name: str, source: str, make_parser: Callable[[], FrameParser], frames: Sequence[str],
            repeat: int) -> dict[str, Any]:
    codec = metric_point_codec()
    published = [0]

    def ingest_all() -> None:
        target = CountingTarget()
        vi = VenueIngest(target, MetricPointEncoder(codec), Telemetry(), source=source, parser=make_parser())
        for i, f in enumerate(frames):
            vi.on_ws_frame(f, T0 + i // 1000)
            if i % 500 == 0:
                vi.tick(T0 + i // 100)
        vi.drain()
        published[0] = target.points

    def parse_json() -> None:
        for f in frames:
            load_json(f)

    own = _least(ingest_all, repeat)
    floor = _least(parse_json, repeat)
    n = len(frames)
    return {"venue": name, "frames": n, "points": published[0], "us_per_frame": own / n * 1e6,
            "json_us_per_frame": floor / n * 1e6, "ratio": own / floor if floor else float("nan")}


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"{n} is not at least 1")
    return n


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.venue_frames_bench",
                                description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--symbols", type=_positive, default=500, help="Bybit symbols (default 500, its listing)")
    p.add_argument("--swaps", type=_positive, default=250, help="OKX swaps (default 250, its listing)")
    p.add_argument("--seconds", type=_positive, default=4, help="seconds of pushes per venue (default 4)")
    p.add_argument("--repeat", type=_positive, default=7, help="passes a figure, the least kept (default 7)")
    a = p.parse_args(argv)
    listing = okx_listing(a.swaps)

    def okx_parser() -> FrameParser:
        parser = okx.Parser()
        parser.set_instruments(listing)
        return parser

    rows = [measure("bybit", bybit.SOURCE, bybit.Parser, bybit_frames(a.symbols, a.seconds), a.repeat),
            measure("okx", okx.SOURCE, okx_parser, okx_frames(a.swaps, a.seconds), a.repeat)]
    print(f"{'venue':8} {'frames':>8} {'points':>7} {'µs/frame':>9} {'JSON µs/frame':>14} {'x JSON':>7}")
    for r in rows:
        print(f"{r['venue']:8} {r['frames']:>8,} {r['points']:>7,} {r['us_per_frame']:>9.2f} "
              f"{r['json_us_per_frame']:>14.2f} {r['ratio']:>7.2f}")
    print(f"least of {a.repeat} passes of CPU time each; conflation 1000 ms; publishing counts only")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
