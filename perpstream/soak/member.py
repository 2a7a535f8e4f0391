"""The soak's own entry point for its sink members (``perpstream soak``, docs/soak.md).

    python -m perpstream.soak.member [--clickhouse-down-file F] [--stop-merges] sink ARGS...

is ``perpstream sink ARGS...`` with the soak's fault hooks put in through the sink's client
seam (``consumers.sink.cli.sink_command(client_seam=...)``). Nothing in a production process
reads them: the hooks are flags of this entry point, which only the soak starts.

- ``--clickhouse-down-file F``: while F exists, every insert of the sink's batches fails the
  way clickhouse-connect fails when the server refuses connections (a transient fault: the
  sink pauses, backs off and retries the same batch); queries and commands are let through.
  An embedded engine cannot be "down", so this is how a run makes ClickHouse fail for a while
  around the real engine.
- ``--stop-merges``: background merges of ``metric_points`` stop after migrating, so a second
  copy of a row stays visible without ``FINAL`` and the soak's duplicate count
  (``count() - uniqExact(...)``) cannot be hidden by a merge.
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from clickhouse_connect.driver.exceptions import OperationalError

from perpstream.cli import build_parser, run
from perpstream.consumers.sink.cli import sink_command
from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.consumers.sink.settings import SinkSettings


class InsertsFailWhileFileExists:
    """The real client, except that ``insert_arrow`` raises a connection-refused
    ``OperationalError`` while ``switch`` exists."""

    def __init__(self, client: Any, switch: Path) -> None:
        self._client = client
        self._switch = switch
        self.failed = 0

    def insert_arrow(self, *args: Any, **kwargs: Any) -> Any:
        if self._switch.exists():
            self.failed += 1
            raise OperationalError(
                "Error HTTPConnectionPool(host='clickhouse', port=8123): Max retries exceeded "
                "(Caused by NewConnectionError('Failed to establish a new connection: [Errno 111] "
                f"Connection refused')) [injected: {self._switch} exists]")
        return self._client.insert_arrow(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def with_faults(client: Any, settings: SinkSettings, *, down_file: Path | None, stop_merges: bool) -> Any:
    """The sink's client with the hooks asked for."""
    if stop_merges:
        migrate_sink(client, settings.clickhouse_database)
        client.command(f"SYSTEM STOP MERGES {settings.clickhouse_database}.metric_points")
    return client if down_file is None else InsertsFailWhileFileExists(client, down_file)


def main(argv: Sequence[str] | None = None) -> int:
    own = argparse.ArgumentParser(prog="python -m perpstream.soak.member", add_help=False)
    own.add_argument("--clickhouse-down-file", type=Path)
    own.add_argument("--stop-merges", action="store_true")
    hooks, rest = own.parse_known_args(argv)
    args = build_parser().parse_args(rest)
    if args.command != "sink":
        own.error("only the sink takes the soak's hooks")
    args.func = functools.partial(sink_command, client_seam=functools.partial(
        with_faults, down_file=hooks.clickhouse_down_file, stop_merges=hooks.stop_merges))
    return run(args)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
