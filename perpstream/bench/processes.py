"""An e2e step in the ``processes`` layout: the producer, the sink member and the snapshot
member each in an OS process of its own (:mod:`perpstream.bench.member`), the way a
deployment with a ClickHouse server runs them; the sink and the snapshot member each have
their own chdb directory (one OS process per directory). This process only orchestrates
(and runs the broker child, as in the single layout).

Everything else is the single layout's (:func:`perpstream.bench.e2e.step`): the load, the
warm-up, the window of event time on whole seconds and its grace, the latency handlers
(run in the members), the held criteria. CPU: utime + stime of every child over the window
(``/proc/<pid>/stat``), and the time its threads waited runnable for a CPU
(``/proc/<pid>/task/*/schedstat``: high when the machine's cores, not the process, are the
limit); RSS and peak RSS (VmHWM) of every child at the end of the grace.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from array import array
from pathlib import Path
from typing import IO, Any

from perpstream.bench.e2e import (
    EVENTS_PER_SYMBOL_S,
    HELD_P99_MS,
    LIVE_SYMBOLS,
    LatencyLog,
    _broker,
    now_ms,
    step_result,
)
from perpstream.bench.measure import peak_rss_mb, proc_cpu_s, proc_status_mb
from perpstream.local import die_with_parent, ensure_topics, free_ports

#: how long a member may take to answer a request (start-up: imports, chdb, migrations)
START_TIMEOUT = 180.0
REQUEST_TIMEOUT = 60.0


class MemberError(RuntimeError):
    """A member did not answer, answered an error, or exited."""


class MemberProcess:
    """A ``python -m perpstream.bench.member ROLE`` child and its request/answer channel."""

    def __init__(self, name: str, role: str, kw: dict[str, Any], work: Path) -> None:
        self.name = name
        self.log_path = work / f"{name}.log"
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "perpstream.bench.member", role, json.dumps(kw)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log, text=True, bufsize=1,
                env=dict(os.environ, PYTHONUNBUFFERED="1"), preexec_fn=die_with_parent)
        self.pid = self.proc.pid
        self._answers: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None
        threading.Thread(target=self._read, args=(self.proc.stdout,), name=f"bench-{name}-answers",
                         daemon=True).start()
        self.ready = False

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            if line.strip():
                self._answers.put(line)
        self._answers.put(None)  # end of stream: the member exited

    def _answer(self, timeout: float, what: str) -> dict[str, Any]:
        try:
            line = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise MemberError(f"{self.name}: no answer to {what} within {timeout:.0f} s "
                              f"({self.log_tail()})") from None
        if line is None:
            self._answers.put(None)
            raise MemberError(f"{self.name} exited ({self.proc.poll()}) before answering {what}: "
                              f"{self.log_tail()}")
        out: dict[str, Any] = json.loads(line)
        if "error" in out:
            raise MemberError(f"{self.name}: {out['error']} ({self.log_tail()})")
        return out

    def wait_ready(self, timeout: float = START_TIMEOUT) -> None:
        if not self.ready:
            self._answer(timeout, "start-up")
            self.ready = True

    def request(self, cmd: str, timeout: float = REQUEST_TIMEOUT, **kw: Any) -> dict[str, Any]:
        self.wait_ready()
        assert self.proc.stdin is not None
        try:
            self.proc.stdin.write(json.dumps({"cmd": cmd, **kw}) + "\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as exc:
            raise MemberError(f"{self.name} exited ({self.proc.poll()}): {self.log_tail()}") from exc
        return self._answer(timeout, cmd)

    def running(self) -> bool:
        return self.proc.poll() is None

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "no log"
        return "log: " + " | ".join(text[-lines:]) if text else "log empty"

    def stop(self, timeout: float = 90.0) -> dict[str, Any]:
        """Stop the component (its answer: exit codes, the profile), then the process."""
        out: dict[str, Any] = {}
        if self.running() and self.ready:
            try:
                out = self.request("stop", timeout=timeout)
            except MemberError as exc:
                out = {"error": str(exc)}
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        return out


def run_queue_wait_s(pid: int) -> float:
    """Seconds the threads of ``pid`` have spent runnable but waiting for a CPU (schedstat, field 2,
    summed over the threads alive now; 0 where the kernel does not keep it)."""
    total = 0
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return 0.0
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[1])
        except (OSError, IndexError, ValueError):
            continue
    return total / 1e9


def _usage(pid: int, c0: float, w0: float, wall: float) -> dict[str, Any]:
    cpu = proc_cpu_s(pid) - c0
    waited = max(0.0, run_queue_wait_s(pid) - w0)
    return {"pid": pid, "cpu_s": round(cpu, 2), "cpu_share": round(cpu / wall, 4),
            # share of the window its threads waited for a CPU: the machine, not the process, was short
            "run_queue_wait_share": round(waited / wall, 4),
            "rss_mb": proc_status_mb("VmRSS", pid), "peak_rss_mb": peak_rss_mb(pid)}


def _poll(cond: Any, timeout: float, what: str, members: list[MemberProcess], period: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        for m in members:
            if not m.running():
                raise MemberError(f"{m.name} exited ({m.proc.poll()}) while waiting for {what}: "
                                  f"{m.log_tail()}")
        if time.monotonic() > deadline:
            raise MemberError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(period)


def step(n: float, seconds: float = 20.0, warmup: float = 10.0, symbols_per_n: int = LIVE_SYMBOLS,
         partitions: int = 6, profile: bool = False) -> dict[str, Any]:
    """One step at ``n`` x live load in the processes layout; the same dict as the single layout's."""
    symbols = max(1, round(symbols_per_n * n))
    offered = symbols * EVENTS_PER_SYMBOL_S
    suffix = uuid.uuid4().hex[:6]
    metrics, snaps_topic, dlq = f"bench-m-{suffix}", f"bench-s-{suffix}", f"bench-d-{suffix}"
    with _broker() as (bootstrap, broker_pid), tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        work = Path(tmp)
        ensure_topics(bootstrap, {metrics: partitions, snaps_topic: partitions, dlq: partitions})
        common: dict[str, Any] = {"bootstrap": bootstrap, "database": "bench", "metrics_topic": metrics,
                                  "snapshots_topic": snaps_topic, "dlq_topic": dlq, "profile": profile}
        members: dict[str, MemberProcess] = {}
        ports = free_ports(3)  # distinct ports for the three members' operator endpoints
        try:
            members["sink"] = MemberProcess("sink", "sink", {
                **common, "group_id": f"bench-sink-{suffix}", "dsn": f"chdb://{tmp}/sink",
                "metrics_port": ports[0]}, work)
            members["snapshots"] = MemberProcess("snapshots", "snapshots", {
                **common, "group_id": f"bench-snap-{suffix}", "dsn": f"chdb://{tmp}/snapshots",
                "metrics_port": ports[1]}, work)
            members["producer"] = MemberProcess("producer", "produce", {
                **common, "symbols": symbols, "metrics_port": ports[2]}, work)
            everyone = [members[name] for name in ("producer", "sink", "snapshots")]  # as reported
            return _run(members, everyone, n=n, symbols=symbols, offered=offered,
                        seconds=seconds, warmup=warmup, broker_pid=broker_pid, work=work)
        finally:
            for name in ("producer", "sink", "snapshots"):  # the producer first, as the single layout
                if name in members:
                    members[name].stop()


def _run(members: dict[str, MemberProcess], everyone: list[MemberProcess], *, n: float, symbols: int,
         offered: float, seconds: float, warmup: float, broker_pid: int | None, work: Path) -> dict[str, Any]:
    # Long: one measured step, warm-up to last reading, in the order it happens.
    sink, snaps, producer = members["sink"], members["snapshots"], members["producer"]
    consumers = [sink, snaps]
    for m in everyone:
        m.wait_ready()
    _poll(lambda: all(m.request("status")["assigned"] for m in consumers), 60,
          "the groups' assignments", everyone)
    producer.request("start")  # on a whole second: a tick's event time = its due wall time
    _poll(lambda: sink.request("status")["stored_total"] > 0, 60, "the first stored rows", everyone)
    time.sleep(warmup)
    length = max(1, round(seconds))
    lo = (now_ms() // 1000 + 1) * 1000
    hi = lo + length * 1000
    for m in consumers:
        m.request("window", lo=lo, hi=hi)
    print(f"e2e processes {n:g}x: pids " + ", ".join(f"{m.name} {m.pid}" for m in everyone)
          + (f", broker {broker_pid}" if broker_pid else ""), file=sys.stderr, flush=True)
    time.sleep(max(0.0, lo / 1000 - time.time()))
    pids = {m.name: m.pid for m in everyone}
    if broker_pid:
        pids["broker"] = broker_pid
    c0 = {name: proc_cpu_s(pid) for name, pid in pids.items()}
    w0 = {name: run_queue_wait_s(pid) for name, pid in pids.items()}
    me0, t0 = proc_cpu_s(), time.perf_counter()
    published0 = producer.request("status")["published_total"]
    while time.time() * 1000 < hi and all(m.running() for m in everyone):
        time.sleep(0.05)
    wall = time.perf_counter() - t0
    failed = [m.name for m in everyone if not m.running()]
    usage = {name: _usage(pid, c0[name], w0[name], wall) for name, pid in pids.items()
             if name not in failed}
    orchestrator_cpu = proc_cpu_s() - me0
    published = (producer.request("status")["published_total"] - published0) if producer.running() else 0.0
    grace_end = hi + HELD_P99_MS + 1_000
    target = offered * length

    def done() -> bool:
        return (sink.request("status")["stored"] >= target
                and snaps.request("status")["snapshot_records"] >= target)

    while now_ms() < grace_end and not failed and all(m.running() for m in everyone) and not done():
        time.sleep(0.1)
    lat = LatencyLog()
    stored = handled = 0
    for m in consumers:
        if not m.running():
            continue
        got = m.request("close", dir=str(work))
        if m is sink:
            stored = got["stored"]
        else:
            handled = got["snapshot_records"]
        for kind, path in got["files"].items():
            values = array("i")
            values.frombytes(Path(path).read_bytes())
            getattr(lat, kind).extend(values)
    for name, pid in pids.items():  # RSS at the end of the grace, as the single layout
        if name in usage:
            usage[name]["rss_mb"] = proc_status_mb("VmRSS", pid)
            usage[name]["peak_rss_mb"] = peak_rss_mb(pid)
    statuses = {m.name: (m.request("status") if m.running() else {"alive": False}) for m in everyone}
    failed += [name for name, st in statuses.items() if not st["alive"] and name not in failed]
    stops = {name: members[name].stop() for name in ("producer", "sink", "snapshots")}
    profiles = [s["profile"] for s in stops.values() if s.get("profile")]
    return step_result(
        layout="processes", n=n, symbols=symbols, length=length, wall=wall, warmup=warmup, offered=offered,
        published=published, stored=stored, handled=handled, lat=lat, processes=usage, failed=failed,
        profile="".join(profiles) or None, exit_codes={name: s.get("rc") for name, s in stops.items()},
        orchestrator={"pid": os.getpid(), "cpu_s": round(orchestrator_cpu, 2),
                      "cpu_share": round(orchestrator_cpu / wall, 4), "peak_rss_mb": peak_rss_mb()})
