"""N members of one consumer group as threads of one process, and what happens when one fails.

The members run under the process runtime's supervisor
(:mod:`perpstream.runtime.supervisor`) with its fail-fast policy: a member
that fails stops all of them and makes the process exit non-zero, and the
process's own supervisor (systemd, Kubernetes, compose ``restart:``) restarts
it, instead of the process running on with fewer members and the group
quietly rebalancing onto the rest. How the failure is logged depends on whose
fault it is:

- a :class:`~consumers.exceptions.ConsumerError` (a batch ClickHouse rejects
  for good, a fatal Kafka error, commits failing for too long) is the
  world's: one ERROR line with the message, which names the cause and, for a
  batch, its record ranges; no traceback;
- any other exception is a bug: logged with its traceback.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Protocol

from perpstream.consumers.exceptions import BatchFailedError, ConsumerError
from perpstream.runtime.supervisor import FailFast, Supervisor

log = logging.getLogger(__name__)


class Member(Protocol):
    """What :func:`run_workers` runs: ``ConsumeLoop`` is one."""

    def run(self, stop: threading.Event) -> int: ...


def run_workers(
    make_member: Callable[[int], Member], workers: int, stop: threading.Event, *, name: str = "consumer",
) -> int:
    """Run ``workers`` members as threads (``{name}-{i}``) until ``stop``; the worst exit code.

    0: every member drained cleanly. 1: a member failed (logged here) or
    stopped with a batch it could not store. A failed member sets ``stop``
    for all of them.
    """
    supervisor = Supervisor(FailFast())
    for i in range(workers):
        supervisor.add(f"{name}-{i}", make_member(i).run, stop=stop,
                       report=functools.partial(_report, name, i))
    supervisor.start()
    supervisor.join()
    return supervisor.exit_code()


def _report(consumer: str, member: int, _component: str, exc: BaseException) -> str:
    """One ERROR line for the world's fault (with the batch's ranges), a traceback for a bug."""
    fields = {"consumer": consumer, "member": member, "error_type": type(exc).__name__}
    if isinstance(exc, BatchFailedError):
        log.error("consumer member stopped: %s", exc, extra={
            **fields, "ranges": {f"{t}[{p}]": f"{a}..{b}" for (t, p), (a, b) in exc.ranges.items()},
            "cause": str(exc.__cause__) if exc.__cause__ else None})
    elif isinstance(exc, ConsumerError):
        log.error("consumer member stopped: %s", exc, extra=fields)
    else:
        log.exception("consumer member crashed", extra={"consumer": consumer, "member": member})
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
