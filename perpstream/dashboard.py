"""The live terminal view of the embedded pipeline, and the same figures as a log line.

Three sources, read once a tick (docs/dashboard.md):

- a :class:`service.telemetry.Telemetry`: events/s in (``points_published``,
  ``points_delivered``) and stored (``records_stored``) from counter deltas
  between two samples divided by the clock delta, totals of ``records_dlq``,
  ``frames_rejected``, ``reconnects``, ``snapshots_emitted``, the
  ``consumer_lag`` gauge summed per group, ``ws_connections``,
  ``snapshot_stale_symbols``;
- the store's points: per market (source, symbol) the latest mark price, index
  price (for the basis), funding rate and open interest, and the last mark of
  each 5 s bucket of a minute (the trend), from ``{database}.metric_points``:
  one query a tick, bounded to the last minute of event time (``event_time`` is
  in the table's ORDER BY);
- the store's cross-venue snapshots, once the markets read come from more than
  one source: the newest ``{database}.asset_snapshots`` row of each asset in the
  smallest window, of the assets on at least two venues (docs/snapshots.md,
  "Cross-venue asset snapshots"), one query bounded to the last
  :data:`ASSET_LOOKBACK_S` of snapshot time, at most once a snapshot interval
  (new asset snapshots come no oftener). The table missing (the asset consumer
  has not created it yet) is no error: there is no table to show.

A slow store is asked less often: the view spends at most ``QUERY_SHARE`` (a
fifth) of the time in queries. After a query that took ``d`` seconds, the next
of its kind waits ``d / share``, where the share is all of ``QUERY_SHARE`` for
the market query alone and half of it for each while both run; the ticks
between reuse the rows held.

API::

    dash = Dashboard(telemetry, rows_source, *, database, data_dir, endpoint_url,
                     clock=time.monotonic, wall=time.time, stale=EngineConfig(),
                     window_s=60, bucket_s=5)
    board = dash.sample()                           # Board (frozen dataclass); never raises
    dash.render(board, width=None, height=None)     # rich renderable, fits width x height
    log_fields(board) -> dict[str, Any]             # flat fields for a log record
    LiveBoard(dash, console=None): .tick() -> Board, .close()   # the same, driven by the caller

``rows_source`` is any of: a :class:`perpstream.query_server.ReadOnlyQueries`
(its own read-only chdb session; it has ``run``), a clickhouse-connect client
(it has ``query``), or a plain callable ``sql -> rows``. :func:`query_fn` makes
the callable.

Which minute of event time: the later of the latest event the producer saw
(``last_event_age_seconds``: the wall clock minus the smallest age) and the
latest mark already read, or the wall clock when neither is known. A replay
of old data is followed as it is replayed; a market that falls silent keeps
its last values (the board remembers them) and is marked stale.

Stale, as ``perpstream freshness`` says it (:func:`consumers.snapshots.freshness.assess`):
no mark, or the latest mark older than ``mark_stale_ms``; no open interest,
or the latest older than ``oi_stale_ms``; compared with the wall clock.

Units: funding rate in percent with its sign (0.0001 is ``+0.0100%``), basis
``(mark - index) / index`` in basis points, open interest in contracts
(grouped), prices with six significant digits and at least two decimals,
times ISO-8601 UTC; across venues annualised funding in percent with two
decimals and notional open interest in the quote currency, grouped. Markets
are sorted by open-interest notional (OI x mark), largest first, then by
symbol and venue; assets by total notional. The rows that do not fit the
height are counted in a ``+N more`` line. A failed query keeps the last rows
and shows a one-line error.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, NamedTuple

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from perpstream.consumers.assets.store import SNAPSHOTS_TABLE as ASSETS_TABLE
from perpstream.consumers.clickhouse import classify_clickhouse_error
from perpstream.consumers.sink.migrations import TABLE as POINTS_TABLE
from perpstream.consumers.snapshots.engine import EngineConfig
from perpstream.consumers.snapshots.freshness import assess
from perpstream.runtime.output import cell, iso_ms
from perpstream.runtime.secrets import redact
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.models import Metric
from perpstream.sql import first_line

QueryFn = Callable[[str], Sequence[Sequence[Any]]]

#: Lines of the board that are not market rows: 5 header lines, a blank, the
#: table header, ``+N more`` and the status line.
_FIXED_LINES = 9
#: Lines the cross-venue table adds besides its rows: a blank, its title, its header, ``+N more``.
_ASSET_FIXED_LINES = 4
#: The cross-venue table's share of the rows the height leaves: a third (at least one line);
#: what the market table does not fill goes to it too.
ASSET_SHARE = 3
#: Characters of a symbol shown (longer ones end in an ellipsis): with the venue column, 13
#: keeps OKX's ``BTC-USDT-SWAP`` whole.
_SYMBOL_CHARS, _SYMBOL_CHARS_WITH_VENUE = 14, 13
#: How the market table fits a narrow terminal: first the names are cut, a column at a time
#: down to so many characters (the venue's seven keep ``binance``; never so short that two
#: names shown read the same, :func:`_apart`), then whole columns are left out in this order.
#: No number is ever cut.
_MARKET_CUTS = (("venue", 7), ("symbol", 10), ("venue", 5), ("symbol", 8))
_MARKET_DROPS = ("basis bp", "age", "state", "funding")
#: The same for the cross-venue table, once its venue names are down to four characters.
_ASSET_DROPS = ("age", "venues", "OI-wtd", "spread")
_SPARKS = "▁▂▃▄▅▆▇█"
#: The largest share of the time the view spends in store queries: after a query that took
#: d seconds, the next of its kind waits d / share, the share being QUERY_SHARE for the market
#: query alone and half of it for each of the two while the cross-venue query runs too.
QUERY_SHARE = 0.2
_METRICS = (Metric.MARK_PRICE, Metric.INDEX_PRICE, Metric.FUNDING_RATE, Metric.OPEN_INTEREST)
#: How far before the tick's minute an asset's newest snapshot may be and still be shown. The
#: newest lags the latest event by the snapshot watermark and the asset engine's lateness (about
#: 20 s with the defaults, docs/assets.md); ten minutes leave room for a consumer that catches up.
ASSET_LOOKBACK_S = 600
#: ClickHouse's UNKNOWN_TABLE: the asset consumer has not created its table yet.
_UNKNOWN_TABLE = 60
#: Short names of the venues' sources for the venue column; a simulated venue's source is
#: ``sim.`` and the real one's (``sim.bybit_linear`` is ``sim.bybit``). Others are shown whole.
VENUE_NAMES = {"binance_usdm": "binance", "bybit_linear": "bybit", "okx_swap": "okx",
               "hyperliquid": "hyperliquid"}
_TOP_ASSETS = 3


def venue_name(source: str) -> str:
    """The short name of a source: ``binance_usdm`` is ``binance``, ``sim.okx_swap`` is ``sim.okx``."""
    if source.startswith("sim."):
        return "sim." + venue_name(source[4:])
    return VENUE_NAMES.get(source, source)


class MarketRow(NamedTuple):
    """One row of :data:`MARKET_SQL`: a market's latest values (epoch ms of their event time,
    0 when none) and the last mark of each trend bucket as (bucket number, mark). The query's
    column list is made from these fields (:data:`_MARKET_COLUMNS`), so a column added or
    moved changes both together, and a row of another width fails instead of shifting."""

    source: str
    symbol: str
    mark: float | None
    mark_ms: int | None
    index_price: float | None
    index_ms: int | None
    funding: float | None
    funding_ms: int | None
    oi: float | None
    oi_ms: int | None
    trend: Sequence[Sequence[float]]

    @classmethod
    def of(cls, row: Sequence[Any]) -> MarketRow:
        if len(row) != len(cls._fields):
            raise ValueError(f"the market query returned {len(row)} columns, expected {len(cls._fields)} "
                             f"({', '.join(cls._fields)})")
        return cls(*row)


def _latest(metric: str) -> tuple[str, str]:
    return f"argMaxIf(v, t, metric = '{metric}')", f"maxIf(t, metric = '{metric}')"


#: field of :class:`MarketRow` -> its expression in :data:`MARKET_SQL`
_MARKET_COLUMNS = dict(zip(MarketRow._fields, (
    "source", "symbol",
    *_latest("mark_price"), *_latest("index_price"), *_latest("funding_rate"), *_latest("open_interest"),
    "arraySort(groupArrayIf((b, v), metric = 'mark_price'))",
), strict=True))

MARKET_SQL = (
    "SELECT " + ",\n       ".join(f"{expr} AS {name}" for name, expr in _MARKET_COLUMNS.items()) + """
FROM (
    SELECT source, symbol, metric, intDiv(toUnixTimestamp64Milli(event_time) - {lo}, {bucket}) AS b,
           argMax(value, event_time) AS v, toUnixTimestamp64Milli(max(event_time)) AS t
    FROM {db}.{table}
    WHERE event_time >= fromUnixTimestamp64Milli(toInt64({lo}), 'UTC')
      AND metric IN ({metrics})
    GROUP BY source, symbol, metric, b
)
GROUP BY source, symbol
""")


class AssetRow(NamedTuple):
    """One row of :data:`ASSET_SQL`: an asset's newest AssetSnapshot in the smallest window,
    the fields as docs/snapshots.md defines them ("Cross-venue asset snapshots"); the
    snapshot time in epoch ms. Like :class:`MarketRow`, the query's columns are these fields."""

    asset: str
    window_s: int
    snapshot_ms: int
    venues_present: tuple[str, ...]
    venues_stale: tuple[str, ...]
    funding_ann_min: float | None
    funding_ann_min_market: str | None
    funding_ann_max: float | None
    funding_ann_max_market: str | None
    funding_ann_spread: float | None
    funding_ann_oi_weighted: float | None
    oi_notional_total: float | None

    @classmethod
    def of(cls, row: Sequence[Any]) -> AssetRow:
        if len(row) != len(cls._fields):
            raise ValueError(f"the asset query returned {len(row)} columns, expected {len(cls._fields)} "
                             f"({', '.join(cls._fields)})")
        (asset, window_s, snapshot_ms, present, stale, lo, lo_market, hi, hi_market, spread, weighted,
         total) = row
        return cls(str(asset), int(window_s), int(snapshot_ms), tuple(map(str, present)),
                   tuple(map(str, stale)), _float(lo), _str(lo_market), _float(hi), _str(hi_market),
                   _float(spread), _float(weighted), _float(total))

    @property
    def venues_fresh(self) -> int:
        """Venues with a fresh market (``venues_stale`` are those present with none)."""
        return len(self.venues_present) - len(self.venues_stale)


#: field of :class:`AssetRow` -> its expression in :data:`ASSET_SQL` (over the inner query)
_ASSET_COLUMNS = {name: "toUnixTimestamp64Milli(snapshot_time)" if name == "snapshot_ms" else name
                  for name in AssetRow._fields}
_ASSET_SINCE = "snapshot_time >= fromUnixTimestamp64Milli(toInt64({lo}), 'UTC')"

#: The newest row of each asset in the table's smallest window within the last ASSET_LOOKBACK_S,
#: then only the assets it finds on two venues or more (filtered after choosing the newest, so an
#: asset down to one venue leaves the table instead of showing an older row), largest notional
#: first. The window and time conditions are on sorting-key columns only, so applying them before
#: FINAL (PREWHERE) keeps or drops every copy of a key alike, and FINAL merges the rows of the
#: lookback instead of the whole table. The smallest window is taken over the whole table: so
#: it takes milliseconds, bounded by time it took 200 ms of a day of 700 assets
#: (docs/dashboard.md, "The queries").
ASSET_SQL = (
    "SELECT " + ",\n       ".join(f"{expr} AS {name}" for name, expr in _ASSET_COLUMNS.items()) + """
FROM (
    SELECT asset, window_s, snapshot_time, venues_present, venues_stale, funding_ann_min,
           funding_ann_min_market, funding_ann_max, funding_ann_max_market, funding_ann_spread,
           funding_ann_oi_weighted, oi_notional_total
    FROM {db}.{table} FINAL
    PREWHERE window_s = (SELECT min(window_s) FROM {db}.{table}) AND """ + _ASSET_SINCE + """
    ORDER BY asset, snapshot_time DESC
    LIMIT 1 BY asset
)
WHERE length(venues_present) >= 2
ORDER BY oi_notional_total IS NULL, oi_notional_total DESC, asset
""")


def query_fn(source: Any) -> QueryFn:
    """``sql -> rows`` for a clickhouse-connect client, a ReadOnlyQueries, or a callable."""
    if hasattr(source, "query"):
        return lambda sql: source.query(sql).result_rows
    if hasattr(source, "run"):
        def run(sql: str) -> Sequence[Sequence[Any]]:
            body, _fmt = source.run(sql, database=None, default_format="JSONCompact",
                                    settings={}, params={})
            return json.loads(body)["data"]
        return run
    if callable(source):
        return source
    raise TypeError(f"rows source must be a ClickHouse client, a ReadOnlyQueries or a callable, "
                    f"got {type(source).__name__}")


# -- formatting for people (service.output has times and grouped integers) ------------------


def price(v: float | None) -> str:
    """Six significant digits, at least two decimals, thousands grouped: ``64,240.38``,
    ``3.41257``, ``0.00000123400``."""
    if v is None or not math.isfinite(v):
        return "-"
    if v == 0:
        return "0.00"
    decimals = min(12, max(2, 5 - math.floor(math.log10(abs(v)))))
    return f"{v:,.{decimals}f}"


def percent(rate: float | None) -> str:
    """A rate in percent with its sign and four decimals: 0.0001 is ``+0.0100%``."""
    return "-" if rate is None else f"{rate * 100 + 0.0:+.4f}%"


def annual(rate: float | None) -> str:
    """An annualised rate in percent with its sign and two decimals: 0.1095 is ``+10.95%``."""
    if rate is None or not math.isfinite(rate):
        return "-"
    return f"{rate * 100 + 0.0:+,.2f}%"


def bp(ratio: float | None) -> str:
    """A ratio in basis points with its sign: 0.00021 is ``+2.1``."""
    return "-" if ratio is None else f"{ratio * 1e4 + 0.0:+.1f}"


def quantity(v: float | None) -> str:
    """An amount of contracts: grouped, whole from 1,000 up, else three decimals."""
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.3f}"


def money(v: float | None) -> str:
    """An amount in the quote currency, whole and grouped: ``23,456,789,012``."""
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:,.0f}"


def duration(seconds: float | None) -> str:
    """``0.8s``, ``12s``, ``3m05s``, ``2h07m``, ``3d04h``."""
    if seconds is None:
        return "-"
    s = max(0.0, seconds)
    if s < 10:
        return f"{s:.1f}s"
    n = int(s)
    if n < 60:
        return f"{n}s"
    if n < 3600:
        return f"{n // 60}m{n % 60:02d}s"
    if n < 86400:
        return f"{n // 3600}h{n % 3600 // 60:02d}m"
    return f"{n // 86400}d{n % 86400 // 3600:02d}h"


def rate(v: float | None) -> str:
    return "-" if v is None else f"{v:,.1f}/s"


def sparkline(values: Sequence[float | None]) -> str:
    """One block character per value, scaled between the smallest and largest; a gap is a space."""
    known = [v for v in values if v is not None]
    if not known:
        return " " * len(values)
    lo, hi = min(known), max(known)
    top = len(_SPARKS) - 1
    out = []
    for v in values:
        if v is None:
            out.append(" ")
        elif hi == lo:
            out.append(_SPARKS[top // 2])
        else:
            out.append(_SPARKS[round((v - lo) / (hi - lo) * top)])
    return "".join(out)


def _cut(text: str, n: int) -> str:
    """``text`` in at most ``n`` characters, an ellipsis saying where it was cut."""
    return text if len(text) <= n else text[:max(0, n - 1)] + "…"


def _apart(names: Iterable[str], floor: int) -> int:
    """The fewest characters, at least ``floor``, that ``names`` can be cut to and still be
    told apart: ``sim.bybit`` and ``sim.okx`` need six (``sim.b…``, ``sim.o…``)."""
    distinct = set(names)
    for n in range(floor, max(map(len, distinct), default=floor) + 1):
        if len({_cut(v, n) for v in distinct}) == len(distinct):
            return n
    return max(floor, *map(len, distinct))


# -- the board --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolRow:
    """What the store says of one market: a symbol on a venue (``source``). Times are epoch
    ms of event time."""

    source: str
    symbol: str
    mark: float | None = None
    mark_ms: int | None = None
    index: float | None = None
    index_ms: int | None = None
    funding: float | None = None
    oi: float | None = None
    oi_ms: int | None = None
    basis: float | None = None
    #: why it is stale (``consumers.snapshots.freshness.assess``); empty when fresh
    stale_reasons: tuple[str, ...] = ()
    #: the last mark of each trend bucket, oldest first; None where the bucket has none
    trend: tuple[float | None, ...] = ()

    @property
    def stale(self) -> bool:
        return bool(self.stale_reasons)

    @property
    def notional(self) -> float | None:
        return None if self.oi is None or self.mark is None else self.oi * self.mark

    @property
    def venue(self) -> str:
        return venue_name(self.source)


@dataclass(frozen=True)
class Board:
    """One sample: the telemetry figures, the market rows (sorted), the cross-venue rows
    (sorted) and the status."""

    time_ms: int
    uptime_s: float
    published: int
    delivered: int
    stored: int
    dlq: int
    rejected: int
    reconnects: int
    snapshots: int
    published_per_s: float | None
    delivered_per_s: float | None
    stored_per_s: float | None
    lag: Mapping[str, int]
    ws_connections: int | None
    engine_stale: int | None
    rows: tuple[SymbolRow, ...]
    data_as_of_ms: int | None
    data_dir: str | None
    endpoint_url: str | None
    error: str | None = None
    trend_s: int = 60
    #: how long the latest market query took (None before the first)
    query_s: float | None = None
    #: lines the running process adds (a component failing and being restarted, ...)
    notes: tuple[str, ...] = ()
    #: the newest asset snapshot of each asset on two venues or more, largest notional first;
    #: empty while the markets come from one source or the table does not exist
    assets: tuple[AssetRow, ...] = ()
    #: how long the latest cross-venue query took (None before the first)
    asset_query_s: float | None = None

    @property
    def lag_total(self) -> int:
        return sum(self.lag.values())

    @property
    def stale_count(self) -> int:
        return sum(1 for r in self.rows if r.stale)

    @cached_property
    def sources(self) -> tuple[str, ...]:
        """The sources of the market rows, sorted (once: every row's name asks for it)."""
        return tuple(sorted({r.source for r in self.rows}))

    @property
    def multi_venue(self) -> bool:
        return len(self.sources) > 1

    def market_name(self, row: SymbolRow) -> str:
        """The symbol, and its venue when there are several (``bybit:BTCUSDT``)."""
        return f"{row.venue}:{row.symbol}" if self.multi_venue else row.symbol


@dataclass(slots=True)
class _Held:
    """What the board remembers of a market between samples."""

    mark: float | None = None
    mark_ms: int | None = None
    index: float | None = None
    index_ms: int | None = None
    funding: float | None = None
    funding_ms: int | None = None
    oi: float | None = None
    oi_ms: int | None = None
    basis: float | None = None
    marks: dict[int, float] = field(default_factory=dict)  # bucket start ms -> last mark in it


def _ms(v: Any) -> int | None:
    n = int(v) if v is not None else 0
    return n if n > 0 else None


def _float(v: Any) -> float | None:
    return None if v is None else float(v)


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


class Dashboard:
    """Samples the telemetry and the store; keeps what is needed between samples
    (the previous counters for rates, the last rows of every market, the last cross-venue rows)."""

    def __init__(
        self,
        telemetry: Telemetry,
        rows_source: Any,
        *,
        database: str,
        data_dir: str | os.PathLike[str] | None = None,
        endpoint_url: str | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        stale: EngineConfig | None = None,
        window_s: int = 60,
        bucket_s: int = 5,
        notes_fn: Callable[[], Sequence[str]] | None = None,
    ) -> None:
        if window_s <= 0 or bucket_s <= 0 or window_s % bucket_s:
            raise ValueError("window_s and bucket_s must be positive, window_s a multiple of bucket_s")
        self.telemetry = telemetry
        self.notes_fn = notes_fn
        self.query = query_fn(rows_source)
        self.database = database
        self.data_dir = None if data_dir is None else str(data_dir)
        self.endpoint_url = endpoint_url
        self.clock = clock
        self.wall = wall
        self.stale = stale or EngineConfig()
        self.window_ms = window_s * 1000
        self.bucket_ms = bucket_s * 1000
        self._started = clock()
        self._prev: tuple[float, dict[str, float]] | None = None
        self._rows: dict[tuple[str, str], _Held] = {}
        self._assets: tuple[AssetRow, ...] = ()
        self._seen_ms: int | None = None
        self._store_error: str | None = None
        self._asset_error: str | None = None
        self._query_s: float | None = None
        self._asset_query_s: float | None = None
        self._next_query = self._next_assets = -math.inf
        self._lock = threading.Lock()

    # -- sampling ----------------------------------------------------------------------------

    def sql(self, lo_ms: int) -> str:
        """The tick's market query: points with event time >= ``lo_ms``."""
        return MARKET_SQL.format(lo=int(lo_ms), bucket=self.bucket_ms, db=self.database, table=POINTS_TABLE,
                                 metrics=", ".join(f"'{m}'" for m in _METRICS))

    def asset_sql(self, lo_ms: int) -> str:
        """The tick's cross-venue query: asset snapshots with snapshot time >= ``lo_ms``."""
        return ASSET_SQL.format(lo=int(lo_ms), db=self.database, table=ASSETS_TABLE)

    def sample(self) -> Board:
        """Read the sources; never raises (a failure is the board's ``error``)."""
        with self._lock:
            return self._sample()

    def _sample(self) -> Board:
        now = self.clock()
        wall_ms = int(self.wall() * 1000)
        errors: list[str] = []
        try:
            snap = self.telemetry.snapshot()
        except Exception as exc:  # a computed gauge failed: no figures this tick
            snap = {}
            errors.append(f"telemetry: {first_line(exc)}")
        totals = {name: sum(series.values()) for name, series in snap.items()}
        rates = self._rates(now, totals, keep=not errors)

        anchor = self._anchor(snap, wall_ms)
        end = anchor - anchor % self.bucket_ms
        lo = end - self.window_ms  # the buckets of the minute before ``end``'s and ``end``'s own
        self._read_store(now, lo, wall_ms)
        errors += [e for e in (self._store_error, self._asset_error) if e]

        lag: dict[str, int] = {}
        for key, v in snap.get("consumer_lag", {}).items():
            group = dict(key).get("group", "?")
            lag[group] = lag.get(group, 0) + int(v)
        ws = snap.get("ws_connections")
        eng = snap.get("snapshot_stale_symbols")
        rows = self._market_rows(end, wall_ms)
        multi = self._multi_venue()
        return Board(
            time_ms=wall_ms, uptime_s=now - self._started,
            published=int(totals.get("points_published", 0)),
            delivered=int(totals.get("points_delivered", 0)),
            stored=int(totals.get("records_stored", 0)), dlq=int(totals.get("records_dlq", 0)),
            rejected=int(totals.get("frames_rejected", 0)), reconnects=int(totals.get("reconnects", 0)),
            snapshots=int(totals.get("snapshots_emitted", 0)),
            published_per_s=rates["points_published"], delivered_per_s=rates["points_delivered"],
            stored_per_s=rates["records_stored"], lag=lag,
            ws_connections=None if ws is None else int(sum(ws.values())),
            engine_stale=None if eng is None else int(sum(eng.values())),
            rows=rows, data_as_of_ms=self._seen_ms, data_dir=self.data_dir,
            endpoint_url=self.endpoint_url, error=redact("; ".join(errors)) or None,
            trend_s=self.window_ms // 1000, query_s=self._query_s, notes=self._notes(),
            assets=self._assets if multi else (), asset_query_s=self._asset_query_s if multi else None,
        )

    def _rates(self, now: float, totals: Mapping[str, float], *, keep: bool) -> dict[str, float | None]:
        """Events a second since the previous sample; ``keep`` makes this sample the next one's base."""
        rates: dict[str, float | None] = {}
        for name in ("points_published", "points_delivered", "records_stored"):
            if self._prev is None or now <= self._prev[0]:
                rates[name] = None
            else:
                rates[name] = (totals.get(name, 0) - self._prev[1].get(name, 0)) / (now - self._prev[0])
        if keep:
            self._prev = (now, dict(totals))
        return rates

    def _multi_venue(self) -> bool:
        return len({source for source, _ in self._rows}) > 1

    def _read_store(self, now: float, lo: int, wall_ms: int) -> None:
        """The tick's queries, each when its turn has come (the module docstring): the markets,
        then with more than one source the assets. Each failure keeps that query's last rows
        and becomes an error line of its own."""
        if now >= self._next_query:
            started = self.clock()
            try:
                self._merge(self.query(self.sql(lo)), lo)
            except Exception as exc:  # the store's error, or an answer of an unexpected shape
                self._store_error = f"store query failed at {iso_ms(wall_ms)}: {first_line(exc)}"
            else:
                self._store_error = None
            self._query_s = self.clock() - started
            share = QUERY_SHARE / 2 if self._multi_venue() else QUERY_SHARE  # of the markets just read
            self._next_query = started + self._query_s / share
        started = self.clock()
        if self._multi_venue() and started >= self._next_assets:
            self._read_assets(lo - ASSET_LOOKBACK_S * 1000, wall_ms)
            self._asset_query_s = self.clock() - started
            # no oftener than asset snapshots come (one each snapshot interval)
            self._next_assets = started + max(self._asset_query_s / (QUERY_SHARE / 2),
                                              self.stale.interval_ms / 1000)

    def _read_assets(self, lo: int, wall_ms: int) -> None:
        try:
            self._assets = tuple(map(AssetRow.of, self.query(self.asset_sql(lo))))
        except Exception as exc:
            if classify_clickhouse_error(exc).code == _UNKNOWN_TABLE:  # not created yet: nothing to show
                self._assets, self._asset_error = (), None
            else:
                self._asset_error = f"asset query failed at {iso_ms(wall_ms)}: {first_line(exc)}"
        else:
            self._asset_error = None

    def _market_rows(self, end: int, wall_ms: int) -> tuple[SymbolRow, ...]:
        """The held markets as rows, stale as of the wall clock, largest notional first."""
        # the trend: the minute of buckets up to the one of the latest mark read (so that a
        # bucket that has only begun does not show as a gap), the same for every market
        last = end if self._seen_ms is None else self._seen_ms - self._seen_ms % self.bucket_ms
        n = self.window_ms // self.bucket_ms
        buckets = [last - (n - 1 - k) * self.bucket_ms for k in range(n)]
        rows = []
        for (source, symbol), h in self._rows.items():
            f = assess(symbol, now_ms=wall_ms, config=self.stale, last_snapshot_ms=None,
                       snapshot_stale=None, last_mark_ms=h.mark_ms, last_oi_ms=h.oi_ms, source=source)
            rows.append(SymbolRow(source, symbol, h.mark, h.mark_ms, h.index, h.index_ms, h.funding, h.oi,
                                  h.oi_ms, h.basis, f.reasons, tuple(map(h.marks.get, buckets))))
        rows.sort(key=lambda r: (r.notional is None, -(r.notional or 0.0), r.symbol, r.source))
        return tuple(rows)

    def _notes(self) -> tuple[str, ...]:
        if self.notes_fn is None:
            return ()
        try:
            return tuple(redact(n) for n in self.notes_fn())
        except Exception as exc:  # a broken note must not take the view down
            return (f"notes unavailable: {type(exc).__name__}: {exc}",)

    def _anchor(self, snap: Mapping[str, Mapping[Any, float]], wall_ms: int) -> int:
        """The event time the tick's minute ends at (see the module docstring)."""
        ages = snap.get("last_event_age_seconds") or {}
        anchor = wall_ms - int(min(ages.values()) * 1000) if ages else wall_ms
        return anchor if self._seen_ms is None else max(anchor, self._seen_ms)

    def _merge(self, result: Sequence[Sequence[Any]], lo_ms: int) -> None:
        for rec in map(MarketRow.of, result):
            key = (str(rec.source), str(rec.symbol))
            h = self._rows.get(key)
            if h is None:
                h = self._rows[key] = _Held()
            # a value replaces the held one when it is at least as recent
            if (t := _ms(rec.mark_ms)) is not None and t >= (h.mark_ms or 0):
                h.mark, h.mark_ms = _float(rec.mark), t
            if (t := _ms(rec.index_ms)) is not None and t >= (h.index_ms or 0):
                h.index, h.index_ms = _float(rec.index_price), t
            if (t := _ms(rec.funding_ms)) is not None and t >= (h.funding_ms or 0):
                h.funding, h.funding_ms = _float(rec.funding), t
            if (t := _ms(rec.oi_ms)) is not None and t >= (h.oi_ms or 0):
                h.oi, h.oi_ms = _float(rec.oi), t
            # the basis of one markPrice event: mark and index of the same event time
            if h.mark is not None and h.index and h.mark_ms == h.index_ms:
                h.basis = (h.mark - h.index) / h.index
            if rec.trend:  # (bucket number counted from lo_ms, last mark in it)
                for k in [k for k in h.marks if k < lo_ms - self.window_ms]:
                    del h.marks[k]
                for b, v in rec.trend:
                    h.marks[lo_ms + int(b) * self.bucket_ms] = float(v)
            if h.mark_ms is not None and (self._seen_ms is None or h.mark_ms > self._seen_ms):
                self._seen_ms = h.mark_ms

    # -- rendering ---------------------------------------------------------------------------

    def render(self, board: Board, width: int | None = None, height: int | None = None) -> RenderableType:
        return render(board, width=width, height=height)


def _pair(label: str, value: str, style: str = "bold") -> Text:
    return Text.assemble((label + " ", "dim"), (value, style))


def _line(*parts: Text) -> Text:
    out = Text(no_wrap=True, overflow="ellipsis")
    for i, p in enumerate(parts):
        if i:
            out.append("   ")
        out.append_text(p)
    return out


def _short_group(group: str) -> str:
    return group.removeprefix("perpstream-")


def _header(board: Board) -> list[Text]:
    """The five lines above the tables: time, rates, lag, connections and stale markets, paths."""
    lag = ", ".join(f"{_short_group(g)} {cell(n)}" for g, n in sorted(board.lag.items())) or "-"
    stale = f"{cell(board.stale_count)} of {cell(len(board.rows))}"
    if board.engine_stale is not None:
        stale += f" (snapshots: {cell(board.engine_stale)})"
    if board.stale_count:  # by name, as many as the line has room for
        stale += ": " + ", ".join(board.market_name(r) for r in board.rows if r.stale)
    return [
        _line(Text("perpstream", "bold cyan"), Text(iso_ms(board.time_ms)),
              _pair("uptime", duration(board.uptime_s))),
        _line(_pair("in", rate(board.published_per_s)), _pair("delivered", rate(board.delivered_per_s)),
              _pair("stored", rate(board.stored_per_s)),
              _pair("DLQ", cell(board.dlq), "bold red" if board.dlq else "bold")),
        _line(_pair("lag", lag), _pair("reconnects", cell(board.reconnects)),
              _pair("rejected frames", cell(board.rejected))),
        _line(_pair("ws connections", "-" if board.ws_connections is None else cell(board.ws_connections)),
              _pair("snapshots", cell(board.snapshots)),
              _pair("stale", stale, "bold yellow" if board.stale_count else "bold")),
        _line(_pair("data", board.data_dir or "-"), _pair("queries", board.endpoint_url or "off")),
    ]


def _rooms(height: int | None, n_rows: int, n_assets: int, n_notes: int) -> tuple[int, int]:
    """How many market rows and cross-venue rows fit ``height`` (all of both without one).
    The cross-venue table gets a third of the rows left (at least one) and what the market
    table does not fill; without room for a row of each it is left out (docs/dashboard.md)."""
    if height is None:
        return n_rows, n_assets
    room = height - _FIXED_LINES - n_notes
    both = room - _ASSET_FIXED_LINES
    if not n_assets or both < 2:
        return max(1, room), 0
    share = min(n_assets, max(1, both // ASSET_SHARE))
    markets = min(max(n_rows, 1), both - share)
    return markets, min(n_assets, both - markets)


def _fit(full: Mapping[str, int], width: int, cuts: Sequence[tuple[str, int]],
         drops: Sequence[str]) -> dict[str, int]:
    """Column widths (label -> characters) that fit ``width`` with one-space gaps: names cut
    (``cuts``, a column at a time down to so many characters), then whole columns left out
    (``drops``, in order), then what those freed given back to the names cut. What even that
    does not fit is cut by the terminal."""
    widths = dict(full)

    def over() -> int:
        return sum(widths.values()) + len(widths) - 1 - width
    for lbl, floor in cuts:
        if lbl in widths and over() > 0:
            widths[lbl] = max(min(floor, widths[lbl]), widths[lbl] - over())
    for lbl in drops:
        if lbl in widths and over() > 0:
            del widths[lbl]
    for lbl, _floor in reversed(cuts):
        if lbl in widths and over() < 0:
            widths[lbl] = min(full[lbl], widths[lbl] - over())
    return widths


def _market_table(board: Board, shown: Sequence[SymbolRow], width: int) -> Table:
    """The markets, with a venue column when there are several venues. The trend column gets
    the width the others leave (at most one character a bucket); under four it is left out.
    When even the others do not fit, the venue names and symbols are cut (:data:`_MARKET_CUTS`),
    then columns are left out whole, the basis first (:data:`_MARKET_DROPS`): no number is
    ever cut (docs/dashboard.md)."""
    # Long: the columns of both layouts, what to cut or leave out to fit, then the rows.
    multi = board.multi_venue
    chars = _SYMBOL_CHARS_WITH_VENUE if multi else _SYMBOL_CHARS
    columns = {  # label -> the cells of the shown rows, left to right
        **({"venue": [r.venue for r in shown]} if multi else {}),
        "symbol": [_cut(r.symbol, chars) for r in shown],
        "mark": [price(r.mark) for r in shown],
        "funding": [percent(r.funding) for r in shown],
        "basis bp": [bp(r.basis) for r in shown],
        "open int.": [quantity(r.oi) for r in shown],
        "age": [duration(None if r.mark_ms is None else (board.time_ms - r.mark_ms) / 1000) for r in shown],
        "state": ["STALE" if r.stale else "ok" for r in shown],
    }
    full = {lbl: max([len(lbl), *map(len, cells)]) for lbl, cells in columns.items()}
    cuts = [(lbl, _apart(columns[lbl], floor)) for lbl, floor in _MARKET_CUTS] if multi else []
    widths = _fit(full, width, cuts, _MARKET_DROPS)
    for lbl in ("venue", "symbol"):
        if lbl in widths:
            columns[lbl] = [_cut(c, widths[lbl]) for c in columns[lbl]]
    # the trend gets what the other columns leave of the width (nothing once one had to go);
    # two spaces between columns when that leaves it all its buckets, else one
    buckets = len(board.rows[0].trend) if board.rows and len(widths) == len(full) else 0
    gap = 2 if sum(widths.values()) + buckets + 2 * len(widths) <= width else 1
    spark_w = min(buckets, width - sum(widths.values()) - gap * len(widths))
    table = Table(box=None, padding=(0, gap, 0, 0), pad_edge=False, show_edge=False,
                  header_style="bold", collapse_padding=True)
    labels = list(widths)
    for lbl in labels:
        if lbl == "age" and spark_w >= 4:
            table.add_column(f"mark {board.trend_s}s"[:spark_w], no_wrap=True, min_width=spark_w,
                             max_width=spark_w)
        table.add_column(lbl, justify="left" if lbl in ("venue", "symbol", "state") else "right",
                         no_wrap=True, min_width=widths[lbl])
    for k, r in enumerate(shown):
        cells: list[RenderableType] = []
        for lbl in labels:
            if lbl == "age" and spark_w >= 4:
                known = [v for v in r.trend[-spark_w:] if v is not None]
                colour = "" if len(known) < 2 or known[-1] == known[0] else (
                    "green" if known[-1] > known[0] else "red")
                cells.append(Text(sparkline(r.trend[-spark_w:]), colour))
            cells.append(Text(columns[lbl][k], "bold red" if r.stale else "dim") if lbl == "state"
                         else columns[lbl][k])
        table.add_row(*cells)
    return table


def _venue_of(market: str | None) -> str:
    """The venue of a ``source:symbol`` market name, short (``okx`` of ``okx_swap:BTC-USDT-SWAP``)."""
    return "" if market is None else venue_name(market.partition(":")[0])


def _asset_table(board: Board, shown: Sequence[AssetRow], width: int) -> Table:
    """The assets across venues. A funding extreme is its rate and its venue, the rates aligned.
    When a row would not fit the width, the venue names there are cut, to no fewer than four
    characters, then whole columns are left out (:data:`_ASSET_DROPS`): no number is ever cut
    (docs/dashboard.md)."""
    # Long: the columns, what to cut or leave out to fit, then the rows.
    columns = {  # label -> the cells of the shown rows
        "asset": [_cut(a.asset, 10) for a in shown],
        "venues": [f"{a.venues_fresh}/{len(a.venues_present)}" for a in shown],
        "spread": [annual(a.funding_ann_spread) for a in shown],
        "OI-wtd": [annual(a.funding_ann_oi_weighted) for a in shown],
        "notional": [money(a.oi_notional_total) for a in shown],
        "age": [duration((board.time_ms - a.snapshot_ms) / 1000) for a in shown],
    }
    widths = {lbl: max([len(lbl), *map(len, cells)]) for lbl, cells in columns.items()}
    ends = [[(annual(a.funding_ann_min), _venue_of(a.funding_ann_min_market)) for a in shown],
            [(annual(a.funding_ann_max), _venue_of(a.funding_ann_max_market)) for a in shown]]
    rate_w = [max(len(r) for r, _ in e) for e in ends]
    extremes = ("funding min", "funding max")
    for j, lbl in enumerate(extremes):  # the rate, a space, the venue
        widths[lbl] = max(len(lbl), rate_w[j] + 1 + max(len(v) for _, v in ends[j]))
    # the venue names are cut a character at a time, the longer first, down to four
    # characters or as many as keep them apart
    longest = [max(len(v) for _, v in e) for e in ends]
    floor = _apart((v for e in ends for _, v in e), 4)
    cuts = [(lbl, max(len(lbl), rate_w[j] + 1 + n)) for n in range(max(longest) - 1, floor - 1, -1)
            for j, lbl in enumerate(extremes) if longest[j] > n]
    widths = _fit(widths, width, cuts, _ASSET_DROPS)
    venue_w = [widths[lbl] - rate_w[j] - 1 for j, lbl in enumerate(extremes)]
    gap = 2 if sum(widths.values()) + 2 * (len(widths) - 1) <= width else 1
    table = Table(box=None, padding=(0, gap, 0, 0), pad_edge=False, show_edge=False,
                  header_style="bold", collapse_padding=True)
    for lbl in [lbl for lbl in ("asset", "venues") if lbl in widths]:
        table.add_column(lbl, justify="left" if lbl == "asset" else "right", no_wrap=True,
                         min_width=widths[lbl])
    table.add_column("funding min", no_wrap=True, min_width=widths["funding min"])
    table.add_column("funding max", no_wrap=True, min_width=widths["funding max"])
    after = [lbl for lbl in ("spread", "OI-wtd", "notional", "age") if lbl in widths]
    for lbl in after:
        table.add_column(lbl, justify="right", no_wrap=True, min_width=widths[lbl])
    for k, a in enumerate(shown):
        cells: list[RenderableType] = [columns["asset"][k]]
        if "venues" in widths:
            cells.append(Text(columns["venues"][k], "bold yellow" if a.venues_stale else ""))
        for j, e in enumerate(ends):
            cells.append(f"{e[k][0]:>{rate_w[j]}} {_cut(e[k][1], venue_w[j])}".rstrip())
        table.add_row(*cells, *(columns[lbl][k] for lbl in after))
    return table


def _status(board: Board, width: int) -> Text:
    if board.error:
        return Text(f"! {board.error}", "bold red", no_wrap=True, overflow="ellipsis")
    as_of = iso_ms(board.data_as_of_ms) if board.data_as_of_ms is not None else "-"
    n = len(board.rows)
    what = f"{n:,} markets" if board.multi_venue else f"{n:,} symbols"
    status = f"store: {what}, latest mark {as_of}"
    if board.query_s is not None and board.asset_query_s is not None:  # markets + across venues
        status += f", queries {board.query_s * 1000:,.0f} + {board.asset_query_s * 1000:,.0f} ms"
    elif board.query_s is not None:
        status += f", query {board.query_s * 1000:,.0f} ms"
    if len(status) + 24 <= width:
        status += "; open int. in contracts"
    return Text(status, "dim", no_wrap=True, overflow="ellipsis")


def render(board: Board, width: int | None = None, height: int | None = None) -> RenderableType:
    """The board as a rich renderable: five header lines, the market table and, with more
    than one venue and an asset on two of them, the cross-venue table (as many rows of each
    as ``height`` leaves room for, :func:`_rooms`; all without a height), each with its
    ``+N more``, the notes and the status line."""
    width = width or 80
    assets = board.assets if board.multi_venue else ()
    n_rows, n_assets = _rooms(height, len(board.rows), len(assets), len(board.notes))
    parts: list[RenderableType] = [*_header(board), Text()]
    shown = board.rows[:n_rows]
    parts.append(_market_table(board, shown, width) if board.rows else
                 Text("no symbols in the store yet", "dim"))
    if more := len(board.rows) - len(shown):
        parts.append(Text(f"+{more:,} more (sorted by open-interest notional)", "dim"))
    if n_assets:
        title = (f"across venues: {len(assets):,} assets, {assets[0].window_s}s window, "
                 "funding annualised, notional in USD")
        parts += [Text(), Text(title, "bold", no_wrap=True, overflow="ellipsis"),
                  _asset_table(board, assets[:n_assets], width)]
        if more := len(assets) - n_assets:
            parts.append(Text(f"+{more:,} more assets (sorted by total notional)", "dim"))
    parts.extend(Text(f"! {note}", "bold yellow", no_wrap=True, overflow="ellipsis") for note in board.notes)
    parts.append(_status(board, width))
    return Group(*parts)


def _top_assets(board: Board) -> str | None:
    """The largest assets' spread and OI-weighted annualised funding, one compact string."""
    if not board.multi_venue or not board.assets:
        return None
    return "; ".join(f"{a.asset} spread {annual(a.funding_ann_spread)} "
                     f"oi-w {annual(a.funding_ann_oi_weighted)}" for a in board.assets[:_TOP_ASSETS])


def log_fields(board: Board) -> dict[str, Any]:
    """The board's totals as flat fields (rates rounded to 0.1/s), for a log record's ``extra``."""
    def r1(v: float | None) -> float | None:
        return None if v is None else round(v, 1)

    return {
        "time": iso_ms(board.time_ms), "uptime_s": round(board.uptime_s, 1),
        "in_per_s": r1(board.published_per_s), "delivered_per_s": r1(board.delivered_per_s),
        "stored_per_s": r1(board.stored_per_s), "published": board.published,
        "delivered": board.delivered, "stored": board.stored, "dlq": board.dlq,
        "lag": board.lag_total, "lag_by_group": dict(board.lag), "reconnects": board.reconnects,
        "rejected_frames": board.rejected, "snapshots": board.snapshots,
        "symbols": len(board.rows), "venues": len(board.sources), "stale_symbols": board.stale_count,
        "stale_symbols_snapshots": board.engine_stale, "ws_connections": board.ws_connections,
        "top_assets": _top_assets(board),
        "data_as_of": iso_ms(board.data_as_of_ms) if board.data_as_of_ms is not None else None,
        "query_ms": None if board.query_s is None else round(board.query_s * 1000, 1),
        "asset_query_ms": None if board.asset_query_s is None else round(board.asset_query_s * 1000, 1),
        "data_dir": board.data_dir, "endpoint": board.endpoint_url, "error": board.error,
    }


class LiveBoard:
    """The view on a terminal: ``tick()`` samples and redraws (call it about once a
    second), ``close()`` leaves the last board on screen and the cursor visible.
    Also a context manager."""

    def __init__(self, dashboard: Dashboard, console: Console | None = None) -> None:
        self.dashboard = dashboard
        self.console = console or Console()
        self.board: Board | None = None
        self._live = Live(console=self.console, auto_refresh=False, screen=False, transient=False,
                          redirect_stdout=False, redirect_stderr=False, vertical_overflow="crop")
        self._live.start()

    def tick(self) -> Board:
        self.board = self.dashboard.sample()
        size = self.console.size
        self._live.update(self.dashboard.render(self.board, width=size.width, height=size.height),
                          refresh=True)
        return self.board

    def close(self) -> None:
        self._live.stop()
        self.console.show_cursor(True)

    def __enter__(self) -> LiveBoard:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
