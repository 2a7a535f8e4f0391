"""N members of one consumer group as threads of one process, and what happens when one fails.

A member that fails stops all of them and makes the process exit non-zero:
the process's own supervisor (systemd, Kubernetes, compose ``restart:``)
restarts it, instead of the process running on with fewer members and the
group quietly rebalancing onto the rest. How the failure is logged depends on
whose fault it is:

- a :class:`~consumers.exceptions.ConsumerError` (a batch ClickHouse rejects
  for good, a fatal Kafka error, commits failing for too long) is the
  world's: one ERROR line with the message, which names the cause and, for a
  batch, its record ranges; no traceback;
- any other exception is a bug: logged with its traceback.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from perpstream.consumers.exceptions import BatchFailedError, ConsumerError

log = logging.getLogger(__name__)


class Member(Protocol):
    """What :func:`run_workers` runs: ``ConsumeLoop`` is one."""

    def run(self, stop: threading.Event) -> int: ...


def run_workers(
    make_member: Callable[[int], Member], workers: int, stop: threading.Event, *, name: str = "consumer",
) -> int:
    """Run ``workers`` members as threads until ``stop``; the worst exit code.

    0: every member drained cleanly. 1: a member failed (logged here) or
    stopped with a batch it could not store. A failed member sets ``stop``
    for all of them.
    """
    members = [make_member(i) for i in range(workers)]
    codes = [0] * workers

    def target(i: int) -> None:
        try:
            codes[i] = members[i].run(stop)
        except BatchFailedError as exc:
            codes[i] = 1
            log.error("consumer member stopped: %s", exc,
                      extra={"consumer": name, "member": i, "error_type": type(exc).__name__,
                             "ranges": {f"{t}[{p}]": f"{a}..{b}" for (t, p), (a, b) in exc.ranges.items()},
                             "cause": str(exc.__cause__) if exc.__cause__ else None})
        except ConsumerError as exc:
            codes[i] = 1
            log.error("consumer member stopped: %s", exc,
                      extra={"consumer": name, "member": i, "error_type": type(exc).__name__})
        except Exception:
            codes[i] = 1
            log.exception("consumer member crashed", extra={"consumer": name, "member": i})
        if codes[i] != 0:
            stop.set()

    threads = [threading.Thread(target=target, args=(i,), name=f"{name}-{i}") for i in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        while t.is_alive():
            t.join(0.5)
    return max(codes, default=0)
