"""Bybit v5 linear history for ``perpstream backfill --venue bybit``.

=====================================  ==========================  ==========================
endpoint (``category=linear``)         metric                      event_time
=====================================  ==========================  ==========================
``/v5/market/funding/history``         ``funding_rate_settled``    ``fundingRateTimestamp``
``/v5/market/open-interest``           ``open_interest`` (base     ``timestamp``
                                       coin, as the live stream)
=====================================  ==========================  ==========================

Funding history answers the newest ``limit`` (≤ 200) rows first, and only
with ``startTime`` *and* ``endTime`` (``startTime`` alone is an error): a full
page goes on with ``endTime`` just below its oldest row. Open interest pages
by ``nextPageCursor``. Both go back to the symbol's launch. A chunk is 200
hours: one page of funding at the shortest interval Bybit uses (1 h).

Limits: 600 requests per 5 s per IP (HTTP 403 past it, waited out like every
pause of :class:`~perpstream.producer.venue_rest.VenueRest`); a per-API limit
answers ``retCode`` 10006, which pauses the client too. Other envelope codes
are sorted here: a server timeout or error is retried, anything else (an
unknown symbol is 10001) refuses the request and fails that symbol
(docs/producer.md, ``perpstream backfill``).
"""

from __future__ import annotations

import json
from typing import Any, Final

from perpstream.producer import bybit
from perpstream.producer.backfill.requests import VenueRequests
from perpstream.producer.backfill.spec import (
    HOUR_MS,
    Ask,
    HistoryKind,
    Page,
    VenueHistory,
    by_cursor,
    field_of,
    newest_first,
    page_of,
    point,
    refused,
    same_symbol,
)
from perpstream.producer.binance import BAD_JSON, MISSING_FIELD, Record
from perpstream.producer.exceptions import FrameRejected, RestError
from perpstream.producer.failures import RestFault
from perpstream.producer.rest import query_url
from perpstream.producer.venues import bybit_listing
from perpstream.schemas.models import Metric

FUNDING_PATH: Final = "/v5/market/funding/history"
OPEN_INTEREST_PATH: Final = "/v5/market/open-interest"
#: Rows per page, Bybit's most for both endpoints.
LIMIT: Final = 200
#: ``--oi-period`` -> Bybit's ``intervalTime`` and its length.
OI_PERIODS: Final = {"5m": ("5min", 300_000), "15m": ("15min", 900_000), "30m": ("30min", 1_800_000),
                     "1h": ("1h", 3_600_000), "4h": ("4h", 14_400_000), "1d": ("1d", 86_400_000)}
#: ``retCode`` of a server timeout (10000) and a server error (10016): retried.
RETRY_CODES: Final = frozenset({10000, 10016})


def result(doc: Any, where: str) -> dict[str, Any]:
    """The ``result`` of an envelope; a non-zero ``retCode`` is a :class:`RestError` sorted
    as above (10006 pauses, 10000/10016 retry, the rest refuses)."""
    try:
        return bybit.result_of(doc)
    except bybit.BybitApiError as exc:
        if exc.rate_limited:
            raise RestError(200, f"{where}: {exc}", code=exc.ret_code, fault=RestFault.RATE_LIMITED) from None
        if exc.ret_code in RETRY_CODES:
            raise RestError(200, f"{where}: {exc}", code=exc.ret_code, fault=RestFault.RETRY) from None
        raise refused(where, str(exc)) from None


def _rows(doc: Any, where: str) -> tuple[dict[str, Any], Any]:
    res = result(doc, where)
    if "list" not in res:
        raise FrameRejected(MISSING_FIELD, f"{where} result without a list")
    return res, res["list"]


def funding_page(doc: Any, ask: Ask) -> Page:
    """``{"result": {"category", "list": [{"symbol", "fundingRate", "fundingRateTimestamp"}]}}``."""
    where = "funding/history"
    _, rows = _rows(doc, where)

    def one(d: Any) -> Record:
        same_symbol(field_of(d, "symbol", where), ask.symbol, where)
        rate = bybit._decimal(field_of(d, "fundingRate", where), "fundingRate", True)
        t = bybit._millis(field_of(d, "fundingRateTimestamp", where), "fundingRateTimestamp")
        return point(ask, bybit.SOURCE, Metric.FUNDING_RATE_SETTLED, rate, t)

    return page_of(rows, where, one, lambda d: d.get("fundingRateTimestamp") if type(d) is dict else None)


def open_interest_page(doc: Any, ask: Ask) -> Page:
    """``{"result": {"symbol", "category", "list": [{"openInterest", "timestamp"}],
    "nextPageCursor"}}``; ``openInterest`` is in base coin for linear contracts."""
    where = "open-interest"
    res, rows = _rows(doc, where)
    if "symbol" in res:
        same_symbol(res["symbol"], ask.symbol, where)  # the whole answer is another symbol's

    def one(d: Any) -> Record:
        oi = bybit._decimal(field_of(d, "openInterest", where), "openInterest", False)
        t = bybit._millis(field_of(d, "timestamp", where), "timestamp")
        return point(ask, bybit.SOURCE, Metric.OPEN_INTEREST, oi, t)

    cursor = res.get("nextPageCursor")
    return page_of(rows, where, one, lambda d: d.get("timestamp") if type(d) is dict else None,
                   cursor if type(cursor) is str and cursor else None)


async def fetch_funding(q: VenueRequests, ask: Ask) -> list[Record]:
    async def page(upper: int) -> Page:
        url = query_url(ask.base.rstrip("/") + FUNDING_PATH, {
            "category": "linear", "symbol": ask.symbol, "startTime": str(ask.start), "endTime": str(upper),
            "limit": str(LIMIT)})
        return await q.get(str(url), lambda d: funding_page(d, ask), "funding/history")

    return await newest_first(page, ask.start, ask.end, LIMIT)


async def fetch_open_interest(q: VenueRequests, ask: Ask) -> list[Record]:
    async def page(cursor: str) -> Page:
        params = {"category": "linear", "symbol": ask.symbol, "intervalTime": ask.period,
                  "startTime": str(ask.start), "endTime": str(ask.end - 1), "limit": str(LIMIT)}
        if cursor:
            params["cursor"] = cursor
        url = query_url(ask.base.rstrip("/") + OPEN_INTEREST_PATH, params)
        return await q.get(str(url), lambda d: open_interest_page(d, ask), "open-interest")

    return await by_cursor(page, ask.start, ask.end)


async def listing(q: VenueRequests, base: str) -> list[str]:
    """Every trading linear perpetual (``instruments-info``, all pages)."""
    async def send() -> list[str]:
        try:
            return sorted(await bybit_listing(q.rest, base))
        except bybit.BybitApiError as exc:
            fault = RestFault.RETRY if exc.ret_code in RETRY_CODES else RestFault.REFUSED
            raise RestError(200, f"instruments-info: {exc}", code=exc.ret_code, fault=fault) from None
        except json.JSONDecodeError as exc:
            raise FrameRejected(BAD_JSON, f"instruments-info: {exc}") from None
        except ValueError as exc:  # a listing whose pages do not end
            raise refused("instruments-info", str(exc)) from None

    return await q.call(send, "instruments-info")


HISTORY: Final = VenueHistory(
    name="bybit", title="Bybit", source=bybit.SOURCE, rest_limit=600, rest_window=5.0,
    chunk_ms=LIMIT * HOUR_MS,
    kinds=(HistoryKind(Metric.FUNDING_RATE_SETTLED, fetch_funding),
           HistoryKind(Metric.OPEN_INTEREST, fetch_open_interest, periods=OI_PERIODS)),
    listing=listing,
)
