"""Background asyncio tasks that are kept, watched and awaited.

A task nobody holds can be garbage-collected mid-flight, and an exception in a
task nobody awaits is only reported when the task is destroyed, if at all.
:class:`BackgroundTasks` keeps every task it starts, logs an unexpected
exception the moment the task ends (with its traceback, at most once per
``log_interval`` seconds so a bug on a hot path cannot flood the log) and hands
it to ``on_failure``; :meth:`BackgroundTasks.close` cancels what is left and
awaits every task, so nothing outlives its owner.

``asyncio.TaskGroup`` is not used because it cancels every sibling when one task
fails; here one failed poll or socket must not take the others down, the owner
decides (via ``on_failure``).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from perpstream.producer.exceptions import PermanentFailure
from perpstream.runtime.logs import RateLimitedLog

T = TypeVar("T")


class BackgroundTasks:
    def __init__(
        self,
        logger: logging.Logger,
        owner: str,
        on_failure: Callable[[BaseException], None] | None = None,
        *,
        log_interval: float = 30.0,
    ) -> None:
        self._owner = owner
        self._on_failure = on_failure
        self._rlog = RateLimitedLog(logger, log_interval)
        self._tasks: set[asyncio.Task[Any]] = set()

    def __len__(self) -> int:
        return len(self._tasks)

    def spawn(self, coro: Coroutine[Any, Any, T], name: str | None = None) -> asyncio.Task[T]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._done)
        return task

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is None:
            return
        if not isinstance(exc, PermanentFailure):  # the owner reports those by name
            self._rlog.error("task", "background task failed", exc_info=exc,
                             extra={"owner": self._owner, "task": task.get_name()})
        if self._on_failure is not None:
            self._on_failure(exc)

    async def close(self, grace: float = 5.0) -> None:
        """Wait up to ``grace`` seconds for the tasks to end, cancel the rest, await all
        (tasks started while closing, e.g. a socket's close, included)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self._tasks:
            tasks = list(self._tasks)
            remaining = deadline - loop.time()
            pending: set[asyncio.Task[Any]] | list[asyncio.Task[Any]] = tasks
            if remaining > 0:
                _, pending = await asyncio.wait(tasks, timeout=remaining)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
