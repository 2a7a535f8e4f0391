"""What every scenario measures, and the one shape its report takes.

A scenario returns a report (a plain dict, so ``--json`` prints it as is)::

    {"scenario": str, "params": {...}, "rows": [row, ...], "targets": [target, ...],
     "notes": [str, ...], ...scenario-specific keys (e2e: "steps", "held_n", ...)}

A row is one measured path: ``events``, ``wall_s``, ``cpu_s`` (CPU-seconds of
the processes named in ``cpu_of``), ``events_per_s``, ``cpu_s_per_million``,
``peak_rss_mb``, optional ``latency_ms`` (``{"event_to_store": {"p50", "p99",
"max", "n"}, ...}``) and ``ratios``: ``{baseline row name: events_per_s /
baseline events_per_s}``, every baseline measured in the same run.
"""

from __future__ import annotations

import os
import resource
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

_CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_status_mb(field: str, pid: int | str = "self") -> float | None:
    """``VmHWM`` (peak resident set) or ``VmRSS`` of a process, in MB; None when unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss_mb(pid: int | str = "self") -> float | None:
    """Peak RSS (VmHWM). Not ``ru_maxrss``: Linux carries that over fork+exec."""
    return proc_status_mb("VmHWM", pid)


def reset_peak_rss() -> None:
    """Start a new VmHWM period for this process (Linux ``clear_refs`` 5; ignored where refused)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def proc_cpu_s(pid: int | str = "self") -> float:
    """utime + stime of a process (every thread), from /proc/<pid>/stat."""
    if pid == "self":
        ru = resource.getrusage(resource.RUSAGE_SELF)
        return ru.ru_utime + ru.ru_stime
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK  # fields 14 and 15 of stat(5)


@dataclass
class Span:
    """Wall and CPU time of this process over a stretch of code, and its peak RSS in it."""

    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float | None = None

    def __enter__(self) -> Span:
        reset_peak_rss()
        self._c0, self._t0 = proc_cpu_s(), time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._t0
        self.cpu_s = proc_cpu_s() - self._c0
        self.peak_rss_mb = peak_rss_mb()


def percentiles(values: Sequence[float] | Iterable[float]) -> dict[str, float] | None:
    """p50, p99 and max (nearest rank) and the sample count; None without samples."""
    v = sorted(values)
    if not v:
        return None
    n = len(v)

    def rank(q: float) -> float:
        return float(v[min(n - 1, max(0, int(q * n + 0.999999) - 1))])

    return {"p50": rank(0.50), "p99": rank(0.99), "max": float(v[-1]), "n": n}


def row(name: str, events: int, wall_s: float, cpu_s: float, peak_rss: float | None = None, *,
        baselines: Sequence[Mapping[str, Any]] = (), latency: Mapping[str, Any] | None = None,
        cpu_of: str = "this process", **extra: Any) -> dict[str, Any]:
    """One measured path, with its ratio to each baseline row (events/s over events/s)."""
    rate = events / wall_s if wall_s > 0 else 0.0
    out: dict[str, Any] = {
        "name": name, "events": events, "wall_s": round(wall_s, 6), "cpu_s": round(cpu_s, 6),
        "cpu_of": cpu_of, "events_per_s": round(rate, 1),
        "cpu_s_per_million": round(cpu_s / events * 1e6, 2) if events else None,
        "peak_rss_mb": round(peak_rss, 1) if peak_rss is not None else None,
        "latency_ms": dict(latency) if latency else None,
        "ratios": {b["name"]: round(rate / b["events_per_s"], 3) for b in baselines if b["events_per_s"]},
    }
    out.update(extra)
    return out


def target(name: str, value: float | None, wanted: str, met: bool | None) -> dict[str, Any]:
    """A target of the issue next to what was measured (``met`` None: not measured)."""
    return {"name": name, "value": value, "target": wanted, "met": met}


def report(scenario: str, params: Mapping[str, Any], rows: list[dict[str, Any]],
           targets: list[dict[str, Any]] | None = None, notes: list[str] | None = None,
           **extra: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"scenario": scenario, "params": dict(params), "rows": rows,
                           "targets": targets or [], "notes": notes or [],
                           "cpus": sorted(os.sched_getaffinity(0)), "cpu_count": os.cpu_count(),
                           "loadavg_at_end": [round(x, 2) for x in os.getloadavg()]}
    out.update(extra)
    return out
