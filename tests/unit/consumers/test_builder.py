"""The batch builder on its own: message stand-ins in, partition batches and rejects out."""

from __future__ import annotations

import ast
import math
from pathlib import Path
from typing import Any

from perpstream.consumers.runtime import builder as builder_module
from perpstream.consumers.runtime.builder import BatchBuilder
from perpstream.consumers.runtime.decoding import ROW_FIELDS, row_decoder
from perpstream.schemas.codec import metric_point_codec

REC = {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": "mark_price", "value": 1.5,
       "event_time": 1_760_000_000_000, "ingest_time": 1_760_000_000_003}
CODEC = metric_point_codec()
DECODE = row_decoder(CODEC)
GOOD = CODEC.encode(REC)


class Msg:
    """The accessors of confluent_kafka.Message the builder reads."""

    def __init__(self, partition: int, offset: int, value: bytes | None, *, topic: str = "t",
                 error: Any = None) -> None:
        self._t, self._p, self._o, self._v, self._e = topic, partition, offset, value, error

    def error(self) -> Any:
        return self._e

    def topic(self) -> str:
        return self._t

    def partition(self) -> int:
        return self._p

    def offset(self) -> int:
        return self._o

    def value(self) -> bytes | None:
        return self._v

    def key(self) -> bytes:
        return b"k"

    def headers(self) -> list[tuple[str, bytes]]:
        return [("h", b"v")]


def test_the_builder_does_not_import_kafka() -> None:
    tree = ast.parse(Path(builder_module.__file__).read_text())
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not any(str(m).startswith("confluent_kafka") for m in imported), imported


def test_rows_and_offsets_per_partition_in_offset_order() -> None:
    b = BatchBuilder(DECODE, {}, {"t": "id-1"})
    b.add([Msg(0, 10, GOOD), Msg(1, 5, GOOD), Msg(0, 11, GOOD), Msg(1, 6, GOOD)], [])
    p0, p1 = b.parts[("t", 0)], b.parts[("t", 1)]
    assert (p0.first_offset, p0.last_offset, p0.offsets) == (10, 11, [10, 11])
    assert p1.offsets == [5, 6]
    assert p0.rows[0] == tuple(REC[f] for f in ROW_FIELDS)
    assert p0.dedup_token == "t:id-1:0:10:11"
    assert (b.count, b.consumed) == (4, 4)
    batch = b.batch()
    assert batch is not None and len(batch) == 4
    assert batch.describe() == "t[0] 10..11, t[1] 5..6"


def test_an_empty_builder_gives_no_batch() -> None:
    assert BatchBuilder(DECODE, {}).batch() is None


def test_rejects_keep_their_reason_and_stay_in_the_range() -> None:
    nan = CODEC.encode(dict(REC, value=math.nan))
    lower = CODEC.encode(dict(REC, symbol="lower"))
    b = BatchBuilder(DECODE, {})
    b.add([Msg(0, 1, GOOD), Msg(0, 2, b"junk"), Msg(0, 3, nan), Msg(0, 4, None), Msg(0, 5, lower),
           Msg(0, 6, GOOD)], [])
    pb = b.parts[("t", 0)]
    assert (pb.first_offset, pb.last_offset, pb.offsets, len(pb.rows)) == (1, 6, [1, 6], 2)
    assert [(r.offset, r.reason) for r in b.rejected] == [
        (2, "bad_magic"), (3, "invalid"), (4, "undecodable"), (5, "invalid")]
    assert b.rejected[0].value == b"junk" and b.rejected[0].headers == [("h", b"v")]
    assert b.rejected[0].key == b"k" and b.rejected[0].dlq_state == ""
    assert b.count == 6


def test_a_partition_of_rejects_only_still_spans_its_offsets() -> None:
    b = BatchBuilder(DECODE, {})
    b.add([Msg(2, 7, b"x"), Msg(2, 8, b"y")], [])
    pb = b.parts[("t", 2)]
    assert (pb.first_offset, pb.last_offset, pb.rows, pb.offsets) == (7, 8, [], [])
    assert len(b.rejected) == 2


def test_cuts_at_the_journaled_end_and_carries_the_rest() -> None:
    cuts = {("t", 0): [99, 104]}  # journaled range [100, 104]
    b = BatchBuilder(DECODE, cuts)
    carry: list[Any] = []
    b.add([Msg(0, o, GOOD) for o in range(100, 110)] + [Msg(1, 7, GOOD)], carry)
    pb = b.parts[("t", 0)]
    assert (pb.first_offset, pb.last_offset) == (100, 104)
    assert pb.offsets == [100, 101, 102, 103, 104]
    assert [m.offset() for m in carry] == [105, 106, 107, 108, 109]
    assert b.parts[("t", 1)].offsets == [7]
    assert cuts == {}
    assert not b.waiting_for_cut()
    # the carried messages start the next batch
    nxt = BatchBuilder(DECODE, cuts)
    nxt.add(carry, [])
    assert nxt.parts[("t", 0)].first_offset == 105


def test_waits_for_an_unreached_cut_and_drops_obsolete_ones() -> None:
    cuts = {("t", 0): [99, 104], ("t", 1): [9, 19]}
    b = BatchBuilder(DECODE, cuts)
    b.add([Msg(0, 100, GOOD), Msg(0, 101, GOOD), Msg(1, 30, GOOD)], [])
    assert b.waiting_for_cut() == [("t", 0)]
    assert ("t", 1) not in cuts  # already committed past it


def test_a_missing_journaled_end_closes_the_batch_before_the_next_offset() -> None:
    cuts = {("t", 0): [99, 104]}
    b = BatchBuilder(DECODE, cuts)
    carry: list[Any] = []
    b.add([Msg(0, 100, GOOD), Msg(0, 103, GOOD), Msg(0, 106, GOOD)], carry)  # 104 compacted away
    assert b.parts[("t", 0)].last_offset == 103
    assert [m.offset() for m in carry] == [106]


def test_error_messages_are_collected_not_counted() -> None:
    err = object()
    b = BatchBuilder(DECODE, {})
    b.add([Msg(0, 1, GOOD), Msg(0, -1, None, error=err), Msg(0, 2, GOOD)], [])
    assert b.errors == [err]
    assert b.parts[("t", 0)].offsets == [1, 2] and b.count == 2


def test_drop_forgets_revoked_partitions() -> None:
    b = BatchBuilder(DECODE, {})
    b.add([Msg(0, 1, GOOD), Msg(0, 2, b"junk"), Msg(1, 1, GOOD)], [])
    b.drop({("t", 0)})
    assert list(b.parts) == [("t", 1)]
    assert b.rejected == [] and b.count == 1


def test_topics_are_kept_apart() -> None:
    b = BatchBuilder(DECODE, {}, {"a": "A", "b": "B"})
    b.add([Msg(0, 1, GOOD, topic="a"), Msg(0, 1, GOOD, topic="b"), Msg(0, 2, GOOD, topic="a")], [])
    assert b.parts[("a", 0)].offsets == [1, 2]
    assert b.parts[("b", 0)].topic_id == "B"
