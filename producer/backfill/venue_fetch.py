"""The fetch loop of a backfill of Bybit, OKX or Hyperliquid: per symbol and chunk, fetch each
kind of history still due, publish it, then checkpoint each kind.

The range is cut into chunks of the venue's span (:attr:`VenueHistory.chunk_ms`).
For each chunk every kind not yet delivered is fetched (paging as the venue
pages), the points are merged in event-time order, published, and once Kafka
has acknowledged them each kind's checkpoint records the chunk:
``<data_dir>/backfill/<topic>/<venue>/<metric>/<symbol>.json``. So a run
resumes per venue, symbol and kind, and a kind the venue keeps for a shorter
time (OKX: three months of funding) starts later without holding the others
back. A symbol the venue refuses fails that symbol and the others go on;
anything permanent stops the run (docs/producer.md, ``perpstream backfill``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from perpstream.producer.backfill.fetch import BackfillResult, Progress, publish_acknowledged
from perpstream.producer.backfill.plan import ORDER, Checkpoint, resolve_range
from perpstream.producer.backfill.requests import Interrupted, VenueRequests
from perpstream.producer.backfill.spec import Ask
from perpstream.producer.backfill.venues import Track, VenuePlan
from perpstream.producer.binance import Record
from perpstream.producer.exceptions import PermanentFailure, RestError
from perpstream.producer.failures import RestFault
from perpstream.producer.settings import ProducerSettings
from perpstream.producer.sources import now_ms
from perpstream.runtime.telemetry import Telemetry

log = logging.getLogger(__package__)  # the command's one logger: perpstream.producer.backfill


@dataclass
class _Due:
    """One kind of one symbol: its checkpoint, the first event time the venue serves, and where
    this run starts (after the checkpoint, unless --no-resume)."""

    track: Track
    checkpoint: Checkpoint
    first: int
    resume: int


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class VenueBackfill:
    """One run of one venue: see the module doc. ``stop`` (asyncio) interrupts it between requests."""

    def __init__(self, plan: VenuePlan, settings: ProducerSettings, telemetry: Telemetry, publisher: Any,
                 encode: Callable[[dict[str, Any]], bytes], requests: VenueRequests, *,
                 progress: Progress | None = None, now: int | None = None) -> None:
        self.plan = plan
        self.s = settings
        self.telemetry = telemetry
        self.publisher = publisher
        self.encode = encode
        self.requests = requests
        self.progress = progress
        self.now = now_ms() if now is None else now
        self.range = resolve_range(settings, self.now)
        self.result = BackfillResult(venue=plan.history.name, notes=list(plan.notes))
        self._root = Path(settings.data_dir) / "backfill"
        self._firsts = {t.kind.metric: self._first(t) for t in plan.tracks}

    def _first(self, track: Track) -> int:
        oldest = track.kind.oldest(self.now, track.period_ms)
        return self.range.since if oldest is None else max(self.range.since, oldest)

    def _clipped(self) -> None:
        """A WARNING (and a note) per kind the venue does not serve back to --since."""
        name, title = self.plan.history.name, self.plan.history.title
        for track in self.plan.tracks:
            first, metric = self._firsts[track.kind.metric], track.kind.metric
            if first > self.range.since:
                text = (f"{title} serves {track.kind.retention_text}: {metric} is fetched from "
                        f"{_iso(first)}, not from --since {_iso(self.range.since)}")
                log.warning(text, extra={"venue": name, "metric": metric, "first_ms": first})
                self.result.notes.append(text)

    def _dues(self, symbol: str) -> list[_Due]:
        dues = []
        for track in self.plan.tracks:
            under = (self.plan.history.name, track.kind.metric)
            cp = Checkpoint(self._root, self.s.metrics_topic, symbol, under)
            first = self._firsts[track.kind.metric]
            dues.append(_Due(track, cp, first, cp.resume_from(first) if self.s.backfill_resume else first))
        return dues

    def _chunks(self) -> list[tuple[int, int]]:
        step, until = self.plan.history.chunk_ms, self.range.until
        return [(a, min(a + step, until)) for a in range(self.range.since, until, step)]

    async def _chunk(self, symbol: str, work: list[tuple[_Due, int]], end: int) -> list[Record]:
        ingest = now_ms()
        points: list[Record] = []
        for due, start in work:
            ask = Ask(self.plan.base, symbol, start, end, ingest, due.track.period)
            points += await due.track.kind.fetch(self.requests, ask)
        points.sort(key=lambda p: (p["event_time"], ORDER.get(p["metric"], 9)))
        return points

    async def _symbol(self, symbol: str, chunks: list[tuple[int, int]],
                      tick: Callable[[int, str], None]) -> None:
        """Every chunk of one symbol. A request refused (or failing past its attempts) fails this
        symbol alone; an endpoint refusing us, or Kafka, raises PermanentFailure."""
        r = self.result
        dues = self._dues(symbol)
        for i, (a, b) in enumerate(chunks):
            served = [d for d in dues if max(a, d.first) < b]
            work = [(d, max(a, d.resume)) for d in served if max(a, d.resume) < b]
            if served and not work:
                r.chunks_skipped += 1
            if work:
                try:
                    points = await self._chunk(symbol, work, b)
                    await publish_acknowledged(self.publisher, self.encode, symbol, points,
                                               self.s.flush_timeout)
                except RestError as exc:
                    self._refused(symbol, exc)
                    tick(len(chunks) - i, symbol)
                    return
                r.points += len(points)
                self.telemetry.inc("points_published", len(points))
                for due, start in work:
                    due.checkpoint.delivered(start, b)
                r.chunks += 1
            tick(1, symbol)

    async def _known(self, symbols: list[str]) -> list[str]:
        """The symbols the venue has history for; the others fail here, named (a venue that
        answers an unknown name with no rows would otherwise deliver nothing, silently)."""
        h = self.plan.history
        if h.known is None or self.plan.symbols is None or not symbols:
            return symbols
        try:
            names = set(await h.known(self.requests, self.plan.base))
        except RestError as exc:
            raise PermanentFailure(f"{h.name}_rest", f"listing failed: {str(exc)[:300]}") from exc
        for symbol in symbols:
            if symbol not in names:
                self.result.failures[symbol] = f"{h.title} lists no such symbol"
                log.error("backfill of this symbol failed; the others go on",
                          extra={"venue": h.name, "symbol": symbol, "error": self.result.failures[symbol]})
        return [s for s in symbols if s in names]

    def _refused(self, symbol: str, exc: RestError) -> None:
        name = self.plan.history.name
        if exc.fault is RestFault.PERMANENT:
            raise PermanentFailure(f"{name}_rest",
                                   f"HTTP {exc.status} ({exc}); check --{name}-rest-url") from exc
        self.result.failures[symbol] = str(exc)[:300]
        log.error("backfill of this symbol failed; the others go on",
                  extra={"venue": name, "symbol": symbol, "error": self.result.failures[symbol]})

    async def run(self, symbols: list[str], stop: asyncio.Event) -> BackfillResult:
        self.requests.stop = stop
        started = time.monotonic()
        r = self.result
        r.symbols = len(symbols)
        self._clipped()
        chunks = self._chunks()
        total, done = len(chunks) * len(symbols), 0

        def tick(n: int, symbol: str) -> None:
            nonlocal done
            done += n
            if self.progress is not None:
                self.progress(done, total, symbol)

        try:
            # only symbols with something due are checked: a delivered range costs no request
            due = [s for s in symbols if any(d.resume < self.range.until for d in self._dues(s))]
            known = set(await self._known(due))
            for symbol in symbols:
                if symbol in due and symbol not in known:
                    tick(len(chunks), symbol)
                    continue
                await self._symbol(symbol, chunks, tick)
        except Interrupted:
            r.interrupted = True
        except PermanentFailure as exc:
            r.failures["*"] = f"{exc.edge}: {exc.cause}"
        q = self.requests
        r.requests, r.weight, r.rejected = q.requests, q.weight, q.rejected
        r.seconds = time.monotonic() - started
        return r
