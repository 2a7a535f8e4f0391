"""Waiting for a condition in integration tests: poll with a deadline, never a bare sleep."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from typing import Any


def wait_for(cond: Callable[[], Any], timeout: float = 60.0, what: str = "condition", *,
             interval: float = 0.05, alive: tuple[subprocess.Popen[str], ...] = ()) -> Any:
    """Poll ``cond`` until it is truthy and return its value; fail after ``timeout`` seconds
    (or as soon as one of the ``alive`` processes has exited)."""
    deadline = time.monotonic() + timeout
    while True:
        got = cond()
        if got:
            return got
        for p in alive:
            if p.poll() is not None:
                err = (p.communicate()[1] if p.stderr is not None else "") or ""
                raise AssertionError(f"{p.args!r} exited early while waiting for {what}:\n{err[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
