"""The endpoint file of a running embedded store.

An embedded ClickHouse directory can be opened by one OS process only. The
process that holds it serves ClickHouse's HTTP interface (read-only) and
writes ``endpoint.json`` into the data directory: its pid, the URL and when
it started. Other commands on the same data directory read the file to find
the running instance and query through it instead of failing to open the
directory; a second pipeline on the same directory says which one runs.

A file left by a process that died (``kill -9``) is recognised by its pid
and ignored.

The process that owns a data directory also holds an exclusive lock on
``<data_dir>/lock`` (:class:`DataDirLock`, ``flock``): the kernel releases it
when the process dies, however it dies, so a second pipeline learns that the
directory is taken even when the first serves no endpoint, and never races it
for the embedded engine.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = "endpoint.json"
LOCK_NAME = "lock"


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


class DataDirBusyError(Exception):
    """Another process holds the data directory; ``pid`` is its process id when known."""

    def __init__(self, data_dir: str | os.PathLike[str], pid: int | None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.pid = pid
        held = f"process {pid}" if pid else "another process"
        super().__init__(f"{self.data_dir} is in use by {held}")


class DataDirLock:
    """An exclusive, process-lifetime lock on a data directory (``flock`` on ``<dir>/lock``).

    ``acquire`` raises :class:`DataDirBusyError` when another process holds
    it. The lock file carries the holder's pid, for the message only: the lock
    itself is the kernel's, released when the process exits or dies.
    """

    def __init__(self, data_dir: str | os.PathLike[str]) -> None:
        self.data_dir = Path(data_dir)
        self._fd: int | None = None

    def acquire(self) -> DataDirLock:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            finally:
                os.close(fd)
            raise DataDirBusyError(self.data_dir, int(text) if text.isdigit() else None) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the descriptor releases the flock

    def __enter__(self) -> DataDirLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
