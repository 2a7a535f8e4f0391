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
import sys
from typing import Any

from perpstream.consumers.reading import open_reader
from perpstream.runtime.output import print_rows
from perpstream.runtime.settings import CommonSettings, SettingsUse, build_settings, declare_settings

_FLAGS = {"data_dir": "data_dir", "clickhouse_dsn": "clickhouse_dsn", "database": "clickhouse_database"}


def register(sub: Any) -> None:
    p = sub.add_parser("sql", help="one read query against the store (a running instance or its data dir)")
    p.add_argument("query", help='e.g. "SELECT symbol, count() FROM metric_points GROUP BY symbol"')
    p.add_argument("--data-dir", help="embedded state directory (env PERPSTREAM_DATA_DIR)")
    p.add_argument("--clickhouse-dsn", help="http(s)://... of a ClickHouse server instead")
    p.add_argument("--database", help="database unqualified tables are looked up in (default perpstream)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table")
    p.set_defaults(func=sql_command)
    declare_settings(p, SettingsUse(CommonSettings, _FLAGS))


def sql_command(args: argparse.Namespace) -> int:
    settings = build_settings(CommonSettings, args, _FLAGS)
    reader = open_reader(settings)
    # local: the clickhouse_connect package costs ~0.17 s of `perpstream --help` (-X importtime)
    from clickhouse_connect.driver.exceptions import ClickHouseError

    try:
        reader.client.database = settings.clickhouse_database
        try:
            result = reader.client.query(args.query)
        except ClickHouseError as exc:  # the query's fault or the store's, said as ClickHouse says it
            print(f"perpstream sql: {first_line(exc)}", file=sys.stderr)
            return 1
        names = list(result.column_names)
        print_rows([dict(zip(names, r, strict=True)) for r in result.result_rows], args.format)
    finally:
        reader.close()
    return 0


def first_line(exc: Exception) -> str:
    """ClickHouse's own message (``Code: N. DB::Exception: ...``) without the client's preamble."""
    text = str(exc).strip()
    i = text.find("Code: ")
    if i >= 0:
        text = text[i:]
    return text.splitlines()[0][:500] if text else type(exc).__name__

