"""One owner per data directory: ``run`` and ``up`` give a second instance the same answer."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from perpstream.errors import PerpstreamError
from perpstream.runtime.endpoint import DataDirBusyError, DataDirLock, read_endpoint


class AlreadyRunningError(PerpstreamError):
    """Another pipeline holds this data directory."""


def locked_data_dir(data_dir: Path) -> DataDirLock:
    """The data directory's lock, held; ``run`` and ``up`` give the same answer when another
    process holds it: :class:`AlreadyRunningError` (exit 1) saying which process, since when,
    where it answers queries and how to stop it."""
    lock = DataDirLock(data_dir)
    try:
        lock.acquire()
    except DataDirBusyError as exc:
        raise AlreadyRunningError(already_running(data_dir, exc.pid)) from None
    return lock


@contextlib.contextmanager
def holding(data_dir: Path) -> Iterator[DataDirLock]:
    """:func:`locked_data_dir` for a ``with`` block: released on the way out."""
    lock = locked_data_dir(data_dir)
    try:
        yield lock
    finally:
        lock.release()


def already_running(data_dir: Path, pid: int | None) -> str:
    ep = read_endpoint(data_dir)
    who = f"pid {ep.pid if ep else pid}" if (ep or pid) else "another process"
    lines = [f"perpstream already runs on {data_dir} ({who}"
             + (f", since {ep.started_at})" if ep else ")")]
    if ep is not None:
        lines.append(f"  queries: {ep.url}   e.g. perpstream sql --data-dir {data_dir} "
                     f"'SELECT count() FROM perpstream.metric_points'")
    lines.append(f"  stop it with Ctrl+C in its terminal, or: kill -INT {ep.pid if ep else pid or '<pid>'}")
    return "\n".join(lines)
