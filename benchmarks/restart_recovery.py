"""Restart recovery of ``perpstream sink`` after ``kill -9``, dynamic vs static group membership.

    .venv/bin/python -m benchmarks.restart_recovery [--sessions 6000,45000]
        [--modes dynamic,static,renamed] [--events 20000] [--partitions 3]

For every session timeout and membership mode, in a fresh group and topic:
one ``perpstream sink`` process (a subprocess, as an operator runs it) stores
a first tranche of events and commits it; it is killed with SIGKILL while it
heartbeats; a second tranche is produced; a second process with the same
settings is started. Printed per row, from the second process's start (its
``Popen``, interpreter start-up included):

- ``assigned``: its first ``partitions assigned`` log line;
- ``committed``: the group's committed offsets covering both tranches (what
  the killed member left and what arrived while nothing ran);
- ``rows`` / ``final``: rows in the table and rows after FINAL, which must both
  equal the events produced (no loss, no duplicate).

Modes: ``dynamic`` (``member_name`` empty), ``static`` (the same member name
again, as a restart on the same host does), ``renamed`` (static, but the
restarted process has another name: a member that never comes back, e.g. a
scale-down or a new host name).

Uses PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS if set, else a local Tansu broker;
always one embedded ClickHouse directory that the processes open one after
the other (one OS process at a time), a database per row.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from perpstream.local import TansuBroker, ensure_topics, open_clickhouse
from schemas.codec import metric_point_codec

ROOT = Path(__file__).resolve().parents[1]
SINK = "import sys; from perpstream.cli import main; sys.exit(main())"


def points(first: int, n: int, symbols: int = 30) -> list[dict[str, Any]]:
    out = []
    for i in range(first, first + n):
        et = 1_760_000_000_000 + (i // symbols) * 1000
        out.append({"source": "binance_usdm", "symbol": f"R{i % symbols}USDT", "metric": "mark_price",
                    "value": 100.0 + i * 0.5, "event_time": et, "ingest_time": et + 3})
    return out


def produce(bootstrap: str, topic: str, records: list[dict[str, Any]]) -> None:
    codec = metric_point_codec()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    for rec in records:
        while True:
            try:
                p.produce(topic, key=rec["symbol"].encode(), value=codec.encode(rec))
                break
            except BufferError:
                p.poll(0.05)
    if p.flush(60):
        raise RuntimeError("produce: records left unacknowledged")


def committed(consumer: Any, topic: str, partitions: int) -> int:
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    except Exception:
        return -1
    return sum(max(tp.offset, 0) for tp in got)


class Sink:
    """One ``perpstream sink`` child; its log lines are read as they come, with their arrival time."""

    def __init__(self, env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-c", SINK, "sink"], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.assigned_at: float | None = None
        self.tail: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.tail = [*self.tail[-40:], line]
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("msg") == "partitions assigned" and rec.get("partitions") and self.assigned_at is None:
                self.assigned_at = time.monotonic()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._reader.join(10)

    def stop(self) -> int:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._reader.join(10)
        return self.proc.returncode


@dataclass
class Row:
    session_ms: int
    mode: str
    assigned_s: float | None
    committed_s: float | None
    database: str
    total: int
    waited_s: float


def wait_until(cond: Any, timeout: float, sink: Sink, what: str) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        if not sink.alive():
            raise RuntimeError(f"sink exited with {sink.proc.returncode} waiting for {what}:\n"
                               + "".join(sink.tail[-15:]))
        time.sleep(0.1)
    return False


def run_one(bootstrap: str, dsn: str, session_ms: int, mode: str, events: int, partitions: int,
            data_dir: str) -> Row:
    tag = uuid.uuid4().hex[:8]
    topic, dlq, group, db = f"rr-{tag}", f"rr-dlq-{tag}", f"rr-{mode}-{tag}", f"rr_{tag}"
    ensure_topics(bootstrap, {topic: partitions, dlq: 1})
    heartbeat = max(100, min(3_000, session_ms // 6))
    env = dict(os.environ, PYTHONPATH=str(ROOT), PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
               PERPSTREAM_CLICKHOUSE_DSN=dsn, PERPSTREAM_CLICKHOUSE_DATABASE=db, PERPSTREAM_DATA_DIR=data_dir,
               PERPSTREAM_METRICS_TOPIC=topic, PERPSTREAM_DLQ_TOPIC=dlq, PERPSTREAM_GROUP_ID=group,
               PERPSTREAM_SESSION_TIMEOUT_MS=str(session_ms), PERPSTREAM_HEARTBEAT_INTERVAL_MS=str(heartbeat),
               PERPSTREAM_BATCH_MAX_RECORDS="2000", PERPSTREAM_LOG_FORMAT="json",
               PERPSTREAM_MEMBER_NAME="" if mode == "dynamic" else f"bench-{tag}")
    produce(bootstrap, topic, points(0, events))
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        first = Sink(env)
        limit = 3 * session_ms / 1000 + 120
        if not wait_until(lambda: committed(reader, topic, partitions) >= events, limit, first, "tranche 1"):
            raise RuntimeError("the first sink did not commit the first tranche")
        first.kill()  # the chdb directory is free again once it is dead
        produce(bootstrap, topic, points(events, events))
        if mode == "renamed":
            env["PERPSTREAM_MEMBER_NAME"] = f"bench-{tag}-other"
        second = Sink(env)
        done_at: float | None = None
        if mode == "renamed":
            limit = 2 * session_ms / 1000 + 30  # the old member's session has long expired by then
        try:
            left_committed = lambda: committed(reader, topic, partitions) >= 2 * events  # noqa: E731
            if wait_until(left_committed, limit, second, "the rest"):
                done_at = time.monotonic()
        finally:
            second.stop()
    finally:
        reader.close()
    t0 = second.started
    return Row(session_ms, mode, None if second.assigned_at is None else second.assigned_at - t0,
               None if done_at is None else done_at - t0, db, 2 * events, limit)


@contextmanager
def broker() -> Iterator[str]:
    if os.environ.get("PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS"]
        return
    with TansuBroker() as b:
        yield b.bootstrap_servers


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sessions", default="6000,45000", help="session timeouts in ms, comma-separated")
    ap.add_argument("--modes", default="dynamic,static,renamed")
    ap.add_argument("--events", type=int, default=20_000, help="events per tranche")
    ap.add_argument("--partitions", type=int, default=3)
    args = ap.parse_args()
    sessions = [int(x) for x in args.sessions.split(",")]
    modes = args.modes.split(",")
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="restart-recovery-") as tmp, broker() as bootstrap:
        dsn = f"chdb://{Path(tmp, 'chdb').resolve()}"
        for session_ms in sessions:
            for mode in modes:
                row = run_one(bootstrap, dsn, session_ms, mode, args.events, args.partitions, tmp)
                rows.append(row)
                print(f"  {mode} session {session_ms} ms: assigned {_s(row.assigned_s, row.waited_s)}, "
                      f"committed {_s(row.committed_s, row.waited_s)}", file=sys.stderr, flush=True)
        client = open_clickhouse(dsn)  # every sink has exited: this process may open the directory now
        counts = {}
        for r in rows:
            q = f"SELECT count() FROM {r.database}.metric_points"
            counts[r.database] = (client.query(q).result_rows[0][0],
                                  client.query(q + " FINAL").result_rows[0][0])
        client.close()
    print(f"restart after kill -9, {args.partitions} partitions, {args.events} events produced while "
          "it was down; seconds from the restarted process's start")
    print(f"{'session':>8}  {'membership':<10}  {'assigned':>9}  {'committed':>9}  "
          f"{'rows':>6}  {'final':>6}")
    for r in rows:
        rows_, final = counts[r.database]
        print(f"{r.session_ms / 1000:>7.0f}s  {r.mode:<10}  {_s(r.assigned_s, r.waited_s):>9}  "
              f"{_s(r.committed_s, r.waited_s):>9}  "
              f"{rows_:>6}  {final:>6}" + ("" if rows_ == final == r.total else f"  (expected {r.total})"))


def _s(v: float | None, waited: float) -> str:
    """Seconds, or "> N" when it did not happen within the N seconds waited."""
    return f"> {waited:.0f}" if v is None else f"{v:.1f}"


if __name__ == "__main__":
    main()
