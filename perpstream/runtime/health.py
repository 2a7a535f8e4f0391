"""Liveness and readiness of a process: what ``GET /healthz`` and ``GET /readyz`` answer.

A :class:`Health` registry is shared by every component of a process (the
producer, the sink members, the snapshot members; ``perpstream run`` hands
one registry to all of them). Components register *named checks*: callables
returning ``None`` when all is well, or a short reason otherwise
(``"no websocket connected for 42 s"``). Checks run on the HTTP server's
thread, so they only read state the component keeps up to date itself.

- **liveness** (``/healthz``): the component's loop is turning. A
  :class:`Heartbeat` is the usual liveness check: the loop calls
  :meth:`Heartbeat.beat` on every turn, and the check fails once no beat came
  for ``stall_after`` seconds. A process with no liveness check is alive.
- **readiness** (``/readyz``): connected and making progress. A process with
  no readiness check is not ready yet (its components have not started).

A component that ends calls :meth:`Health.stopped`: its liveness checks go
(a finished component is not a hung one) and its readiness becomes
``"stopped"``. Checks report the truth at the moment they are asked; smoothing
over short blips (a reconnect) is the prober's job (``failureThreshold``).

A check that raises is reported as failing with the exception, never as
passing. Every method is thread-safe.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from perpstream.runtime.secrets import redact

#: A check: ``None`` when fine, else the reason (one short line).
Check = Callable[[], str | None]

NOTHING_REGISTERED = "starting: no component has registered yet"


class Heartbeat:
    """A liveness check fed by the component's own loop (see the module doc)."""

    def __init__(self, stall_after: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stall_after = stall_after
        self._clock = clock
        self.last = clock()

    def beat(self) -> None:
        """One turn of the loop (a float store: cheap enough for every turn)."""
        self.last = self._clock()

    def __call__(self) -> str | None:
        idle = self._clock() - self.last
        if idle > self.stall_after:
            return f"loop has not turned for {idle:.0f} s (limit {self.stall_after:g} s)"
        return None


@dataclass(frozen=True)
class Report:
    """The outcome of one probe: every check's name and reason (``None`` = fine)."""

    kind: str
    results: tuple[tuple[str, str | None], ...]
    empty_reason: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def problems(self) -> list[str]:
        """``"name: reason"`` per failing check (the empty-registry reason when nothing is registered)."""
        if not self.results and self.empty_reason is not None:
            return [self.empty_reason]
        return [f"{name}: {reason}" for name, reason in self.results if reason is not None]

    def text(self) -> str:
        return "ok\n" if self.ok else "\n".join(self.problems) + "\n"

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": "ok" if self.ok else "unavailable",
            "check": self.kind,
            "checks": {name: {"ok": reason is None, "reason": reason} for name, reason in self.results},
            "problems": self.problems,
        }

    def json(self) -> str:
        return json.dumps(self.as_dict()) + "\n"


@dataclass
class _Component:
    readiness: list[Check] = field(default_factory=list)
    liveness: list[Check] = field(default_factory=list)


class Health:
    """The registry of a process's liveness and readiness checks (see the module doc)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._components: dict[str, _Component] = {}

    def _component(self, name: str) -> _Component:
        return self._components.setdefault(name, _Component())

    def add_readiness(self, name: str, check: Check) -> None:
        """Another readiness check of component ``name`` (its reasons are reported under that name)."""
        with self._lock:
            self._component(name).readiness.append(check)

    def add_liveness(self, name: str, check: Check) -> None:
        with self._lock:
            self._component(name).liveness.append(check)

    def heartbeat(self, name: str, stall_after: float) -> Heartbeat:
        """A new :class:`Heartbeat` registered as a liveness check of ``name``."""
        beat = Heartbeat(stall_after, self._clock)
        self.add_liveness(name, beat)
        return beat

    def stopped(self, name: str) -> None:
        """Component ``name`` has ended: no liveness check any more, readiness ``"stopped"``."""
        with self._lock:
            self._components[name] = _Component(readiness=[lambda: "stopped"])

    def reset(self, name: str) -> None:
        """Forget every check of component ``name``: it is about to start again (a
        supervisor restarting it) and registers its checks anew."""
        with self._lock:
            self._components.pop(name, None)

    def names(self) -> list[str]:
        with self._lock:
            return sorted(self._components)

    def readiness(self) -> Report:
        return Report("readiness", self._run("readiness"), NOTHING_REGISTERED)

    def liveness(self) -> Report:
        return Report("liveness", self._run("liveness"))

    def _run(self, kind: str) -> tuple[tuple[str, str | None], ...]:
        with self._lock:
            todo = [(name, list(getattr(c, kind))) for name, c in sorted(self._components.items())]
        out: list[tuple[str, str | None]] = []
        for name, checks in todo:
            if not checks:
                continue
            reasons = [redact(r) for r in (_ask(c) for c in checks) if r is not None]
            out.append((name, "; ".join(reasons) if reasons else None))
        return tuple(out)


def _ask(check: Check) -> str | None:
    try:
        return check()
    except Exception as exc:  # a broken check must never read as healthy
        return f"check failed: {type(exc).__name__}: {exc}"[:300]
