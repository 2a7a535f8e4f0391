"""Liveness and readiness of the consumer-group members of this process
(``GET /healthz`` and ``GET /readyz``, :mod:`service.health`).

:func:`watch_members` registers one component (``sink``, ``snapshots``)
whose checks read the state each :class:`~consumers.runtime.loop.ConsumeLoop`
keeps as it runs:

- alive while every running member calls ``consume`` at least once per
  ``max.poll.interval.ms`` (past that the group drops the member anyway);
- ready once a member is subscribed, as long as
  - some member of the process is assigned a partition (a process with more
    members than the topic has partitions beside it is a standby: not ready),
  - no member has been retrying a batch (ClickHouse, the DLQ or the snapshots
    topic not taking it) and no member's offset commits are failing,
  - no member's lag has grown over :data:`LAG_WINDOWS` windows of
    :data:`LAG_WINDOW` seconds in a row by more than a batch each.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from perpstream.consumers.exceptions import BackpressureError, DlqError, StoreUnavailableError
from perpstream.runtime.health import Health

if TYPE_CHECKING:
    from perpstream.consumers.runtime.loop import ConsumeLoop

#: Lag is compared window by window: this long each, and this many windows growing in a row.
LAG_WINDOW = 30.0
LAG_WINDOWS = 2


class LagTrend:
    """Whether a member's consumer lag keeps growing (fed after every batch, by the loop)."""

    def __init__(self, *, tolerance: int = 0, window: float = LAG_WINDOW, windows: int = LAG_WINDOWS) -> None:
        self.tolerance = tolerance
        self.window = window
        self.windows = windows
        self.lag = 0
        self._mark: tuple[float, int] | None = None
        #: consecutive windows in which the lag grew by more than ``tolerance``, and by how much
        self.growing = 0
        self.grown = 0

    def update(self, lag: int, now: float) -> None:
        self.lag = lag
        if self._mark is None:
            self._mark = (now, lag)
            return
        t0, lag0 = self._mark
        if lag <= lag0:  # caught up (part of) it: not growing, whatever the window
            self.growing = self.grown = 0
            self._mark = (now, lag)
            return
        if now - t0 < self.window:
            return
        if lag - lag0 > self.tolerance:
            self.growing += 1
            self.grown += lag - lag0
        else:
            self.growing = self.grown = 0
        self._mark = (now, lag)

    def problem(self) -> str | None:
        if self.growing < self.windows:
            return None
        return (f"lag growing: +{self.grown:,} records over the last {self.growing * self.window:.0f} s, "
                f"{self.lag:,} behind")


def _store_problem(error: BackpressureError | None, seconds: float) -> str:

    if isinstance(error, StoreUnavailableError):
        what = "ClickHouse failing"
    elif isinstance(error, DlqError):
        what = "DLQ not acknowledging"
    else:
        what = "batch not stored"
    cause = error.__cause__ if error is not None and error.__cause__ is not None else error
    detail = f": {type(cause).__name__}: {str(cause)[:160]}" if cause is not None else ""
    return f"{what} for {seconds:.0f} s{detail}"


def member_problems(loop: ConsumeLoop, now: float) -> list[str]:
    """What keeps one member from making progress right now (empty when it does)."""
    out: list[str] = []
    since = loop.retrying_since
    if since is not None:
        out.append(_store_problem(loop.retry_error, now - since))
    commits = loop.commit_failing
    if commits is not None:
        out.append(f"offset commits failing for {now - commits[0]:.0f} s: {commits[1][:160]}")
    lag = loop.lag_trend.problem()
    if lag is not None:
        out.append(lag)
    return out


def readiness(loops: Sequence[ConsumeLoop], now: float) -> str | None:
    loops = list(loops)
    if not any(m.running for m in loops):
        return "starting: not subscribed yet"
    reasons: list[str] = []
    if not any(m.assignment for m in loops):
        reasons.append("not assigned any partition")
    for m in loops:
        for problem in member_problems(m, now):
            reasons.append(problem if len(loops) == 1 else f"{m.name}: {problem}")
    return "; ".join(reasons) or None


def liveness(loops: Sequence[ConsumeLoop], now: float) -> str | None:
    stuck = [f"{m.name} has not polled Kafka for {now - m.turned_at:.0f} s "
             f"(max.poll.interval {m.poll_deadline:g} s)"
             for m in list(loops) if m.running and now - m.turned_at > m.poll_deadline]
    return "; ".join(stuck) or None


def watch_members(health: Health | None, component: str, loops: Sequence[ConsumeLoop],
                  clock: Callable[[], float] = time.monotonic) -> None:
    """Register ``component``'s checks over ``loops`` (a list the caller may still fill)."""
    if health is None:
        return
    health.add_readiness(component, lambda: readiness(loops, clock()))
    health.add_liveness(component, lambda: liveness(loops, clock()))
