"""The live terminal view of the embedded pipeline, and the same figures as a log line.

Two sources, read once a tick:

- a :class:`service.telemetry.Telemetry`: events/s in (``points_published``,
  ``points_delivered``) and stored (``records_stored``) from counter deltas
  between two samples divided by the clock delta, totals of ``records_dlq``,
  ``frames_rejected``, ``reconnects``, ``snapshots_emitted``, the
  ``consumer_lag`` gauge summed per group, ``ws_connections``,
  ``snapshot_stale_symbols``;
- the store: per symbol the latest mark price, index price (for the basis),
  funding rate and open interest, and the last mark of each 5 s bucket of a
  minute (the trend), from ``{database}.metric_points``: one query a tick,
  bounded to the last minute of event time (``event_time`` is in the table's
  ORDER BY). A slow store is asked less often: after a query that took ``d``
  seconds the next waits ``d / QUERY_SHARE`` (0.2), the ticks between reuse
  the rows held.

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
of old data is followed as it is replayed; a symbol that falls silent keeps
its last values (the board remembers them) and is marked stale.

Stale, as ``perpstream freshness`` says it (:func:`consumers.snapshots.freshness.assess`):
no mark, or the latest mark older than ``mark_stale_ms``; no open interest,
or the latest older than ``oi_stale_ms``; compared with the wall clock.

Units: funding rate in percent with its sign (0.0001 is ``+0.0100%``), basis
``(mark - index) / index`` in basis points, open interest in contracts
(grouped), prices with six significant digits and at least two decimals,
times ISO-8601 UTC. Rows are sorted by open-interest notional (OI x mark),
largest first, then by symbol; the rows that do not fit the height are
counted in a ``+N more`` line. A failed query keeps the last rows and shows
a one-line error.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from perpstream.consumers.sink.migrations import TABLE as POINTS_TABLE
from perpstream.consumers.snapshots.engine import EngineConfig
from perpstream.consumers.snapshots.freshness import assess
from perpstream.runtime.output import cell, iso_ms
from perpstream.runtime.secrets import redact
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.models import Metric
from perpstream.sql import first_line

QueryFn = Callable[[str], Sequence[Sequence[Any]]]

#: Lines of the board that are not symbol rows: 5 header lines, a blank, the
#: table header, ``+N more`` and the status line.
_FIXED_LINES = 9
_SPARKS = "▁▂▃▄▅▆▇█"
#: The largest share of the time the view spends in store queries: after a query
#: that took d seconds, the next one waits d / QUERY_SHARE (ticks between reuse the rows).
QUERY_SHARE = 0.2
_METRICS = (Metric.MARK_PRICE, Metric.INDEX_PRICE, Metric.FUNDING_RATE, Metric.OPEN_INTEREST)

class MarketRow(NamedTuple):
    """One row of :data:`MARKET_SQL`: a symbol's latest values (epoch ms of their event time,
    0 when none) and the last mark of each trend bucket as (bucket number, mark). The query's
    column list is made from these fields (:data:`_MARKET_COLUMNS`), so a column added or
    moved changes both together, and a row of another width fails instead of shifting."""

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
    "symbol",
    *_latest("mark_price"), *_latest("index_price"), *_latest("funding_rate"), *_latest("open_interest"),
    "arraySort(groupArrayIf((b, v), metric = 'mark_price'))",
), strict=True))

MARKET_SQL = (
    "SELECT " + ",\n       ".join(f"{expr} AS {name}" for name, expr in _MARKET_COLUMNS.items()) + """
FROM (
    SELECT symbol, metric, intDiv(toUnixTimestamp64Milli(event_time) - {lo}, {bucket}) AS b,
           argMax(value, event_time) AS v, toUnixTimestamp64Milli(max(event_time)) AS t
    FROM {db}.{table}
    WHERE event_time >= fromUnixTimestamp64Milli(toInt64({lo}), 'UTC')
      AND metric IN ({metrics})
    GROUP BY symbol, metric, b
)
GROUP BY symbol
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


def bp(ratio: float | None) -> str:
    """A ratio in basis points with its sign: 0.00021 is ``+2.1``."""
    return "-" if ratio is None else f"{ratio * 1e4 + 0.0:+.1f}"


def quantity(v: float | None) -> str:
    """An amount of contracts: grouped, whole from 1,000 up, else three decimals."""
    if v is None or not math.isfinite(v):
        return "-"
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:,.3f}"


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


# -- the board --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SymbolRow:
    """What the store says of one symbol. Times are epoch ms of event time."""

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


@dataclass(frozen=True)
class Board:
    """One sample: the telemetry figures, the symbol rows (sorted) and the status."""

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
    #: how long the latest store query took (None before the first)
    query_s: float | None = None
    #: lines the running process adds (a component failing and being restarted, ...)
    notes: tuple[str, ...] = ()

    @property
    def lag_total(self) -> int:
        return sum(self.lag.values())

    @property
    def stale_count(self) -> int:
        return sum(1 for r in self.rows if r.stale)


@dataclass(slots=True)
class _Held:
    """What the board remembers of a symbol between samples."""

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


class Dashboard:
    """Samples the telemetry and the store; keeps what is needed between samples
    (the previous counters for rates, the last rows of every symbol)."""

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
        self._rows: dict[str, _Held] = {}
        self._seen_ms: int | None = None
        self._store_error: str | None = None
        self._query_s: float | None = None
        self._next_query = -math.inf
        self._lock = threading.Lock()

    # -- sampling ----------------------------------------------------------------------------

    def sql(self, lo_ms: int) -> str:
        """The tick's query: points with event time >= ``lo_ms``."""
        return MARKET_SQL.format(lo=int(lo_ms), bucket=self.bucket_ms, db=self.database, table=POINTS_TABLE,
                           metrics=", ".join(f"'{m}'" for m in _METRICS))

    def sample(self) -> Board:
        """Read both sources; never raises (a failure is the board's ``error``)."""
        with self._lock:
            return self._sample()

    def _sample(self) -> Board:
        # Long: one pass that reads telemetry and the market query and turns each failure into a
        # line of the board instead of an exception; the steps share the partial board.
        now = self.clock()
        wall_ms = int(self.wall() * 1000)
        errors: list[str] = []
        try:
            snap = self.telemetry.snapshot()
        except Exception as exc:  # a computed gauge failed: no figures this tick
            snap = {}
            errors.append(f"telemetry: {first_line(exc)}")
        totals = {name: sum(series.values()) for name, series in snap.items()}
        rates: dict[str, float | None] = {}
        for name in ("points_published", "points_delivered", "records_stored"):
            if self._prev is None or now <= self._prev[0]:
                rates[name] = None
            else:
                rates[name] = (totals.get(name, 0) - self._prev[1].get(name, 0)) / (now - self._prev[0])
        if not errors:
            self._prev = (now, totals)

        anchor = self._anchor(snap, wall_ms)
        end = anchor - anchor % self.bucket_ms
        lo = end - self.window_ms  # the buckets of the minute before ``end``'s and ``end``'s own
        if now >= self._next_query:
            started = self.clock()
            try:
                self._merge(self.query(self.sql(lo)), lo)
            except Exception as exc:  # the store's error, or an answer of an unexpected shape
                self._store_error = f"store query failed at {iso_ms(wall_ms)}: {first_line(exc)}"
            else:
                self._store_error = None
            self._query_s = self.clock() - started
            # a slow store is asked less often: the view's queries take at most QUERY_SHARE of the time
            self._next_query = started + self._query_s / QUERY_SHARE
        if self._store_error:
            errors.append(self._store_error)

        # the trend: the minute of buckets up to the one of the latest mark read (so that a
        # bucket that has only begun does not show as a gap), the same for every symbol
        last = end if self._seen_ms is None else self._seen_ms - self._seen_ms % self.bucket_ms
        n = self.window_ms // self.bucket_ms
        buckets = [last - (n - 1 - k) * self.bucket_ms for k in range(n)]
        rows = []
        for symbol, h in self._rows.items():
            f = assess(symbol, now_ms=wall_ms, config=self.stale, last_snapshot_ms=None,
                       snapshot_stale=None, last_mark_ms=h.mark_ms, last_oi_ms=h.oi_ms)
            rows.append(SymbolRow(symbol, h.mark, h.mark_ms, h.index, h.index_ms, h.funding, h.oi, h.oi_ms,
                                  h.basis, f.reasons, tuple(map(h.marks.get, buckets))))
        rows.sort(key=lambda r: (r.notional is None, -(r.notional or 0.0), r.symbol))

        lag: dict[str, int] = {}
        for key, v in snap.get("consumer_lag", {}).items():
            group = dict(key).get("group", "?")
            lag[group] = lag.get(group, 0) + int(v)
        ws = snap.get("ws_connections")
        eng = snap.get("snapshot_stale_symbols")
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
            rows=tuple(rows), data_as_of_ms=self._seen_ms, data_dir=self.data_dir,
            endpoint_url=self.endpoint_url, error=redact("; ".join(errors)) or None,
            trend_s=self.window_ms // 1000,
            query_s=self._query_s,
            notes=self._notes(),
        )

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
            h = self._rows.get(str(rec.symbol))
            if h is None:
                h = self._rows[str(rec.symbol)] = _Held()
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


def render(board: Board, width: int | None = None, height: int | None = None) -> RenderableType:
    """The board as a rich renderable: five header lines, the symbol table (as many rows
    as ``height`` leaves room for; all without a height), ``+N more`` and the status line.
    The trend column gets the width the others leave (at most one character a bucket);
    under four characters it is left out."""
    # Long: the board's layout top to bottom, one block per line of the view (docs/dashboard.md).
    width = width or 80
    lag = ", ".join(f"{_short_group(g)} {cell(n)}" for g, n in sorted(board.lag.items())) or "-"
    stale = f"{cell(board.stale_count)} of {cell(len(board.rows))}"
    if board.engine_stale is not None:
        stale += f" (snapshots: {cell(board.engine_stale)})"
    if board.stale_count:  # by name, as many as the line has room for
        stale += ": " + ", ".join(r.symbol for r in board.rows if r.stale)
    header = [
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
    room = len(board.rows) if height is None else max(1, height - _FIXED_LINES - len(board.notes))
    shown = board.rows[:room]
    labels = ["symbol", "mark", "funding", "basis bp", "open int.", "age", "state"]
    texts = [[r.symbol[:14], price(r.mark), percent(r.funding), bp(r.basis), quantity(r.oi),
              duration(None if r.mark_ms is None else (board.time_ms - r.mark_ms) / 1000),
              "STALE" if r.stale else "ok"] for r in shown]
    widths = [max([len(lbl), *(len(t[i]) for t in texts)]) for i, lbl in enumerate(labels)]
    # the trend gets what the other columns leave of the width; two spaces between
    # columns when that leaves it all its buckets, else one
    buckets = len(board.rows[0].trend) if board.rows else 0
    gap = 2 if sum(widths) + buckets + 2 * len(widths) <= width else 1
    spark_w = min(buckets, width - sum(widths) - gap * len(widths))
    trend_label = f"mark {board.trend_s}s"
    table = Table(box=None, padding=(0, gap, 0, 0), pad_edge=False, show_edge=False,
                  header_style="bold", collapse_padding=True)
    for i, lbl in enumerate(labels[:5]):
        table.add_column(lbl, justify="left" if i == 0 else "right", no_wrap=True, min_width=widths[i])
    if spark_w >= 4:
        table.add_column(trend_label[:spark_w], no_wrap=True, min_width=spark_w, max_width=spark_w)
    table.add_column("age", justify="right", no_wrap=True, min_width=widths[5])
    table.add_column("state", no_wrap=True, min_width=widths[6])
    for r, t in zip(shown, texts, strict=True):
        cells: list[RenderableType] = list(t[:5])
        if spark_w >= 4:
            known = [v for v in r.trend[-spark_w:] if v is not None]
            colour = "" if len(known) < 2 or known[-1] == known[0] else (
                "green" if known[-1] > known[0] else "red")
            cells.append(Text(sparkline(r.trend[-spark_w:]), colour))
        cells += [t[5], Text(t[6], "bold red" if r.stale else "dim")]
        table.add_row(*cells)
    parts: list[RenderableType] = [*header, Text()]
    parts.append(table if board.rows else Text("no symbols in the store yet", "dim"))
    more = len(board.rows) - len(shown)
    if more:
        parts.append(Text(f"+{more:,} more (sorted by open-interest notional)", "dim"))
    parts.extend(Text(f"! {note}", "bold yellow", no_wrap=True, overflow="ellipsis") for note in board.notes)
    if board.error:
        parts.append(Text(f"! {board.error}", "bold red", no_wrap=True, overflow="ellipsis"))
    else:
        as_of = iso_ms(board.data_as_of_ms) if board.data_as_of_ms is not None else "-"
        status = f"store: {len(board.rows):,} symbols, latest mark {as_of}"
        if board.query_s is not None:
            status += f", query {board.query_s * 1000:,.0f} ms"
        if len(status) + 24 <= width:
            status += "; open int. in contracts"
        parts.append(Text(status, "dim", no_wrap=True, overflow="ellipsis"))
    return Group(*parts)


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
        "symbols": len(board.rows), "stale_symbols": board.stale_count,
        "stale_symbols_snapshots": board.engine_stale, "ws_connections": board.ws_connections,
        "data_as_of": iso_ms(board.data_as_of_ms) if board.data_as_of_ms is not None else None,
        "query_ms": None if board.query_s is None else round(board.query_s * 1000, 1),
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
