"""The processes a soak runs: ``perpstream`` children it can SIGKILL, their environment, and
the waits on them (their ``/metrics``, a condition with a timeout).

The producer, the sinks and the snapshot consumer are child processes, so a
fault can kill one and no chdb directory is opened by two processes
(docs/soak.md).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

from perpstream.errors import PerpstreamError
from perpstream.local import die_with_parent

#: the entry point of the sink members: ``perpstream sink`` with the soak's fault hooks
SOAK_MEMBER = "perpstream.soak.member"


class SoakError(PerpstreamError):
    """The soak could not run to its account (a member did not start, a wait ran out)."""


def scrape(port: int) -> dict[str, float]:
    """Totals per metric name (labels summed) from a member's ``/metrics``."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        name_part, _, value = line.rpartition(" ")
        name = name_part.split("{", 1)[0].removeprefix("perpstream_")
        with contextlib.suppress(ValueError):
            out[name] = out.get(name, 0.0) + float(value)
    return out


def wait_until(cond: Callable[[], bool], timeout: float, what: str, period: float = 0.25) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise SoakError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(period)


class Member:
    """One ``perpstream`` child process (its output in ``<work>/<name>.log``)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], work: Path,
                 metrics_port: int | None = None, *, module: str = "perpstream.cli") -> None:
        self.name, self.args, self.env, self.work = name, args, env, work
        #: ``perpstream.cli``, or the soak's own entry point of a member with fault hooks
        self.module = module
        self.metrics_port = metrics_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Member:
        self.starts += 1
        out = open(self.work / f"{self.name}.log", "ab")  # noqa: SIM115 - the child's output
        args = [*self.args, *(["--metrics-port", str(self.metrics_port)] if self.metrics_port else [])]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", self.module, *args], env=self.env, cwd=self.work,
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=die_with_parent,
        )
        out.close()
        return self

    def metrics(self) -> dict[str, float] | None:
        if self.metrics_port is None:
            return None
        try:
            return scrape(self.metrics_port)
        except OSError:
            return None

    def wait_serving(self, timeout: float = 90.0) -> None:
        wait_until(lambda: self.alive() and self.metrics() is not None, timeout,
                   f"{self.name} to serve /metrics")

    def alive(self) -> bool:
        if self.proc is None or self.proc.poll() is not None:
            if self.proc is not None and self.proc.returncode not in (0, -signal.SIGKILL):
                raise SoakError(f"{self.name} exited with {self.proc.returncode}: "
                                f"see {self.work / self.name}.log")
            return False
        return True

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self, timeout: float = 120.0) -> int:
        proc, self.proc = self.proc, None
        if proc is None:
            return 0
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
                return -signal.SIGKILL
        return int(proc.returncode)


def member_env(bootstrap: str, short_sessions: bool = True) -> dict[str, str]:
    """The members' environment. Tansu wants short group sessions (a join waits half of one);
    Apache Kafka keeps the consumers' defaults (45 s): a session shorter than a failover
    (the controller fences a dead broker after 9 s) expires while the group's coordinator
    moves, and librdkafka then rejoins in a way that gets a static member fenced."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    env.update({"PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap, "PERPSTREAM_LOG_LEVEL": "INFO"})
    if short_sessions:
        env.update({"PERPSTREAM_SESSION_TIMEOUT_MS": "6000", "PERPSTREAM_HEARTBEAT_INTERVAL_MS": "1000"})
    root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    return env
