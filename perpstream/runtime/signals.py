"""SIGINT/SIGTERM as a drain request, one way for every long-running command."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def stop_on_signals(stop: threading.Event | None = None) -> Iterator[threading.Event]:
    """SIGINT and SIGTERM set the returned event; the previous handlers come back on exit.

    The process drains (finishes the current batch, flushes, commits) and exits
    0 instead of dying mid-batch; a second signal changes nothing, the drain is
    bounded by each component's own timeout. Call it from the main thread.
    """
    event = stop if stop is not None else threading.Event()
    old = {sig: signal.signal(sig, lambda *_: event.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield event
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
