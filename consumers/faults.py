"""Fault injection for soak runs (``perpstream soak``, docs/soak.md). Off by default.

``PERPSTREAM_TEST_FAULT_CLICKHOUSE_DOWN_FILE=/path``: while that file exists, every
insert of the sink's batches fails the way clickhouse-connect fails when the server
refuses connections (a transient fault: the sink pauses, backs off and retries the
same batch); queries and commands are let through. An embedded engine cannot be
"down", so this is how a run makes ClickHouse fail for a while around the real
engine. Nothing else reads the variable, and its ``PERPSTREAM_TEST_`` prefix keeps
it out of the settings (it is never a setting of a deployment).

``PERPSTREAM_TEST_STOP_MERGES=1``: the sink stops background merges of
``metric_points`` after migrating, so a second copy of a row stays visible without
``FINAL`` and the soak's duplicate count (``count() - uniqExact(...)``) cannot be
hidden by a merge. Also off by default.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

CLICKHOUSE_DOWN_FILE_ENV = "PERPSTREAM_TEST_FAULT_CLICKHOUSE_DOWN_FILE"
STOP_MERGES_ENV = "PERPSTREAM_TEST_STOP_MERGES"


class InsertsFailWhileFileExists:
    """The real client, except that ``insert_arrow`` raises a connection-refused
    ``OperationalError`` while ``switch`` exists."""

    def __init__(self, client: Any, switch: Path) -> None:
        self._client = client
        self._switch = switch
        self.failed = 0

    def insert_arrow(self, *args: Any, **kwargs: Any) -> Any:
        if self._switch.exists():
            from clickhouse_connect.driver.exceptions import OperationalError

            self.failed += 1
            raise OperationalError(
                "Error HTTPConnectionPool(host='clickhouse', port=8123): Max retries exceeded "
                "(Caused by NewConnectionError('Failed to establish a new connection: [Errno 111] "
                f"Connection refused')) [injected: {CLICKHOUSE_DOWN_FILE_ENV} exists]")
        return self._client.insert_arrow(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)


def with_fault_injection(client: Any, database: str, environ: Mapping[str, str] | None = None) -> Any:
    """``client`` itself, or wrapped by the fault the environment asks for (soak runs only)."""
    env = os.environ if environ is None else environ
    if env.get(STOP_MERGES_ENV) == "1":
        from consumers.sink.migrations import migrate_sink

        migrate_sink(client, database)
        client.command(f"SYSTEM STOP MERGES {database}.metric_points")
    switch = env.get(CLICKHOUSE_DOWN_FILE_ENV)
    if not switch:
        return client
    return InsertsFailWhileFileExists(client, Path(switch))
