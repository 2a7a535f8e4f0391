"""The asset group's records on the wire: MarketSnapshots read, AssetSnapshots written.

Reading: :func:`snapshot_row_decoder` turns a MarketSnapshot record of the
snapshots topic into the row the asset member hands its engine, checking what
the engine and the tables need (docs/snapshots.md, "Cross-venue asset
snapshots"): a record that cannot be decoded, or whose source, symbol, window,
time or values break the contract, raises a
:class:`~schemas.exceptions.DecodeError` and goes to the DLQ as it was, never
silently dropped. Every MarketSnapshot version ever shipped is readable
(``schemas/history/market_snapshot.*.avsc``; fields a version lacks read as
null), so a topic written across an upgrade is read whole.

Writing: AssetSnapshots go through :class:`~schemas.codec.AvroCodec` (fastavro).
They are few (one per asset, window and snapshot interval), so the hand-written
encoder the per-symbol records need (``consumers/snapshots/wire.py``) would buy nothing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any, Final

from perpstream.schemas import rules
from perpstream.schemas.codec import AvroCodec, AvroSchema, load_schema
from perpstream.schemas.exceptions import InvalidRecordError

#: The fields of a MarketSnapshot the asset engine reads, in the order of a decoded row.
ROW_FIELDS: Final = ("source", "symbol", "window_s", "snapshot_time", "funding_annualized",
                     "funding_interval_h", "funding_last", "basis_last", "mark_last", "oi_last", "stale")
#: The doubles among them (nullable).
VALUE_FIELDS: Final = ROW_FIELDS[4:10]


@cache
def market_snapshot_writers() -> tuple[AvroSchema, ...]:
    """Every MarketSnapshot version shipped: the current one, then ``schemas/history``'s."""
    out = [load_schema("market_snapshot")]
    root = resources.files("perpstream.schemas").joinpath("history")
    for entry in sorted(root.iterdir(), key=lambda p: p.name):
        if entry.name.startswith("market_snapshot.") and entry.name.endswith(".avsc"):
            out.append(AvroSchema.from_json(entry.read_text("utf-8")))
    return tuple(out)


def market_snapshot_reader(registry: Any | None = None) -> AvroCodec:
    """A codec that reads MarketSnapshots of any shipped version (by fingerprint or registry id)."""
    return AvroCodec(load_schema("market_snapshot"), writers=market_snapshot_writers(), registry=registry)


def asset_snapshot_codec(registry: Any | None = None, subject: str | None = None, *,
                         auto_register: bool = True) -> AvroCodec:
    return AvroCodec(load_schema("asset_snapshot"), registry=registry, subject=subject,
                     auto_register=auto_register)


def snapshot_row_problem(rec: dict[str, Any]) -> str | None:
    """Why a decoded MarketSnapshot cannot be an input of the asset engine, or None."""
    source, symbol = rec.get("source"), rec.get("symbol")
    if not isinstance(source, str) or not isinstance(symbol, str):
        return "source and symbol must be strings"
    problem = rules.source_problem(source) or rules.symbol_problem(symbol, source)
    if problem:
        return problem
    w, t = rec.get("window_s"), rec.get("snapshot_time")
    if type(w) is not int or w <= 0:
        return f"window_s must be a positive int, got {w!r}"
    if type(t) is not int:
        return f"snapshot_time must be an int, got {t!r}"
    problem = rules.event_time_problem(t)
    if problem:
        return f"snapshot_time: {problem}"
    if type(rec.get("stale")) is not bool:
        return "stale must be a boolean"
    for name in VALUE_FIELDS:
        v = rec.get(name)
        if v is not None and (type(v) is not float or not math.isfinite(v)):
            return f"{name} must be a finite double or null, got {v!r}"
    return None


def snapshot_row_decoder(codec: AvroCodec) -> Callable[[bytes], tuple[Any, ...]]:
    """``bytes -> row`` (:data:`ROW_FIELDS` order): decode, then the checks of
    :func:`snapshot_row_problem`; raises :class:`DecodeError` (its ``reason`` labels the DLQ copy)."""
    decode = codec.decode

    def row(data: bytes) -> tuple[Any, ...]:
        rec = decode(data)
        problem = snapshot_row_problem(rec)
        if problem is not None:
            raise InvalidRecordError(problem)
        return tuple(rec.get(f) for f in ROW_FIELDS)

    return row


def asset_key(record: dict[str, Any]) -> bytes:
    """The Kafka key of an AssetSnapshot: its asset, so one asset's records keep their order."""
    return str(record["asset"]).encode()
