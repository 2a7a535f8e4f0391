"""Binance USD-M funding intervals: ``GET /fapi/v1/fundingInfo``, read purely.

Binance settles funding every 8 hours, except on the symbols whose funding it
adjusted; ``fundingInfo`` lists only those, each as

``{"symbol", "adjustedFundingRateCap", "adjustedFundingRateFloor", "fundingIntervalHours", "disclaimer"}``

(cap and floor are decimal strings, ``fundingIntervalHours`` a JSON integer; an
entry may keep 8 h and have only its cap adjusted). Every other perpetual is at
8 h. The markPrice stream does not carry the interval, so this answer is the
only way to annualise a Binance funding rate right (rate * 8760 / hours).

The request costs no weight: it shares a pool of 500 requests per 5 minutes per
IP with ``GET /fapi/v1/fundingRate`` (Binance USD-M "Get Funding Rate Info").
docs/producer.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final, NamedTuple

from perpstream.producer.binance import SOURCE
from perpstream.producer.conflate import interval_record
from perpstream.producer.exceptions import FrameRejected
from perpstream.producer.venue import Record

FUNDING_INFO_PATH: Final = "/fapi/v1/fundingInfo"
#: Request weight of ``fundingInfo`` (none: it counts against the funding pool below).
FUNDING_INFO_WEIGHT: Final = 0
#: The pool ``fundingInfo`` shares with ``fundingRate``: this many requests per window, per IP.
FUNDING_POOL_REQUESTS: Final = 500
FUNDING_POOL_WINDOW_S: Final = 300.0
#: Hours between settlements of a perpetual ``fundingInfo`` does not list.
DEFAULT_INTERVAL_HOURS: Final = 8.0
#: The longest interval read as one (venues settle every 1 to 8 hours); more is a bad item.
MAX_INTERVAL_HOURS: Final = 24.0

#: Rejection reason of an answer that is not a JSON array.
NOT_ARRAY: Final = "not_array"


class FundingTable(NamedTuple):
    """What a ``fundingInfo`` answer says about the symbols followed."""

    #: Every listed symbol -> hours between settlements, except those whose item was bad.
    hours: dict[str, float]
    #: Items skipped: the symbol (repr for a non-string) -> what is wrong with the item.
    #: A listed symbol named here is absent from :attr:`hours` (its interval is unknown).
    rejected: dict[str, str]


def funding_info_url(rest_base: str) -> str:
    """``fundingInfo`` under a base such as ``https://fapi.binance.com``."""
    return rest_base.rstrip("/") + FUNDING_INFO_PATH


def _hours(item: Mapping[str, Any]) -> float | str:
    """The item's interval, or what is wrong with it."""
    h = item.get("fundingIntervalHours")
    if h is None:
        return "no fundingIntervalHours"
    if type(h) is not int and type(h) is not float:  # bool is an int subclass: not a count of hours
        return f"fundingIntervalHours={h!r} is not a number"
    if not 0 < h <= MAX_INTERVAL_HOURS:  # also false for nan and inf (and no float() of a huge int)
        return f"fundingIntervalHours={h!r} is not in (0, {MAX_INTERVAL_HOURS:g}]"
    return float(h)


def funding_intervals(body: Any, listed: Iterable[str]) -> FundingTable:
    """The interval of every ``listed`` perpetual, from a decoded ``fundingInfo`` answer.

    ``listed`` are symbols as exchangeInfo spells them (perpetuals: a delivery
    contract has no funding and must not be passed). Items of symbols not listed
    are ignored. A bad item (not an object, no string symbol, a missing or
    impossible ``fundingIntervalHours``, a symbol named twice with different hours)
    is skipped and reported in ``rejected``; it never costs the other symbols.
    An answer that is not an array raises :class:`FrameRejected` (``not_array``).
    """
    if type(body) is not list:
        raise FrameRejected(NOT_ARRAY, f"fundingInfo is {type(body).__name__}, not an array")
    wanted = set(listed)
    adjusted: dict[str, float] = {}
    rejected: dict[str, str] = {}
    for item in body:
        if type(item) is not dict:
            rejected[repr(item)[:80]] = "item is not an object"
            continue
        sym = item.get("symbol")
        if type(sym) is not str:
            rejected[repr(sym)[:80]] = "symbol is not a string"
            continue
        if sym not in wanted or sym in rejected:
            continue
        hours = _hours(item)
        if isinstance(hours, str):
            rejected[sym] = hours
            adjusted.pop(sym, None)
        elif adjusted.setdefault(sym, hours) != hours:
            rejected[sym] = f"listed twice, with {adjusted.pop(sym):g} h and {hours:g} h"
    table = {s: adjusted.get(s, DEFAULT_INTERVAL_HOURS) for s in sorted(wanted) if s not in rejected}
    return FundingTable(table, rejected)


def interval_points(hours: Mapping[str, float], now_ms: int) -> list[Record]:
    """One ``funding_interval_hours`` point per symbol, stamped ``now_ms``: the answer has no
    time of its own, so the moment it was read is both event and ingest time. Pass them through
    :class:`~producer.conflate.FundingIntervals` to publish only news."""
    return [interval_record(SOURCE, s, h, now_ms, now_ms) for s, h in hours.items()]
