"""The consumers' row decoder: same rows, same errors as ``codec.decode`` + ``check_metric_point``."""

from __future__ import annotations

import struct
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpstream.consumers.runtime.batch import Batch
from perpstream.consumers.runtime.builder import BatchBuilder
from perpstream.consumers.runtime.decoding import ROW_FIELDS, row_decoder
from perpstream.consumers.sink.handler import rows_to_arrow
from perpstream.schemas.codec import AvroCodec, load_schema, metric_point_codec, metric_point_writers
from perpstream.schemas.exceptions import DecodeError
from perpstream.schemas.models import check_metric_point as validate_row

REC = {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": "mark_price", "value": 1.5,
       "event_time": 1_760_000_000_000, "ingest_time": 1_760_000_000_003}
METRICS = ["mark_price", "index_price", "estimated_settle_price", "funding_rate",
           "next_funding_time", "open_interest", "unknown", "funding_rate_settled",
           "funding_interval_hours"]
CODEC = metric_point_codec()
DECODE = row_decoder(CODEC)


def reference(data: bytes) -> tuple[Any, ...] | tuple[type, str]:
    """What the generic path gives: the row, or the error's type and reason."""
    try:
        rec = CODEC.decode(data)
        validate_row(rec)
    except DecodeError as exc:
        return (type(exc), exc.reason)
    return tuple(rec[f] for f in ROW_FIELDS)


def fast(data: bytes) -> tuple[Any, ...] | tuple[type, str]:
    try:
        return DECODE(data)
    except DecodeError as exc:
        return (type(exc), exc.reason)


def same(a: Any, b: Any) -> bool:
    # NaN != NaN: compare the bits of floats
    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if isinstance(x, float) and isinstance(y, float):
            if struct.pack("<d", x) != struct.pack("<d", y):
                return False
        elif type(x) is not type(y) or x != y:
            return False
    return True


records = st.fixed_dictionaries({
    # hyperliquid's symbol rule allows lower-case ASCII (docs/contract.md, "Symbols")
    "source": st.one_of(st.sampled_from(["binance_usdm", "hyperliquid"]), st.text(max_size=80)),
    "symbol": st.one_of(st.sampled_from(["BTCUSDT", "ETHUSDT", "btcusdt", "kPEPE", "", "X" * 64, "X" * 65]),
                        st.text(max_size=70)),
    "metric": st.sampled_from(METRICS),
    "value": st.floats(allow_nan=True, allow_infinity=True),
    "event_time": st.one_of(st.integers(1_483_228_700_000, 4_102_444_900_000),
                            st.integers(-(2**63), 2**63 - 1)),
    "ingest_time": st.one_of(st.integers(-5, 10_413_792_000_005), st.integers(-(2**63), 2**63 - 1)),
})


@given(records)
@settings(max_examples=600, deadline=None)
def test_random_records_decode_like_the_codec(rec: dict[str, Any]) -> None:
    data = CODEC.encode(rec)
    assert same(fast(data), reference(data))


@given(records, st.data())
@settings(max_examples=400, deadline=None)
def test_corrupt_and_truncated_bytes_fail_like_the_codec(rec: dict[str, Any], data: st.DataObject) -> None:
    raw = bytearray(CODEC.encode(rec))
    how = data.draw(st.sampled_from(["truncate", "flip", "append", "insert"]))
    if how == "truncate":
        raw = raw[:data.draw(st.integers(0, len(raw) - 1))]
    elif how == "flip":
        i = data.draw(st.integers(0, len(raw) - 1))
        raw[i] = data.draw(st.integers(0, 255))
    elif how == "append":
        raw += data.draw(st.binary(min_size=1, max_size=12))
    else:
        i = data.draw(st.integers(10, len(raw)))
        raw[i:i] = data.draw(st.binary(min_size=1, max_size=4))
    assert same(fast(bytes(raw)), reference(bytes(raw)))


def test_known_records_and_edge_cases() -> None:
    data = CODEC.encode(REC)
    assert DECODE(data) == reference(data) == tuple(REC[f] for f in ROW_FIELDS)
    assert DECODE(data) == DECODE(data)  # the cached prefix gives the same row
    cases = [
        data[:-3], data + b"\x00", b"", b"\xc3", b"\xc3\x01\x00", b"\x01abc", data[:10],
        CODEC.encode(dict(REC, symbol="btcusdt")),
        CODEC.encode(dict(REC, metric="unknown")),
        CODEC.encode(dict(REC, value=float("nan"))),
        CODEC.encode(dict(REC, value=float("-inf"))),
        CODEC.encode(dict(REC, source="")),
        CODEC.encode(dict(REC, ingest_time=-1)),
        CODEC.encode(dict(REC, ingest_time=10_413_791_999_999)),
        CODEC.encode(dict(REC, ingest_time=10_413_792_000_000)),
        CODEC.encode(dict(REC, event_time=4_102_444_800_000)),
        CODEC.encode(dict(REC, event_time=1_483_228_800_000)),
        CODEC.encode(dict(REC, symbol="S" * 64)),
        CODEC.encode(dict(REC, symbol="S" * 65)),
        CODEC.encode(dict(REC, source="s" * 70)),
        CODEC.encode(dict(REC, symbol="ÄÖÜUSDT")),
        CODEC.encode(dict(REC, ingest_time=2**63 - 1)),
        CODEC.encode(dict(REC, source="hyperliquid", symbol="kPEPE")),
        CODEC.encode(dict(REC, source="binance_usdm", symbol="kPEPE")),
        CODEC.encode(dict(REC, metric="funding_interval_hours", value=8.0)),
        CODEC.encode(dict(REC, metric="funding_interval_hours", value=0.0)),
        CODEC.encode(dict(REC, metric="funding_interval_hours", value=-1.0)),
    ]
    for raw in cases:
        assert same(fast(raw), reference(raw)), raw


def test_other_writer_schemas_and_framings_take_the_generic_path() -> None:
    for writer in metric_point_writers()[1:]:
        old = AvroCodec(writer)
        rec = {f["name"]: REC[f["name"]] for f in writer.definition["fields"] if f["name"] in REC}
        data = old.encode(rec)
        assert same(fast(data), reference(data))
    # a reader schema the fast path was not written for: generic path only
    other = AvroCodec(load_schema("market_snapshot"))
    assert row_decoder(other).__name__ == "slow"


def test_builder_rows_and_arrow_table() -> None:
    from tests.unit.consumers.test_builder import Msg

    good = CODEC.encode(REC)
    bad = CODEC.encode(dict(REC, symbol="lower"))
    msgs = [Msg(0, 10, good), Msg(1, 5, good), Msg(0, 11, bad), Msg(0, 12, None), Msg(0, 13, good),
            Msg(1, 6, good)]
    b = BatchBuilder(DECODE, {})
    b.add(msgs, [])
    p0, p1 = b.parts[("t", 0)], b.parts[("t", 1)]
    assert (p0.first_offset, p0.last_offset, p0.offsets) == (10, 13, [10, 13])
    assert p1.offsets == [5, 6] and len(p1.rows) == 2
    assert [(r.offset, r.reason) for r in b.rejected] == [(11, "invalid"), (12, "undecodable")]
    assert len(Batch(b.parts, b.rejected)) == 4
    table = rows_to_arrow(p0.rows)
    assert table.column_names == list(ROW_FIELDS)
    assert table.column("event_time").to_pylist()[0].timestamp() * 1000 == REC["event_time"]
    assert table.column("value").to_pylist() == [REC["value"]] * 2


def test_same_error_type_as_the_codec_on_truncation() -> None:
    data = CODEC.encode(REC)
    with pytest.raises(DecodeError) as exc:
        DECODE(data[:-3])
    assert exc.value.reason == "truncated"


def test_the_symbol_rule_is_the_source_s_in_either_order() -> None:
    """One symbol, two venues: the verdict cached for one source never answers for the other."""
    hyperliquid = CODEC.encode(dict(REC, source="hyperliquid", symbol="kPEPE"))
    binance = CODEC.encode(dict(REC, source="binance_usdm", symbol="kPEPE"))
    for order in ((hyperliquid, binance), (binance, hyperliquid)):
        decode = row_decoder(CODEC)
        for _ in range(2):
            for data in order:
                if data is hyperliquid:
                    assert decode(data)[:2] == ("hyperliquid", "kPEPE")
                else:
                    with pytest.raises(DecodeError, match="other than A-Z, 0-9"):
                        decode(data)
