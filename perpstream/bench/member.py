"""One component of an e2e step as an OS process of its own (``--layout processes``).

``python -m perpstream.bench.member produce|sink|snapshots '<json kwargs>'`` runs
what ``perpstream produce --source sim`` / ``perpstream sink`` /
``perpstream snapshots`` run (the product's settings, GC tuning, operator
endpoints on ``metrics_port``, its own ClickHouse client for a consumer), with
the benchmark's latency handlers of the single layout
(:func:`perpstream.bench.e2e._sink_handler`, :func:`~perpstream.bench.e2e._snapshot_factory`)
in the consumers. The product code paths get no hook: the member builds the
same objects the commands build and passes the handler in, as the single
layout does.

The step that started it talks to it over its stdin and stdout, one JSON object
a line each way (every request gets one answer). The process's own stdout is
redirected to stderr so that nothing else lands on the channel.

- ``{"cmd": "status"}``: alive, assigned, stored / published totals, the
  window's counts so far;
- ``{"cmd": "start"}`` (producer): waits for a whole wall-clock second, then starts the
  producer (a tick's event time is its due wall time, as in the single layout);
- ``{"cmd": "window", "lo": ms, "hi": ms}``: what counts from now on;
- ``{"cmd": "close", "dir": path}``: nothing more counts; the window's latency arrays
  are written to ``<dir>/<role>.<kind>.i32`` (native int32) and their counts answered;
- ``{"cmd": "stop"}``: stops the component (the answer carries its exit code and, when
  profiling, the cProfile text), then the process exits.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import sys
import threading
import time
from pathlib import Path
from typing import IO, Any

ROLES = ("produce", "sink", "snapshots")
#: as ``perpstream run`` on its embedded broker (and the single layout)
CONSUMER_OVERRIDES = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}

# Each role's modules are imported in the function that builds it, not here: a member is one
# process of the measured footprint (RSS, CPU at start-up), and a sink member that loaded the
# producer's websocket stack, or a producer that loaded chdb (about 0.3 s and 100 MB), would be
# measured with what the product's `perpstream sink` or `produce` never load.


class Member:
    """The component of ``role`` in this process and what the step asks of it."""

    def __init__(self, role: str, kw: dict[str, Any]) -> None:
        from perpstream.bench.e2e import LatencyLog
        from perpstream.runtime.health import Health
        from perpstream.runtime.telemetry import Telemetry

        self.role, self.kw = role, kw
        self.telemetry, self.health, self.lat = Telemetry(), Health(), LatencyLog()
        self.stop_event = threading.Event()
        self.threads: list[Any] = []
        self.client: Any = None
        self.sink: Any = None
        self.snapshots: Any = None
        self.profiles: dict[str, Any] | None = {} if kw.get("profile") else None

    def _common(self) -> dict[str, Any]:
        kw = self.kw
        return {"kafka_bootstrap_servers": kw["bootstrap"], "clickhouse_database": kw["database"],
                "metrics_topic": kw["metrics_topic"], "snapshots_topic": kw["snapshots_topic"],
                "dlq_topic": kw["dlq_topic"]}

    def _thread(self, name: str, fn: Any) -> None:
        from perpstream.bench.e2e import _profiled
        from perpstream.runtime.supervisor import run_once

        self.threads.append(run_once(name, _profiled(name, fn, self.profiles)))

    def open(self) -> None:
        """The consumers start at once (as the commands do); the producer waits for ``start``."""
        from perpstream.consumers.clickhouse import open_client
        from perpstream.runtime.tuning import tune_gc

        if self.role == "produce":
            from perpstream.producer.settings import ProducerSettings

            tune_gc(ProducerSettings().gc_threshold)
            return
        if self.role == "sink":
            from perpstream.bench.e2e import _sink_handler
            from perpstream.consumers.sink.migrations import migrate_sink
            from perpstream.consumers.sink.service import sink_loop
            from perpstream.consumers.sink.settings import SinkSettings

            settings = SinkSettings(**self._common(), group_id=self.kw["group_id"])
            tune_gc(settings.gc_threshold)
            self.client = open_client(self.kw["dsn"], **settings.clickhouse_options())
            migrate_sink(self.client, settings.clickhouse_database)
            self.sink = sink_loop(settings, self.client, telemetry=self.telemetry,
                                  consumer_overrides=CONSUMER_OVERRIDES,
                                  handler=_sink_handler(self.client, settings.clickhouse_database,
                                                        self.telemetry, settings.group_id, self.lat))
            self._thread("sink", functools.partial(self.sink.run, self.stop_event))
            return
        from perpstream.bench.e2e import _snapshot_factory
        from perpstream.consumers.snapshots.app import SnapshotService
        from perpstream.consumers.snapshots.settings import SnapshotSettings

        snap_settings = SnapshotSettings(**self._common(), group_id=self.kw["group_id"])
        tune_gc(snap_settings.gc_threshold)
        self.client = open_client(self.kw["dsn"], **snap_settings.clickhouse_options())
        self.snapshots = SnapshotService(snap_settings, self.client, self.telemetry,
                                         consumer_overrides=CONSUMER_OVERRIDES,
                                         handler_factory=_snapshot_factory(self.lat), health=self.health)
        self._thread("snapshots", functools.partial(self.snapshots.run, self.stop_event))

    def start_producer(self) -> None:
        from perpstream.producer.app import ProducerApp
        from perpstream.producer.settings import ProducerSettings

        time.sleep(1.0 - time.time() % 1.0 + 0.002)  # a tick's event time = its due wall time
        app = ProducerApp(ProducerSettings(
            kafka_bootstrap_servers=self.kw["bootstrap"], metrics_topic=self.kw["metrics_topic"],
            source="sim", sim_symbols=self.kw["symbols"], sim_rate=1.0, oi_interval=10.0),
            self.telemetry, health=self.health)
        self._thread("producer", functools.partial(app.run, self.stop_event))

    def assigned(self) -> bool:
        if self.sink is not None:
            return bool(self.sink.assignment)
        if self.snapshots is not None:
            return any(lp.assignment for lp in self.snapshots.loops)
        return bool(self.threads)

    def status(self) -> dict[str, Any]:
        return {"alive": all(t.is_alive() for t in self.threads), "assigned": self.assigned(),
                "stored_total": self.telemetry.total("records_stored"),
                "published_total": self.telemetry.total("points_published"),
                "stored": self.lat.stored, "snapshot_records": self.lat.snapshot_records}

    def close_window(self, directory: str) -> dict[str, Any]:
        lat = self.lat
        lat.lo = lat.hi = 0  # nothing more counts
        files: dict[str, str] = {}
        for kind in ("event", "ingest", "snapshot"):
            values = getattr(lat, kind)
            if values:
                path = Path(directory, f"{self.role}.{kind}.i32")
                with path.open("wb") as f:
                    values.tofile(f)
                files[kind] = str(path)
        return {"stored": lat.stored, "snapshot_records": lat.snapshot_records, "files": files,
                "itemsize": lat.event.itemsize}

    def stop(self) -> dict[str, Any]:
        self.stop_event.set()
        for t in self.threads:
            t.join(60)
        rcs = {t.name: (t.rc if not t.is_alive() else "still running") for t in self.threads}
        self.telemetry.detach_gauges()
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close()
        out: dict[str, Any] = {"rc": rcs}
        if self.profiles:
            import io
            import pstats

            text = io.StringIO()
            for name, prof in self.profiles.items():
                text.write(f"--- {self.role} process, thread {name} (its whole run, start-up included)\n")
                pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(14)
            out["profile"] = text.getvalue()
        return out


def serve(member: Member, requests: IO[str], answers: IO[str]) -> None:
    def answer(obj: dict[str, Any]) -> None:
        answers.write(json.dumps(obj) + "\n")
        answers.flush()

    answer({"ready": True, "pid": os.getpid()})
    for line in requests:
        if not line.strip():
            continue
        req = json.loads(line)
        cmd = req["cmd"]
        try:
            if cmd == "status":
                answer(member.status())
            elif cmd == "start":
                member.start_producer()
                answer({"started": True})
            elif cmd == "window":
                member.lat.lo, member.lat.hi = int(req["lo"]), int(req["hi"])
                answer({"ok": True})
            elif cmd == "close":
                answer(member.close_window(req["dir"]))
            elif cmd == "stop":
                answer(member.stop())
                return
            else:
                answer({"error": f"unknown command {cmd!r}"})
        except Exception as exc:  # the step reports it; the member's log has the traceback
            logging.getLogger(__name__).exception("bench member: %s failed", cmd)
            answer({"error": f"{cmd}: {exc!r}"})
    member.stop()  # the step went away


def main(argv: list[str]) -> int:
    from perpstream.runtime.telemetry import operator_endpoints

    role, kw = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    if role not in ROLES:
        print(f"unknown bench member {role!r} (one of {', '.join(ROLES)})", file=sys.stderr)
        return 2
    # the channel is the original stdout; anything else written to stdout goes to stderr
    answers = os.fdopen(os.dup(sys.stdout.fileno()), "w", encoding="utf-8")
    sys.stdout.flush()
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    member = Member(role, kw)
    with operator_endpoints(member.telemetry, kw.get("metrics_port"), member.health):
        member.open()
        serve(member, sys.stdin, answers)
    answers.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
