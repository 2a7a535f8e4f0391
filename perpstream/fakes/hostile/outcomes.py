"""What an oracle allows, what a boundary did, and whether the two agree.

An oracle answers with *alternatives*: every outcome the contract allows for
one input (a BOM-prefixed frame may be read or rejected as ``bad_json``; a
payload with two problems may be rejected for either). Each alternative is
exact: the points it allows are the only ones that may be published, and a
rejection names the reasons it may be counted under.
"""

from __future__ import annotations

import itertools
import random
import struct
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from perpstream.fakes.hostile.known_bugs import KNOWN_BUGS

#: A published MetricPoint, comparable exactly: the value as its 8 bytes (NaN, -0.0).
Point = tuple[bytes, str, str, str, bytes, int, int]  # key, source, symbol, metric, value bits, et, it


def bits(x: float) -> bytes:
    return struct.pack("<d", x)


def point(key: bytes, rec: dict[str, Any]) -> Point:
    return (key, rec["source"], rec["symbol"], rec["metric"], bits(rec["value"]),
            rec["event_time"], rec["ingest_time"])


def blob(rng: random.Random, n: int) -> bytes:
    """``n`` bytes from a generator derived from ``rng`` (one draw, whatever ``n`` is)."""
    return random.Random(rng.getrandbits(64)).randbytes(n)


@dataclass(frozen=True)
class Reject:
    """Rejected, counted once under one of ``reasons``; nothing published for it."""

    reasons: frozenset[str]


@dataclass(frozen=True)
class Accept:
    """Published exactly these points (in any order)."""

    points: tuple[Point, ...]


@dataclass(frozen=True)
class Skip:
    """Neither published nor counted (filtered out, a duplicate)."""

    why: str = ""


@dataclass(frozen=True)
class Control:
    """A control answer: handed back to the caller, neither published nor counted."""


@dataclass(frozen=True)
class Items:
    """A message that was read: one outcome per item (one item unless it was an array)."""

    items: tuple[Accept | Reject | Skip, ...]


FrameOutcome = Reject | Control | Items


@dataclass(frozen=True)
class Case:
    """One generated input: the data, the family that made it, and its options."""

    data: Any
    family: str
    #: The known bug this input was generated to trigger (see known_bugs), if any.
    known_bug: str | None = None
    #: Boundary 1: feed it to an Ingest that keeps only some symbols (all-market stream).
    filtered: bool = False

    def short(self, limit: int = 160) -> str:
        text = repr(self.data)
        return text if len(text) <= limit else text[:limit] + f"...(+{len(text) - limit} chars)"


@dataclass(frozen=True)
class Observed:
    """What a producer-side boundary did with one input."""

    points: Counter[Point]
    rejected: Counter[str]
    control: bool
    skipped: int = 0  # open-interest duplicates


def reasons_match(sets: Sequence[frozenset[str]], observed: Counter[str]) -> bool:
    """Can each rejected item be given one observed rejection whose reason it allows?"""
    if len(sets) != sum(observed.values()):
        return False
    left = Counter(observed)
    rest: list[frozenset[str]] = []
    for s in sets:
        if len(s) == 1:
            (r,) = s
            left[r] -= 1
            if left[r] < 0:
                return False
        else:
            rest.append(s)
    if not rest:
        return True
    # Hall's condition over the few reasons involved: for every set U of reasons, the items
    # that allow only reasons in U must not outnumber the observed rejections in U.
    groups = Counter(rest)
    types = sorted(set().union(*rest) | {r for r, n in left.items() if n > 0})
    for k in range(1, len(types) + 1):
        for subset in itertools.combinations(types, k):
            u = set(subset)
            need = sum(n for s, n in groups.items() if s <= u)
            if need > sum(left[r] for r in u):
                return False
    return True


def matches(alt: FrameOutcome, obs: Observed) -> bool:
    if isinstance(alt, Control):
        return obs.control and not obs.points and not obs.rejected
    if obs.control:
        return False
    if isinstance(alt, Reject):
        return not obs.points and sum(obs.rejected.values()) == 1 and next(iter(obs.rejected)) in alt.reasons
    expected: Counter[Point] = Counter()
    sets: list[frozenset[str]] = []
    skipped = 0
    for item in alt.items:
        if isinstance(item, Accept):
            expected.update(item.points)
        elif isinstance(item, Reject):
            sets.append(item.reasons)
        elif item.why == "duplicate":
            skipped += 1
    return expected == obs.points and skipped == obs.skipped and reasons_match(sets, +obs.rejected)


def describe_alternatives(alts: Iterable[FrameOutcome], limit: int = 3) -> str:
    out = []
    for alt in itertools.islice(alts, limit):
        if isinstance(alt, Reject):
            out.append(f"reject{sorted(alt.reasons)}")
        elif isinstance(alt, Control):
            out.append("control")
        else:
            parts = []
            for it in alt.items[:4]:
                if isinstance(it, Accept):
                    parts.append(f"accept({len(it.points)} points)")
                elif isinstance(it, Reject):
                    parts.append(f"reject{sorted(it.reasons)}")
                else:
                    parts.append(f"skip({it.why})")
            more = f" +{len(alt.items) - 4} items" if len(alt.items) > 4 else ""
            out.append("[" + ", ".join(parts) + more + "]")
    return " | ".join(out)


def describe_observed(obs: Observed) -> str:
    return (f"published {sum(obs.points.values())} points, rejected {dict(obs.rejected)}, "
            f"control={obs.control}, skipped={obs.skipped}")


@dataclass
class Verdict:
    """One input's result. ``failure`` is None when the boundary did what the oracle allows."""

    outcome: str  # accepted / rejected / partial / control / nothing / crash / hang
    reasons: Counter[str] = field(default_factory=Counter)
    failure: str | None = None  # "mismatch: ..." / "crash: ..." / "hang: ..."
    #: Known bugs whose trigger the oracle saw in this input.
    triggers: frozenset[str] = frozenset()
    #: Time the boundary spent on the input (not the oracle's), milliseconds.
    ms: float = 0.0

    @property
    def kind(self) -> str | None:
        return None if self.failure is None else self.failure.split(":", 1)[0]

    @property
    def explained(self) -> bool:
        """A failure that a known (reported, xfail-pinned) bug accounts for."""
        return self.failure is not None and any(t in KNOWN_BUGS for t in self.triggers)
