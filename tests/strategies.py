"""Hypothesis strategies for the contract's value space, edge values included.

Shared by the codec, fast-path and hostile-input tests so every one of them
draws from the same definition of "valid" (schemas.rules) and of its edges.
"""

from __future__ import annotations

from hypothesis import strategies as st

from perpstream.schemas import rules
from perpstream.schemas.models import KNOWN_METRICS

#: Real shapes: ASCII, digits first, dated delivery contracts, CJK-named perpetuals.
REAL_SYMBOLS = ("BTCUSDT", "1000PEPEUSDT", "BTCUSDT_261225", "币安人生USDT", "我踏马来了USDT", "ETH-PERP")

_symbol_chars = st.one_of(
    st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-"),
    st.characters(categories=("Lu", "Ll", "Lt", "Lm", "Lo", "Mn", "Mc", "Nd"),
                  exclude_characters="abcdefghijklmnopqrstuvwxyz"),
)

#: Symbols the contract accepts (a filter keeps them within the byte bound).
valid_symbols = st.one_of(
    st.sampled_from(REAL_SYMBOLS),
    st.text(_symbol_chars, min_size=1, max_size=24).filter(lambda s: rules.symbol_problem(s) is None),
)

#: Every float, NaN and infinities included, plus the edges fastavro and struct must agree on.
any_double = st.one_of(
    st.floats(),
    st.sampled_from([0.0, -0.0, 5e-324, -5e-324, 1.7976931348623157e308, float("inf"), float("nan")]),
)
finite_double = st.floats(allow_nan=False, allow_infinity=False)

#: The whole Avro long range with its edges.
any_long = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.sampled_from([0, -1, 63, 64, -64, -65, 2**31 - 1, -(2**31), 2**63 - 1, -(2**63)]),
)

event_times = st.integers(min_value=rules.MIN_EVENT_TIME_MS, max_value=rules.MAX_EVENT_TIME_MS - 1)
ingest_times = st.integers(min_value=rules.MIN_INGEST_TIME_MS, max_value=rules.MAX_INGEST_TIME_MS)
known_metrics = st.sampled_from(sorted(KNOWN_METRICS))

#: Finite and > 0, the smallest subnormal included: what a metric of rules.POSITIVE_METRICS holds.
positive_double = st.one_of(
    st.floats(min_value=0.0, exclude_min=True, allow_infinity=False),
    st.sampled_from([5e-324, 1.7976931348623157e308]),
)


def _valid_record(metric: str) -> st.SearchStrategy[dict[str, object]]:
    return st.fixed_dictionaries({
        "source": st.sampled_from(["binance_usdm", "hyperliquid", "sim", "a", "x" * 64]),
        "symbol": valid_symbols,
        "metric": st.just(metric),
        "value": positive_double if metric in rules.POSITIVE_METRICS else finite_double,
        "event_time": event_times,
        "ingest_time": ingest_times,
    })


#: Records the contract accepts, as the plain dicts the hot paths move.
valid_records = known_metrics.flatmap(_valid_record)
