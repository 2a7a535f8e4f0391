"""Hyperliquid perpetual history for ``perpstream backfill --venue hyperliquid``.

``POST /info {"type": "fundingHistory", "coin", "startTime", "endTime"}``
answers the hourly settlements oldest first, at most 500 rows:
``[{"coin", "fundingRate", "premium", "time"}]``; each becomes a
``funding_rate_settled`` point at ``time`` (as sent: a few milliseconds past
the hour). A full answer goes on from its newest ``time`` + 1. A chunk is 500
hours, one answer. Coins are spelled as ``meta`` spells them (``BTC``,
``kPEPE``).

Hyperliquid keeps **no open-interest history**: its ``/info`` answers the
current open interest only (``metaAndAssetCtxs``), which the live producer
publishes. ``open_interest`` is therefore not backfilled, and the command says
so.

Limits: a weight of 1,200 per minute per IP, HTTP 429 past it (waited out);
``fundingHistory`` weighs 20 plus 1 per 20 rows answered, so a request is
counted at its most, 45 (docs/producer.md, ``perpstream backfill``).
"""

from __future__ import annotations

from typing import Any, Final

from perpstream.producer import bybit
from perpstream.producer.backfill.requests import VenueRequests
from perpstream.producer.backfill.spec import (
    HOUR_MS,
    Ask,
    HistoryKind,
    Page,
    VenueHistory,
    field_of,
    oldest_first,
    page_of,
    point,
    same_symbol,
)
from perpstream.producer.binance import BAD_NUMBER, NON_FINITE, Record
from perpstream.producer.exceptions import FrameRejected
from perpstream.schemas.models import Metric

SOURCE: Final = "hyperliquid"
INFO_PATH: Final = "/info"
#: Rows of one fundingHistory answer at most.
LIMIT: Final = 500
#: 20 per request, plus 1 per 20 rows answered: a full answer weighs 45.
WEIGHT: Final = 20 + LIMIT // 20


def _rate(v: Any) -> float:
    """A decimal string as sent (the venue's type definitions say number: both are read)."""
    if type(v) is float or type(v) is int:
        x = float(v)
        if x - x != 0.0:
            raise FrameRejected(NON_FINITE, f"fundingRate={v!r}")
        return x
    if type(v) is not str:
        raise FrameRejected(BAD_NUMBER, f"fundingRate={str(v)[:40]!r} is not a number")
    return bybit._decimal(v, "fundingRate", True)


def funding_page(doc: Any, ask: Ask) -> Page:
    """``[{"coin", "fundingRate", "premium", "time"}]``, oldest first."""
    where = "fundingHistory"

    def one(d: Any) -> Record:
        same_symbol(field_of(d, "coin", where), ask.symbol, where)
        rate = _rate(field_of(d, "fundingRate", where))
        t = bybit._millis(field_of(d, "time", where), "time")
        return point(ask, SOURCE, Metric.FUNDING_RATE_SETTLED, rate, t)

    return page_of(doc, where, one, lambda d: d.get("time") if type(d) is dict else None)


def funding_request(coin: str, start: int, end: int) -> dict[str, Any]:
    """The body of one request: rows with ``start <= time <= end``."""
    return {"type": "fundingHistory", "coin": coin, "startTime": start, "endTime": end}


async def fetch_funding(q: VenueRequests, ask: Ask) -> list[Record]:
    url = ask.base.rstrip("/") + INFO_PATH

    async def page(lower: int) -> Page:
        body = funding_request(ask.symbol, lower, ask.end - 1)
        return await q.get(url, lambda d: funding_page(d, ask), "fundingHistory", weight=WEIGHT,
                           json_body=body)

    return await oldest_first(page, ask.start, ask.end, LIMIT)


HISTORY: Final = VenueHistory(
    name="hyperliquid", title="Hyperliquid", source=SOURCE, rest_limit=1200, rest_window=60.0,
    chunk_ms=LIMIT * HOUR_MS,
    kinds=(HistoryKind(Metric.FUNDING_RATE_SETTLED, fetch_funding),),
    not_served={Metric.OPEN_INTEREST: "keeps no open-interest history (only the current value, "
                                      "which the live producer publishes)"},
    # --all: the meta listing (producer.hyperliquid) is wired here once it is on this branch
    listing=None,
)
