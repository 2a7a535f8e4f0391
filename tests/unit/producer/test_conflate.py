"""Conflation: the last value per (source, symbol, metric) and interval of event time,
released when the interval is over; funding intervals published only when they are news."""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpstream.producer.conflate import FUNDING_INTERVAL_HOURS, Conflator, FundingIntervals, interval_record

T0 = 1_790_000_000_000  # a whole second
C = 1000


def rec(event_time: int, value: float = 1.0, *, symbol: str = "BTCUSDT", metric: str = "mark_price",
        source: str = "bybit_linear", ingest: int | None = None) -> dict[str, Any]:
    return {"source": source, "symbol": symbol, "metric": metric, "value": value,
            "event_time": event_time, "ingest_time": event_time + 5 if ingest is None else ingest}


def accounted(c: Conflator) -> bool:
    return c.updates_in == c.points_out + c.held + c.late + c.superseded


# -- examples ---------------------------------------------------------------------------------


def test_a_100ms_stream_becomes_the_last_value_of_each_second_with_its_own_event_time() -> None:
    c = Conflator(C)
    updates = [rec(T0 + 100 * i + 7, value=float(i)) for i in range(30)]  # 3 s of Bybit tickers
    out = c.add(updates)
    assert out == [updates[9], updates[19]]  # seconds 0 and 1 closed by the first update of the next
    assert out[0]["event_time"] == T0 + 907 and out[0]["value"] == 9.0
    assert c.held == 1
    assert c.drain() == [updates[29]]
    assert (c.updates_in, c.points_out, c.superseded, c.late, c.held) == (30, 3, 27, 0, 0)


def test_equal_event_times_publish_the_one_received_last() -> None:
    c = Conflator(C)
    first, second = rec(T0 + 500, 1.0), rec(T0 + 500, 2.0)
    assert c.add([first, second]) == []
    assert c.drain() == [second]


def test_an_older_value_of_the_same_second_does_not_replace_a_newer_one() -> None:
    c = Conflator(C)
    newer, older = rec(T0 + 800, 2.0), rec(T0 + 300, 1.0)
    c.add([newer, older])
    assert c.drain() == [newer]
    assert c.superseded == 1 and c.late == 0


def test_a_one_second_stream_passes_unchanged() -> None:
    # Binance markPrice@1s: one event a second, whatever its phase in the second
    for phase in (0, 13, 999):
        updates = [rec(T0 + 1000 * k + phase, float(k)) for k in range(20)]
        c = Conflator(C)
        out = c.add(updates[:7]) + c.add(updates[7:])
        assert out + c.drain() == updates
        c = Conflator(C, grace_ms=200)
        out = []
        for u in updates:  # released by the clock as each second ends, before the next event
            out += c.add([u]) + c.due(u["event_time"] - u["event_time"] % C + C + 200)
        assert out == updates and c.held == 0


def test_keys_are_source_symbol_and_metric() -> None:
    c = Conflator(C)
    a = rec(T0 + 1, symbol="BTCUSDT")
    b = rec(T0 + 2, symbol="ETHUSDT")
    d = rec(T0 + 3, metric="index_price")
    e = rec(T0 + 4, source="okx_swap")
    assert c.add([a, b, d, e]) == []
    assert c.held == 4
    assert c.drain() == [a, b, d, e]


def test_due_releases_a_second_once_it_ended_more_than_the_grace_ago() -> None:
    c = Conflator(C, grace_ms=300)
    r = rec(T0 + 450)
    c.add([r])
    assert c.next_due() == T0 + C + 300
    assert c.due(T0 + C + 299) == []
    assert c.due(T0 + C + 300) == [r]
    assert c.next_due() is None and c.held == 0
    assert c.due(T0 + 10 * C) == []


def test_due_releases_in_event_time_order_across_keys() -> None:
    c = Conflator(C, grace_ms=0)
    late_key = rec(T0 + 2 * C + 1, symbol="AAAUSDT")
    early_key = rec(T0 + 5, symbol="ZZZUSDT")
    c.add([late_key, early_key])
    assert c.due(T0 + C) == [early_key]
    assert c.due(T0 + 3 * C) == [late_key]


def test_a_record_older_than_the_pending_second_is_dropped_and_counted() -> None:
    c = Conflator(C)
    now, old = rec(T0 + 5 * C + 1, 5.0), rec(T0 + 4 * C + 999, 4.0)
    c.add([now, old])
    assert c.late == 1
    assert c.drain() == [now]
    assert accounted(c)


def test_a_record_of_a_second_already_released_is_dropped_and_counted() -> None:
    c = Conflator(C, grace_ms=100)
    first = rec(T0 + 200)
    c.add([first])
    assert c.due(T0 + C + 100) == [first]
    # the same frame again (a connection replaced), then a later one of that second
    assert c.add([dict(first), rec(T0 + 900)]) == []
    assert c.late == 2 and c.held == 0
    nxt = rec(T0 + C + 1)
    c.add([nxt])
    assert c.drain() == [nxt]
    assert accounted(c)


def test_forget_returns_the_pending_values_of_delisted_symbols_and_their_state() -> None:
    c = Conflator(C)
    btc, eth = rec(T0 + 2 * C, symbol="BTCUSDT"), rec(T0 + 2 * C, symbol="ETHUSDT")
    okx_btc = rec(T0 + 2 * C, symbol="BTCUSDT", source="okx_swap")
    c.add([btc, eth, okx_btc])
    assert c.forget(["BTCUSDT"], source="bybit_linear") == [btc]
    assert c.held == 2
    # listed again: an older second is not late any more, since nothing is remembered
    relisted = rec(T0 + C, symbol="BTCUSDT")
    c.add([relisted])
    assert c.late == 0
    assert c.forget(["BTCUSDT", "ETHUSDT"]) == [eth, okx_btc, relisted]
    assert c.held == 0 and accounted(c)


def test_zero_publishes_every_update_as_it_comes() -> None:
    c = Conflator(0)
    updates = [rec(T0 + 100 * i) for i in range(5)] + [rec(T0)]
    assert c.add(updates) == updates
    assert c.due(T0 + 10**9) == [] and c.drain() == [] and c.next_due() is None
    assert (c.updates_in, c.points_out, c.held) == (6, 6, 0)


def test_negative_settings_are_refused() -> None:
    with pytest.raises(ValueError):
        Conflator(-1)
    with pytest.raises(ValueError):
        Conflator(1000, grace_ms=-1)


# -- properties -------------------------------------------------------------------------------

_KEYS = [("bybit_linear", "BTCUSDT", "mark_price"), ("bybit_linear", "BTCUSDT", "index_price"),
         ("bybit_linear", "ETHUSDT", "mark_price"), ("okx_swap", "BTC-USDT-SWAP", "mark_price")]

#: (key index, event time offset): offsets across a few seconds, so buckets repeat and change
_UPDATES = st.lists(st.tuples(st.integers(0, len(_KEYS) - 1), st.integers(0, 4_999)), max_size=60)


def _records(updates: Iterable[tuple[int, int]]) -> list[dict[str, Any]]:
    out = []
    for i, (k, dt) in enumerate(updates):
        source, symbol, metric = _KEYS[k]
        out.append(rec(T0 + dt, float(i), source=source, symbol=symbol, metric=metric))
    return out


def _batches(records: list[dict[str, Any]], cuts: list[int]) -> list[list[dict[str, Any]]]:
    edges = sorted({min(c, len(records)) for c in cuts} | {0, len(records)})
    return [records[a:b] for a, b in itertools.pairwise(edges)]


def _last_per_bucket(records: list[dict[str, Any]], conflate_ms: int) -> tuple[list[dict[str, Any]], int]:
    """Oracle: for each (key, bucket), the record of largest event time, the last received among
    equals; a record whose bucket is below one its key already had is late and takes no part.
    Returns those records and the number of late ones."""
    best: dict[tuple[Any, ...], dict[str, Any]] = {}
    top: dict[tuple[Any, ...], int] = {}
    late = 0
    for r in records:
        key = (r["source"], r["symbol"], r["metric"])
        b = r["event_time"] // conflate_ms
        if b < top.get(key, b):
            late += 1
            continue
        top[key] = b
        cur = best.get((*key, b))
        if cur is None or r["event_time"] >= cur["event_time"]:
            best[(*key, b)] = r
    return list(best.values()), late


@settings(max_examples=300, deadline=None)
@given(updates=_UPDATES, cuts=st.lists(st.integers(0, 60), max_size=8),
       conflate_ms=st.sampled_from([1, 100, 250, 1000, 3000]))
def test_output_is_the_last_record_of_each_key_and_interval_however_batched(
        updates: list[tuple[int, int]], cuts: list[int], conflate_ms: int) -> None:
    records = _records(updates)
    c = Conflator(conflate_ms)
    out: list[dict[str, Any]] = []
    for batch in _batches(records, cuts):
        out += c.add(batch)
    assert accounted(c)
    out += c.drain()
    assert c.held == 0 and accounted(c)
    oracle, late = _last_per_bucket(records, conflate_ms)
    assert sorted(map(id, out)) == sorted(map(id, oracle))  # the very records, unchanged
    assert c.late == late


@settings(max_examples=300, deadline=None)
@given(updates=_UPDATES, cuts=st.lists(st.integers(0, 60), max_size=8), grace=st.integers(0, 2000))
def test_releasing_by_the_clock_loses_nothing_when_the_clock_stays_behind_the_stream(
        updates: list[tuple[int, int]], cuts: list[int], grace: int) -> None:
    # the venue's order: event times non-decreasing across keys, the clock at most the grace behind
    records = sorted(_records(updates), key=lambda r: r["event_time"])
    c = Conflator(C, grace_ms=grace)
    out: list[dict[str, Any]] = []
    for batch in _batches(records, cuts):
        out += c.add(batch)
        if batch:  # the last record's second may still get values; the earlier ones are over
            now = batch[-1]["event_time"] // C * C + grace
            out += c.due(now)
            assert c.next_due() is None or c.next_due() > now
        assert c.held <= len(_KEYS)  # memory: one record per key
    out += c.drain()
    oracle, late = _last_per_bucket(records, C)
    assert c.late == late == 0
    assert sorted(map(id, out)) == sorted(map(id, oracle))
    for key in _KEYS:  # each key's points come out in event-time order, one per second
        times = [r["event_time"] for r in out if (r["source"], r["symbol"], r["metric"]) == key]
        assert [t // C for t in times] == sorted({t // C for t in times})


@settings(max_examples=100, deadline=None)
@given(updates=_UPDATES, cuts=st.lists(st.integers(0, 60), max_size=8))
def test_zero_is_the_identity(updates: list[tuple[int, int]], cuts: list[int]) -> None:
    records = _records(updates)
    c = Conflator(0)
    out = [r for batch in _batches(records, cuts) for r in c.add(batch)]
    assert [id(r) for r in out] == [id(r) for r in records]


# -- funding intervals ------------------------------------------------------------------------


def interval(symbol: str, hours: float, t: int = T0, source: str = "bybit_linear") -> dict[str, Any]:
    return interval_record(source, symbol, hours, t, t + 3)


def test_interval_record_is_a_point_of_the_interval_metric() -> None:
    assert interval_record("binance_usdm", "BLZUSDT", 4, T0, T0 + 7) == {
        "source": "binance_usdm", "symbol": "BLZUSDT", "metric": "funding_interval_hours", "value": 4.0,
        "event_time": T0, "ingest_time": T0 + 7}
    assert type(interval_record("binance_usdm", "BLZUSDT", 4, T0, T0)["value"]) is float


def test_an_interval_is_published_when_first_seen_and_when_it_changes() -> None:
    f = FundingIntervals()
    mark = rec(T0)
    first = [mark, interval("BTCUSDT", 8), interval("ETHUSDT", 4)]
    assert f.observe(first) == first
    assert f.observe([interval("BTCUSDT", 8, T0 + 100), mark]) == [mark]
    change = interval("BTCUSDT", 4, T0 + 200)
    back = interval("BTCUSDT", 8, T0 + 300)
    assert f.observe([change, interval("BTCUSDT", 4, T0 + 250), back]) == [change, back]
    assert f.last("bybit_linear", "BTCUSDT") == 8.0 and f.last("bybit_linear", "SOLUSDT") is None
    assert (f.published, f.repeats) == (4, 2)


def test_intervals_are_kept_per_source_and_forgotten_for_delisted_symbols() -> None:
    f = FundingIntervals()
    bybit, okx = interval("BTCUSDT", 8), interval("BTCUSDT", 8, source="okx_swap")
    assert f.observe([bybit, okx]) == [bybit, okx]
    f.forget(["BTCUSDT"], source="okx_swap")
    assert f.observe([bybit, okx]) == [okx]
    f.forget(["BTCUSDT"])
    assert f.observe([bybit, okx]) == [bybit, okx]


@settings(max_examples=200, deadline=None)
@given(seq=st.lists(st.tuples(st.sampled_from(["A", "B"]), st.sampled_from([None, 1.0, 4.0, 8.0])),
                    max_size=40))
def test_intervals_out_are_exactly_the_changes_and_everything_else_passes(
        seq: list[tuple[str, float | None]]) -> None:
    records = [rec(T0 + i, symbol=s) if h is None else interval(s, h, T0 + i) for i, (s, h) in enumerate(seq)]
    out = FundingIntervals().observe(records)
    last: dict[str, float] = {}
    expected = []
    for r in records:
        if r["metric"] == FUNDING_INTERVAL_HOURS:
            if last.get(r["symbol"]) == r["value"]:
                continue
            last[r["symbol"]] = r["value"]
        expected.append(r)
    assert [id(r) for r in out] == [id(r) for r in expected]
