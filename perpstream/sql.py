"""``perpstream sql "SELECT ..."``: one query against the store, printed for people or machines.

It goes where the other reading commands go (consumers.reading): a running
instance's read-only ClickHouse HTTP interface when the data directory has
one, else the embedded directory itself, else a configured ClickHouse
server. Times print as ISO-8601 UTC, large numbers grouped, in a labelled
table; ``--format json`` gives one JSON object per row, ``--format csv`` a
header and rows.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import json
import math
import sys
from collections.abc import Sequence
from typing import IO, Any

from consumers.reading import open_reader
from service.settings import CommonSettings, build_settings

_FLAGS = {"data_dir": "data_dir", "clickhouse_dsn": "clickhouse_dsn", "database": "clickhouse_database"}


def register(sub: Any) -> None:
    p = sub.add_parser("sql", help="one read query against the store (a running instance or its data dir)")
    p.add_argument("query", help='e.g. "SELECT symbol, count() FROM metric_points GROUP BY symbol"')
    p.add_argument("--data-dir", help="embedded state directory (env PERPSTREAM_DATA_DIR)")
    p.add_argument("--clickhouse-dsn", help="http(s)://... of a ClickHouse server instead")
    p.add_argument("--database", help="database unqualified tables are looked up in (default perpstream)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=sql_command)


def sql_command(args: argparse.Namespace) -> int:
    settings = build_settings(CommonSettings, args, _FLAGS)
    reader = open_reader(settings)
    from clickhouse_connect.driver.exceptions import ClickHouseError

    try:
        reader.client.database = settings.clickhouse_database
        try:
            result = reader.client.query(args.query)
        except ClickHouseError as exc:  # the query's fault or the store's, said as ClickHouse says it
            print(f"perpstream sql: {_first_line(exc)}", file=sys.stderr)
            return 1
        print_result(list(result.column_names), [list(r) for r in result.result_rows], args.format)
    finally:
        reader.close()
    return 0


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    for marker in ("Code: ",):
        i = text.find(marker)
        if i >= 0:
            text = text[i:]
    return text.splitlines()[0][:500] if text else type(exc).__name__


def cell(v: Any) -> str:
    """A value as people read it: ISO-8601 UTC times, grouped integers, no float noise."""
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


def _json_value(v: Any) -> Any:
    if isinstance(v, dt.datetime):
        return cell(v)
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, bytes):
        return v.decode("utf-8", "replace")
    return v


def print_result(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], fmt: str, out: IO[str] | None = None,
) -> None:
    out = out or sys.stdout
    if fmt == "json":
        for r in rows:
            out.write(json.dumps({c: _json_value(v) for c, v in zip(columns, r, strict=True)},
                                 ensure_ascii=False) + "\n")
        return
    if fmt == "csv":
        w = csv.writer(out)
        w.writerow(columns)
        for r in rows:
            w.writerow([_json_value(v) for v in r])
        return
    if not rows:
        out.write("(no rows)\n")
        return
    cells = [[cell(v) for v in r] for r in rows]
    numeric = [all(isinstance(r[i], int | float) and not isinstance(r[i], bool)
                   for r in rows if r[i] is not None) for i in range(len(columns))]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]

    def line(values: Sequence[str]) -> str:
        parts = [v.rjust(w) if numeric[i] else v.ljust(w)
                 for i, (v, w) in enumerate(zip(values, widths, strict=True))]
        return "  ".join(parts).rstrip()

    out.write(line(list(columns)) + "\n")
    out.write("  ".join("-" * w for w in widths) + "\n")
    for r in cells:
        out.write(line(r) + "\n")
    out.write(f"({len(rows):,} row{'s' if len(rows) != 1 else ''})\n")
