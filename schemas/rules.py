"""The validation rules of the contract, defined once.

Every boundary applies these and nothing else: the producer's Binance
parsing, the pydantic models, the consumers' decoders (fast and slow) and the
ClickHouse column ranges. Each ``*_problem`` function returns ``None`` for a
valid value or a short text saying what is wrong; the ``check_*`` functions
raise :class:`~schemas.exceptions.InvalidRecordError` with that text.

Symbols are what the venue's listing spells (docs/contract.md, "Symbols"),
so the rule depends on the source: letters of any script, decimal digits,
``_`` and ``-``; at most :data:`SYMBOL_MAX_BYTES` bytes of UTF-8; never empty;
and, except for the sources of :data:`MIXED_CASE_SOURCES`, no lower-case ASCII
letter (Binance spells ASCII symbols upper case, and stream names are the
symbol lower-cased, so ``btcusdt`` and ``BTCUSDT`` would collide; Hyperliquid
spells a 1000-unit coin ``kPEPE``). Control characters, whitespace,
punctuation other than ``_``/``-``, symbols, private use and unassigned code
points are rejected everywhere. Examples that pass: ``BTCUSDT``,
``1000PEPEUSDT``, ``BTCUSDT_261225``, ``币安人生USDT``, ``PEPE-USDT-SWAP``, and
``kPEPE`` from ``hyperliquid``.
"""

from __future__ import annotations

import math
import re
import unicodedata
from functools import lru_cache
from typing import Any, Final

from perpstream.schemas.exceptions import InvalidRecordError

#: Longest symbol or source, in bytes of UTF-8 (Binance's longest is ~20 ASCII characters).
SYMBOL_MAX_BYTES: Final = 64
SOURCE_MAX_BYTES: Final = 64

#: Event times outside [2017-01-01, 2100-01-01) are not market data.
MIN_EVENT_TIME_MS: Final = 1_483_228_800_000
MAX_EVENT_TIME_MS: Final = 4_102_444_800_000
#: ClickHouse DateTime64(3) ends at 2299-12-31T23:59:59.999Z; ingest times must fit it.
MIN_INGEST_TIME_MS: Final = 0
MAX_INGEST_TIME_MS: Final = 10_413_791_999_999

#: Sources whose venue spells symbols with lower-case ASCII letters too (docs/contract.md,
#: "Symbols"): Hyperliquid's coins are ``BTC``, ``kPEPE`` (1000 PEPE), ``kSHIB``.
MIXED_CASE_SOURCES: Final = frozenset({"hyperliquid", "sim.hyperliquid"})

_ASCII_SYMBOL = re.compile(r"[A-Z0-9_-]+")
_ASCII_SYMBOL_MIXED_CASE = re.compile(r"[A-Za-z0-9_-]+")
_SOURCE = re.compile(r"[a-z0-9][a-z0-9_.-]*")
#: Unicode general categories a symbol character may have (besides "_" and "-"):
#: letters (upper, lower, title, modifier, other), combining marks (scripts such
#: as Thai or Devanagari need them) and decimal digits.
_SYMBOL_CATEGORIES: Final = frozenset({"Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Nd"})


def symbol_problem(symbol: str, source: str | None = None) -> str | None:
    """``None`` when ``symbol`` is a valid symbol of ``source``'s venue, else what is wrong with it.

    Without a source (callers that predate venues), and for every source not in
    :data:`MIXED_CASE_SOURCES`, lower-case ASCII is refused. Cached per
    (symbol, whether lower case is allowed): a market has a few hundred symbols
    and the producer checks one per frame, so the check costs a dictionary
    lookup after the first sight. Only strings short enough to be symbols reach
    the cache, so hostile input cannot fill it with large keys.
    """
    if len(symbol) > SYMBOL_MAX_BYTES:  # characters >= bytes / 4, so this is never a symbol
        return f"symbol is {len(symbol)} characters, more than {SYMBOL_MAX_BYTES} bytes"
    return _symbol_problem(symbol, source in MIXED_CASE_SOURCES)


@lru_cache(maxsize=65_536)
def _symbol_problem(symbol: str, lower_ascii: bool) -> str | None:
    if not symbol:
        return "symbol is empty"
    if symbol.isascii():
        if len(symbol) > SYMBOL_MAX_BYTES:
            return f"symbol is {len(symbol)} bytes, more than {SYMBOL_MAX_BYTES}"
        if (_ASCII_SYMBOL_MIXED_CASE if lower_ascii else _ASCII_SYMBOL).fullmatch(symbol) is None:
            letters = "A-Z, a-z" if lower_ascii else "A-Z"
            return (f"symbol {symbol!r} has a character other than {letters}, 0-9, '_', '-' "
                    "or a non-ASCII letter")
        return None
    try:
        size = len(symbol.encode("utf-8"))
    except UnicodeEncodeError:
        return f"symbol {symbol!r} is not valid Unicode (lone surrogate)"
    if size > SYMBOL_MAX_BYTES:
        return f"symbol is {size} bytes of UTF-8, more than {SYMBOL_MAX_BYTES}"
    for ch in symbol:
        if ch.isascii():
            if not ("A" <= ch <= "Z" or "0" <= ch <= "9" or ch in "_-" or (lower_ascii and "a" <= ch <= "z")):
                return f"symbol {symbol!r} has the character {ch!r}"
        elif unicodedata.category(ch) not in _SYMBOL_CATEGORIES:
            return f"symbol {symbol!r} has the character U+{ord(ch):04X} ({unicodedata.category(ch)})"
    return None


def source_problem(source: str) -> str | None:
    """``None`` for a valid source label (``binance_usdm``): lower-case ASCII, digits, ``_.-``."""
    if len(source) > SOURCE_MAX_BYTES:
        return f"source is longer than {SOURCE_MAX_BYTES} bytes"
    return _source_problem(source)


@lru_cache(maxsize=1_024)
def _source_problem(source: str) -> str | None:
    if not source:
        return "source is empty"
    if not source.isascii() or _SOURCE.fullmatch(source) is None:
        return f"source {source!r} is not lower-case ASCII letters, digits, '_', '.', '-'"
    return None


def event_time_problem(ms: int) -> str | None:
    if not MIN_EVENT_TIME_MS <= ms < MAX_EVENT_TIME_MS:
        return f"event_time {ms} is outside 2017-01-01..2100-01-01"
    return None


def ingest_time_problem(ms: int) -> str | None:
    if not MIN_INGEST_TIME_MS <= ms <= MAX_INGEST_TIME_MS:
        return f"ingest_time {ms} does not fit DateTime64(3)"
    return None


#: Metrics whose value must also be > 0 (docs/contract.md, "Rules"). A funding interval is a
#: positive number of hours; zero or less is a parse bug, and an annualised rate divides by it.
POSITIVE_METRICS: Final = frozenset({"funding_interval_hours"})


def value_problem(value: float, metric: str | None = None) -> str | None:
    """``None`` for a finite value that also meets ``metric``'s own rule (none without a metric)."""
    if not math.isfinite(value):
        return f"value is not finite: {value!r}"
    if metric in POSITIVE_METRICS and not value > 0.0:
        return f"{metric} must be > 0, got {value!r}"
    return None


def metric_point_problem(record: dict[str, Any], known_metrics: frozenset[str]) -> str | None:
    """The first broken rule of a decoded MetricPoint, or ``None``.

    ``known_metrics`` are the metrics the reader stores (its enum symbols
    without the ``unknown`` default): a record whose metric the reader does not
    know breaks the contract for that reader and goes to the DLQ.
    """
    return (
        value_problem(record["value"])
        or symbol_problem(record["symbol"], record["source"])
        or source_problem(record["source"])
        or (None if record["metric"] in known_metrics else
            f"metric {record['metric']!r} is unknown to this reader (newer writer schema?)")
        or value_problem(record["value"], record["metric"])
        or event_time_problem(record["event_time"])
        or ingest_time_problem(record["ingest_time"])
    )


def check(problem: str | None) -> None:
    """Raise :class:`InvalidRecordError` for a problem text."""
    if problem is not None:
        raise InvalidRecordError(problem)
