"""The venues ``perpstream backfill --venue`` reads besides Binance, and a run's plan from the flags.

:func:`venue_plan` turns the settings and ``--metrics`` into a
:class:`VenuePlan`, or one :class:`~perpstream.errors.ConfigError` line
naming the flag and what the venue serves instead: a metric the venue keeps
no history of, an ``--oi-period`` it does not serve, no symbols
(docs/producer.md, ``perpstream backfill``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from perpstream.errors import ConfigError
from perpstream.producer.backfill import bybit, hyperliquid, okx
from perpstream.producer.backfill.spec import HistoryKind, VenueHistory
from perpstream.producer.settings import ProducerSettings

BINANCE: Final = "binance"
#: The venues besides Binance, by the name ``--venue`` takes.
HISTORIES: Final[dict[str, VenueHistory]] = {
    h.name: h for h in (bybit.HISTORY, okx.HISTORY, hyperliquid.HISTORY)}
#: Every name ``--venue`` takes; Binance first (the default).
VENUE_CHOICES: Final = (BINANCE, *HISTORIES)


@dataclass(frozen=True)
class Track:
    """One kind of history asked for, with its period as the venue spells it and its length."""

    kind: HistoryKind
    period: str = ""
    period_ms: int = 0


@dataclass(frozen=True)
class VenuePlan:
    history: VenueHistory
    tracks: tuple[Track, ...]
    #: The venue's REST base (``--bybit-rest-url`` ...).
    base: str
    #: The symbols given, as the venue spells them; None: every listed perpetual (``--all``).
    symbols: tuple[str, ...] | None
    #: Said at the end of the run: what was asked for (or left out by default) and is not served.
    notes: tuple[str, ...] = ()


def _metrics(history: VenueHistory, metrics: str | None) -> tuple[list[HistoryKind], list[str]]:
    """The kinds asked for (all the venue serves by default) and the notes about the others."""
    if metrics is None:
        notes = [f"{m} is not backfilled: {history.title} {why}" for m, why in history.not_served.items()]
        return list(history.kinds), notes
    kinds: list[HistoryKind] = []
    served = ", ".join(k.metric for k in history.kinds)
    for name in dict.fromkeys(m.strip() for m in metrics.split(",") if m.strip()):
        if name in history.not_served:
            raise ConfigError(f"--metrics {name}: {history.title} {history.not_served[name]} "
                              f"(it serves {served})")
        kind = history.kind(name)
        if kind is None:
            raise ConfigError(f"--metrics {name!r}: {history.title} serves {served}")
        kinds.append(kind)
    if not kinds:
        raise ConfigError(f"--metrics is empty: {history.title} serves {served}")
    return kinds, []


def venue_plan(settings: ProducerSettings, venue: str, metrics: str | None = None) -> VenuePlan:
    """What a run of ``--venue venue`` fetches; a ConfigError (one line) when the flags do not fit."""
    history = HISTORIES.get(venue)
    if history is None:
        raise ConfigError(f"--venue {venue!r}: choose from {', '.join(VENUE_CHOICES)}")
    kinds, notes = _metrics(history, metrics)
    tracks = []
    for kind in kinds:
        if not kind.periods:
            tracks.append(Track(kind))
            continue
        period = settings.backfill_oi_period
        if period not in kind.periods:
            raise ConfigError(f"--oi-period {period} (PERPSTREAM_BACKFILL_OI_PERIOD): {history.title} serves "
                              f"{kind.metric} history at {', '.join(kind.periods)}")
        tracks.append(Track(kind, *kind.periods[period]))
    given = settings.venue_symbols(venue)
    if given is None and not settings.all_symbols:
        raise ConfigError(f"backfill --venue {venue} needs --symbols A,B as {history.title} spells them "
                          f"(PERPSTREAM_{venue.upper()}_SYMBOLS) or --all")
    base: str = getattr(settings, f"{venue}_rest_url")
    symbols = None if given is None else tuple(sorted(given))
    return VenuePlan(history, tuple(tracks), base, symbols, tuple(notes))
