"""What a backfill fetches: the range from the settings, its chunks, and the checkpoint of each symbol.

A chunk is :data:`~perpstream.producer.history.KLINE_LIMIT` minutes, one page
of klines; the checkpoint records the chunks Kafka acknowledged, so a run
started again resumes after them (docs/producer.md, ``perpstream backfill``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from perpstream.errors import ConfigError
from perpstream.producer import history
from perpstream.producer.settings import ProducerSettings
from perpstream.producer.sources import now_ms
from perpstream.producer.timespec import parse_instant
from perpstream.schemas.models import Metric

CHUNK_MS = history.KLINE_LIMIT * history.MINUTE_MS
_DELIVERY = re.compile(r"_\d{6}$")
#: Metric order within one event time (the live stream's order).
ORDER = {m: i for i, m in enumerate((
    Metric.MARK_PRICE, Metric.INDEX_PRICE, Metric.ESTIMATED_SETTLE_PRICE, Metric.FUNDING_RATE,
    Metric.NEXT_FUNDING_TIME, Metric.OPEN_INTEREST, Metric.FUNDING_RATE_SETTLED))}


def pair_of(symbol: str) -> str:
    """The ``pair`` of indexPriceKlines: the symbol without a delivery date
    (``BTCUSDT_261225`` -> ``BTCUSDT``)."""
    return _DELIVERY.sub("", symbol)


class Checkpoint:
    """What was delivered for one symbol to one topic (of one venue and metric, for the venues
    other than Binance): one interval ``[start, end)`` of event times."""

    def __init__(self, root: Path, topic: str, symbol: str, under: tuple[str, ...] = ()) -> None:
        # Binance: <root>/<topic>/<symbol>.json; another venue: <root>/<topic>/<venue>/<metric>/<symbol>.json
        folder = root.joinpath(quote(topic, safe=""), *(quote(u, safe="") for u in under))
        self.path = folder / f"{quote(symbol, safe='')}.json"
        self.symbol = symbol
        self.start: int | None = None
        self.end: int | None = None
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            doc = json.loads(self.path.read_text("utf-8"))
            if doc.get("symbol") == symbol and type(doc["start"]) is int and type(doc["end"]) is int:
                self.start, self.end = doc["start"], doc["end"]

    def resume_from(self, since: int) -> int:
        """Where a run of ``[since, ...)`` starts: after the delivered interval when it covers ``since``."""
        if self.start is not None and self.end is not None and self.start <= since < self.end:
            return self.end
        return since

    def delivered(self, start: int, end: int) -> None:
        """``[start, end)`` is acknowledged; it extends the interval it touches, or replaces it."""
        if self.start is not None and self.end is not None and self.start <= start <= self.end:
            self.end = max(self.end, end)
        else:
            self.start, self.end = start, end
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"symbol": self.symbol, "start": self.start, "end": self.end}), "utf-8")
        os.replace(tmp, self.path)


@dataclass
class Range:
    """Event times ``[since, until)``; open interest from ``oi_since`` (Binance keeps 30 days of it)."""

    since: int
    until: int
    oi_since: int

    def chunks(self, start: int) -> list[tuple[int, int]]:
        """The chunks ``[a, b)`` from ``start`` to the end of the range."""
        return [(a, min(a + CHUNK_MS, self.until)) for a in range(start, self.until, CHUNK_MS)]


def resolve_range(settings: ProducerSettings, now: int | None = None) -> Range:
    """The range to fetch, from the settings; a range that is empty or absent is a ConfigError."""
    now = now_ms() if now is None else now
    if settings.backfill_since is None:
        raise ConfigError("backfill needs --since (PERPSTREAM_BACKFILL_SINCE): " + "ISO-8601, epoch ms or 6h")
    since = parse_instant(settings.backfill_since, now)
    until = min(now, parse_instant(settings.backfill_until, now)) if settings.backfill_until else now
    if since >= until:
        raise ConfigError(f"backfill_since (--since / PERPSTREAM_BACKFILL_SINCE) {settings.backfill_since!r} "
                          "is not before until (and until is at most now)")
    # an hour of margin: Binance's 30 days are rolling
    oldest = now - history.OI_HIST_RETENTION_MS + 3_600_000
    return Range(since, until, max(since, oldest))
