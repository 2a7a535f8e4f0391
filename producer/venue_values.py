"""Values as the venues other than Binance write them: decimal strings and integer milliseconds.

Bybit and OKX send every number as a decimal string and times as digit strings (or integers);
both are read with the same strictness, so one hostile spelling cannot pass on one venue and
not on the other (docs/failures.md, "Hostile input").
"""

from __future__ import annotations

from typing import Any

from perpstream.producer.binance import BAD_NUMBER, BAD_TIMESTAMP, NON_FINITE
from perpstream.producer.exceptions import FrameRejected
from perpstream.schemas.rules import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS


def decimal_string(v: Any, field: str, signed: bool) -> float:
    """The double nearest a decimal string; ``signed`` allows a negative one (funding)."""
    # float() of a decimal string is the nearest double. A decimal is ASCII, without "_" or
    # padding (float() alone also takes "1_000", " 1", fullwidth digits).
    if type(v) is not str or not v.isascii() or "_" in v or len(v.strip()) != len(v):
        raise FrameRejected(BAD_NUMBER, f"{field}={v!r} is not a decimal string")
    try:
        x = float(v)
    except ValueError:
        raise FrameRejected(BAD_NUMBER, f"{field}={v!r} is not a number") from None
    if x - x != 0.0:  # nan and inf, without a call
        raise FrameRejected(NON_FINITE, f"{field}={v!r}")
    if not signed and x < 0:
        raise FrameRejected(BAD_NUMBER, f"{field}={v!r} is negative")
    return x


def millis(v: Any, field: str) -> int:
    """Integer milliseconds in 2017..2100, from an integer or a digit string."""
    # 13 digits until 2286; a longer string is not a time (and int() refuses 4,300+ digits)
    if type(v) is str and len(v) <= 16 and v.isascii() and v.isdigit():
        v = int(v)
    if type(v) is not int:
        raise FrameRejected(BAD_TIMESTAMP, f"{field}={v!r} is not integer milliseconds")
    if not MIN_EVENT_TIME_MS <= v < MAX_EVENT_TIME_MS:
        raise FrameRejected(BAD_TIMESTAMP, f"{field}={v} is outside 2017..2100")
    return v
