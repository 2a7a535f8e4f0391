"""Product bugs the hostile suite found and reported, by name.

Each open one has a ``pytest.mark.xfail(strict=True)`` test that shows it
(``tests/unit/test_hostile_*.py``, ``tests/integration/test_hostile_topic.py``):
when the owners fix one, that test passes, strict xfail turns it into a
failure, and the entry here and its xfail mark go. The oracles name the
trigger of an input they see (``triggers``), so a mismatch caused by one of
these is counted as "known" and any other one as new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class KnownBug:
    name: str
    where: str
    summary: str


#: Open bugs (none now). The nine the suite found first (number_int_overflow,
#: json_recursion, symbol_filter_unhashable, lenient_decimal_strings,
#: funding_time_zero_lenient, exchange_info_not_object, negative_enum_index,
#: tail_cache_unbounded, symbol_cache_unbounded) are fixed; the generators still
#: build their triggers under those names and the regression tests keep them fixed.
_BUGS: tuple[KnownBug, ...] = ()

KNOWN_BUGS: Final[dict[str, KnownBug]] = {b.name: b for b in _BUGS}


def describe(name: str) -> str:
    bug = KNOWN_BUGS[name]
    return f"{bug.name} ({bug.where}): {bug.summary}"


def reason(name: str) -> str:
    """A short xfail reason: the bug's name and where it is (the whole story: :func:`describe`)."""
    bug = KNOWN_BUGS[name]
    return f"known bug {bug.name}, {bug.where}"
