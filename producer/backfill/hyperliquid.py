"""Hyperliquid perpetual history for ``perpstream backfill --venue hyperliquid``.

``POST /info {"type": "fundingHistory", "coin", "startTime", "endTime"}``
answers the hourly settlements oldest first, both ends inclusive, at most 500
rows: ``[{"coin", "fundingRate", "premium", "time"}]``; each becomes a
``funding_rate_settled`` point at ``time`` (as sent: a few milliseconds past
the hour). A full answer goes on from its newest ``time`` + 1. A chunk is 500
hours, one answer. Coins are spelled as ``meta`` spells them (``BTC``,
``kPEPE``).

Hyperliquid keeps **no open-interest history**: its ``/info`` answers the
current open interest only (``metaAndAssetCtxs``), which the live producer
publishes. ``open_interest`` is therefore not backfilled, and the command says
so.

An unknown coin is answered with no rows, not an error, so the coins given
are checked against ``meta`` first (listed or delisted: a delisted coin keeps
its history) and an unknown one fails alone. ``--all`` is every listed coin.

Limits: a weight of 1,200 per minute per IP, HTTP 429 past it (waited out);
``meta`` weighs 20, ``fundingHistory`` 20 plus 1 per 20 rows answered, so a
request is counted at its most, 45 (docs/producer.md, ``perpstream backfill``).
"""

from __future__ import annotations

from typing import Any, Final

from perpstream.producer import bybit
from perpstream.producer import hyperliquid as hl
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
from perpstream.producer.binance import Record
from perpstream.schemas.models import Metric

#: Rows of one fundingHistory answer at most.
LIMIT: Final = hl.FUNDING_HISTORY_MAX_ROWS
#: A full answer's weight: 20, plus 1 per 20 rows.
WEIGHT: Final = hl.FUNDING_HISTORY_WEIGHT + LIMIT // hl.FUNDING_HISTORY_ROWS_PER_WEIGHT


def funding_page(doc: Any, ask: Ask) -> Page:
    """``[{"coin", "fundingRate", "premium", "time"}]``, oldest first."""
    where = "fundingHistory"

    def one(d: Any) -> Record:
        same_symbol(field_of(d, "coin", where), ask.symbol, where)
        rate = hl._decimal(field_of(d, "fundingRate", where), "fundingRate", True)
        t = bybit._millis(field_of(d, "time", where), "time")
        return point(ask, hl.SOURCE, Metric.FUNDING_RATE_SETTLED, rate, t)

    return page_of(doc, where, one, lambda d: d.get("time") if type(d) is dict else None)


def funding_request(coin: str, start: int, end: int) -> dict[str, Any]:
    """The body of one request: rows with ``start <= time <= end``."""
    return {"type": "fundingHistory", "coin": coin, "startTime": start, "endTime": end}


async def fetch_funding(q: VenueRequests, ask: Ask) -> list[Record]:
    url = hl.info_url(ask.base)

    async def page(lower: int) -> Page:
        body = funding_request(ask.symbol, lower, ask.end - 1)
        return await q.get(url, lambda d: funding_page(d, ask), "fundingHistory", weight=WEIGHT,
                           json_body=body)

    return await oldest_first(page, ask.start, ask.end, LIMIT)


async def _meta(q: VenueRequests, base: str) -> hl.Listing:
    async def send() -> hl.Listing:
        body = await q.rest.request(hl.info_url(base), json_body={"type": "meta"}, weight=hl.META_WEIGHT,
                                    endpoint="meta")
        return hl.listing(body)

    return await q.call(send, "meta", hl.META_WEIGHT)


async def listing(q: VenueRequests, base: str) -> list[str]:
    """Every listed perpetual coin (``meta``, delisted ones left out)."""
    return sorted((await _meta(q, base)).instruments)


async def known(q: VenueRequests, base: str) -> list[str]:
    """Every coin ``meta`` names, delisted ones included: the coins with a history."""
    meta = await _meta(q, base)
    return sorted(set(meta.instruments) | meta.delisted)


HISTORY: Final = VenueHistory(
    name="hyperliquid", title="Hyperliquid", source=hl.SOURCE, rest_limit=hl.REST_WEIGHT_LIMIT,
    rest_window=60.0, chunk_ms=LIMIT * HOUR_MS,
    kinds=(HistoryKind(Metric.FUNDING_RATE_SETTLED, fetch_funding),),
    not_served={Metric.OPEN_INTEREST: "keeps no open-interest history (only the current value, "
                                      "which the live producer publishes)"},
    listing=listing, known=known,
)
