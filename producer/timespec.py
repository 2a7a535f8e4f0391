"""Instants on the command line: ISO-8601, epoch milliseconds, or a duration ago.

``parse_instant`` takes ``2026-01-01``, ``2026-01-01T08:00:00Z``,
``2026-01-01T08:00:00+02:00`` (no offset = UTC), ``1767225600000`` (epoch
ms), or ``90m`` / ``6h`` / ``7d`` / ``3600s`` (that long before now), and
returns epoch milliseconds. Anything else is a :class:`ValueError` saying which
forms are accepted.
"""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime
from typing import Final

from perpstream.schemas.rules import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS

_DURATION = re.compile(r"([0-9]+)[ ]*(ms|s|m|h|d|w)")
_UNIT_MS: Final = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
FORMS: Final = "ISO-8601 (2026-01-01T08:00:00Z), epoch ms (1767254400000) or a duration ago (90m, 6h, 7d)"


def parse_duration_ms(text: str) -> int | None:
    """``6h`` -> 21,600,000; None when ``text`` is not a duration."""
    m = _DURATION.fullmatch(text.strip())
    return int(m.group(1)) * _UNIT_MS[m.group(2)] if m else None


def parse_instant(text: str, now_ms: int | None = None) -> int:
    t = text.strip()
    now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    if t.isascii() and t.isdigit():
        ms = int(t)
    elif (d := parse_duration_ms(t)) is not None:
        ms = now - d
    else:
        try:
            dt = datetime.fromisoformat(t.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ValueError(f"{text!r} is not a time: use {FORMS}") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=UTC)
        ms = int(dt.timestamp() * 1000)
    if not MIN_EVENT_TIME_MS <= ms < MAX_EVENT_TIME_MS:
        raise ValueError(f"{text!r} is outside 2017..2100 (epoch ms {ms})")
    return ms
