"""Rate-limited logging for persistent faults.

A store that is down, a broker that refuses connections or a server that
answers 429 can fail many times a second for minutes. Each occurrence is
counted (the caller's counter), but the log shows the first one at once and
then at most one line per ``interval`` per key, carrying how many were
suppressed in between, without a traceback: the fault is the world's, not a
bug.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any


class RateLimitedLog:
    """``log.warning(key, msg, extra)``: emit at most one line per key per ``interval`` seconds."""

    def __init__(self, logger: logging.Logger, interval: float = 30.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval = interval
        self._clock = clock
        self._lock = threading.Lock()
        self._next: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, extra: Mapping[str, Any] | None = None,
            exc_info: BaseException | None = None) -> bool:
        """Log now, or count the line as suppressed; True when it was emitted.

        ``exc_info`` is for bugs only (a failed task): its traceback is logged with
        the emitted line, never with the suppressed ones."""
        now = self._clock()
        with self._lock:
            if now < self._next.get(key, float("-inf")):
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._next[key] = now + self._interval
            suppressed = self._suppressed.pop(key, 0)
        fields = dict(extra or {})
        if suppressed:
            fields["suppressed"] = suppressed
        self._logger.log(level, msg, extra=fields, exc_info=exc_info)
        return True

    def warning(self, key: str, msg: str, extra: Mapping[str, Any] | None = None) -> bool:
        return self.log(logging.WARNING, key, msg, extra)

    def error(self, key: str, msg: str, extra: Mapping[str, Any] | None = None,
              exc_info: BaseException | None = None) -> bool:
        return self.log(logging.ERROR, key, msg, extra, exc_info)

    def reset(self, key: str) -> None:
        """The fault is over: the next occurrence is logged at once."""
        with self._lock:
            self._next.pop(key, None)
            self._suppressed.pop(key, None)
