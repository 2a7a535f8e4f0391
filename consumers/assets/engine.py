"""Pure cross-venue aggregation: MarketSnapshot rows in, AssetSnapshot records out.

No Kafka, no ClickHouse, no clock: like the per-symbol engine
(``consumers/snapshots/engine.py``) it is driven by event time only, so the
same rows give the same records, bit for bit, whatever order they came in
within the lateness.

Rules (docs/assets.md, "The engine"; field definitions in docs/snapshots.md,
"Cross-venue asset snapshots"):

- A row's asset is ``key_of(source, symbol)`` (:func:`asset_of` by default).
  Rows without a key (a dated future, an unknown venue) or of a quote the
  config does not take are ``ignored`` and touch no state.
- Per asset, ``M`` = largest snapshot_time of an accepted row. The asset
  snapshots for ``t`` (one per window) are emitted once ``M - lateness > t``,
  strictly, like the per-symbol watermark: a row at most ``lateness`` behind
  ``M`` is never lost. Each holds exactly the rows accepted for (window, t).
- A row with ``t <=`` the asset's last emitted time is ``late`` and not applied
  (the state of emitted times is dropped, so a repeat of an emitted row is late
  too). A second row for the same (source, symbol, window, t) is a
  ``duplicate``; the first wins. A row that cannot be read (a required field
  missing or of the wrong type, a value not finite) is ``invalid``.
- Which markets the aggregates read: the fresh ones (``stale`` false), each
  aggregate over those that have its inputs. The stale ones stay in
  ``markets`` and name their venues in ``venues_stale`` when nothing fresh is
  left there.

Numerics. Notional sums and the OI-weighted funding are exact: every double
is ``k * 2**-1074`` for an integer ``k``, so ``notional * 2**1074`` and
``funding * notional * 2**2148`` are integers, Python integers add without
error in any order, and each result is one correctly rounded division.

Memory: per asset, the rows of the times not yet emitted (within the lateness
of ``M``) and two integers; nothing for emitted times.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, NamedTuple

from perpstream.consumers.assets.keys import AssetKey, asset_of
from perpstream.consumers.exceptions import ConsumerError
from perpstream.errors import ConfigError
from perpstream.schemas.codec import load_schema
from perpstream.schemas.columns import Column, _column

#: What :meth:`AssetEngine.add` did with a row.
ACCEPTED, DUPLICATE, LATE, IGNORED, INVALID = range(5)
OUTCOMES: Final = ("accepted", "duplicate", "late", "ignored", "invalid")

_SHIFT: Final = 1074  # every finite double times 2**1074 is an integer
_MAX_DOUBLE: Final = sys.float_info.max
#: The MarketSnapshot values an AssetMarket carries. The first two are new in the
#: MarketSnapshot schema; a row written before them has neither (read as null).
_VALUES: Final = ("funding_annualized", "funding_interval_h", "funding_last", "basis_last",
                  "mark_last", "oi_last")


class AssetEngineError(ConsumerError):
    """Root of the asset engine's errors."""


class AssetConfigError(AssetEngineError, ConfigError):
    """Engine parameters that cannot work (negative lateness, no quotes)."""


@dataclass(frozen=True)
class AssetEngineConfig:
    """Event-time parameters (docs/assets.md, "The engine").

    ``lateness_ms``: how far behind the asset's newest snapshot time a venue's
    row may arrive and still count. Per-symbol rows reach the engine after their
    own watermark (2 s) and a batch or two (1 s each), at different times per
    venue; 15 s covers that with room. ``quotes``: the quote currencies whose
    markets an asset takes; USD is an inverse contract, whose open interest is
    in coins too, so its notional is in USD like the others'.
    """

    lateness_ms: int = 15_000
    quotes: frozenset[str] = frozenset({"USDT", "USDC", "USD"})

    def __post_init__(self) -> None:
        if self.lateness_ms < 0:
            raise AssetConfigError("lateness_ms must be >= 0")
        if not self.quotes:
            raise AssetConfigError("quotes must name at least one quote currency")


class _Market(NamedTuple):
    """One AssetMarket, fields in the schema's order."""

    source: str
    symbol: str
    quote: str
    scale: int
    funding_annualized: float | None
    funding_interval_h: float | None
    funding_last: float | None
    basis_last: float | None
    mark_last: float | None
    oi_last: float | None
    oi_notional: float | None
    stale: bool


class _Row(NamedTuple):
    source: str
    symbol: str
    window_s: int
    snapshot_time: int
    values: tuple[float | None, ...]
    stale: bool


class _AssetState:
    __slots__ = ("last_t", "max_t", "min_t", "pending")

    def __init__(self, last_t: int | None = None) -> None:
        self.last_t = last_t
        self.max_t: int | None = None
        self.min_t: int | None = None
        # (snapshot_time, window_s) -> (source, symbol) -> market
        self.pending: dict[tuple[int, int], dict[tuple[str, str], _Market]] = {}


@dataclass
class AssetEngineCounters:
    accepted: int = 0
    duplicate: int = 0
    late: int = 0
    ignored: int = 0
    invalid: int = 0
    snapshots: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


def _int(v: Any) -> int | None:
    return v if type(v) is int else None


def _read(row: Mapping[str, Any]) -> _Row | None:
    """The fields of a MarketSnapshot row the engine uses, or None when they cannot be read."""
    source, symbol = row.get("source"), row.get("symbol")
    window_s, t = _int(row.get("window_s")), _int(row.get("snapshot_time"))
    stale = row.get("stale")
    if type(source) is not str or type(symbol) is not str or window_s is None or window_s <= 0 \
            or t is None or type(stale) is not bool:
        return None
    values: list[float | None] = []
    for name in _VALUES:
        v = row.get(name)
        if v is not None:
            if type(v) is int:
                v = float(v) if abs(v) <= _MAX_DOUBLE else math.inf
            if type(v) is not float or not math.isfinite(v):
                return None
        values.append(v)
    return _Row(source, symbol, window_s, t, tuple(values), stale)


def notional(oi: float | None, mark: float | None) -> float | None:
    """oi * mark: open interest is in the contract's units and the mark is per unit, so the
    product is in the quote currency whatever the lot. Null when it means nothing."""
    if oi is None or mark is None:
        return None
    p = oi * mark + 0.0  # + 0.0: no -0.0 notional
    return p if math.isfinite(p) and p >= 0.0 else None


def _scaled(x: float) -> int:
    """x * 2**1074, exactly (x is a finite double)."""
    n, d = x.as_integer_ratio()
    return n << (_SHIFT + 1 - d.bit_length())


def _market_name(m: _Market) -> str:
    return f"{m.source}:{m.symbol}"


def _funding_extremes(fresh: list[_Market]) -> dict[str, Any]:
    """Min, max and spread of annualised funding over the fresh markets that have it;
    ties go to the first market in (source, symbol) order."""
    lo = hi = None
    n = 0
    for m in fresh:
        a = m.funding_annualized
        if a is None:
            continue
        n += 1
        if lo is None or a < lo.funding_annualized:  # type: ignore[operator]
            lo = m
        if hi is None or a > hi.funding_annualized:  # type: ignore[operator]
            hi = m
    if lo is None or hi is None:
        return {"funding_ann_min": None, "funding_ann_min_market": None, "funding_ann_max": None,
                "funding_ann_max_market": None, "funding_ann_spread": None}
    a_lo, a_hi = lo.funding_annualized, hi.funding_annualized
    assert a_lo is not None and a_hi is not None
    return {
        "funding_ann_min": a_lo, "funding_ann_min_market": _market_name(lo),
        "funding_ann_max": a_hi, "funding_ann_max_market": _market_name(hi),
        "funding_ann_spread": a_hi - a_lo if n >= 2 else None,
    }


def _notional_sums(fresh: list[_Market]) -> dict[str, float | None]:
    """Total notional and notional-weighted annualised funding, exact (module docstring)."""
    total = weights = weighted = 0
    n_total = 0
    for m in fresh:
        if m.oi_notional is None:
            continue
        w = _scaled(m.oi_notional)
        total += w
        n_total += 1
        if m.funding_annualized is not None:
            weights += w
            weighted += _scaled(m.funding_annualized) * w
    oi_total: float | None = None
    if n_total:
        try:
            oi_total = total / (1 << _SHIFT)
        except OverflowError:  # finite notionals whose sum no double holds
            oi_total = math.inf
    return {
        "funding_ann_oi_weighted": weighted / (weights << _SHIFT) if weights else None,
        "oi_notional_total": oi_total,
    }


def asset_record(asset: str, window_s: int, t: int, markets: list[_Market]) -> dict[str, Any]:
    """The AssetSnapshot of one asset, window and time from its markets (any order)."""
    markets = sorted(markets, key=lambda m: (m.source, m.symbol))
    fresh = [m for m in markets if not m.stale]
    present = sorted({m.source for m in markets})
    fresh_sources = {m.source for m in fresh}
    return {
        "asset": asset,
        "window_s": window_s,
        "snapshot_time": t,
        "markets": [m._asdict() for m in markets],
        "venues_present": present,
        "venues_stale": [s for s in present if s not in fresh_sources],
        "n_markets": len(markets),
        "n_fresh": len(fresh),
        **_funding_extremes(fresh),
        **_notional_sums(fresh),
    }


class AssetEngine:
    """Per-asset event-time state: ``add`` MarketSnapshot rows, :meth:`take_output` the
    AssetSnapshot records they completed (plain dicts, epoch-ms ints, ready for Avro)."""

    def __init__(self, config: AssetEngineConfig | None = None,
                 key_of: Callable[[str, str], AssetKey | None] = asset_of) -> None:
        self.config = config or AssetEngineConfig()
        self.counters = AssetEngineCounters()
        self._key_of = key_of
        self._keys: dict[tuple[str, str], AssetKey | None] = {}
        self._assets: dict[str, _AssetState] = {}
        self._out: list[dict[str, Any]] = []
        self._lateness = self.config.lateness_ms
        self._quotes = self.config.quotes

    # -- input ------------------------------------------------------------------

    def add(self, row: Mapping[str, Any]) -> int:
        """Apply one MarketSnapshot row; returns its outcome (ACCEPTED ... INVALID)."""
        cnt = self.counters
        r = _read(row)
        if r is None:
            cnt.invalid += 1
            return INVALID
        ident = (r.source, r.symbol)
        key = self.key(r.source, r.symbol)
        if key is None:
            cnt.ignored += 1
            return IGNORED
        st = self._assets.get(key.asset)
        if st is None:
            st = self._assets[key.asset] = _AssetState()
        t = r.snapshot_time
        if st.last_t is not None and t <= st.last_t:
            cnt.late += 1
            return LATE
        slot = st.pending.get((t, r.window_s))
        if slot is None:
            slot = st.pending[(t, r.window_s)] = {}
        elif ident in slot:
            cnt.duplicate += 1
            return DUPLICATE
        fa, fi, fl, bl, ml, ol = r.values
        slot[ident] = _Market(r.source, r.symbol, key.quote, key.scale, fa, fi, fl, bl, ml, ol,
                              notional(ol, ml), r.stale)
        cnt.accepted += 1
        if st.max_t is None or t > st.max_t:
            st.max_t = t
        if st.min_t is None or t < st.min_t:
            st.min_t = t
        assert st.max_t is not None
        if st.max_t - self._lateness > st.min_t:
            self._emit(key.asset, st, st.max_t - self._lateness)
        return ACCEPTED

    def key(self, source: str, symbol: str) -> AssetKey | None:
        """The asset key of a market as this engine reads it: ``key_of``'s, cached, or None when
        the engine ignores the market (no key, or a quote the config does not take)."""
        ident = (source, symbol)
        try:
            return self._keys[ident]
        except KeyError:
            pass
        key = self._key_of(source, symbol)
        if key is not None and key.quote not in self._quotes:
            key = None
        self._keys[ident] = key
        return key

    # -- recovery ---------------------------------------------------------------

    def restore(self, asset: str, last_t: int) -> None:
        """Start ``asset`` after a restart with its last emitted time (a checkpoint):
        rows at or before ``last_t`` are late, as they were before the restart."""
        if asset in self._assets:
            raise AssetEngineError(f"restore {asset!r} before any of its rows is added")
        self._assets[asset] = _AssetState(last_t)

    def checkpoint(self) -> dict[str, int]:
        """Asset -> last emitted snapshot time, for every asset that emitted."""
        return {a: st.last_t for a, st in self._assets.items() if st.last_t is not None}

    # -- output -----------------------------------------------------------------

    def take_output(self) -> list[dict[str, Any]]:
        """The records completed since the previous call, per asset by snapshot time,
        windows largest first; the caller owns the list."""
        out, self._out = self._out, []
        return out

    # -- introspection ----------------------------------------------------------

    @property
    def assets(self) -> list[str]:
        return list(self._assets)

    def last_emitted(self, asset: str) -> int | None:
        st = self._assets.get(asset)
        return None if st is None else st.last_t

    def pending_rows(self, asset: str | None = None) -> int:
        """Rows held for times not emitted yet (all assets when ``asset`` is None)."""
        states = self._assets.values() if asset is None else [self._assets.get(asset)]
        return sum(len(slot) for st in states if st is not None for slot in st.pending.values())

    # -- emission ---------------------------------------------------------------

    def _emit(self, asset: str, st: _AssetState, limit: int) -> None:
        """Emit every pending (t, window) with t < limit, and forget them."""
        due = sorted((k for k in st.pending if k[0] < limit), key=lambda k: (k[0], -k[1]))
        out = self._out
        for k in due:
            out.append(asset_record(asset, k[1], k[0], list(st.pending.pop(k).values())))
        st.last_t = due[-1][0]
        st.min_t = min((k[0] for k in st.pending), default=None)
        self.counters.snapshots += len(due)


# -- table columns ---------------------------------------------------------------

def _asset_column(field: Mapping[str, Any]) -> Column:
    """A column of ``asset_snapshots``: scalars map as in schemas/columns.py; arrays become
    ClickHouse arrays (of named tuples for records). A nullable string is
    ``LowCardinality(Nullable(String))``: ClickHouse refuses LowCardinality inside Nullable."""
    name, t = str(field["name"]), field["type"]
    if t == ["null", "string"]:
        return Column(name, "LowCardinality(Nullable(String))", "string")
    if isinstance(t, dict) and t.get("type") == "array":
        items = t["items"]
        if isinstance(items, dict) and items.get("type") == "record":
            inner = ", ".join(f"{c.name} {c.clickhouse}" for c in map(_asset_column, items["fields"]))
            return Column(name, f"Array(Tuple({inner}))", "list<struct>")
        item = _asset_column({"name": name, "type": items})
        return Column(name, f"Array({item.clickhouse})", f"list<{item.arrow}>")
    return _column(dict(field))


#: The columns of a table of AssetSnapshot records, in the schema's field order; pass them
#: to ``ddl_columns``. Arrays have no Arrow type in schemas/columns.py: insert rows.
ASSET_SNAPSHOT_COLUMNS: Final[tuple[Column, ...]] = tuple(
    _asset_column(f) for f in load_schema("asset_snapshot").definition["fields"])
