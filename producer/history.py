"""Binance USD-M REST market history and one-shot snapshots: pure parsing, no sockets.

Every body is parsed defensively, item by item, with the rules of
:mod:`producer.binance` (decimal strings, integer milliseconds in 2017..2100,
the symbol rule): a bad item is rejected alone (:class:`Parsed.rejected`
holds why) and the good ones are kept; a body that is not the expected shape
at all raises :class:`~producer.exceptions.FrameRejected`.

Event times (docs/producer.md, "History and one-shot collection"):

=====================================  ==============================  ==========================
endpoint                               metric                          event_time
=====================================  ==============================  ==========================
``/fapi/v1/fundingRate``               ``funding_rate_settled``        ``fundingTime``
``/futures/data/openInterestHist``     ``open_interest``               ``timestamp``
``/fapi/v1/markPriceKlines`` (1m)      ``mark_price`` (the close)      ``closeTime`` (openTime + 59,999)
``/fapi/v1/indexPriceKlines`` (1m)     ``index_price`` (the close)     ``closeTime``
``/fapi/v1/premiumIndex``              mark, index, settle, funding,   ``time``
                                       next funding time
=====================================  ==============================  ==========================

A kline whose ``closeTime`` is not yet past is the minute still open: its
"close" is only the latest price and would change, so it is skipped (not an
error). Every point carries the live source, ``binance_usdm``: a backfilled
point and a live one with the same identity are one observation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Final, NamedTuple

from perpstream.producer import binance
from perpstream.producer.binance import (
    BAD_SYMBOL,
    BAD_TIMESTAMP,
    MISSING_FIELD,
    NOT_OBJECT,
    Record,
    _millis,
    _number,
    _symbol,
)
from perpstream.producer.exceptions import FrameRejected
from perpstream.schemas.models import Metric

MINUTE_MS: Final = 60_000
#: Binance's closeTime of a 1 m kline is openTime + 59,999.
KLINE_SPAN_MS: Final = MINUTE_MS - 1
#: Page sizes: Binance's maxima, except the klines, whose weight steps up at 500
#: (1-99: 1, 100-499: 2, 500-1000: 5, > 1000: 10): 499 a page is the fewest weight per minute.
FUNDING_LIMIT: Final = 1000
OI_HIST_LIMIT: Final = 500
KLINE_LIMIT: Final = 499
#: Binance keeps about 30 days of open-interest history.
OI_HIST_RETENTION_MS: Final = 30 * 86_400_000
OI_HIST_PERIODS: Final = {"5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000,
                          "2h": 7_200_000, "4h": 14_400_000, "6h": 21_600_000, "12h": 43_200_000,
                          "1d": 86_400_000}

_SETTLED: Final = Metric.FUNDING_RATE_SETTLED


def kline_weight(limit: int) -> int:
    """Request weight of a klines call with ``limit`` rows (Binance's table)."""
    return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10


class Parsed(NamedTuple):
    points: list[Record]
    rejected: list[FrameRejected]
    #: Largest event time in the body, valid item or not (pagination), or None.
    last_time: int | None
    #: Items in the body (a full page means there may be more).
    items: int


def _rows(doc: Any, endpoint: str) -> list[Any]:
    if type(doc) is not list:
        raise FrameRejected(NOT_OBJECT, f"{endpoint} body is {type(doc).__name__}, not a list")
    return doc


def _raw_time(v: Any) -> int | None:
    return v if type(v) is int else None


def _parse(doc: Any, endpoint: str, one: Callable[[Any], Record | None],
           time_of: Callable[[Any], Any]) -> Parsed:
    points: list[Record] = []
    rejected: list[FrameRejected] = []
    last: int | None = None
    rows = _rows(doc, endpoint)
    for item in rows:
        t = _raw_time(time_of(item))
        if t is not None and (last is None or t > last):
            last = t
        try:
            p = one(item)
        except FrameRejected as exc:
            rejected.append(exc)
            continue
        if p is not None:
            points.append(p)
    return Parsed(points, rejected, last, len(rows))


def _field(d: Any, name: str, endpoint: str) -> Any:
    if type(d) is not dict:
        raise FrameRejected(NOT_OBJECT, f"{endpoint} item is {type(d).__name__}")
    try:
        return d[name]
    except KeyError:
        raise FrameRejected(MISSING_FIELD, f"{endpoint} item without {name!r}") from None


def _same_symbol(d: Any, symbol: str, endpoint: str) -> None:
    got = _symbol(_field(d, "symbol", endpoint))
    if got != symbol:
        raise FrameRejected(BAD_SYMBOL, f"{endpoint} item for {got!r}, asked for {symbol!r}")


def _point(symbol: str, metric: str, value: float, et: int, ingest_ms: int, source: str) -> Record:
    return {"source": source, "symbol": symbol, "metric": metric, "value": value, "event_time": et,
            "ingest_time": ingest_ms}


def _time_field(name: str) -> Callable[[Any], Any]:
    return lambda d: d.get(name) if type(d) is dict else None


def funding_rate_points(doc: Any, symbol: str, ingest_ms: int, source: str = binance.SOURCE) -> Parsed:
    """``GET /fapi/v1/fundingRate``: ``[{"symbol", "fundingRate", "fundingTime", "markPrice"}]``."""
    def one(d: Any) -> Record:
        _same_symbol(d, symbol, "fundingRate")
        rate = _number(_field(d, "fundingRate", "fundingRate"), "fundingRate", non_negative=False)
        t = _millis(_field(d, "fundingTime", "fundingRate"), "fundingTime")
        return _point(symbol, _SETTLED, rate, t, ingest_ms, source)

    return _parse(doc, "fundingRate", one, _time_field("fundingTime"))


def open_interest_hist_points(doc: Any, symbol: str, ingest_ms: int,
                              source: str = binance.SOURCE) -> Parsed:
    """``GET /futures/data/openInterestHist``:
    ``[{"symbol", "sumOpenInterest", "sumOpenInterestValue", "timestamp"}]`` (contracts, like
    ``openInterest``)."""
    def one(d: Any) -> Record:
        _same_symbol(d, symbol, "openInterestHist")
        oi = _number(_field(d, "sumOpenInterest", "openInterestHist"), "sumOpenInterest", non_negative=True)
        t = _millis(_field(d, "timestamp", "openInterestHist"), "timestamp")
        return _point(symbol, binance._OI, oi, t, ingest_ms, source)

    return _parse(doc, "openInterestHist", one, _time_field("timestamp"))


def kline_close_points(doc: Any, symbol: str, metric: str, ingest_ms: int, now_ms: int,
                       source: str = binance.SOURCE) -> Parsed:
    """``GET /fapi/v1/markPriceKlines`` / ``indexPriceKlines`` (1 m): arrays
    ``[openTime, open, high, low, close, ignore, closeTime, ...]``; one point per
    closed minute, the close at ``closeTime``. The minute still open is skipped."""
    endpoint = "klines"

    def one(row: Any) -> Record | None:
        if type(row) is not list:
            raise FrameRejected(NOT_OBJECT, f"kline is {type(row).__name__}, not an array")
        if len(row) < 7:
            raise FrameRejected(MISSING_FIELD, f"kline has {len(row)} fields, fewer than 7")
        open_time = _millis(row[0], "openTime")
        close_time = _millis(row[6], "closeTime")
        if close_time - open_time != KLINE_SPAN_MS:
            raise FrameRejected(BAD_TIMESTAMP, f"kline {open_time}..{close_time} is not one minute")
        close = _number(row[4], "close", non_negative=True)
        if close_time >= now_ms:
            return None  # the minute still open: not a final value
        return _point(symbol, metric, close, close_time, ingest_ms, source)

    return _parse(doc, endpoint, one, lambda r: r[6] if type(r) is list and len(r) > 6 else None)


def premium_index_points(doc: Any, ingest_ms: int, symbols: frozenset[str] | None = None,
                         source: str = binance.SOURCE) -> Parsed:
    """``GET /fapi/v1/premiumIndex`` (one object, or the list of every symbol):
    ``{"symbol", "markPrice", "indexPrice", "estimatedSettlePrice", "lastFundingRate",
    "interestRate", "nextFundingTime", "time"}``. Delivery contracts answer
    ``lastFundingRate: ""`` and ``nextFundingTime: 0``: no funding metrics.
    ``symbols``, when given, keeps only those symbols."""
    items = doc if type(doc) is list else [doc]
    if type(doc) is not list and type(doc) is not dict:
        raise FrameRejected(NOT_OBJECT, f"premiumIndex body is {type(doc).__name__}")

    def one(d: Any) -> list[Record] | None:
        if type(d) is dict and symbols is not None and d.get("symbol") not in symbols:
            return None
        e = "premiumIndex"
        return binance.mark_price_points({
            "e": "markPriceUpdate", "s": _field(d, "symbol", e), "E": _field(d, "time", e),
            "p": _field(d, "markPrice", e), "i": _field(d, "indexPrice", e),
            "P": _field(d, "estimatedSettlePrice", e), "r": _field(d, "lastFundingRate", e),
            "T": _field(d, "nextFundingTime", e),
        }, ingest_ms, source)

    points: list[Record] = []
    rejected: list[FrameRejected] = []
    for item in items:
        try:
            got = one(item)
        except FrameRejected as exc:
            rejected.append(exc)
            continue
        if got:
            points.extend(got)
    return Parsed(points, rejected, None, len(items))
