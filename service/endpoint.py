"""The endpoint file of a running embedded store.

An embedded ClickHouse directory can be opened by one OS process only. The
process that holds it serves ClickHouse's HTTP interface (read-only) and
writes ``endpoint.json`` into the data directory: its pid, the URL and when
it started. Other commands on the same data directory read the file to find
the running instance and query through it instead of failing to open the
directory; a second pipeline on the same directory says which one runs.

A file left by a process that died (``kill -9``) is recognised by its pid
and ignored.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = "endpoint.json"


@dataclass(frozen=True)
class Endpoint:
    pid: int
    url: str
    started_at: str

    @property
    def host(self) -> str:
        return self.url.split("://", 1)[1].rsplit(":", 1)[0]

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1].split("/", 1)[0])


def _path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / FILE_NAME


def _alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_endpoint(data_dir: str | os.PathLike[str], url: str) -> Endpoint:
    """Record this process as the one serving ``data_dir`` (atomically replaced)."""
    now = dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    ep = Endpoint(os.getpid(), url, now)
    path = _path(data_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(ep)) + "\n", encoding="utf-8")
    tmp.replace(path)
    return ep


def read_endpoint(data_dir: str | os.PathLike[str]) -> Endpoint | None:
    """The running instance of ``data_dir``, or None (no file, unreadable, or its process is gone)."""
    try:
        raw = json.loads(_path(data_dir).read_text(encoding="utf-8"))
        ep = Endpoint(int(raw["pid"]), str(raw["url"]), str(raw.get("started_at", "")))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return ep if _alive(ep.pid) else None


def remove_endpoint(data_dir: str | os.PathLike[str]) -> None:
    """Remove the file if this process wrote it."""
    ep = read_endpoint(data_dir)
    if ep is not None and ep.pid == os.getpid():
        with contextlib.suppress(OSError):
            _path(data_dir).unlink()
