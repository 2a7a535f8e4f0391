"""Output meant for people, and the same rows for machines.

Every command that prints rows uses :func:`print_rows`: ``table`` gives
labelled columns (numbers right-aligned, a rule under the header, the row
count), times as ISO-8601 UTC, integers grouped, funding rates in percent;
``json`` one JSON object per row with raw values (epoch milliseconds stay
integers); ``csv`` a header and rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import sys
from collections.abc import Mapping, Sequence
from typing import IO, Any

from perpstream.schemas.models import Metric

#: Metrics whose value is an epoch-ms time, and those that are rates (shown in %).
_TIME_METRICS = frozenset({Metric.NEXT_FUNDING_TIME})
_RATE_METRICS = frozenset({Metric.FUNDING_RATE, Metric.FUNDING_RATE_SETTLED})


def iso_ms(ms: int | float) -> str:
    """Epoch milliseconds as ISO-8601 UTC with milliseconds (``2026-12-01T20:24:43.000Z``)."""
    t = dt.datetime.fromtimestamp(ms / 1000, dt.UTC)
    return t.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def cell(v: Any) -> str:
    """One value as people read it: ISO-8601 UTC times, grouped integers, no float noise."""
    if v is None:
        return "-"
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            v = v.replace(tzinfo=dt.UTC)
        return v.astimezone(dt.UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        if not math.isfinite(v):
            return str(v)
        return f"{v:,.0f}" if abs(v) >= 1e6 and v == int(v) else f"{v:.10g}"
    return str(v)


def for_people(row: Mapping[str, Any]) -> dict[str, str]:
    """A row of a metric query for a table: ``*_ms`` epoch columns as times, a
    metric's value in its own unit (times as times, funding rates in percent)."""
    out: dict[str, str] = {}
    metric = row.get("metric")
    for k, v in row.items():
        if k.endswith("_time_ms") and isinstance(v, int | float) and v > 0:
            out[k.removesuffix("_ms")] = iso_ms(v)
        elif k == "value" and metric in _TIME_METRICS and isinstance(v, int | float) and v > 0:
            out[k] = iso_ms(v)
        elif k == "value" and metric in _RATE_METRICS and isinstance(v, int | float):
            out[k] = f"{v * 100:.4f} %"
        else:
            out[k] = cell(v)
    return out


def _json_value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return cell(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def print_rows(rows: Sequence[Mapping[str, Any]], fmt: str, out: IO[str] | None = None) -> None:
    """Rows of dicts in ``table``, ``json`` or ``csv``."""
    out = out or sys.stdout
    if fmt == "json":
        for r in rows:
            out.write(json.dumps({k: _json_value(v) for k, v in r.items()}, ensure_ascii=False) + "\n")
        return
    columns = list(rows[0]) if rows else []
    if fmt == "csv":
        w = csv.writer(out)
        w.writerow(columns)
        for r in rows:
            w.writerow([_json_value(v) for v in r.values()])
        return
    if not rows:
        out.write("(no rows)\n")
        return
    numeric = [all(isinstance(r[c], int | float) and not isinstance(r[c], bool)
                   for r in rows if r[c] is not None) for c in columns]
    shown = [for_people(r) for r in rows]
    labels = list(shown[0])
    cells = [list(r.values()) for r in shown]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(labels)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if numeric[i] and not labels[i].endswith("time") else v.ljust(w)
                 for i, (v, w) in enumerate(zip(values, widths, strict=True))]
        return "  ".join(parts).rstrip()

    out.write(line(labels) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for values in cells:
        out.write(line(values) + "\n")
    out.write(f"({len(rows):,} row{'s' if len(rows) != 1 else ''})\n")
