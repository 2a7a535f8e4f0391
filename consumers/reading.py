"""Opening the store for a reading command (``query``, ``freshness``, ``sql``).

With the embedded default, one OS process holds the ClickHouse directory:
when a pipeline is running on the data directory it serves ClickHouse's HTTP
interface (read-only) and says where in its endpoint file
(:mod:`service.endpoint`), and readers go through it. Without a running
instance a reader opens the directory itself; with neither it says what to
do. A ClickHouse server DSN is used as given.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perpstream.consumers.clickhouse import open_client
from perpstream.errors import ConfigError, PerpstreamError
from perpstream.runtime.endpoint import read_endpoint
from perpstream.runtime.secrets import redact_dsn
from perpstream.runtime.settings import CommonSettings


class StoreBusyError(PerpstreamError):
    """The embedded directory is held by a process that serves no query endpoint."""


@dataclass
class Reader:
    client: Any
    #: "endpoint" (a running instance's HTTP interface), "embedded" (the directory
    #: opened by this process) or "server" (a configured ClickHouse server)
    via: str
    where: str

    @property
    def may_write(self) -> bool:
        """False through a running instance's read-only endpoint (it migrated the tables itself)."""
        return self.via != "endpoint"

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing must never hide the command's result
            self.client.close()


def open_reader(settings: CommonSettings) -> Reader:
    if settings.clickhouse_dsn is not None:
        return Reader(open_client(settings.clickhouse_dsn, **settings.clickhouse_options()), "server",
                      redact_dsn(settings.clickhouse_dsn))
    data_dir = Path(settings.data_dir)
    ep = read_endpoint(data_dir)
    if ep is not None:
        try:  # like every server client: no HTTP session (docs/sink.md, "ClickHouse server")
            client = open_client(f"http://{ep.host}:{ep.port}", connect_timeout=5)
        except Exception as exc:
            raise StoreBusyError(
                f"the perpstream instance on {data_dir} (pid {ep.pid}) does not answer at {ep.url}: {exc}"
            ) from None
        return Reader(client, "endpoint", ep.url)
    dsn = settings.resolved_clickhouse_dsn()
    if not (data_dir / "clickhouse").is_dir():
        raise ConfigError(
            f"data_dir (--data-dir or PERPSTREAM_DATA_DIR): no perpstream store in {data_dir.resolve()}; "
            "start `perpstream run` there, or pass --clickhouse-dsn"
        )
    try:
        return Reader(open_client(dsn), "embedded", dsn)
    except ConfigError:
        raise
    except Exception as exc:
        raise StoreBusyError(
            f"cannot open {dsn}: another process holds it and serves no query endpoint "
            f"(stop it, or run it with the HTTP interface on): {str(exc).splitlines()[0][:200]}"
        ) from None
