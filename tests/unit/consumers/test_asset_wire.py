"""The asset member's wire: MarketSnapshot records become engine rows or go to the DLQ with a
reason; AssetSnapshots are keyed by asset and decode to what was encoded."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from perpstream.consumers.assets.engine import AssetEngine
from perpstream.consumers.assets.store import SNAPSHOT_COLUMNS, record_row
from perpstream.consumers.assets.wire import (
    ROW_FIELDS,
    asset_key,
    asset_snapshot_codec,
    market_snapshot_reader,
    snapshot_row_decoder,
)
from perpstream.schemas.codec import AvroCodec, AvroSchema, load_schema
from perpstream.schemas.exceptions import DecodeError, InvalidRecordError

T0 = 1_767_225_600_000
FIELDS = [f["name"] for f in load_schema("market_snapshot").definition["fields"]]


def snapshot(**kw: Any) -> dict[str, Any]:
    r: dict[str, Any] = dict.fromkeys(FIELDS)
    r.update(source="okx_swap", symbol="PEPE-USDT-SWAP", window_s=60, snapshot_time=T0, mark_last=1e-5,
             oi_last=1e9, n_mark=60, n_oi=6, stale=False)
    r.update(kw)
    return r


def test_a_market_snapshot_becomes_the_row_the_engine_reads() -> None:
    codec = market_snapshot_reader()
    decode = snapshot_row_decoder(codec)
    row = decode(codec.encode(snapshot()))
    assert dict(zip(ROW_FIELDS, row, strict=True)) == {
        "source": "okx_swap", "symbol": "PEPE-USDT-SWAP", "window_s": 60, "snapshot_time": T0,
        "funding_annualized": snapshot().get("funding_annualized"),
        "funding_interval_h": snapshot().get("funding_interval_h"),
        "funding_last": None, "basis_last": None, "mark_last": 1e-5, "oi_last": 1e9, "stale": False}


@pytest.mark.parametrize("bad, reason", [
    ({"window_s": 0}, "window_s"),
    ({"snapshot_time": 0}, "snapshot_time"),
    ({"symbol": "BTC USDT"}, "symbol"),
    ({"source": ""}, "source"),
    ({"mark_last": math.nan}, "mark_last"),
    ({"oi_last": math.inf}, "oi_last"),
])
def test_a_snapshot_the_engine_cannot_read_is_rejected_for_the_dlq(bad: dict[str, Any], reason: str) -> None:
    codec = market_snapshot_reader()
    with pytest.raises(InvalidRecordError) as err:
        snapshot_row_decoder(codec)(codec.encode(snapshot(**bad)))
    assert err.value.reason == "invalid"
    assert reason in str(err.value)


def test_undecodable_bytes_are_a_decode_error() -> None:
    decode = snapshot_row_decoder(market_snapshot_reader())
    for data in (b"", b"\x00\x01", b"\xc3\x01" + b"\x00" * 8 + b"\x02", b"garbage"):
        with pytest.raises(DecodeError):
            decode(data)


def test_an_asset_snapshot_round_trips_keyed_by_its_asset_and_fits_the_table() -> None:
    engine = AssetEngine()
    for t in (T0, T0 + 20_000):
        engine.add(snapshot(snapshot_time=t))
    [rec] = engine.take_output()
    codec = asset_snapshot_codec()
    assert AvroCodec(load_schema("asset_snapshot")).decode(codec.encode(rec)) == rec
    assert asset_key(rec) == b"PEPE"
    row = record_row(rec)
    assert len(row) == len(SNAPSHOT_COLUMNS)
    assert row[SNAPSHOT_COLUMNS.index("markets")] == [tuple(rec["markets"][0].values())]


def test_a_snapshot_written_before_the_funding_fields_is_read_with_them_null() -> None:
    v1 = Path(__file__).resolve().parents[3] / "schemas" / "history" / "market_snapshot.v1.avsc"
    old = AvroCodec(AvroSchema.from_json(v1.read_text()))
    rec = {k: v for k, v in snapshot().items() if k not in ("funding_annualized", "funding_interval_h")}
    row = dict(zip(ROW_FIELDS, snapshot_row_decoder(market_snapshot_reader())(old.encode(rec)), strict=True))
    assert row["funding_annualized"] is None and row["funding_interval_h"] is None
    assert row["oi_last"] == 1e9 and row["symbol"] == "PEPE-USDT-SWAP"
