"""The oracle's own reading of the producer's contract, written from the docs, not the code.

Sources: docs/producer.md ("Normalisation": fields, delivery contracts,
rejection reasons), the Binance payload shapes (markPriceUpdate, combined
``{"stream", "data"}``, the all-market array, ``{"result": null, "id": n}``
answers, the openInterest body, exchangeInfo), and :mod:`schemas.rules`
(symbols, time ranges, finiteness; the uncached rule functions, so the
oracle leaves the product's caches alone).

Every rule returns either the value or the *set* of reasons the input may be
rejected for: docs/producer.md names the reasons but not an order between
them, so a payload with two problems may be counted under either.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any, Final

from perpstream.fakes.hostile.jsontext import HugeInt
from perpstream.fakes.hostile.outcomes import Accept, Control, FrameOutcome, Items, Point, Reject, Skip, bits
from perpstream.producer.binance import (
    BAD_NUMBER,
    BAD_SYMBOL,
    BAD_TIMESTAMP,
    MISSING_FIELD,
    NON_FINITE,
    NOT_OBJECT,
    UNEXPECTED_EVENT,
)
from perpstream.schemas import rules
from perpstream.schemas.models import Metric

SOURCE: Final = "binance_usdm"
_symbol_problem: Callable[[str], str | None] = rules.symbol_problem

#: A decimal string: optional sign, ASCII digits with an optional fraction, optional exponent.
_DECIMAL = re.compile(r"[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")
_NON_FINITE_WORD = re.compile(r"[+-]?(?:nan|inf|infinity)", re.IGNORECASE)

#: Metrics of one markPriceUpdate, in the order docs/producer.md lists them.
MARK_FIELDS: Final = (
    ("p", Metric.MARK_PRICE), ("i", Metric.INDEX_PRICE), ("P", Metric.ESTIMATED_SETTLE_PRICE))
REQUIRED: Final = ("e", "s", "E", "p", "i", "P", "r", "T")


class Triggers(set[str]):
    """Known-bug triggers seen while judging one input."""


def symbol_ok(v: Any) -> bool:
    return type(v) is str and _symbol_problem(v) is None


def number(v: Any, *, non_negative: bool, seen: Triggers) -> float | frozenset[str]:
    """A price / rate / open interest: decimal string or JSON number, finite,
    non-negative where it must be."""
    x: float
    if type(v) is str:
        if _DECIMAL.fullmatch(v):
            x = float(v)
        elif _NON_FINITE_WORD.fullmatch(v):
            return frozenset({NON_FINITE, BAD_NUMBER}) if v.startswith("-") else frozenset({NON_FINITE})
        else:
            try:
                float(v)
                seen.add("lenient_decimal_strings")
            except ValueError:
                pass
            return frozenset({BAD_NUMBER})
    elif type(v) is int or type(v) is HugeInt:
        try:
            x = float(v) if type(v) is int else math.inf
        except OverflowError:
            x = math.inf
        if not math.isfinite(x):
            seen.add("number_int_overflow")
            return frozenset({NON_FINITE, BAD_NUMBER})
    elif type(v) is float:
        x = v
    else:
        return frozenset({BAD_NUMBER})
    if not math.isfinite(x):
        return frozenset({NON_FINITE, BAD_NUMBER}) if non_negative and x < 0 else frozenset({NON_FINITE})
    if non_negative and x < 0:
        return frozenset({BAD_NUMBER})
    return x


def millis(v: Any) -> int | frozenset[str]:
    """Epoch milliseconds: a JSON integer within 2017..2100."""
    if type(v) is int and rules.MIN_EVENT_TIME_MS <= v < rules.MAX_EVENT_TIME_MS:
        return v
    return frozenset({BAD_TIMESTAMP})


def _points(key: str, source: str, et: int, it: int, values: list[tuple[str, float]]) -> tuple[Point, ...]:
    k = key.encode("utf-8")
    return tuple((k, source, key, metric, bits(value), et, it) for metric, value in values)


def mark_price_item(d: Any, ingest_ms: int, seen: Triggers, source: str = SOURCE) -> Accept | Reject:
    """One markPriceUpdate payload: all of its points, or rejected."""
    if type(d) is not dict:
        return Reject(frozenset({NOT_OBJECT}))
    reasons: set[str] = set()
    if any(k not in d for k in REQUIRED):
        reasons.add(MISSING_FIELD)
    if "e" in d and not (type(d["e"]) is str and d["e"] == "markPriceUpdate"):
        reasons.add(UNEXPECTED_EVENT)
    if "s" in d and not symbol_ok(d["s"]):
        reasons.add(BAD_SYMBOL)
    et = millis(d["E"]) if "E" in d else None
    if isinstance(et, frozenset):
        reasons |= et
    values: list[tuple[str, float]] = []
    for f, metric in MARK_FIELDS:
        if f in d:
            x = number(d[f], non_negative=True, seen=seen)
            if isinstance(x, frozenset):
                reasons |= x
            else:
                values.append((metric, x))
    if "r" in d and not (type(d["r"]) is str and d["r"] == ""):  # "" = a delivery contract
        x = number(d["r"], non_negative=False, seen=seen)
        if isinstance(x, frozenset):
            reasons |= x
        else:
            values.append((Metric.FUNDING_RATE, x))
    if "T" in d and not (type(d["T"]) is int and d["T"] == 0):  # integer 0 = a delivery contract
        if d["T"] is False or (type(d["T"]) is float and d["T"] == 0):
            seen.add("funding_time_zero_lenient")
        t = millis(d["T"])
        if isinstance(t, frozenset):
            reasons |= t
        else:
            values.append((Metric.NEXT_FUNDING_TIME, float(t)))
    if reasons:
        return Reject(frozenset(reasons))
    assert isinstance(et, int)
    return Accept(_points(d["s"], source, et, ingest_ms, values))


def is_control(msg: Any) -> bool:
    """A SUBSCRIBE/UNSUBSCRIBE answer: ``{"result": ..., "id": n}`` or ``{"error": ..., "id": n}``."""
    return type(msg) is dict and "id" in msg and ("result" in msg or "error" in msg)


def _wanted(item: Any, symbols: frozenset[str] | None, seen: Triggers) -> bool:
    if symbols is None or type(item) is not dict:
        return True
    s = item.get("s")
    if isinstance(s, list | dict):
        seen.add("symbol_filter_unhashable")
    return type(s) is str and s in symbols


def ws_message(msg: Any, ingest_ms: int, seen: Triggers, *, symbols: frozenset[str] | None = None,
               source: str = SOURCE) -> FrameOutcome:
    """A decoded websocket message: a control answer, one payload (raw or combined),
    or the all-market array (each item on its own)."""
    if is_control(msg):
        return Control()
    data = msg
    if type(msg) is dict and "stream" in msg:
        data = msg.get("data", msg)
    items = data if type(data) is list else [data]
    return Items(tuple(
        mark_price_item(it, ingest_ms, seen, source) if _wanted(it, symbols, seen) else Skip("filtered")
        for it in items
    ))


def open_interest(d: Any, ingest_ms: int, last: Mapping[str, int], seen: Triggers,
                  source: str = SOURCE) -> Accept | Reject | Skip:
    """One ``/fapi/v1/openInterest`` body; the time already published for its symbol is a duplicate."""
    if type(d) is not dict:
        return Reject(frozenset({NOT_OBJECT}))
    reasons: set[str] = set()
    if any(k not in d for k in ("openInterest", "symbol", "time")):
        reasons.add(MISSING_FIELD)
    if "symbol" in d and not symbol_ok(d["symbol"]):
        reasons.add(BAD_SYMBOL)
    value = number(d["openInterest"], non_negative=True, seen=seen) if "openInterest" in d else None
    if isinstance(value, frozenset):
        reasons |= value
    t = millis(d["time"]) if "time" in d else None
    if isinstance(t, frozenset):
        reasons |= t
    if reasons:
        return Reject(frozenset(reasons))
    assert isinstance(value, float) and isinstance(t, int)
    if last.get(d["symbol"]) == t:
        return Skip("duplicate")
    return Accept(_points(d["symbol"], source, t, ingest_ms, [(Metric.OPEN_INTEREST, value)]))


class Raises:
    """exchangeInfo: the call must raise FrameRejected with one of ``reasons``."""

    def __init__(self, reasons: frozenset[str]) -> None:
        self.reasons = reasons

    def __repr__(self) -> str:
        return f"Raises({sorted(self.reasons)})"


def perpetuals(info: Any, seen: Triggers) -> frozenset[str] | Raises:
    """Symbols a ``--all`` producer follows: PERPETUAL contracts with status TRADING whose
    symbol the contract accepts; a body that is not an exchangeInfo object is rejected."""
    if type(info) is not dict:
        seen.add("exchange_info_not_object")
        return Raises(frozenset({NOT_OBJECT, MISSING_FIELD}))
    items = info.get("symbols")
    if type(items) is not list:
        return Raises(frozenset({NOT_OBJECT, MISSING_FIELD}))
    out = set()
    for s in items:
        if type(s) is dict and s.get("contractType") == "PERPETUAL" and s.get("status") == "TRADING" \
                and symbol_ok(s.get("symbol")):
            out.add(s["symbol"])
    return frozenset(out)
