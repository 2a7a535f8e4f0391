"""The hand-written MarketSnapshot encoder equals fastavro byte for byte."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from perpstream.consumers.snapshots.wire import snapshot_encoder
from perpstream.schemas.codec import market_snapshot_codec

MS = market_snapshot_codec()
ENCODE = snapshot_encoder(MS)

longs = st.integers(-(2**63), 2**63 - 1)
texts = st.text(max_size=80)
opt_d = st.none() | st.floats(allow_nan=False)
opt_l = st.none() | longs
ints = st.integers(-(2**31), 2**31 - 1)
snapshots = st.fixed_dictionaries({
    "source": texts, "symbol": texts, "window_s": ints, "snapshot_time": longs,
    **{k: opt_d for k in ("mark_last", "index_last", "funding_last", "oi_last", "mark_return",
                          "mark_volatility", "basis_last", "basis_mean", "funding_mean", "oi_change_pct")},
    "n_mark": ints, "n_oi": ints, "mark_age_ms": opt_l, "oi_age_ms": opt_l, "stale": st.booleans(),
    "funding_interval_h": opt_d, "funding_annualized": opt_d,
})


@settings(max_examples=200, deadline=None)
@given(snapshots)
def test_encoder_equals_codec(rec: dict[str, Any]) -> None:
    assert ENCODE(rec) == MS.encode(rec)
    assert MS.decode(ENCODE(rec)) == rec


def test_fast_paths_step_aside_for_other_schemas() -> None:
    from perpstream.schemas.codec import AvroCodec, AvroSchema

    other = AvroSchema.from_definition({"type": "record", "name": "MarketSnapshot", "namespace": "perpstream",
                                        "fields": [{"name": "symbol", "type": "string"}]})
    codec = AvroCodec(other)
    assert snapshot_encoder(codec) == codec.encode
