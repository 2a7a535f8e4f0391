"""What a venue other than Binance serves as history, and the pure pieces every venue shares.

A venue module (:mod:`.bybit`, :mod:`.okx`, :mod:`.hyperliquid`) is one
:class:`VenueHistory`: its ``source``, its REST budget, the span of a chunk,
and one :class:`HistoryKind` per metric it serves (how to fetch ``[start,
end)`` of it, how far back the venue keeps it). What it does not serve is
named in ``not_served`` so the command can say so. Bodies become a
:class:`Page` item by item: a bad item is rejected alone, with a reason
(docs/producer.md, ``perpstream backfill``).

The three ways venues page (newest first below the oldest row, oldest first
above the newest row, an opaque cursor) are written once here, each stopping
when a page is short, when it makes no progress, or after :data:`MAX_PAGES`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, NamedTuple

from perpstream.producer.binance import BAD_SYMBOL, MISSING_FIELD, NOT_OBJECT, Record
from perpstream.producer.exceptions import FrameRejected, RestError
from perpstream.producer.failures import RestFault
from perpstream.schemas.models import Metric

if TYPE_CHECKING:  # the requests module loads aiohttp; the specs and parsers are pure
    from perpstream.producer.backfill.requests import VenueRequests

#: Pages one chunk of one kind may take; more means the venue's paging does not end.
MAX_PAGES: Final = 1000
HOUR_MS: Final = 3_600_000


class Page(NamedTuple):
    """One answer, read: its points, its rejected items, and where the next page starts."""

    points: list[Record]
    rejected: list[FrameRejected]
    #: Items in the answer (a full page means there may be more).
    items: int
    #: Smallest and largest row time in the answer, valid item or not (paging), or None.
    oldest: int | None
    newest: int | None
    #: The next page's cursor, where the venue pages by cursor; None on the last page.
    cursor: str | None = None


class Ask(NamedTuple):
    """One kind of history of one symbol over ``[start, end)``."""

    base: str
    symbol: str
    start: int
    end: int
    ingest_ms: int
    #: The kind's period as the venue spells it (open interest), "" for kinds without one.
    period: str = ""


Fetch = Callable[["VenueRequests", Ask], Awaitable[list[Record]]]
#: ``listing(requests, rest_base) -> symbols``: every perpetual the venue lists, as it spells them.
Listing = Callable[["VenueRequests", str], Awaitable[list[str]]]


@dataclass(frozen=True)
class HistoryKind:
    metric: Metric
    fetch: Fetch
    #: ``--oi-period`` (Binance's spelling) -> (the venue's spelling, its length in ms); empty for
    #: kinds without a period.
    periods: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    #: How far back the venue serves it: a span, or a number of periods; None = since the listing.
    retention_ms: int | None = None
    retention_periods: int | None = None
    #: The venue's limit in words, for the warning when ``--since`` is older.
    retention_text: str = ""

    def oldest(self, now: int, period_ms: int) -> int | None:
        """The first event time the venue still serves (an hour of margin: the windows roll)."""
        spans = [s for s in (self.retention_ms,
                             None if self.retention_periods is None else self.retention_periods * period_ms)
                 if s is not None]
        return now - min(spans) + HOUR_MS if spans else None


@dataclass(frozen=True)
class VenueHistory:
    #: As ``--venue`` takes it (``bybit``), and as people write it (``Bybit``).
    name: str
    title: str
    source: str
    #: REST budget per IP: ``rest_limit`` weight per ``rest_window`` seconds.
    rest_limit: int
    rest_window: float
    #: Span of one chunk: delivered, acknowledged and checkpointed as one.
    chunk_ms: int
    kinds: tuple[HistoryKind, ...]
    #: Every listed perpetual (``--all``).
    listing: Listing
    #: metric -> why the venue does not serve its history.
    not_served: Mapping[str, str] = field(default_factory=dict)
    #: Every name the venue has history for, where it answers an unknown one with no rows
    #: instead of an error: the symbols given are checked against it first. None: the venue
    #: refuses an unknown symbol itself.
    known: Listing | None = None

    def kind(self, metric: str) -> HistoryKind | None:
        return next((k for k in self.kinds if k.metric == metric), None)


# -- pure reading -------------------------------------------------------------------------------


def row_time(v: Any) -> int | None:
    """A row's time for paging (int, or a digit string as Bybit and OKX send), else None."""
    if type(v) is str and 0 < len(v) <= 16 and v.isascii() and v.isdigit():
        return int(v)
    return v if type(v) is int else None


def page_of(rows: Any, where: str, one: Callable[[Any], Record], time_of: Callable[[Any], Any],
            cursor: str | None = None) -> Page:
    """The points of ``rows`` (a list), each item read by ``one``; a bad item is rejected alone."""
    if type(rows) is not list:
        raise FrameRejected(NOT_OBJECT, f"{where} rows are {type(rows).__name__}, not a list")
    points: list[Record] = []
    rejected: list[FrameRejected] = []
    times: list[int] = []
    for item in rows:
        t = row_time(time_of(item))
        if t is not None:
            times.append(t)
        try:
            points.append(one(item))
        except FrameRejected as exc:
            rejected.append(exc)
    return Page(points, rejected, len(rows), min(times, default=None), max(times, default=None), cursor)


def field_of(d: Any, name: str, where: str) -> Any:
    if type(d) is not dict:
        raise FrameRejected(NOT_OBJECT, f"{where} item is {type(d).__name__}")
    try:
        return d[name]
    except KeyError:
        raise FrameRejected(MISSING_FIELD, f"{where} item without {name!r}") from None


def same_symbol(got: Any, symbol: str, where: str) -> None:
    """An item (or answer) naming another symbol than the one asked for is not this symbol's."""
    if got != symbol:
        raise FrameRejected(BAD_SYMBOL, f"{where} for {str(got)[:80]!r}, asked for {symbol!r}")


def point(ask: Ask, source: str, metric: Metric, value: float, event_time: int) -> Record:
    return {"source": source, "symbol": ask.symbol, "metric": metric, "value": value,
            "event_time": event_time, "ingest_time": ask.ingest_ms}


def refused(where: str, message: str) -> RestError:
    """The venue says this request is wrong (an unknown symbol, a bad parameter): not retried."""
    return RestError(200, f"{where}: {message}"[:300], fault=RestFault.REFUSED)


# -- paging ---------------------------------------------------------------------------------------


def _inside(page: Page, start: int, end: int, seen: set[int]) -> list[Record]:
    """The page's points in ``[start, end)`` not already taken (a venue whose bound is inclusive
    answers the row at the bound on both pages)."""
    out = [p for p in page.points if start <= p["event_time"] < end and p["event_time"] not in seen]
    seen.update(p["event_time"] for p in out)
    return out


async def newest_first(get: Callable[[int], Awaitable[Page]], start: int, end: int,
                       limit: int) -> list[Record]:
    """``get(upper)`` answers the newest ``limit`` rows at or before ``upper`` (and from
    ``start``); a full page goes on below its oldest row."""
    out: list[Record] = []
    seen: set[int] = set()
    upper = end - 1
    for _ in range(MAX_PAGES):
        page = await get(upper)
        out.extend(_inside(page, start, end, seen))
        if page.items < limit or page.oldest is None or page.oldest <= start or page.oldest > upper:
            return out
        upper = page.oldest - 1
    raise _endless(start, end)


async def oldest_first(get: Callable[[int], Awaitable[Page]], start: int, end: int,
                       limit: int) -> list[Record]:
    """``get(lower)`` answers the oldest ``limit`` rows at or after ``lower`` (and before
    ``end``); a full page goes on above its newest row."""
    out: list[Record] = []
    seen: set[int] = set()
    lower = start
    for _ in range(MAX_PAGES):
        page = await get(lower)
        out.extend(_inside(page, start, end, seen))
        if page.items < limit or page.newest is None or page.newest >= end - 1 or page.newest < lower:
            return out
        lower = page.newest + 1
    raise _endless(start, end)


async def by_cursor(get: Callable[[str], Awaitable[Page]], start: int, end: int) -> list[Record]:
    """``get(cursor)`` answers one page and the next page's cursor (none on the last page);
    newest first, so a page that does not go further back ends the paging."""
    out: list[Record] = []
    seen: set[int] = set()
    cursor = ""
    floor: int | None = None
    for _ in range(MAX_PAGES):
        page = await get(cursor)
        out.extend(_inside(page, start, end, seen))
        stuck = page.oldest is None or (floor is not None and page.oldest >= floor)
        if not page.cursor or stuck or page.oldest is None or page.oldest <= start:
            return out
        cursor, floor = page.cursor, page.oldest
    raise _endless(start, end)


def _endless(start: int, end: int) -> RestError:
    return RestError(200, f"more than {MAX_PAGES} pages for {start}..{end}: the venue's paging does not end",
                     fault=RestFault.REFUSED)
