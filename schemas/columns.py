"""Column types of the contract's tables, derived from the Avro schemas.

The ClickHouse DDL of ``metric_points`` and ``market_snapshots`` and the
Arrow schemas the consumers insert with are built from these, so a field
added to an ``.avsc`` file cannot be forgotten in one of them. Applied
migrations never change (their checksums are recorded in the database), so a
test pins the DDL they were generated with: a schema change that would alter
it fails that test and calls for a new migration.

Type mapping (docs/contract.md, "Columns"):

=========================  ==========================  =====================
Avro                       ClickHouse                  Arrow
=========================  ==========================  =====================
string, enum               LowCardinality(String)      string
double                     Float64                     float64
["null", "double"]         Nullable(Float64)           float64
long, timestamp-millis     DateTime64(3, 'UTC')        timestamp[ms, UTC]
["null", "long"]           Nullable(Int64)             int64
int                        UInt32                      uint32
boolean                    Bool                        bool
=========================  ==========================  =====================

``int`` maps to UInt32 because every ``int`` of the contract is a count or a
window length, which the rules keep non-negative.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from perpstream.schemas.codec import load_schema


@dataclass(frozen=True)
class Column:
    name: str
    clickhouse: str
    arrow: str


def _column(field: dict[str, Any]) -> Column:
    name, t = str(field["name"]), field["type"]
    if isinstance(t, list):
        inner = [x for x in t if x != "null"]
        if len(inner) != 1 or "null" not in t:
            raise ValueError(f"{name}: only [null, T] unions map to a column, got {t!r}")
        base = _column({"name": name, "type": inner[0]})
        return Column(name, f"Nullable({base.clickhouse})", base.arrow)
    if isinstance(t, dict):
        if t.get("logicalType") == "timestamp-millis" and t.get("type") == "long":
            return Column(name, "DateTime64(3, 'UTC')", "timestamp_ms_utc")
        if t.get("type") == "enum":
            return Column(name, "LowCardinality(String)", "string")
        t = t.get("type")
    mapping = {
        "string": ("LowCardinality(String)", "string"),
        "double": ("Float64", "float64"),
        "long": ("Int64", "int64"),
        "int": ("UInt32", "uint32"),
        "boolean": ("Bool", "bool"),
    }
    if t not in mapping:
        raise ValueError(f"{name}: Avro type {t!r} has no column mapping")
    ch, arrow = mapping[t]
    return Column(name, ch, arrow)


def columns(schema: str, order: tuple[str, ...] | None = None) -> tuple[Column, ...]:
    """The columns of a shipped schema's record, in ``order`` (default: field order).

    ``order`` must name every field exactly once: a table keeps all of them.
    """
    fields = {str(f["name"]): f for f in load_schema(schema).definition["fields"]}
    names = order if order is not None else tuple(fields)
    if sorted(names) != sorted(fields):
        raise ValueError(f"{schema}: column order {names} does not name the fields {tuple(fields)}")
    return tuple(_column(fields[n]) for n in names)


def ddl_columns(cols: tuple[Column, ...]) -> str:
    """The column list of a CREATE TABLE statement (``" name Type,"`` joined)."""
    return ",".join(f" {c.name} {c.clickhouse}" for c in cols)


def arrow_schema(cols: tuple[Column, ...]) -> Any:
    """A ``pyarrow.Schema`` for inserting these columns."""
    types = {
        "string": pa.string(), "float64": pa.float64(), "int64": pa.int64(), "uint32": pa.uint32(),
        "bool": pa.bool_(), "timestamp_ms_utc": pa.timestamp("ms", tz="UTC"),
    }
    return pa.schema([(c.name, types[c.arrow]) for c in cols])


#: ``metric_points``: the identity first (its ORDER BY), then the value and ingest time.
METRIC_POINTS_ORDER = ("source", "symbol", "metric", "event_time", "value", "ingest_time")
METRIC_POINT_COLUMNS = columns("metric_point", METRIC_POINTS_ORDER)
#: ``market_snapshots``: the schema's field order.
MARKET_SNAPSHOT_COLUMNS = columns("market_snapshot")
