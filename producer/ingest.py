"""The one normalisation path: raw frames in, MetricPoints published.

Every source (live websocket + REST poller, replay file, simulated market)
hands raw frame text to a :class:`FrameSink`; :class:`Ingest` is the sink
that parses, encodes and publishes. A bad frame is rejected, counted by
reason and logged with a truncated sample; it never stops the stream.

A websocket frame takes the shortest path (docs/producer.md, "Frame path
cost"): its markPrice updates are validated into plain values
(:func:`producer.binance.mark_price_updates`), written as Avro bodies from
per-symbol cached prefixes (:meth:`MetricPointEncoder.bodies`), and handed to
the publisher in one call per frame (``publish_many``), with no record dict
per point.

Per-event counting goes to plain ints here and reaches :class:`Telemetry` in
bulk (:meth:`Ingest.sync`), because a lock per event would cost as much as
encoding it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from perpstream.producer import binance, history
from perpstream.producer.binance import MARK_PRICE_METRICS, MarkPrice, PartialFrame
from perpstream.producer.conflate import FundingIntervals, interval_record
from perpstream.producer.encoding import MetricPointEncoder
from perpstream.producer.exceptions import FrameRejected
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.models import Metric

log = logging.getLogger(__name__)


class FrameSink(Protocol):
    """Where sources deliver raw frames. ``congested`` asks pausable sources to wait."""

    @property
    def congested(self) -> bool: ...

    def on_ws_frame(self, raw: str | bytes, ingest_ms: int) -> Any | None:
        """Handle one websocket message; returns the decoded message if it was a
        control answer (SUBSCRIBE ack/error). The live websocket routes those
        itself (``producer.ws_protocol``) and never hands one over; replay files
        may still hold them."""
        ...

    def on_open_interest(self, raw: str | bytes, ingest_ms: int) -> None: ...

    def on_premium_index(self, raw: str | bytes, ingest_ms: int,
                         symbols: frozenset[str] | None = None) -> int:
        """Handle one ``/fapi/v1/premiumIndex`` body (one symbol or all); returns the
        symbols it gave points for."""
        ...

    def on_funding_intervals(self, hours: Mapping[str, float], ingest_ms: int) -> None:
        """The funding interval of each followed perpetual (``fundingInfo``), read at ``ingest_ms``."""
        ...


class PublishTarget(Protocol):
    @property
    def congested(self) -> bool: ...

    def publish(self, key: bytes, value: bytes) -> None: ...


class Ingest:
    """Parse -> encode -> publish, with counters. See the module doc."""

    def __init__(
        self,
        target: PublishTarget,
        encode: MetricPointEncoder | Callable[[dict[str, Any]], bytes],
        telemetry: Telemetry,
        *,
        source: str = binance.SOURCE,
        max_frame_bytes: int = binance.DEFAULT_MAX_FRAME_BYTES,
        symbols: frozenset[str] | None = None,
    ) -> None:
        self._target = target
        #: the encoder whose per-symbol prefixes the frame path writes with, when it has them
        self._encoder = encode if isinstance(encode, MetricPointEncoder) and encode.fast else None
        self._encode = encode.encode if isinstance(encode, MetricPointEncoder) else encode
        #: a frame's points in one call, where the target takes them so (:class:`Publisher`:
        #: ``publish_many(batch)`` is ``publish(key, value)`` of each value of each ``(key, values)``)
        self._publish_many = getattr(target, "publish_many", None)
        self._telemetry = telemetry
        self._source = source
        self._max_bytes = max_frame_bytes
        #: Only these symbols are kept (all-market stream); None keeps all.
        self.symbols = symbols
        self.frames_ws = 0
        self.frames_oi = 0
        self.frames_pi = 0
        self.points = 0
        self.oi_duplicates = 0
        self._synced = (0, 0, 0, 0, 0)
        self._oi_last: dict[str, int] = {}
        self._intervals = FundingIntervals()
        #: Latest event time seen per symbol (freshness gauge).
        self.last_event: dict[str, int] = {}
        self._keys: dict[str, bytes] = {}
        #: symbol -> (Kafka key, the Avro body prefix of each markPrice metric)
        self._heads: dict[str, tuple[bytes, tuple[bytes, ...]]] = {}
        self._last_reject_log = 0.0
        self._suppressed = 0
        telemetry.describe("frames_received", "raw frames handed to normalisation, by kind")
        telemetry.describe("points_published", "MetricPoints handed to Kafka")
        telemetry.describe("frames_rejected", "frames or items rejected by normalisation, by reason")
        telemetry.gauge_fn("last_event_age_seconds", self._ages)

    @property
    def congested(self) -> bool:
        return self._target.congested

    def _key(self, symbol: str) -> bytes:
        """The Kafka key: the symbol's UTF-8 bytes, exactly as the exchange spells it."""
        k = self._keys.get(symbol)
        if k is None:
            k = self._keys[symbol] = symbol.encode("utf-8")
        return k

    def _publish(self, points: list[dict[str, Any]]) -> None:
        enc = self._encode
        pub = self._target.publish
        last = self.last_event
        sym = ""
        key = b""
        for r in points:
            if r["symbol"] is not sym:
                sym = r["symbol"]
                key = self._key(sym)
                last[sym] = r["event_time"]
            pub(key, enc(r))
        self.points += len(points)

    def _publish_updates(self, updates: list[MarkPrice], ingest_ms: int) -> None:
        """The frame path: Avro bodies straight from the validated values, one hand-off."""
        encoder = self._encoder
        assert encoder is not None
        bodies = encoder.bodies
        heads_of = self._heads
        last = self.last_event
        batch: list[tuple[bytes, list[bytes]]] = []
        n = 0
        for symbol, et, values in updates:
            kh = heads_of.get(symbol)
            if kh is None:
                heads = encoder.heads(self._source, symbol, MARK_PRICE_METRICS)
                assert heads is not None
                kh = heads_of[symbol] = (self._key(symbol), heads)
            last[symbol] = et
            b = bodies(kh[1], et, ingest_ms, values)
            n += len(b)
            batch.append((kh[0], b))
        self.points += n
        if self._publish_many is not None:
            self._publish_many(batch)
        else:
            pub = self._target.publish
            for key, bodies_of_key in batch:
                for value in bodies_of_key:
                    pub(key, value)

    def on_ws_frame(self, raw: str | bytes, ingest_ms: int) -> Any | None:
        self.frames_ws += 1
        try:
            msg = binance.load_json(raw, self._max_bytes)
            if binance.is_control(msg):
                self.frames_ws -= 1
                return msg
            updates = binance.mark_price_updates(msg, self.symbols)
        except PartialFrame as exc:
            self._publish_frame(exc.points, ingest_ms)
            for err in exc.errors:
                self._reject(err, raw)
            return None
        except FrameRejected as exc:
            self._reject(exc, raw)
            return None
        self._publish_frame(updates, ingest_ms)
        return None

    def _publish_frame(self, updates: list[MarkPrice], ingest_ms: int) -> None:
        if self._encoder is not None:
            self._publish_updates(updates, ingest_ms)
        else:  # a schema the fast encoder was not written for: records and ``encode``
            self._publish(binance.records(updates, ingest_ms, self._source))

    def on_open_interest(self, raw: str | bytes, ingest_ms: int) -> None:
        self.frames_oi += 1
        try:
            point = binance.open_interest_point(binance.load_json(raw, self._max_bytes), ingest_ms,
                                                self._source)
        except FrameRejected as exc:
            self._reject(exc, raw)
            return
        sym = point["symbol"]
        if self._oi_last.get(sym) == point["event_time"]:
            self.oi_duplicates += 1  # same observation polled twice: one event
            return
        self._oi_last[sym] = point["event_time"]
        self._publish([point])

    def on_premium_index(self, raw: str | bytes, ingest_ms: int,
                         symbols: frozenset[str] | None = None) -> int:
        self.frames_pi += 1
        try:
            parsed = history.premium_index_points(binance.load_json(raw, self._max_bytes), ingest_ms,
                                                  symbols, self._source)
        except FrameRejected as exc:
            self._reject(exc, raw)
            return 0
        for err in parsed.rejected:
            self._reject(err, raw)
        self._publish(parsed.points)
        return len({p["symbol"] for p in parsed.points})

    def on_funding_intervals(self, hours: Mapping[str, float], ingest_ms: int) -> None:
        """Publish an interval when its symbol is first seen or it changed; the answer has no
        time of its own, so the moment it was read is the event time."""
        news = self._intervals.observe(
            interval_record(self._source, s, h, ingest_ms, ingest_ms) for s, h in hours.items())
        if news:
            self._publish(news)

    def _reject(self, exc: FrameRejected, raw: str | bytes) -> None:
        self._telemetry.inc("frames_rejected", 1, {"reason": exc.reason})
        now = time.monotonic()
        if now - self._last_reject_log >= 1.0:  # a flood of garbage must not flood the log
            self._last_reject_log = now
            log.warning("frame rejected", extra={"reason": exc.reason, "detail": exc.detail[:300],
                                                 "sample": binance.sample(raw),
                                                 "suppressed": self._suppressed})
            self._suppressed = 0
        else:
            self._suppressed += 1

    def forget(self, symbols: set[str]) -> None:
        """Drop per-symbol state of delisted symbols (keeps week-long runs bounded)."""
        for s in symbols:
            self.last_event.pop(s, None)
            self._oi_last.pop(s, None)
            self._keys.pop(s, None)
            self._heads.pop(s, None)
        self._intervals.forget(symbols)

    def _ages(self) -> dict[tuple[tuple[str, str], ...], float]:
        now = time.time() * 1000
        return {(("symbol", s),): max(0.0, (now - t) / 1000) for s, t in list(self.last_event.items())}

    def sync(self) -> None:
        """Add what was counted since the last call to the shared telemetry."""
        cur = (self.frames_ws, self.frames_oi, self.points, self.oi_duplicates, self.frames_pi)
        prev, self._synced = self._synced, cur
        t = self._telemetry
        if cur[4] - prev[4]:
            t.inc("frames_received", cur[4] - prev[4], {"kind": "premium_index"})
        if cur[0] - prev[0]:
            t.inc("frames_received", cur[0] - prev[0], {"kind": Metric.MARK_PRICE})
        if cur[1] - prev[1]:
            t.inc("frames_received", cur[1] - prev[1], {"kind": Metric.OPEN_INTEREST})
        if cur[2] - prev[2]:
            t.inc("points_published", cur[2] - prev[2])
        if cur[3] - prev[3]:
            t.inc("open_interest_duplicates", cur[3] - prev[3])
