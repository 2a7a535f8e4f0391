"""The fetch loop of a backfill: per symbol and chunk, fetch the history, publish it, checkpoint it.

For each chunk it fetches the 1 m mark and index klines, the open-interest
history and the settled funding, merges them in event-time order, publishes
them, waits until Kafka has acknowledged all of it, and only then records the
chunk in the symbol's checkpoint. A symbol Binance refuses (400) fails that
symbol and the others go on; anything permanent stops the run
(docs/producer.md, ``perpstream backfill``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perpstream.producer import history
from perpstream.producer.backfill.plan import ORDER, Checkpoint, pair_of, resolve_range
from perpstream.producer.backfill.requests import HistoryRequests, Interrupted
from perpstream.producer.exceptions import PermanentFailure, RestError
from perpstream.producer.failures import RestFault
from perpstream.producer.rest import BinanceRest
from perpstream.producer.settings import ProducerSettings
from perpstream.producer.sources import now_ms
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.models import Metric

log = logging.getLogger(__package__)  # the command's one logger: perpstream.producer.backfill

EXIT_INTERRUPTED = 130

#: ``progress(done_chunks, total_chunks, symbol)``
Progress = Callable[[int, int, str], None]


async def publish_acknowledged(publisher: Any, encode: Callable[[dict[str, Any]], bytes], symbol: str,
                               points: list[dict[str, Any]], flush_timeout: float) -> None:
    """Publish ``points`` (key = the symbol) and return once Kafka has acknowledged all of them:
    only then may a checkpoint say they are delivered."""
    key = symbol.encode("utf-8")
    for p in points:
        publisher.publish(key, encode(p))
    left = await asyncio.to_thread(publisher.flush, flush_timeout)
    if left:
        raise PermanentFailure("kafka", f"{left:,} points not acknowledged by Kafka within "
                               f"{flush_timeout:.0f} s (PERPSTREAM_FLUSH_TIMEOUT)")
    if publisher.failure is not None:
        raise publisher.failure


@dataclass
class BackfillResult:
    #: The venue backfilled (``--venue``).
    venue: str = "binance"
    symbols: int = 0
    chunks: int = 0
    chunks_skipped: int = 0
    points: int = 0
    requests: int = 0
    weight: int = 0
    rejected: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    #: symbol (or "*") -> why it was not delivered
    failures: dict[str, str] = field(default_factory=dict)
    #: What the user should know besides: history the venue does not serve or serves only in part.
    notes: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return EXIT_INTERRUPTED if self.interrupted else 1 if self.failures else 0


class Backfill:
    """One run: see the module doc. ``stop`` (asyncio) interrupts it between requests."""

    def __init__(self, settings: ProducerSettings, telemetry: Telemetry, publisher: Any,
                 encode: Callable[[dict[str, Any]], bytes], rest: BinanceRest, *,
                 progress: Progress | None = None, now: int | None = None) -> None:
        self.s = settings
        self.telemetry = telemetry
        self.publisher = publisher
        self.encode = encode
        self.progress = progress
        self.range = resolve_range(settings, now)
        self.now = now_ms() if now is None else now
        self.result = BackfillResult()
        self.requests = HistoryRequests(
            rest, telemetry, max_frame_bytes=settings.max_frame_bytes,
            backoff_initial=settings.backoff_initial, backoff_cap=settings.backoff_cap,
            share=settings.rest_weight_share)
        self._root = Path(settings.data_dir) / "backfill"

    async def _chunk(self, symbol: str, a: int, b: int) -> list[dict[str, Any]]:
        ingest = now_ms()
        now = self.now
        limit = history.KLINE_LIMIT
        kw = history.kline_weight(limit)
        span = history.KLINE_SPAN_MS
        paged = self.requests.paged
        marks = await paged(
            "/fapi/v1/markPriceKlines", {"symbol": symbol, "interval": "1m"}, a, b, limit, kw,
            "markPriceKlines",
            lambda d: history.kline_close_points(d, symbol, Metric.MARK_PRICE, ingest, now),
            time_shift=span)
        index = await paged(
            "/fapi/v1/indexPriceKlines", {"pair": pair_of(symbol), "interval": "1m"}, a, b, limit, kw,
            "indexPriceKlines",
            lambda d: history.kline_close_points(d, symbol, Metric.INDEX_PRICE, ingest, now),
            time_shift=span)
        points = marks + index
        oi_a = max(a, self.range.oi_since)
        if oi_a < b:
            points += await paged(
                "/futures/data/openInterestHist", {"symbol": symbol, "period": self.s.backfill_oi_period},
                oi_a, b, history.OI_HIST_LIMIT, 1, "openInterestHist",
                lambda d: history.open_interest_hist_points(d, symbol, ingest), pool=self.requests.oi_pool)
        points += await paged(
            "/fapi/v1/fundingRate", {"symbol": symbol}, a, b, history.FUNDING_LIMIT, 1, "fundingRate",
            lambda d: history.funding_rate_points(d, symbol, ingest), pool=self.requests.funding_pool)
        points.sort(key=lambda p: (p["event_time"], ORDER.get(p["metric"], 9)))
        return points

    async def _deliver(self, symbol: str, points: list[dict[str, Any]]) -> None:
        await publish_acknowledged(self.publisher, self.encode, symbol, points, self.s.flush_timeout)
        self.result.points += len(points)
        self.telemetry.inc("points_published", len(points))

    def _plans(self, symbols: list[str]) -> list[tuple[str, Checkpoint, list[tuple[int, int]]]]:
        """Per symbol: its checkpoint and the chunks still to deliver (all of them with --no-resume)."""
        plans = []
        for sym in symbols:
            cp = Checkpoint(self._root, self.s.metrics_topic, sym)
            start = cp.resume_from(self.range.since) if self.s.backfill_resume else self.range.since
            todo = self.range.chunks(start)
            self.result.chunks_skipped += len(self.range.chunks(self.range.since)) - len(todo)
            plans.append((sym, cp, todo))
        return plans

    async def run(self, symbols: list[str], stop: asyncio.Event) -> BackfillResult:
        self.requests.stop = stop
        started = time.monotonic()
        r = self.result
        r.symbols = len(symbols)
        plans = self._plans(symbols)
        total = sum(len(t) for _, _, t in plans)
        done = 0
        if self.range.since < self.range.oi_since:
            log.warning("open-interest history starts later than --since: Binance keeps only about the "
                        "last 30 days of it", extra={"oi_since_ms": self.range.oi_since})
        try:
            for sym, cp, todo in plans:
                for a, b in todo:
                    try:
                        points = await self._chunk(sym, a, b)
                        await self._deliver(sym, points)
                    except RestError as exc:
                        if exc.fault is RestFault.PERMANENT:
                            raise PermanentFailure(
                                "binance_rest", f"HTTP {exc.status} ({exc}); check --rest-url") from exc
                        r.failures[sym] = f"HTTP {exc.status}: {str(exc)[:200]}"
                        log.error("backfill of this symbol failed; the others go on",
                                  extra={"symbol": sym, "error": r.failures[sym]})
                        done += sum(1 for c in todo if c[0] >= a)
                        break
                    cp.delivered(a, b)
                    r.chunks += 1
                    done += 1
                    if self.progress is not None:
                        self.progress(done, total, sym)
        except Interrupted:
            r.interrupted = True
        except PermanentFailure as exc:
            r.failures["*"] = f"{exc.edge}: {exc.cause}"
        q = self.requests
        r.requests, r.weight, r.rejected = q.requests, q.weight, q.rejected
        r.seconds = time.monotonic() - started
        return r
