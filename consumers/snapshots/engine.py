"""Pure window aggregation: MetricPoints in, MarketSnapshot records out.

No Kafka, no ClickHouse, no clock: the engine is driven by event time only,
so a replay of the same points gives the same snapshots, bit for bit.

Rules (docs/snapshots.md, "Features", made precise here):

- Only ``mark_price``, ``index_price``, ``funding_rate``, ``open_interest``
  and ``funding_interval_hours`` feed the snapshots; other metrics are counted
  as ``ignored`` and touch no state (not even the watermark), so the state is
  a function of the points that :mod:`consumers.snapshots.store` persists.
  A funding interval is a point like the others (it moves the watermark, it
  can be late or a duplicate); a snapshot reads the latest one at or before
  its time, and annualises ``funding_last`` with it (:func:`annualize`).
- Per (source, symbol), ``M`` = largest event_time of an applied point; the watermark is
  ``M - allowed_lateness``. The snapshot for ``t`` is emitted once the
  watermark is *strictly* greater than ``t``. Strict, so that a point that
  arrives at most ``allowed_lateness`` behind ``M`` (``et >= M - L``) always
  has ``et > t`` for every emitted ``t``: "within lateness" never loses data.
- Snapshot times are the multiples of ``interval_ms``. The first one of a
  market is the smallest multiple >= the smallest event_time applied before
  the first emission; then every multiple, gaps included (a market silent for
  a while gets its snapshots, marked stale, once its watermark moves again).
- A point with ``et <= last emitted t`` is not applied: it is a ``duplicate``
  when its identity is still in the state, else ``late``. A point with the
  same identity (metric, event_time) as an applied one is a ``duplicate``.
  The first value applied for an identity wins (the contract says equal
  identities carry equal values). State is per (source, symbol): ``BTCUSDT``
  of ``binance_usdm`` and of ``bybit_linear`` are two markets with their own
  points, watermark and snapshots. The partition key is the symbol, so both
  land in the same partition and the same engine holds both.
- Mark and index prices and funding intervals must be > 0 (log returns,
  basis, the annualising division); other values are counted ``invalid``.

Numerics. Values in a window are summed *exactly*: every double is a dyadic
rational, so ``x * 2**1074`` is an integer and Python integers add without
error. Sliding sums (add on enter, subtract on leave) are then independent of
history and arrival order, and a mean is one correctly rounded division. Log
returns ``r = ln(m_i / m_{i-1})`` of positive doubles satisfy ``|r| >= 2**-54``
unless zero, so ``r * 2**128`` is an integer and ``r**2 * 2**256`` too: the
sample variance ``(n*S2 - S1**2) / (n*(n-1))`` is exact (no cancellation at
all) and its square root correctly rounded — the same number
``statistics.stdev`` gives.

Memory per market: points with ``et > t - max(window)`` plus, per metric
(the funding interval included), the latest one before that (for ``m0``/``o0``/``*_last``), plus one carried
basis pair. Bounded by the largest window, not by run time.
"""

from __future__ import annotations

import math
from array import array
from bisect import bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from perpstream.consumers.snapshots.exceptions import SnapshotConfigError
from perpstream.schemas.models import Metric

MARK, INDEX, FUNDING, OI, INTERVAL = 0, 1, 2, 3, 4
METRIC_CODES: dict[str, int] = {
    Metric.MARK_PRICE: MARK,
    Metric.INDEX_PRICE: INDEX,
    Metric.FUNDING_RATE: FUNDING,
    Metric.OPEN_INTEREST: OI,
    Metric.FUNDING_INTERVAL_HOURS: INTERVAL,
}
METRIC_NAMES: tuple[str, ...] = (Metric.MARK_PRICE, Metric.INDEX_PRICE, Metric.FUNDING_RATE,
                                 Metric.OPEN_INTEREST, Metric.FUNDING_INTERVAL_HOURS)
#: Hours in a year of 365 days: an annualised rate is rate x HOURS_PER_YEAR / interval hours.
HOURS_PER_YEAR = 8760

#: What :meth:`SnapshotEngine.add` did with a point.
ACCEPTED, DUPLICATE, LATE, IGNORED, INVALID = range(5)
OUTCOMES = ("accepted", "duplicate", "late", "ignored", "invalid")

#: A market: (source, symbol). The engine's state, the checkpoints and the points it persists
#: are per market (docs/snapshots.md, "Markets").
Market = tuple[str, str]

_SHIFT = 1074  # every finite double times 2**1074 is an integer
_RSHIFT = 128  # every log return of positive doubles times 2**128 is an integer
_EVICT_SLACK = 32  # evict in chunks: del a[:k] moves the array, do it rarely


@dataclass(frozen=True)
class EngineConfig:
    """Event-time parameters. Defaults are the contract's."""

    interval_ms: int = 5_000
    windows_s: tuple[int, ...] = (60, 300, 3600)
    allowed_lateness_ms: int = 2_000
    mark_stale_ms: int = 5_000
    oi_poll_interval_ms: int = 10_000
    oi_stale_factor: float = 3.0

    def __post_init__(self) -> None:
        if self.interval_ms <= 0:
            raise SnapshotConfigError("interval_ms must be > 0")
        if not self.windows_s or any(w <= 0 for w in self.windows_s):
            raise SnapshotConfigError("windows_s must be a non-empty list of positive seconds")
        if len(set(self.windows_s)) != len(self.windows_s):
            raise SnapshotConfigError("windows_s has duplicates")
        if self.allowed_lateness_ms < 0:
            raise SnapshotConfigError("allowed_lateness_ms must be >= 0")

    @property
    def oi_stale_ms(self) -> float:
        return self.oi_stale_factor * self.oi_poll_interval_ms

    @property
    def max_window_ms(self) -> int:
        return max(self.windows_s) * 1000


def ceil_to(t: int, step: int) -> int:
    return -((-t) // step) * step


def log_return(curr: float, prev: float) -> float:
    """ln(curr / prev): the one definition of a log return, used everywhere."""
    return math.log(curr / prev)


def basis_of(mark: float, index: float) -> float:
    return (mark - index) / index


def annualize(rate: float, interval_h: float) -> float:
    """``rate x 8760 / interval_h`` rounded once, to the nearest double (docs/snapshots.md).

    Exact like the window means: the quotient of the two doubles' integer ratios is a
    Python integer division, which rounds correctly, so the value does not depend on how
    the product would have been rounded first. A zero rate keeps its sign (what IEEE
    arithmetic gives); a quotient past the largest double is an infinity of its sign.
    """
    if rate == 0.0:
        return rate
    n1, d1 = rate.as_integer_ratio()
    n2, d2 = interval_h.as_integer_ratio()
    try:
        return (n1 * HOURS_PER_YEAR * d2) / (d1 * n2)
    except OverflowError:
        return math.copysign(math.inf, rate)


def _fx(x: float) -> int:
    n, d = x.as_integer_ratio()
    return n << (_SHIFT + 1 - d.bit_length())


def _fx_r(r: float) -> int:
    n, d = r.as_integer_ratio()
    k = d.bit_length() - 1
    if k > _RSHIFT:  # impossible for ln of a ratio of positive doubles; kept as a guard
        raise ArithmeticError(f"log return {r!r} finer than 2**-{_RSHIFT}")
    return n << (_RSHIFT - k)


def _isqrt_frac_rto(n: int, m: int) -> int:
    a = math.isqrt(n // m)
    return a | (a * a * m != n)


def sqrt_frac(n: int, m: int) -> float:
    """sqrt(n / m) correctly rounded (the algorithm CPython's statistics uses)."""
    q = (n.bit_length() - m.bit_length() - 109) // 2
    if q >= 0:
        return float(_isqrt_frac_rto(n, m << 2 * q) << q)
    return _isqrt_frac_rto(n << -2 * q, m) / (1 << -q)


def sample_stdev_exact(n: int, s1: int, s2: int) -> float:
    """Sample stdev of n values given exact sums s1 = sum(x*2**128), s2 = sum(x**2*2**256)."""
    num = n * s2 - s1 * s1
    if num <= 0:
        return 0.0
    return sqrt_frac(num, n * (n - 1) << (2 * _RSHIFT))


class _Series:
    """One metric of one market: event times and values, sorted, unique times.

    ``base`` is the absolute index of ``ts[0]`` so that window bounds stay
    valid when the front is evicted.
    """

    __slots__ = ("base", "ts", "vs")

    def __init__(self) -> None:
        self.ts = array("q")
        self.vs = array("d")
        self.base = 0

    def upto(self, t: int) -> int:
        """Absolute index of the first point with event_time > t."""
        return self.base + bisect_right(self.ts, t)

    def insert(self, et: int, v: float) -> bool:
        ts = self.ts
        if not ts or et > ts[-1]:
            ts.append(et)
            self.vs.append(v)
            return True
        i = bisect_right(ts, et)
        if i and ts[i - 1] == et:
            return False
        ts.insert(i, et)
        self.vs.insert(i, v)
        return True

    def contains(self, et: int) -> bool:
        i = bisect_right(self.ts, et)
        return bool(i) and self.ts[i - 1] == et

    def value_at(self, et: int) -> float | None:
        i = bisect_right(self.ts, et)
        if i and self.ts[i - 1] == et:
            return self.vs[i - 1]
        return None

    def evict_below(self, abs_i: int) -> None:
        k = abs_i - self.base
        if k > _EVICT_SLACK:
            del self.ts[:k]
            del self.vs[:k]
            self.base += k

    def __len__(self) -> int:
        return len(self.ts)


class _Window:
    """Sliding exact sums of one window of one market.

    Marks in the window are absolute indices [m_lo, m_hi) of the mark series;
    their log returns are those of indices m_lo+1 .. m_hi-1 (consecutive pairs
    both inside). Funding points are [f_lo, f_hi).
    """

    __slots__ = ("b_n", "b_s", "f_hi", "f_lo", "f_s", "m_hi", "m_lo", "r1", "r2", "w_ms", "window_s")

    def __init__(self, window_s: int) -> None:
        self.window_s = window_s
        self.w_ms = window_s * 1000
        self.m_lo = self.m_hi = 0
        self.f_lo = self.f_hi = 0
        self.r1 = self.r2 = 0
        self.b_n = 0
        self.b_s = 0
        self.f_s = 0


class _MarketState:
    __slots__ = (
        "carry_basis", "carry_bound", "last_t", "max_et", "min_et", "next_t", "series", "source",
        "symbol", "windows",
    )

    def __init__(self, symbol: str, source: str, windows_s: Sequence[int]) -> None:
        self.symbol = symbol
        self.source = source
        self.series = (_Series(), _Series(), _Series(), _Series(), _Series())
        self.max_et: int | None = None
        self.min_et: int | None = None
        self.last_t: int | None = None
        self.next_t = 0
        self.windows = tuple(_Window(w) for w in sorted(windows_s, reverse=True))
        # Latest (mark, index) pair with event_time <= carry_bound, kept when evicted.
        self.carry_basis: float | None = None
        self.carry_bound: int | None = None

    def point_count(self) -> int:
        return sum(len(s) for s in self.series)


@dataclass
class EngineCounters:
    accepted: int = 0
    duplicate: int = 0
    late: int = 0
    ignored: int = 0
    invalid: int = 0
    snapshots: int = 0

    def as_dict(self) -> dict[str, int]:
        return dict(self.__dict__)


class SnapshotEngine:
    """Per-market event-time state for the markets of one partition (a market is (source, symbol)).

    ``add`` applies one point and holds the snapshots it completes until
    :meth:`take_output` hands them out; records are plain dicts with the
    MarketSnapshot fields and epoch-ms ints, ready for Avro and ClickHouse.
    """

    def __init__(self, config: EngineConfig | None = None) -> None:
        self.config = config or EngineConfig()
        #: keyed by market (source, symbol); the name predates markets and the benchmark reads it
        self._symbols: dict[Market, _MarketState] = {}
        self._out: list[dict[str, Any]] = []
        self.counters = EngineCounters()
        c = self.config
        self._interval = c.interval_ms
        self._lateness = c.allowed_lateness_ms
        self._max_w = c.max_window_ms

    # -- input ------------------------------------------------------------------

    def add(self, source: str, symbol: str, metric: str, value: float, event_time: int) -> int:
        code = METRIC_CODES.get(metric)
        cnt = self.counters
        if code is None:
            cnt.ignored += 1
            return IGNORED
        st = self._symbols.get((source, symbol))
        if st is None:
            st = self._symbols[(source, symbol)] = _MarketState(symbol, source, self.config.windows_s)
        if (code <= INDEX or code == INTERVAL) and not value > 0.0:
            cnt.invalid += 1
            return INVALID
        series = st.series[code]
        last_t = st.last_t
        if last_t is not None and event_time <= last_t:
            if series.contains(event_time):
                cnt.duplicate += 1
                return DUPLICATE
            cnt.late += 1
            return LATE
        ts = series.ts
        if ts and event_time <= ts[-1]:
            if not series.insert(event_time, value):
                cnt.duplicate += 1
                return DUPLICATE
        else:  # the common case: in order
            ts.append(event_time)
            series.vs.append(value)
        cnt.accepted += 1
        if st.max_et is None:
            st.max_et = st.min_et = event_time
            st.next_t = ceil_to(event_time, self._interval)
        else:
            if event_time > st.max_et:
                st.max_et = event_time
            if last_t is None and event_time < st.min_et:  # type: ignore[operator]
                st.min_et = event_time
                st.next_t = ceil_to(event_time, self._interval)
        if st.max_et - self._lateness > st.next_t:
            self._emit_until(st, st.max_et - self._lateness)
        return ACCEPTED

    # -- recovery ---------------------------------------------------------------

    def restore_symbol(
        self,
        symbol: str,
        source: str,
        points: Iterable[tuple[str, int, float]],
        *,
        last_t: int | None,
        carry_bound: int | None = None,
        carry_basis: float | None = None,
    ) -> None:
        """Rebuild one market (source, symbol) from persisted applied points (metric, event_time, value).

        ``points`` must hold every applied point with event_time > carry_bound
        and, per metric, the latest one <= carry_bound; ``carry_basis`` is the
        basis of the latest (mark, index) pair <= carry_bound. The snapshots
        already emitted (<= last_t) are not emitted again; those the persisted
        points imply beyond last_t are emitted (:meth:`take_output`; the same
        values as an uninterrupted run: they depend only on the applied points).
        """
        st = _MarketState(symbol, source, self.config.windows_s)
        rows = sorted((METRIC_CODES[m], et, v) for m, et, v in points if m in METRIC_CODES)
        for code, et, v in rows:
            st.series[code].insert(et, v)
            if st.max_et is None or et > st.max_et:
                st.max_et = et
            if st.min_et is None or et < st.min_et:
                st.min_et = et
        st.carry_bound = carry_bound
        st.carry_basis = carry_basis
        st.last_t = last_t
        if last_t is not None:
            st.next_t = last_t + self._interval
        elif st.min_et is not None:
            st.next_t = ceil_to(st.min_et, self._interval)
        self._symbols[(source, symbol)] = st
        if st.max_et is not None and st.max_et - self._lateness > st.next_t:
            self._emit_until(st, st.max_et - self._lateness)

    # -- output -----------------------------------------------------------------

    def take_output(self) -> list[dict[str, Any]]:
        """The snapshots completed since the previous call, in emission order
        (per market by snapshot time, windows largest first); the engine keeps
        no reference to the list, so the caller owns it (docs/snapshots.md)."""
        out, self._out = self._out, []
        return out

    # -- introspection ----------------------------------------------------------

    @property
    def markets(self) -> list[Market]:
        """The (source, symbol) pairs the engine holds state for."""
        return list(self._symbols)

    def last_emitted(self, source: str, symbol: str) -> int | None:
        st = self._symbols.get((source, symbol))
        return None if st is None else st.last_t

    def point_count(self, market: Market | None = None) -> int:
        """Points held for one market, or for all of them."""
        if market is not None:
            st = self._symbols.get(market)
            return 0 if st is None else st.point_count()
        return sum(s.point_count() for s in self._symbols.values())

    # -- emission ---------------------------------------------------------------

    def _emit_until(self, st: _MarketState, limit: int) -> None:
        """Emit every snapshot time t with next_t <= t < limit."""
        t = st.next_t
        step = self._interval
        out = self._out
        n = 0
        while t < limit:
            self._snapshot(st, t, out)
            st.last_t = t
            t += step
            n += 1
        st.next_t = t
        self.counters.snapshots += n * len(st.windows)
        self._evict(st)

    def _snapshot(self, st: _MarketState, t: int, out: list[dict[str, Any]]) -> None:
        """The records of every window at ``t`` (docs/snapshots.md, "Features").

        Long: the fields shared by the windows are computed once, then each window slides its
        exact sums; it runs for every market at every snapshot time, so it stays one frame.
        """
        cfg = self.config
        marks, idx, fund, oi, interval = st.series
        mb, ib, fb, ob = marks.base, idx.base, fund.base, oi.base
        m_hi = marks.upto(t)
        i_hi = idx.upto(t)
        f_hi = fund.upto(t)
        o_hi = oi.upto(t)
        mark_last = index_last = funding_last = oi_last = None
        mark_age = oi_age = None
        if m_hi > mb:
            mark_last = marks.vs[m_hi - 1 - mb]
            mark_age = t - marks.ts[m_hi - 1 - mb]
        if i_hi > ib:
            index_last = idx.vs[i_hi - 1 - ib]
        if f_hi > fb:
            funding_last = fund.vs[f_hi - 1 - fb]
        if o_hi > ob:
            oi_last = oi.vs[o_hi - 1 - ob]
            oi_age = t - oi.ts[o_hi - 1 - ob]
        interval_h = annualized = None
        v_hi = interval.upto(t)
        if v_hi > interval.base:
            interval_h = interval.vs[v_hi - 1 - interval.base]
            if funding_last is not None:
                annualized = annualize(funding_last, interval_h)
        basis_last = self._basis_last(st, m_hi)
        stale = (
            mark_age is None or oi_age is None or mark_age > cfg.mark_stale_ms
            or oi_age > cfg.oi_stale_ms
        )
        # Points entering are the same for every window (all end at t): sum them once.
        m_enter: tuple[int, int, int, int] | None = None
        f_enter: int | None = None
        for w in st.windows:
            start = t - w.w_ms
            m_lo = marks.upto(start)
            if m_lo < w.m_hi and m_hi > w.m_hi:
                if m_enter is None:
                    m_enter = self._mark_sums(st, w.m_hi, m_hi)
                self._advance_marks(st, w, m_lo, w.m_hi)
                r1, r2, bn, bs = m_enter
                w.r1 += r1
                w.r2 += r2
                w.b_n += bn
                w.b_s += bs
                w.m_hi = m_hi
            else:
                self._advance_marks(st, w, m_lo, m_hi)
            f_lo = fund.upto(start)
            if f_lo <= w.f_hi < f_hi:
                if f_enter is None:
                    f_enter = sum(_fx(fund.vs[i - fb]) for i in range(w.f_hi, f_hi))
                self._advance_funding(fund, w, f_lo, w.f_hi)
                w.f_s += f_enter
                w.f_hi = f_hi
            else:
                self._advance_funding(fund, w, f_lo, f_hi)
            n_mark = m_hi - m_lo
            mark_return = None
            if mark_last is not None and m_lo > mb:
                mark_return = log_return(mark_last, marks.vs[m_lo - 1 - mb])
            vol = sample_stdev_exact(n_mark - 1, w.r1, w.r2) if n_mark >= 3 else None
            o_lo = oi.upto(start)
            oi_change = None
            if oi_last is not None and o_lo > ob:
                o0 = oi.vs[o_lo - 1 - ob]
                if o0 != 0.0:
                    oi_change = (oi_last - o0) / o0
            nf = f_hi - f_lo
            out.append({
                "source": st.source,
                "symbol": st.symbol,
                "window_s": w.window_s,
                "snapshot_time": t,
                "mark_last": mark_last,
                "index_last": index_last,
                "funding_last": funding_last,
                "oi_last": oi_last,
                "mark_return": mark_return,
                "mark_volatility": vol,
                "basis_last": basis_last,
                "basis_mean": w.b_s / (w.b_n << _SHIFT) if w.b_n else None,
                "funding_mean": w.f_s / (nf << _SHIFT) if nf else None,
                "oi_change_pct": oi_change,
                "n_mark": n_mark,
                "n_oi": o_hi - o_lo,
                "mark_age_ms": mark_age,
                "oi_age_ms": oi_age,
                "stale": stale,
                "funding_interval_h": interval_h,
                "funding_annualized": annualized,
            })

    def _basis_last(self, st: _MarketState, m_hi: int) -> float | None:
        """Basis of the latest event_time <= t that has both a mark and an index."""
        marks, idx = st.series[MARK], st.series[INDEX]
        bound = st.carry_bound
        i = m_hi - 1 - marks.base
        while i >= 0:
            et = marks.ts[i]
            if bound is not None and et <= bound:
                break
            x = idx.value_at(et)
            if x is not None:
                return basis_of(marks.vs[i], x)
            i -= 1
        return st.carry_basis

    @staticmethod
    def _mark_sums(st: _MarketState, lo: int, hi: int) -> tuple[int, int, int, int]:
        """Exact sums over marks [lo, hi) (lo > base): returns r_i = ln(m_i/m_{i-1}),
        their squares, and the basis of the marks that have an index point."""
        marks, idx = st.series[MARK], st.series[INDEX]
        vs, ts, b = marks.vs, marks.ts, marks.base
        r1 = r2 = bn = bs = 0
        for i in range(lo, hi):
            r = _fx_r(log_return(vs[i - b], vs[i - 1 - b]))
            r1 += r
            r2 += r * r
            x = idx.value_at(ts[i - b])
            if x is not None:
                bn += 1
                bs += _fx(basis_of(vs[i - b], x))
        return r1, r2, bn, bs

    def _advance_marks(self, st: _MarketState, w: _Window, new_lo: int, new_hi: int) -> None:
        lo, hi = w.m_lo, w.m_hi
        if lo == new_lo and hi == new_hi:
            return
        marks, idx = st.series[MARK], st.series[INDEX]
        vs, ts, b = marks.vs, marks.ts, marks.base
        r1, r2 = w.r1, w.r2
        # Returns: indices {lo+1 .. hi-1} -> {new_lo+1 .. new_hi-1}.
        for i in range(lo + 1, min(hi - 1, new_lo) + 1):
            r = _fx_r(log_return(vs[i - b], vs[i - 1 - b]))
            r1 -= r
            r2 -= r * r
        for i in range(max(hi, new_lo + 1), new_hi):
            r = _fx_r(log_return(vs[i - b], vs[i - 1 - b]))
            r1 += r
            r2 += r * r
        w.r1, w.r2 = r1, r2
        # Basis per mark that has an index at the same event_time: [lo, hi) -> [new_lo, new_hi).
        bn, bs = w.b_n, w.b_s
        for i in range(lo, min(hi, new_lo)):
            x = idx.value_at(ts[i - b])
            if x is not None:
                bn -= 1
                bs -= _fx(basis_of(vs[i - b], x))
        for i in range(max(hi, new_lo), new_hi):
            x = idx.value_at(ts[i - b])
            if x is not None:
                bn += 1
                bs += _fx(basis_of(vs[i - b], x))
        w.b_n, w.b_s = bn, bs
        w.m_lo, w.m_hi = new_lo, new_hi

    @staticmethod
    def _advance_funding(fund: _Series, w: _Window, new_lo: int, new_hi: int) -> None:
        lo, hi = w.f_lo, w.f_hi
        if lo == new_lo and hi == new_hi:
            return
        vs, b = fund.vs, fund.base
        s = w.f_s
        for i in range(lo, min(hi, new_lo)):
            s -= _fx(vs[i - b])
        for i in range(max(hi, new_lo), new_hi):
            s += _fx(vs[i - b])
        w.f_s = s
        w.f_lo, w.f_hi = new_lo, new_hi

    def _evict(self, st: _MarketState) -> None:
        """Drop what no future snapshot can read (everything before the largest
        window except the latest point per metric), carrying the basis pair."""
        assert st.last_t is not None
        bound = st.last_t - self._max_w
        marks, idx, fund, oi, interval = st.series
        # The latest point at or before the bound stays: the *_last fields and the interval read it.
        interval.evict_below(interval.upto(bound) - 1)
        # The largest window (first in st.windows) has the smallest lo: keep lo-1 onwards.
        m_keep = marks.upto(bound) - 1
        i_keep = idx.upto(bound) - 1
        if m_keep - marks.base <= _EVICT_SLACK and i_keep - idx.base <= _EVICT_SLACK:
            fund.evict_below(fund.upto(bound) - 1)
            oi.evict_below(oi.upto(bound) - 1)
            return
        # Carry the latest (mark, index) pair <= bound before either side goes.
        old = st.carry_bound
        j = m_keep - marks.base
        while j >= 0:
            et = marks.ts[j]
            if old is not None and et <= old:
                break
            x = idx.value_at(et)
            if x is not None:
                st.carry_basis = basis_of(marks.vs[j], x)
                break
            j -= 1
        st.carry_bound = bound
        marks.evict_below(m_keep)
        idx.evict_below(i_keep)
        fund.evict_below(fund.upto(bound) - 1)
        oi.evict_below(oi.upto(bound) - 1)
