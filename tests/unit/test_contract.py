"""The contract is defined once: every derived piece is pinned to it here.

- the hand-written Avro paths (varints, the producer's encoder, the snapshot
  encoder) write what fastavro writes, byte for byte, over the whole value
  space with its edges;
- the pydantic models, the ClickHouse DDL and the Arrow schemas follow the
  ``.avsc`` files;
- one rule decides what a symbol is, and the models agree with it.
"""

from __future__ import annotations

import io
import math
import struct
from typing import Any

import fastavro
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpstream.consumers.clickhouse import JOURNAL_MIGRATIONS
from perpstream.consumers.sink.migrations import SINK_MIGRATIONS
from perpstream.consumers.snapshots.store import _SNAPSHOT_SCHEMA, SNAPSHOT_MIGRATIONS
from perpstream.consumers.snapshots.wire import snapshot_encoder
from perpstream.producer.encoding import MetricPointEncoder
from perpstream.schemas import rules
from perpstream.schemas.avro_binary import LONG_MAX, LONG_MIN, read_long, zigzag_varint
from perpstream.schemas.codec import load_schema, market_snapshot_codec, metric_point_codec, registry_client
from perpstream.schemas.columns import MARKET_SNAPSHOT_COLUMNS, METRIC_POINT_COLUMNS, arrow_schema, columns
from perpstream.schemas.models import KNOWN_METRICS, MarketSnapshot, Metric, MetricPoint
from tests.strategies import REAL_SYMBOLS, any_double, any_long, valid_records

LONG = fastavro.parse_schema("long")


def fastavro_long(n: int) -> bytes:
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, LONG, n)
    return buf.getvalue()


# -- varints ---------------------------------------------------------------------------


@settings(max_examples=2000, deadline=None)
@given(any_long)
def test_varint_writes_and_reads_what_fastavro_does(n: int) -> None:
    data = zigzag_varint(n)
    assert data == fastavro_long(n)
    assert read_long(data + b"\xff", 0) == (n, len(data))
    assert fastavro.schemaless_reader(io.BytesIO(data), LONG, None) == n


def test_varint_refuses_what_no_long_holds() -> None:
    for n in (LONG_MAX + 1, LONG_MIN - 1):
        with pytest.raises(OverflowError):
            zigzag_varint(n)
    with pytest.raises(IndexError):
        read_long(b"\x80\x80", 0)
    with pytest.raises(ValueError):
        read_long(b"\xff" * 11, 0)


# -- the producer's encoder --------------------------------------------------------------

ENCODER_CODECS = {
    "single_object": metric_point_codec(),
    "confluent": metric_point_codec(registry_client("mock://contract-test"), "t-value"),
}


@settings(max_examples=1500, deadline=None)
@given(
    framing=st.sampled_from(sorted(ENCODER_CODECS)),
    source=st.one_of(st.just("binance_usdm"), st.text(max_size=80)),
    symbol=st.one_of(st.sampled_from(REAL_SYMBOLS), st.text(max_size=80)),
    metric=st.sampled_from(sorted(KNOWN_METRICS)),
    value=any_double,
    et=any_long,
    it=any_long,
)
def test_encoder_writes_fastavro_bytes_over_the_whole_value_space(
    framing: str, source: str, symbol: str, metric: str, value: float, et: int, it: int,
) -> None:
    codec = ENCODER_CODECS[framing]
    encoder = MetricPointEncoder(codec)
    assert encoder.fast
    r = {"source": source, "symbol": symbol, "metric": metric, "value": value,
         "event_time": et, "ingest_time": it}
    try:
        expected: bytes | type = codec.encode(r)
    except Exception as exc:  # a lone surrogate cannot be UTF-8: both must refuse it
        expected = type(exc)
    try:
        got: bytes | type = encoder.encode(r)
    except Exception as exc:
        got = type(exc)
    if isinstance(expected, bytes):
        assert got == expected
    else:
        assert not isinstance(got, bytes)


# -- the snapshot encoder ----------------------------------------------------------------

SNAPSHOT_CODEC = market_snapshot_codec()
SNAPSHOT_ENCODE = snapshot_encoder(SNAPSHOT_CODEC)
_opt_double = st.none() | any_double
_opt_long = st.none() | any_long
_int32 = st.one_of(st.integers(-(2**31), 2**31 - 1), st.sampled_from([0, -1, 2**31 - 1, -(2**31)]))
snapshots = st.fixed_dictionaries({
    "source": st.text(max_size=80), "symbol": st.one_of(st.sampled_from(REAL_SYMBOLS), st.text(max_size=80)),
    "window_s": _int32, "snapshot_time": any_long,
    **{k: _opt_double for k in ("mark_last", "index_last", "funding_last", "oi_last", "mark_return",
                                "mark_volatility", "basis_last", "basis_mean", "funding_mean",
                                "oi_change_pct")},
    "n_mark": _int32, "n_oi": _int32, "mark_age_ms": _opt_long, "oi_age_ms": _opt_long,
    "stale": st.booleans(), "funding_interval_h": _opt_double, "funding_annualized": _opt_double,
})


@settings(max_examples=1000, deadline=None)
@given(snapshots)
def test_snapshot_encoder_writes_fastavro_bytes_over_the_whole_value_space(rec: dict[str, Any]) -> None:
    assert SNAPSHOT_ENCODE is not SNAPSHOT_CODEC.encode
    try:
        expected: bytes | None = SNAPSHOT_CODEC.encode(rec)
    except Exception:
        expected = None
    if expected is None:
        with pytest.raises(Exception):  # noqa: B017 - whatever fastavro refuses, the fast path refuses
            SNAPSHOT_ENCODE(rec)
    else:
        assert SNAPSHOT_ENCODE(rec) == expected


# -- models, DDL and Arrow follow the schemas ---------------------------------------------


def test_models_have_the_schemas_fields() -> None:
    mp = load_schema("metric_point").definition
    assert list(MetricPoint.model_fields) == [f["name"] for f in mp["fields"]]
    ms = load_schema("market_snapshot").definition
    assert list(MarketSnapshot.model_fields) == [f["name"] for f in ms["fields"]]
    enum = next(f["type"] for f in mp["fields"] if f["name"] == "metric")
    assert [m.value for m in Metric] == enum["symbols"]
    assert Metric(enum["default"]) is Metric.UNKNOWN


#: Checksums of migrations already applied in users' databases. They can never
#: change: a schema change that alters their DDL needs a new migration.
APPLIED_CHECKSUMS = {
    ("sink", 1): "1a352da8a1447c8c",
    ("snapshots", 1): "65115db648a3fb4d",
    ("snapshots", 2): "02ffe0a700c80d46",
    ("snapshots", 3): "fec61514c390ec04",
    ("snapshots", 4): "81ef697c7b95f485",
    ("snapshots", 5): "0e750d05db114d26",
    ("snapshots", 6): "67a7085013b7ac43",
    ("snapshots", 7): "0e4155a9e4f03309",
    ("consumer_batches", 1): "23f8732e54350258",
}


def test_applied_migrations_are_unchanged() -> None:
    current = {("sink", m.version): m.checksum for m in SINK_MIGRATIONS}
    current |= {("snapshots", m.version): m.checksum for m in SNAPSHOT_MIGRATIONS}
    current |= {("consumer_batches", m.version): m.checksum for m in JOURNAL_MIGRATIONS}
    assert {k: current[k] for k in APPLIED_CHECKSUMS} == APPLIED_CHECKSUMS


def test_table_columns_come_from_the_schemas() -> None:
    sql = SINK_MIGRATIONS[0].sql
    for c in METRIC_POINT_COLUMNS:
        assert f" {c.name} {c.clickhouse}" in sql
    assert [c.name for c in MARKET_SNAPSHOT_COLUMNS] == [
        f["name"] for f in load_schema("market_snapshot").definition["fields"]]
    assert arrow_schema(MARKET_SNAPSHOT_COLUMNS) == _SNAPSHOT_SCHEMA
    by_name = {c.name: c for c in METRIC_POINT_COLUMNS}
    assert by_name["event_time"].clickhouse == "DateTime64(3, 'UTC')"
    assert by_name["symbol"].clickhouse == "LowCardinality(String)"
    assert by_name["metric"].clickhouse == "LowCardinality(String)"
    with pytest.raises(ValueError, match="does not name the fields"):
        columns("metric_point", ("source",))


# -- one symbol rule ---------------------------------------------------------------------


@pytest.mark.parametrize("symbol", [*REAL_SYMBOLS, "A", "X" * 64, "Ä" * 32, "ДЖUSDT", "ไทยUSDT"])
def test_symbols_as_exchanges_spell_them_are_valid(symbol: str) -> None:
    assert rules.symbol_problem(symbol) is None


@pytest.mark.parametrize("symbol", [
    "", "btcusdt", "BTC USDT", " BTCUSDT", "BTCUSDT\n", "BTC\x00USDT", "BTC\tUSDT", "BTC/USDT",
    "BTC.USDT", "X" * 65, "币" * 22, "BTC\u200bUSDT", "BTC\u00a0USDT", "BTC\ud800", "BTC\u202eUSDT",
    "BTC😀", "\x7f",
])
def test_symbols_with_control_characters_whitespace_or_excess_are_rejected(symbol: str) -> None:
    assert rules.symbol_problem(symbol) is not None


VENUE_SYMBOLS = {
    "binance_usdm": ("BTCUSDT", "1000PEPEUSDT", "BTCUSDT_261225", "币安人生USDT"),
    "bybit_linear": ("BTCUSDT", "1000PEPEUSDT"),
    "okx_swap": ("BTC-USDT-SWAP", "PEPE-USDT-SWAP"),
    "hyperliquid": ("BTC", "kPEPE", "kSHIB", "kBONK", "HYPE"),
    "sim": ("SIM0000USDT",),
}
UPPER_CASE_SOURCES = ("binance_usdm", "bybit_linear", "okx_swap", "sim", None)


@pytest.mark.parametrize("source", sorted(VENUE_SYMBOLS))
def test_each_venue_s_own_spelling_is_valid_under_its_source(source: str) -> None:
    for symbol in VENUE_SYMBOLS[source]:
        assert rules.symbol_problem(symbol, source) is None, symbol


@pytest.mark.parametrize("source", UPPER_CASE_SOURCES)
def test_a_hyperliquid_coin_is_refused_under_an_upper_case_venue(source: str | None) -> None:
    for symbol in ("kPEPE", "kSHIB", "btc"):
        problem = rules.symbol_problem(symbol, source)
        assert problem is not None and "other than A-Z, 0-9" in problem
    assert rules.symbol_problem("kPEPE", "hyperliquid") is None


@pytest.mark.parametrize("symbol", [
    "", "k PEPE", " kPEPE", "kPEPE\n", "k\x00PEPE", "k/PEPE", "k.PEPE", "x" * 65, "kPEPE😀", "k\u200bPEPE",
])
def test_hyperliquid_keeps_the_rest_of_the_rule(symbol: str) -> None:
    assert rules.symbol_problem(symbol, "hyperliquid") is not None


def _ascii_upper(s: str) -> str:
    return "".join(c.upper() if "a" <= c <= "z" else c for c in s)


@settings(max_examples=1500, deadline=None)
@given(st.text(max_size=70), st.sampled_from([*UPPER_CASE_SOURCES, "hyperliquid", "other_venue"]))
def test_the_venues_differ_only_in_lower_case_ascii(symbol: str, source: str | None) -> None:
    """Hyperliquid's rule is today's rule with a-z allowed; every other source has today's rule."""
    mixed = rules.symbol_problem(symbol, "hyperliquid") is None
    assert mixed == (rules.symbol_problem(_ascii_upper(symbol)) is None)
    if source not in rules.MIXED_CASE_SOURCES:
        assert rules.symbol_problem(symbol, source) == rules.symbol_problem(symbol)


def test_the_model_takes_the_symbol_rule_of_its_source() -> None:
    rec = {"source": "hyperliquid", "symbol": "kPEPE", "metric": "mark_price", "value": 0.0123,
           "event_time": rules.MIN_EVENT_TIME_MS, "ingest_time": rules.MIN_EVENT_TIME_MS}
    assert MetricPoint.model_validate(rec).symbol == "kPEPE"
    with pytest.raises(ValueError, match="other than A-Z, 0-9"):
        MetricPoint.model_validate({**rec, "source": "binance_usdm"})
    assert rules.metric_point_problem(rec, KNOWN_METRICS) is None
    assert rules.metric_point_problem({**rec, "source": "okx_swap"}, KNOWN_METRICS) is not None


@settings(max_examples=1500, deadline=None)
@given(st.one_of(
    valid_records,
    valid_records.flatmap(lambda r: st.fixed_dictionaries({
        **{k: st.just(v) for k, v in r.items()},
        "symbol": st.text(max_size=70),
        "source": st.one_of(st.just(r["source"]), st.just("hyperliquid"), st.text(max_size=70)),
        "value": any_double,
        "event_time": any_long,
        "ingest_time": any_long,
    })),
))
def test_the_model_and_the_rules_agree(rec: dict[str, Any]) -> None:
    problem = rules.metric_point_problem(rec, KNOWN_METRICS)
    try:
        MetricPoint.model_validate(rec)
        accepted = True
    except ValueError:
        accepted = False
    assert accepted == (problem is None), problem


def test_valid_records_round_trip_exactly() -> None:
    codec = metric_point_codec()
    rec = {"source": "binance_usdm", "symbol": "币安人生USDT", "metric": "mark_price",
           "value": -0.0, "event_time": rules.MAX_EVENT_TIME_MS - 1, "ingest_time": rules.MAX_INGEST_TIME_MS}
    out = codec.decode(codec.encode(rec))
    assert out == rec and math.copysign(1.0, out["value"]) == -1.0
    assert struct.pack("<d", out["value"]) == struct.pack("<d", -0.0)
