"""MarketSnapshot v2 (``funding_interval_h``, ``funding_annualized``) next to v1
(``schemas/history/market_snapshot.v1.avsc``), for the readers of the snapshots topic:

- v2 appends two nullable doubles with a null default after ``stale``;
- a v1 reader reads v2 records (the new fields are skipped), a v2 reader reads v1
  records (the new fields are null), and Apache Avro's checker agrees both ways;
- the hand-written encoder writes v2 (tests/unit/snapshots/test_wire.py holds it to fastavro).
"""

from __future__ import annotations

import json
from typing import Any

from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType
from avro.schema import parse as avro_parse

from perpstream.consumers.snapshots.wire import snapshot_encoder
from perpstream.schemas.codec import AvroCodec, load_schema, market_snapshot_codec
from perpstream.schemas.models import MarketSnapshot

V1 = load_schema("history/market_snapshot.v1")
V2 = load_schema("market_snapshot")
SNAP = MarketSnapshot(source="bybit_linear", symbol="BTCUSDT", window_s=300, snapshot_time=1_790_000_000_000,
                      mark_last=64_000.5, funding_last=1e-4, n_mark=300, n_oi=30, mark_age_ms=120,
                      oi_age_ms=4_000, stale=False, funding_interval_h=8.0,
                      funding_annualized=0.1095).as_record()


def test_v2_appends_two_nullable_doubles() -> None:
    v1 = [f["name"] for f in V1.definition["fields"]]
    v2 = V2.definition["fields"]
    assert [f["name"] for f in v2] == [*v1, "funding_interval_h", "funding_annualized"]
    for f in v2[len(v1):]:
        assert f["type"] == ["null", "double"] and f["default"] is None


def test_each_version_reads_the_other() -> None:
    data = snapshot_encoder(market_snapshot_codec())(SNAP)
    old = AvroCodec(V1, resolve_fingerprint={V2.fingerprint: V2}.get).decode(data)
    assert old == {k: v for k, v in SNAP.items() if k not in ("funding_interval_h", "funding_annualized")}
    v1_bytes = AvroCodec(V1).encode(old)
    new = AvroCodec(V2, resolve_fingerprint={V1.fingerprint: V1}.get).decode(v1_bytes)
    assert new == {**old, "funding_interval_h": None, "funding_annualized": None}


def _avro(schema: dict[str, Any]) -> Any:
    return avro_parse(json.dumps(schema))


def test_v2_is_backward_and_forward_compatible_with_v1() -> None:
    checker = ReaderWriterCompatibilityChecker()
    v1, v2 = _avro(V1.definition), _avro(V2.definition)
    assert checker.get_compatibility(v2, v1).compatibility is SchemaCompatibilityType.compatible
    assert checker.get_compatibility(v1, v2).compatibility is SchemaCompatibilityType.compatible
