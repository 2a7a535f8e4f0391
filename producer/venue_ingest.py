"""The normalisation path of a venue read through the venue contract (``producer.venue``).

Frames in, MetricPoints published, as :class:`~producer.ingest.Ingest` does for
Binance's markPrice frames, with two steps of its own (docs/producer.md, "Venues"):

- **conflation** (``--conflate-ms``, default 1000): Bybit pushes a ticker every
  100 ms and OKX a mark every 200 ms; per (source, symbol, metric) the last value of
  each whole second of event time is published, with its own event time
  (:class:`~producer.conflate.Conflator`); 0 publishes every update;
- **funding intervals as data**: a ``funding_interval_hours`` point when a symbol
  is first seen and whenever its interval changes, from the listing or the stream,
  never once per frame (:class:`~producer.conflate.FundingIntervals`).

A frame the venue's parser cannot read is rejected, counted by reason (label
``source``) and logged with a sample at most once a second; it never stops the
stream.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Any

from perpstream.producer.binance import sample
from perpstream.producer.conflate import Conflator, FundingIntervals, interval_record
from perpstream.producer.encoding import MetricPointEncoder
from perpstream.producer.exceptions import FrameRejected
from perpstream.producer.ingest import PublishTarget
from perpstream.producer.venue import FrameParser, Instrument, Record
from perpstream.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)


class VenueIngest:
    """Parse -> conflate -> encode -> publish for one venue. See the module doc."""

    def __init__(self, target: PublishTarget, encoder: MetricPointEncoder, telemetry: Telemetry, *,
                 source: str, parser: FrameParser, conflate_ms: int = 1000) -> None:
        self._target = target
        self._encode = encoder.encode
        self._telemetry = telemetry
        self.source = source
        self.parser = parser
        self.conflator = Conflator(conflate_ms)
        self.intervals = FundingIntervals()
        self.frames = 0
        self.points = 0
        self._synced = (0, 0, 0, 0, 0)
        self._keys: dict[str, bytes] = {}
        #: Latest event time published per symbol (freshness gauge).
        self.last_event: dict[str, int] = {}
        self._last_reject_log = 0.0
        self._suppressed = 0
        telemetry.gauge_fn("last_event_age_seconds", self._ages, part=source)
        telemetry.describe("conflate_updates", "updates a venue sent, before conflation (--conflate-ms)")
        telemetry.describe("conflate_superseded", "updates replaced by a later one of the same second")
        telemetry.describe("conflate_late", "updates older than the second already published for their "
                           "symbol and metric (dropped)")

    @property
    def congested(self) -> bool:
        return self._target.congested

    def on_ws_frame(self, raw: str | bytes, ingest_ms: int) -> Any | None:
        self.frames += 1
        try:
            records = self.parser.parse(raw, ingest_ms)
        except FrameRejected as exc:
            self._reject(exc, raw)
            return None
        if records:
            self._publish(self.conflator.add(self.intervals.observe(records)))
        return None

    def on_listing(self, instruments: Mapping[str, Instrument], removed: set[str], ingest_ms: int) -> None:
        """The venue's listing changed: funding intervals it states are published (when new or
        changed), delisted symbols' state is dropped after their held values are published."""
        if removed:
            self._publish(self.conflator.forget(removed))
            self.intervals.forget(removed)
            for s in removed:
                self._keys.pop(s, None)
                self.last_event.pop(s, None)
        stated = [interval_record(self.source, i.symbol, i.funding_interval_h, ingest_ms, ingest_ms)
                  for i in instruments.values() if i.funding_interval_h is not None]
        if stated:
            self._publish(self.intervals.observe(stated))

    def tick(self, now_ms: int) -> None:
        """Publish the conflated values whose second is over (called by the producer's pump)."""
        due = self.conflator.due(now_ms)
        if due:
            self._publish(due)

    def drain(self) -> None:
        """Publish everything held (at shutdown): conflation never loses the last value."""
        held = self.conflator.drain()
        if held:
            self._publish(held)

    def _publish(self, records: list[Record]) -> None:
        pub, enc, keys, last = self._target.publish, self._encode, self._keys, self.last_event
        for r in records:
            sym = r["symbol"]
            key = keys.get(sym)
            if key is None:
                key = keys[sym] = sym.encode("utf-8")
            if r["event_time"] > last.get(sym, 0):
                last[sym] = r["event_time"]
            pub(key, enc(r))
        self.points += len(records)

    def _reject(self, exc: FrameRejected, raw: str | bytes) -> None:
        self._telemetry.inc("frames_rejected", 1, {"reason": exc.reason, "source": self.source})
        now = time.monotonic()
        if now - self._last_reject_log >= 1.0:
            self._last_reject_log = now
            log.warning("frame rejected", extra={"source": self.source, "reason": exc.reason,
                                                 "detail": exc.detail[:300], "sample": sample(raw),
                                                 "suppressed": self._suppressed})
            self._suppressed = 0
        else:
            self._suppressed += 1

    def _ages(self) -> dict[tuple[tuple[str, str], ...], float]:
        now = time.time() * 1000
        return {(("source", self.source), ("symbol", s)): max(0.0, (now - t) / 1000)
                for s, t in list(self.last_event.items())}

    def sync(self) -> None:
        """Add what was counted since the last call to the shared telemetry."""
        c = self.conflator
        cur = (self.frames, self.points, c.updates_in, c.superseded, c.late)
        prev, self._synced = self._synced, cur
        t, labels = self._telemetry, {"source": self.source}
        if cur[0] - prev[0]:
            t.inc("frames_received", cur[0] - prev[0], {"kind": "ws", **labels})
        if cur[1] - prev[1]:
            t.inc("points_published", cur[1] - prev[1])
        for name, i in (("conflate_updates", 2), ("conflate_superseded", 3), ("conflate_late", 4)):
            if cur[i] - prev[i]:
                t.inc(name, cur[i] - prev[i], labels)
