"""The hand-written Avro paths equal fastavro: same records, same bytes, same errors."""

from __future__ import annotations

import math
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from consumers.snapshots.wire import metric_point_decoder, snapshot_encoder, validating_decoder
from schemas.codec import market_snapshot_codec, metric_point_codec
from schemas.exceptions import DecodeError, InvalidRecordError
from schemas.models import check_metric_point

MP = metric_point_codec()
MS = market_snapshot_codec()
DECODE = metric_point_decoder(MP)
ENCODE = snapshot_encoder(MS)

longs = st.integers(-(2**63), 2**63 - 1)
texts = st.text(max_size=80)
metric_points = st.fixed_dictionaries({
    "source": texts, "symbol": texts,
    "metric": st.sampled_from(["mark_price", "index_price", "estimated_settle_price", "funding_rate",
                               "next_funding_time", "open_interest", "unknown"]),
    "value": st.floats(allow_nan=False), "event_time": longs, "ingest_time": longs,
})
opt_d = st.none() | st.floats(allow_nan=False)
opt_l = st.none() | longs
ints = st.integers(-(2**31), 2**31 - 1)
snapshots = st.fixed_dictionaries({
    "source": texts, "symbol": texts, "window_s": ints, "snapshot_time": longs,
    **{k: opt_d for k in ("mark_last", "index_last", "funding_last", "oi_last", "mark_return",
                          "mark_volatility", "basis_last", "basis_mean", "funding_mean", "oi_change_pct")},
    "n_mark": ints, "n_oi": ints, "mark_age_ms": opt_l, "oi_age_ms": opt_l, "stale": st.booleans(),
})


@settings(max_examples=200, deadline=None)
@given(metric_points)
def test_decoder_equals_codec(rec: dict[str, Any]) -> None:
    data = MP.encode(rec)
    assert DECODE(data) == MP.decode(data) == rec


@settings(max_examples=200, deadline=None)
@given(metric_points, st.data())
def test_decoder_on_corrupt_bytes_behaves_like_codec(rec: dict[str, Any], data: st.DataObject) -> None:
    raw = bytearray(MP.encode(rec))
    how = data.draw(st.sampled_from(["truncate", "flip", "append"]))
    if how == "truncate":
        raw = raw[: data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        i = data.draw(st.integers(10, len(raw) - 1))
        raw[i] ^= data.draw(st.integers(1, 255))
    else:
        raw += b"\x00"
    try:
        expected: Any = MP.decode(bytes(raw))
    except DecodeError as exc:
        with pytest.raises(type(exc)):
            DECODE(bytes(raw))
        return
    assert _nan_safe(DECODE(bytes(raw))) == _nan_safe(expected)


def _nan_safe(rec: dict[str, Any]) -> dict[str, Any]:
    """A flipped bit can turn a double into NaN, which never equals itself."""
    return {k: "NaN" if isinstance(v, float) and math.isnan(v) else v for k, v in rec.items()}


@settings(max_examples=200, deadline=None)
@given(snapshots)
def test_encoder_equals_codec(rec: dict[str, Any]) -> None:
    assert ENCODE(rec) == MS.encode(rec)
    assert MS.decode(ENCODE(rec)) == rec


VALID = validating_decoder(MP)


@settings(max_examples=200, deadline=None)
@given(metric_points)
def test_validating_decoder_applies_the_contract_like_check_metric_point(rec: dict[str, Any]) -> None:
    data = MP.encode(rec)
    try:
        check_metric_point(MP.decode(data))
    except InvalidRecordError as exc:
        with pytest.raises(InvalidRecordError, match=re.escape(str(exc))):
            VALID(data)
        return
    assert VALID(data) == rec


def test_validating_decoder_accepts_market_data() -> None:
    rec = {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": "mark_price", "value": 65000.5,
           "event_time": 1_767_225_600_000, "ingest_time": 1_767_225_600_100}
    assert VALID(MP.encode(rec)) == rec
    with pytest.raises(InvalidRecordError):
        VALID(MP.encode({**rec, "value": float("nan")}))
    with pytest.raises(InvalidRecordError):
        VALID(MP.encode({**rec, "symbol": "btcusdt"}))


def test_fast_paths_step_aside_for_other_schemas() -> None:
    from schemas.codec import AvroCodec, AvroSchema

    other = AvroSchema.from_definition({"type": "record", "name": "MarketSnapshot", "namespace": "perpstream",
                                        "fields": [{"name": "symbol", "type": "string"}]})
    codec = AvroCodec(other)
    assert snapshot_encoder(codec) == codec.encode
