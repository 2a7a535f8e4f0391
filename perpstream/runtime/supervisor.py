"""One supervisor for every thread of work a perpstream process runs, with a policy.

A :class:`Component` runs ``body(stop)`` on a thread of its own, named after
it. The body returns an exit code (0: done; non-zero: failed) or raises. What
happens on a failure is the :class:`Supervisor`'s policy, the same everywhere
(docs/failures.md):

- :class:`FailFast` (``perpstream run``, the members of one consumer group):
  the component ends and every other one is asked to stop; the process exits
  non-zero and whoever runs it (systemd, Kubernetes, compose ``restart:``)
  restarts it, instead of running on with a part missing.
- :class:`RestartWithBackoff` (``perpstream up``): the failure is counted
  (``component_restarts{component}``) and the component is started again
  after a jittered, growing delay, reset after a healthy run.

Under both, returning 0 on its own is finishing (a replay that ended), not
failing, and a :class:`~perpstream.errors.ConfigError` is permanent: a
restart cannot fix a setting. How an exception is logged depends on whose
fault it is: a :class:`~perpstream.errors.PerpstreamError` is the world's
(one line, no traceback), anything else is a bug (its traceback).

State is a :class:`State`, with the last failure and the restart count as
fields: the live view and ``/readyz`` read them, never a formatted string.
"""

from __future__ import annotations

import enum
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from perpstream.errors import ConfigError, PerpstreamError
from perpstream.runtime.backoff import backoff
from perpstream.runtime.health import Health
from perpstream.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)

#: A component's work: runs until ``stop`` is set (or it is done); returns its exit code.
Body = Callable[[threading.Event], "int | None"]
#: Logs a component's exception as its cause deserves; returns the failure as one line.
Report = Callable[[str, BaseException], str]


class State(enum.Enum):
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FINISHED = "finished"
    FAILED = "failed"
    STOPPED = "stopped"

    @property
    def ended(self) -> bool:
        return self in (State.FINISHED, State.FAILED, State.STOPPED)


@dataclass(frozen=True)
class FailFast:
    """A failure ends the component and (``stop_others``) asks every other one to stop. A
    pipeline stops them itself, in order (the producer flushes before the consumers stop), so
    it only needs to be told: :attr:`Supervisor.failure`."""

    stop_others: bool = True


@dataclass(frozen=True)
class RestartWithBackoff:
    """A failure restarts the component after ``backoff(first, factor, cap)`` delays; the
    delays start over after a run of ``healthy_after`` seconds. ``delays`` and ``clock``
    are there for tests (a zero-delay generator, a clock they move)."""

    first: float = 1.0
    factor: float = 2.0
    cap: float = 60.0
    healthy_after: float = 60.0
    delays: Callable[[], Iterator[float]] | None = None
    clock: Callable[[], float] = time.monotonic

    def schedule(self) -> Iterator[float]:
        return self.delays() if self.delays is not None else backoff(self.first, self.factor, self.cap)


Policy = FailFast | RestartWithBackoff


def first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0] if text else type(exc).__name__


def report_failure(name: str, exc: BaseException) -> str:
    """The fail-fast report: the world's fault in one line, a bug with its traceback."""
    if isinstance(exc, ConfigError):
        log.error("%s: configuration error: %s", name, exc, extra={"component": name})
        return first_line(exc)
    if isinstance(exc, PerpstreamError):
        log.error("%s failed: %s", name, exc, extra={"component": name})
        return first_line(exc)
    log.exception("%s failed", name, extra={"component": name})
    return f"{type(exc).__name__}: {exc}"


def report_bug(name: str, exc: BaseException) -> str:
    """The restarting report: only a bug is logged here (its traceback); the world's fault
    is said once, in the line that announces the restart."""
    if isinstance(exc, ConfigError):
        return report_failure(name, exc)
    if isinstance(exc, PerpstreamError):
        return first_line(exc)
    return report_failure(name, exc)


class Component(threading.Thread):
    """One supervised body on its own thread (see the module doc). Read :attr:`state`,
    :attr:`restarts`, :attr:`last_failure`, :attr:`fatal` and :attr:`rc` from any thread."""

    def __init__(self, name: str, body: Body, supervisor: Supervisor, *, stop: threading.Event | None,
                 report: Report | None, thread_name: str) -> None:
        super().__init__(name=thread_name, daemon=True)
        self.component = name
        self._body = body
        self._supervisor = supervisor
        policy = supervisor.policy
        self._report = report or (report_bug if isinstance(policy, RestartWithBackoff) else report_failure)
        self.stopping = stop if stop is not None else threading.Event()
        self.state = State.STARTING
        self.restarts = 0
        self.last_failure: str | None = None
        self.fatal: ConfigError | None = None
        #: the exit code of the latest run (1 when it raised); None while the first one runs
        self.rc: int | None = None

    def stop(self) -> None:
        self.stopping.set()

    def readiness(self) -> str | None:
        """The ``/readyz`` check of a component being restarted: read from the state."""
        if self.state is State.RESTARTING:
            return f"failed ({self.last_failure}); restarting"
        if self.state is State.FAILED:
            return f"failed ({self.last_failure})"
        return None

    def run(self) -> None:
        policy = self._supervisor.policy
        delays = policy.schedule() if isinstance(policy, RestartWithBackoff) else iter(())
        while True:
            started = time.monotonic() if isinstance(policy, FailFast) else policy.clock()
            failure = self._run_once()
            if self.state is State.FAILED:  # permanent (a configuration error)
                return
            if failure is None:
                self.state = State.STOPPED if self.stopping.is_set() else State.FINISHED
                if self.state is State.FINISHED:
                    log.info("%s finished", self.component)
                return
            self.last_failure = failure
            if self.stopping.is_set() or isinstance(policy, FailFast):
                self._fail()
                return
            if policy.clock() - started >= policy.healthy_after:
                delays = policy.schedule()
            self._restart_after(next(delays), failure)
            if self.stopping.is_set():
                self.state = State.STOPPED
                return

    def _run_once(self) -> str | None:
        """One run of the body: None when it returned 0, else the failure in one line."""
        self.state = State.RUNNING
        health = self._supervisor.health
        if health is not None:
            health.reset(self.component)  # the new run registers its own checks
        try:
            self.rc = int(self._body(self.stopping) or 0)
        except ConfigError as exc:
            self.rc, self.fatal = 1, exc
            self.last_failure = self._report(self.component, exc)
            self._fail()
            return self.last_failure
        except Exception as exc:
            self.rc = 1
            return self._report(self.component, exc)
        return None if self.rc == 0 else f"exited with code {self.rc}"

    def _fail(self) -> None:
        self.state = State.FAILED
        self._supervisor.failed(self)

    def _restart_after(self, delay: float, failure: str) -> None:
        self.restarts += 1
        self.state = State.RESTARTING
        sup = self._supervisor
        if sup.telemetry is not None:
            sup.telemetry.inc("component_restarts", labels={"component": self.component})
        if sup.health is not None:
            sup.health.reset(self.component)
            sup.health.add_readiness(self.component, self.readiness)
        log.error("%s failed (%s); restarting in %.1f s", self.component, failure, delay,
                  extra={"component": self.component, "restarts": self.restarts})
        self.stopping.wait(delay)


class Supervisor:
    """Components under one policy. ``add`` them, ``start``, then ``stop`` (all, or some by
    name: a pipeline stops its producer before its consumers) and ``join`` with a bound."""

    def __init__(self, policy: Policy, *, telemetry: Telemetry | None = None, health: Health | None = None,
                 thread_prefix: str = "") -> None:
        self.policy = policy
        self.telemetry = telemetry
        self.health = health
        self._prefix = thread_prefix
        self.components: dict[str, Component] = {}
        #: set when a component failed for good (any failure under FailFast)
        self.failure = threading.Event()
        self.first_failed: Component | None = None
        self._lock = threading.Lock()

    def add(self, name: str, body: Body, *, stop: threading.Event | None = None,
            report: Report | None = None) -> Component:
        """A component named ``name`` (its thread: the prefix and the name). ``stop``: an
        event it shares with others (a consumer group's members stop together)."""
        c = Component(name, body, self, stop=stop, report=report, thread_name=self._prefix + name)
        self.components[name] = c
        return c

    def start(self) -> None:
        for c in self.components.values():
            c.start()

    def failed(self, component: Component) -> None:
        with self._lock:
            if self.first_failed is None:
                self.first_failed = component
        self.failure.set()
        if isinstance(self.policy, FailFast) and self.policy.stop_others:
            self.stop()

    def stop(self, names: Iterable[str] | None = None) -> None:
        for name in self.components if names is None else names:
            self.components[name].stop()

    def join(self, names: Iterable[str] | None = None, timeout: float | None = None) -> list[str]:
        """Wait for the components (all, or ``names``) to end, ``timeout`` seconds in all;
        the names of those still running then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        chosen = [self.components[n] for n in (self.components if names is None else names)]
        for c in chosen:
            while c.is_alive():
                left = 0.5 if deadline is None else min(0.5, deadline - time.monotonic())
                if left <= 0:
                    break
                c.join(left)  # in slices: the main thread stays responsive to signals
        return [c.component for c in chosen if c.is_alive()]

    def exit_code(self) -> int:
        """The worst exit code of the components (0 when every one ended well)."""
        return max((c.rc or 0 for c in self.components.values()), default=0)


def run_once(name: str, fn: Callable[[], int | None]) -> Component:
    """One fail-fast component running ``fn`` (which needs no stop event), started."""
    sup = Supervisor(FailFast())
    c = sup.add(name, functools.partial(_ignore_stop, fn))
    c.start()
    return c


def _ignore_stop(fn: Callable[[], int | None], _stop: threading.Event) -> int | None:
    return fn()
