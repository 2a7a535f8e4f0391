"""OKX v5 swap history for ``perpstream backfill --venue okx``.

=====================================================  ==========================  ===============
endpoint (``instId`` = the swap, ``BTC-USDT-SWAP``)    metric                      event_time
=====================================================  ==========================  ===============
``/api/v5/public/funding-rate-history``                ``funding_rate_settled``:   ``fundingTime``
                                                       ``realizedRate``
``/api/v5/rubik/stat/contracts/open-interest-history``  ``open_interest``: ``oiCcy`` ``ts``
                                                       (base coin)
=====================================================  ==========================  ===============

Funding history rows carry two rates: ``fundingRate`` is the rate that was
predicted for the settlement, ``realizedRate`` the rate actually settled at
``fundingTime``; the settled one is published. Open-interest rows are arrays
``[ts, oi, oiCcy, oiUsd]`` (contracts, coin, USD); the coin figure is the unit
of every venue's ``open_interest``. OKX serves three months of funding and the
latest 1,440 bars of open interest (five days at 5 m): an older ``--since`` is
clipped for that metric, with a WARNING naming the limit.

Both answer newest first: a full page goes on below its oldest row, with
``after`` / ``before`` (funding) and ``end`` / ``begin`` (open interest) as
exclusive bounds; 100 rows a page (open interest takes no more; funding takes
100 under every version of the docs). A chunk is 100 hours: one page of
funding at the shortest interval OKX uses (1 h).

Limits per IP: 10 requests per 2 s for each endpoint (shared here, so the
budget is 10); past them HTTP 429 with code 50011, which pauses the client. An
envelope ``code`` of 50001/50004/50013 (service unavailable, timeout, busy) is
retried; any other (51001: no such instrument) refuses the request and fails
that symbol. ``--all`` is every live linear swap of ``instruments?instType=SWAP``
(docs/producer.md, ``perpstream backfill``).
"""

from __future__ import annotations

from typing import Any, Final

from perpstream.producer import okx
from perpstream.producer.backfill.requests import VenueRequests
from perpstream.producer.backfill.spec import (
    HOUR_MS,
    Ask,
    HistoryKind,
    Page,
    VenueHistory,
    field_of,
    newest_first,
    page_of,
    point,
    refused,
    same_symbol,
)
from perpstream.producer.binance import MISSING_FIELD, NOT_OBJECT, Record
from perpstream.producer.exceptions import FrameRejected, RestError
from perpstream.producer.failures import RestFault
from perpstream.producer.rest import query_url
from perpstream.producer.venues import okx_listing
from perpstream.schemas.models import Metric

SOURCE: Final = okx.SOURCE
FUNDING_PATH: Final = okx.FUNDING_HISTORY_PATH
OPEN_INTEREST_PATH: Final = okx.OPEN_INTEREST_HISTORY_PATH
#: Rows per page (both endpoints take at most 100).
LIMIT: Final = 100
#: How far back OKX serves funding history, and how many bars of open interest.
FUNDING_RETENTION_MS: Final = 90 * 86_400_000
OI_RETENTION_BARS: Final = 1_440
#: ``--oi-period`` -> OKX's ``period`` and its length.
OI_PERIODS: Final = {"5m": ("5m", 300_000), "1h": ("1H", 3_600_000), "1d": ("1D", 86_400_000)}
RATE_LIMIT_CODE: Final = okx.RATE_LIMIT_CODE
#: Service unavailable, endpoint timeout, system busy: retried.
RETRY_CODES: Final = frozenset({"50001", "50004", "50013"})


def data_of(doc: Any, where: str) -> Any:
    """The ``data`` of ``{"code": "0", "msg": "", "data": [...]}``; another code is a
    :class:`RestError` sorted as above."""
    if type(doc) is not dict:
        raise FrameRejected(NOT_OBJECT, f"{where} body is {type(doc).__name__}")
    code, msg = doc.get("code"), doc.get("msg")
    if code == "0":
        if "data" not in doc:
            raise FrameRejected(MISSING_FIELD, f"{where} body without data")
        return doc["data"]
    if type(code) is not str:
        raise FrameRejected(MISSING_FIELD, f"{where} body without a code ({str(code)[:40]!r})")
    text = f"{where}: OKX code {code}: {str(msg)[:200]}"
    if code == RATE_LIMIT_CODE:
        raise RestError(200, text, fault=RestFault.RATE_LIMITED)
    if code in RETRY_CODES:
        raise RestError(200, text, fault=RestFault.RETRY)
    raise refused(where, f"OKX code {code}: {str(msg)[:200]}")


def funding_page(doc: Any, ask: Ask) -> Page:
    """``data``: ``[{"instType", "instId", "formulaType", "fundingRate", "realizedRate",
    "fundingTime", "method"}]``, newest first."""
    where = "funding-rate-history"
    rows = data_of(doc, where)

    def one(d: Any) -> Record:
        same_symbol(field_of(d, "instId", where), ask.symbol, where)
        rate = okx._decimal(field_of(d, "realizedRate", where), "realizedRate", True)
        t = okx._millis(field_of(d, "fundingTime", where), "fundingTime")
        return point(ask, SOURCE, Metric.FUNDING_RATE_SETTLED, rate, t)

    return page_of(rows, where, one, lambda d: d.get("fundingTime") if type(d) is dict else None)


def open_interest_page(doc: Any, ask: Ask) -> Page:
    """``data``: ``[[ts, oi, oiCcy, oiUsd], ...]``, newest first; ``oiCcy`` is published."""
    where = "open-interest-history"
    rows = data_of(doc, where)

    def one(row: Any) -> Record:
        if type(row) is not list:
            raise FrameRejected(NOT_OBJECT, f"{where} row is {type(row).__name__}, not an array")
        if len(row) < 3:
            raise FrameRejected(MISSING_FIELD, f"{where} row has {len(row)} fields, fewer than 3")
        t = okx._millis(row[0], "ts")
        return point(ask, SOURCE, Metric.OPEN_INTEREST, okx._decimal(row[2], "oiCcy", False), t)

    return page_of(rows, where, one, lambda r: r[0] if type(r) is list and r else None)


async def fetch_funding(q: VenueRequests, ask: Ask) -> list[Record]:
    async def page(upper: int) -> Page:
        url = query_url(ask.base.rstrip("/") + FUNDING_PATH, {
            "instId": ask.symbol, "after": str(upper + 1), "before": str(ask.start - 1), "limit": str(LIMIT)})
        return await q.get(str(url), lambda d: funding_page(d, ask), "funding-rate-history")

    return await newest_first(page, ask.start, ask.end, LIMIT)


async def fetch_open_interest(q: VenueRequests, ask: Ask) -> list[Record]:
    async def page(upper: int) -> Page:
        url = query_url(ask.base.rstrip("/") + OPEN_INTEREST_PATH, {
            "instId": ask.symbol, "period": ask.period, "begin": str(ask.start - 1), "end": str(upper + 1),
            "limit": str(LIMIT)})
        return await q.get(str(url), lambda d: open_interest_page(d, ask), "open-interest-history")

    return await newest_first(page, ask.start, ask.end, LIMIT)


async def listing(q: VenueRequests, base: str) -> list[str]:
    """Every live linear swap (``instruments?instType=SWAP``)."""
    async def send() -> list[str]:
        try:
            return sorted(await okx_listing(q.rest, base))
        except okx.OkxApiError as exc:
            fault = RestFault.RETRY if exc.code in RETRY_CODES else RestFault.REFUSED
            raise RestError(200, f"instruments: {exc}", fault=fault) from None

    return await q.call(send, "instruments")


HISTORY: Final = VenueHistory(
    name="okx", title="OKX", source=SOURCE, rest_limit=10, rest_window=2.0,
    chunk_ms=LIMIT * HOUR_MS,
    kinds=(HistoryKind(Metric.FUNDING_RATE_SETTLED, fetch_funding, retention_ms=FUNDING_RETENTION_MS,
                       retention_text="three months of funding history"),
           HistoryKind(Metric.OPEN_INTEREST, fetch_open_interest, periods=OI_PERIODS,
                       retention_periods=OI_RETENTION_BARS,
                       retention_text="the latest 1,440 bars of open-interest history")),
    listing=listing,
)
