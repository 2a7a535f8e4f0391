"""Restart and leave recovery of ``perpstream sink``, dynamic vs static group membership.

    .venv/bin/python -m benchmarks.restart_recovery [--broker kafka|tansu]
        [--scenarios A,B] [--json]
        [--sessions 6000,45000] [--modes dynamic,static,renamed] [--events 20000] [--partitions 3]
        [--leave-modes static,dynamic] [--leave-session 45000] [--leave-partitions 6] [--rate 400]

The broker: ``--broker kafka`` starts a one-node Apache Kafka (KRaft, from
perpstream.kafka_runtime) in a temporary directory, ``--broker tansu`` the local
Tansu broker. Without ``--broker``, PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS if set
(bring your own), else Apache Kafka where it can run (Java 17, Maven or
KAFKA_HOME), else Tansu, saying why.

Scenario A, ``kill -9`` and restart. For every session timeout and membership
mode, in a fresh group and topic: one ``perpstream sink`` process (a
subprocess, as an operator runs it) stores a first tranche of events and
commits it; it is killed with SIGKILL while it heartbeats; a second tranche is
produced; a second process with the same settings is started. Printed per
row, from the second process's start (its ``Popen``, interpreter start-up
included):

- ``assigned``: its first ``partitions assigned`` log line;
- ``committed``: the group's committed offsets covering both tranches (what
  the killed member left and what arrived while nothing ran);
- ``rows`` / ``final``: rows in the table and rows after FINAL, which must both
  equal the events produced (no loss, no duplicate).

Modes: ``dynamic`` (``member_name`` empty), ``static`` (the same member name
again, as a restart on the same host does), ``renamed`` (static, but the
restarted process has another name: a member that never comes back, e.g. a
scale-down or a new host name). The processes of scenario A open one embedded
ClickHouse directory one after the other (one OS process at a time), a
database per row.

Scenario B, a member stopped with SIGTERM. Two ``perpstream sink`` processes
share a group (distinct member names when static), each with its own
embedded ClickHouse directory (chdb allows one OS process per directory),
while events flow to every partition at ``--rate`` per second. Once both
consume, member B gets SIGTERM: it drains, commits and leaves (a static member
removes its instance id from the group, consumers/runtime/leave.py). Printed
per mode, from the SIGTERM:

- ``exited``: B's exit;
- ``assigned``: A's log saying it owns every partition;
- ``took over``: the group's committed offsets past, on every partition B
  owned, where B left them (A consumed them);
- ``committed`` / ``rows``: once the flow stops, the offsets committed and the
  rows of both stores together, which must both equal the events produced.

On Tansu the members of B use the ``range`` strategy (Tansu starts no second
cooperative round after a static member rejoins: docs/sink.md, "Rebalancing");
elsewhere the default ``cooperative-sticky``. docs/sink.md, "Restart recovery",
quotes the figures.
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from perpstream import kafka_runtime
from perpstream.consumers.runtime.workarounds import is_local_broker
from perpstream.local import TansuBroker, ensure_topics
from perpstream.schemas.codec import metric_point_codec
from perpstream.schemas.models import Metric

ROOT = Path(__file__).resolve().parents[1]
SINK = "import sys; from perpstream.cli import main; sys.exit(main())"
COUNT = ("import sys; from perpstream.local import open_clickhouse; c = open_clickhouse(sys.argv[1]); "
         "print(*[c.query(q).result_rows[0][0] for q in sys.argv[2:]])")


def point(i: int, symbols: int = 30) -> dict[str, Any]:
    et = 1_760_000_000_000 + (i // symbols) * 1000
    return {"source": "binance_usdm", "symbol": f"R{i % symbols}USDT", "metric": Metric.MARK_PRICE,
            "value": 100.0 + i * 0.5, "event_time": et, "ingest_time": et + 3}


def points(first: int, n: int, symbols: int = 30) -> list[dict[str, Any]]:
    return [point(i, symbols) for i in range(first, first + n)]


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


def committed_offsets(consumer: Any, topic: str, partitions: int) -> dict[int, int] | None:
    """The group's committed offset per partition (0 where none), or None when the broker did not answer."""
    try:
        got = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
    except Exception:
        return None
    return {tp.partition: max(tp.offset, 0) for tp in got}


def committed(consumer: Any, topic: str, partitions: int) -> int:
    got = committed_offsets(consumer, topic, partitions)
    return -1 if got is None else sum(got.values())


def count_rows(dsn: str, queries: list[str]) -> list[int]:
    """Runs counting queries in a child process: chdb opens one data directory per OS process,
    and this one may already hold another (or a sink may just have released it)."""
    out = subprocess.run([sys.executable, "-c", COUNT, dsn, *queries], cwd=ROOT, capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    if out.returncode != 0:
        raise RuntimeError(f"counting rows in {dsn} failed:\n{out.stderr[-2000:]}")
    return [int(x) for x in out.stdout.split()]


class Sink:
    """One ``perpstream sink`` child; its log lines are read as they come, with their arrival time,
    and the partitions it owns are followed from its assignment lines."""

    def __init__(self, env: dict[str, str]) -> None:
        self.started = time.monotonic()
        self.proc = subprocess.Popen([sys.executable, "-c", SINK, "sink"], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        self.assigned_at: float | None = None
        self.owned: set[int] = set()
        #: (arrival time, partitions owned after that line)
        self.ownership: list[tuple[float, frozenset[int]]] = []
        self.tail: list[str] = []
        self._lock = threading.Lock()
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
            msg, parts = rec.get("msg"), rec.get("partitions") or []
            if msg not in ("partitions assigned", "partitions revoked", "partitions lost"):
                continue
            numbers = {int(p[-1]) for p in parts if isinstance(p, list) and p}
            now = time.monotonic()
            with self._lock:
                if msg == "partitions assigned":
                    self.owned |= numbers
                    if numbers and self.assigned_at is None:
                        self.assigned_at = now
                else:
                    self.owned -= numbers
                self.ownership.append((now, frozenset(self.owned)))

    def owns(self) -> set[int]:
        with self._lock:
            return set(self.owned)

    def first_owning(self, partitions: set[int], since: float) -> float | None:
        """When, at or after ``since``, this member first owned all of ``partitions``."""
        with self._lock:
            return next((t for t, owned in self.ownership if t >= since and partitions <= owned), None)

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


def wait_until(cond: Callable[[], bool], timeout: float, sinks: list[Sink], what: str) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        for sink in sinks:
            if not sink.alive():
                raise RuntimeError(f"sink exited with {sink.proc.returncode} waiting for {what}:\n"
                                   + "".join(sink.tail[-15:]))
        time.sleep(0.1)
    return False


def sink_env(bootstrap: str, dsn: str, db: str, data_dir: str, topic: str, dlq: str, group: str,
             session_ms: int, member_name: str, **extra: str) -> dict[str, str]:
    heartbeat = max(100, min(3_000, session_ms // 6))
    return dict(os.environ, PYTHONPATH=str(ROOT), PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS=bootstrap,
                PERPSTREAM_CLICKHOUSE_DSN=dsn, PERPSTREAM_CLICKHOUSE_DATABASE=db,
                PERPSTREAM_DATA_DIR=data_dir, PERPSTREAM_METRICS_TOPIC=topic, PERPSTREAM_DLQ_TOPIC=dlq,
                PERPSTREAM_GROUP_ID=group, PERPSTREAM_SESSION_TIMEOUT_MS=str(session_ms),
                PERPSTREAM_HEARTBEAT_INTERVAL_MS=str(heartbeat),
                PERPSTREAM_BATCH_MAX_RECORDS="2000", PERPSTREAM_LOG_FORMAT="json",
                PERPSTREAM_MEMBER_NAME=member_name, **extra)


# -- scenario A: kill -9 and restart -----------------------------------------------------------------


@dataclass
class RestartRow:
    session_ms: int
    mode: str
    assigned_s: float | None
    committed_s: float | None
    waited_s: float
    events: int
    rows: int = -1
    final: int = -1
    database: str = ""


def run_restart(bootstrap: str, dsn: str, session_ms: int, mode: str, events: int, partitions: int,
                data_dir: str) -> RestartRow:
    tag = uuid.uuid4().hex[:8]
    topic, dlq, group, db = f"rr-{tag}", f"rr-dlq-{tag}", f"rr-{mode}-{tag}", f"rr_{tag}"
    ensure_topics(bootstrap, {topic: partitions, dlq: 1})
    env = sink_env(bootstrap, dsn, db, data_dir, topic, dlq, group, session_ms,
                   "" if mode == "dynamic" else f"bench-{tag}")
    produce(bootstrap, topic, points(0, events))
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        first = Sink(env)
        limit = 3 * session_ms / 1000 + 120
        if not wait_until(lambda: committed(reader, topic, partitions) >= events, limit, [first],
                          "tranche 1"):
            first.stop()
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
            everything = lambda: committed(reader, topic, partitions) >= 2 * events  # noqa: E731
            if wait_until(everything, limit, [second], "the rest"):
                done_at = time.monotonic()
        finally:
            second.stop()
    finally:
        reader.close()
    t0 = second.started
    return RestartRow(session_ms, mode, None if second.assigned_at is None else second.assigned_at - t0,
                      None if done_at is None else done_at - t0, limit, 2 * events, database=db)


# -- scenario B: one of two members stopped with SIGTERM ---------------------------------------------


class Flow:
    """Produces distinct points to every partition in turn, ``rate`` per second, until stopped."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, rate: int) -> None:
        self._codec = metric_point_codec()
        self._producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 10,
                                   "enable.idempotence": True})
        self._topic, self._partitions = topic, partitions
        self._tick = 0.05
        self._per_tick = max(1, round(rate * self._tick))
        self.sent = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            for _ in range(self._per_tick):
                rec = point(self.sent, symbols=60)
                self._producer.produce(self._topic, key=rec["symbol"].encode(), value=self._codec.encode(rec),
                                       partition=self.sent % self._partitions)
                self.sent += 1
            self._producer.poll(0)
            self._stop.wait(self._tick)  # the rate of the flow

    def stop(self) -> int:
        if not self._stop.is_set():
            self._stop.set()
            self._thread.join(30)
            if self._producer.flush(60):
                raise RuntimeError("flow: records left unacknowledged")
        return self.sent


@dataclass
class LeaveRow:
    mode: str
    session_ms: int
    strategy: str
    partitions: int
    stopped_partitions: list[int]
    exited_s: float | None
    assigned_s: float | None
    took_over_s: float | None
    waited_s: float
    survivor_owns: list[int]
    events: int
    committed: int
    rows: int
    rows_per_member: list[int] = field(default_factory=list)


def run_leave(bootstrap: str, mode: str, session_ms: int, partitions: int, rate: int, strategy: str,
              data_dir: str) -> LeaveRow:
    """Scenario B: members A and B consume while events flow; B gets SIGTERM; how soon A has consumed
    B's partitions, and whether every event was committed and stored once."""
    # Long: scenario B as one timeline (both members, SIGTERM, takeover, the count) reads best in order.
    tag = uuid.uuid4().hex[:8]
    topic, dlq, group = f"lv-{tag}", f"lv-dlq-{tag}", f"lv-{mode}-{tag}"
    ensure_topics(bootstrap, {topic: partitions, dlq: 1})
    every = set(range(partitions))
    envs, dsns = [], []
    for name in ("a", "b"):
        home = Path(data_dir, f"leave-{tag}-{name}")  # a chdb directory of its own per process
        home.mkdir(parents=True)
        dsns.append(f"chdb://{(home / 'chdb').resolve()}")
        envs.append(sink_env(bootstrap, dsns[-1], f"lv_{tag}", str(home), topic, dlq, group, session_ms,
                             "" if mode == "dynamic" else f"leave-{tag}-{name}",
                             PERPSTREAM_PARTITION_ASSIGNMENT_STRATEGY=strategy))
    reader = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    flow = Flow(bootstrap, topic, partitions, rate)
    sinks: list[Sink] = []
    limit = 1.5 * session_ms / 1000 + 60

    def offsets() -> dict[int, int]:
        got = committed_offsets(reader, topic, partitions)
        return got if got is not None else dict.fromkeys(every, -1)

    def moved_past(mark: dict[int, int], which: set[int]) -> Callable[[], bool]:
        return lambda: all(o > mark[p] for p, o in offsets().items() if p in which)

    try:
        a = Sink(envs[0])
        sinks.append(a)
        mark = dict.fromkeys(every, 0)
        if not wait_until(lambda: a.owns() == every and moved_past(mark, every)(), limit, sinks,
                          "A consuming"):
            raise RuntimeError("member A did not consume every partition:\n" + "".join(a.tail[-15:]))
        b = Sink(envs[1])
        sinks.append(b)

        def split() -> bool:
            oa, ob = a.owns(), b.owns()
            return bool(oa) and bool(ob) and not oa & ob and oa | ob == every

        if not wait_until(split, limit, sinks, "A and B sharing the topic"):
            raise RuntimeError(f"A and B did not share the topic: A owns {sorted(a.owns())}, "
                               f"B owns {sorted(b.owns())}")
        stopped = b.owns()
        mark = offsets()
        if not wait_until(lambda: split() and moved_past(mark, stopped)(), limit, sinks, "B consuming"):
            raise RuntimeError(f"B did not consume its partitions {sorted(stopped)}")
        stopped = b.owns()

        t0 = time.monotonic()
        b.proc.send_signal(signal.SIGTERM)
        sinks.remove(b)
        b.proc.wait(90)
        exited = time.monotonic() - t0
        b.stop()
        if b.proc.returncode != 0:
            raise RuntimeError(f"B exited with {b.proc.returncode}:\n" + "".join(b.tail[-15:]))
        mark = offsets()  # where B left its partitions (its last commit is in)
        took_over: float | None = None
        if wait_until(lambda: a.owns() == every and moved_past(mark, stopped)(), limit, sinks,
                      "A taking over"):
            took_over = time.monotonic() - t0
        owned_at = a.first_owning(every, t0)
        survivor = sorted(a.owns())

        events = flow.stop()
        wait_until(lambda: sum(offsets().values()) >= events, limit, sinks, "every event committed")
        total = sum(offsets().values())
    finally:
        flow.stop()
        for s in sinks:
            s.stop()
        reader.close()
    per_member = [count_rows(dsn, [f"SELECT count() FROM lv_{tag}.metric_points"])[0] for dsn in dsns]
    return LeaveRow(mode, session_ms, strategy, partitions, sorted(stopped), exited,
                    None if owned_at is None else owned_at - t0, took_over, limit, survivor, events, total,
                    sum(per_member), per_member)


# -- brokers ------------------------------------------------------------------------------------------


@contextmanager
def broker(kind: str | None) -> Iterator[tuple[str, str]]:
    """``(bootstrap servers, label)`` of the broker asked for (see the module docstring)."""
    if kind is None and os.environ.get("PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS"):
        yield os.environ["PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS"], "PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS"
        return
    if kind is None:
        reason = kafka_runtime.unavailable_reason()
        kind = "kafka" if reason is None else "tansu"
        if reason is not None:
            print(f"Apache Kafka cannot run here ({reason}); using the local Tansu broker", file=sys.stderr)
    if kind == "kafka":
        reason = kafka_runtime.unavailable_reason()
        if reason is not None:
            raise SystemExit(f"--broker kafka: {reason}")
        with tempfile.TemporaryDirectory(prefix="restart-recovery-kafka-") as tmp, \
                kafka_runtime.KafkaCluster(tmp, nodes=1) as cluster:
            yield cluster.bootstrap_servers, f"Apache Kafka {kafka_runtime.KAFKA_VERSION} (one KRaft node)"
        return
    with TansuBroker() as b:
        yield b.bootstrap_servers, "Tansu (local broker)"


def is_tansu(bootstrap: str) -> bool:
    return is_local_broker(AdminClient({"bootstrap.servers": bootstrap}).list_topics(timeout=10).cluster_id)


# -- output -------------------------------------------------------------------------------------------


def _s(v: float | None, waited: float) -> str:
    """Seconds, or "> N" when it did not happen within the N seconds waited."""
    return f"> {waited:.0f}" if v is None else f"{v:.1f}"


def print_restart(rows: list[RestartRow], label: str, events: int, partitions: int) -> None:
    print(f"A. restart after kill -9 on {label}, {partitions} partitions, {events} events produced while "
          "it was down; seconds from the restarted process's start")
    print(f"{'session':>8}  {'membership':<10}  {'assigned':>9}  {'committed':>9}  {'rows':>6}  {'final':>6}")
    for r in rows:
        print(f"{r.session_ms / 1000:>7.0f}s  {r.mode:<10}  {_s(r.assigned_s, r.waited_s):>9}  "
              f"{_s(r.committed_s, r.waited_s):>9}  {r.rows:>6}  {r.final:>6}"
              + ("" if r.rows == r.final == r.events else f"  (expected {r.events})"))


def print_leave(rows: list[LeaveRow], label: str, rate: int) -> None:
    first = rows[0]
    print(f"B. one of two members stopped with SIGTERM on {label}, {first.partitions} partitions, "
          f"{rate} events/s flowing; seconds from the SIGTERM")
    print(f"{'session':>8}  {'membership':<10}  {'strategy':<18}  {'its partitions':<14}  {'exited':>6}  "
          f"{'assigned':>8}  {'took over':>9}  {'events':>7}  {'committed':>9}  {'rows':>7}")
    for r in rows:
        ok = r.committed == r.rows == r.events and r.survivor_owns == list(range(r.partitions))
        print(f"{r.session_ms / 1000:>7.0f}s  {r.mode:<10}  {r.strategy:<18}  "
              f"{','.join(map(str, r.stopped_partitions)):<14}  {_s(r.exited_s, r.waited_s):>6}  "
              f"{_s(r.assigned_s, r.waited_s):>8}  {_s(r.took_over_s, r.waited_s):>9}  {r.events:>7}  "
              f"{r.committed:>9}  {r.rows:>7}"
              + ("" if ok else f"  (survivor owns {r.survivor_owns}, stores hold {r.rows_per_member})"))


def main() -> None:
    # Long: the flags, then each scenario's run and its table, in the order they print.
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--broker", choices=["kafka", "tansu"],
                    help="kafka: one Apache Kafka node in a temp dir; tansu: the local broker "
                         "(default: PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS if set, else kafka where it "
                         "can run, else tansu)")
    ap.add_argument("--scenarios", default="A,B", help="A (kill -9 and restart), B (SIGTERM of one of two)")
    ap.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    ap.add_argument("--sessions", default="6000,45000", help="A: session timeouts in ms, comma-separated")
    ap.add_argument("--modes", default="dynamic,static,renamed", help="A: membership modes")
    ap.add_argument("--events", type=int, default=20_000, help="A: events per tranche")
    ap.add_argument("--partitions", type=int, default=3, help="A: partitions")
    ap.add_argument("--leave-modes", default="static,dynamic", help="B: membership modes")
    ap.add_argument("--leave-session", type=int, default=45_000, help="B: session timeout in ms")
    ap.add_argument("--leave-partitions", type=int, default=6, help="B: partitions")
    ap.add_argument("--rate", type=int, default=400, help="B: events per second while it runs")
    ap.add_argument("--strategy", help="B: partition assignment strategy (default: range on Tansu, "
                                       "else cooperative-sticky)")
    args = ap.parse_args()
    scenarios = {s.strip().upper() for s in args.scenarios.split(",") if s.strip()}
    if not scenarios or scenarios - {"A", "B"}:
        ap.error(f"--scenarios {args.scenarios}: expected A, B or A,B")
    sessions = [int(x) for x in args.sessions.split(",")]
    modes = args.modes.split(",")
    leave_modes = args.leave_modes.split(",")
    for m in modes:
        if m not in ("dynamic", "static", "renamed"):
            ap.error(f"--modes: {m!r} is not dynamic, static or renamed")
    for m in leave_modes:
        if m not in ("dynamic", "static"):
            ap.error(f"--leave-modes: {m!r} is not dynamic or static")
    restarts: list[RestartRow] = []
    leaves: list[LeaveRow] = []
    with tempfile.TemporaryDirectory(prefix="restart-recovery-") as tmp, \
            broker(args.broker) as (bootstrap, label):
        print(f"broker: {label} at {bootstrap}", file=sys.stderr, flush=True)
        if "A" in scenarios:
            dsn = f"chdb://{Path(tmp, 'chdb').resolve()}"
            for session_ms in sessions:
                for mode in modes:
                    row = run_restart(bootstrap, dsn, session_ms, mode, args.events, args.partitions, tmp)
                    restarts.append(row)
                    print(f"  A {mode} session {session_ms} ms: assigned {_s(row.assigned_s, row.waited_s)}, "
                          f"committed {_s(row.committed_s, row.waited_s)}", file=sys.stderr, flush=True)
            if restarts:  # every sink has exited: the directory is free
                queries = [q for r in restarts
                           for q in (f"SELECT count() FROM {r.database}.metric_points",
                                     f"SELECT count() FROM {r.database}.metric_points FINAL")]
                counts = count_rows(dsn, queries)
                for i, r in enumerate(restarts):
                    r.rows, r.final = counts[2 * i], counts[2 * i + 1]
        if "B" in scenarios:
            strategy = args.strategy or ("range" if is_tansu(bootstrap) else "cooperative-sticky")
            for mode in leave_modes:
                leave = run_leave(bootstrap, mode, args.leave_session, args.leave_partitions, args.rate,
                                  strategy, tmp)
                leaves.append(leave)
                print(f"  B {mode}: B exited {_s(leave.exited_s, leave.waited_s)}, A took over "
                      f"{_s(leave.took_over_s, leave.waited_s)}", file=sys.stderr, flush=True)
    if args.json:
        print(json.dumps({"broker": label,
                          "restart": {"events": args.events, "partitions": args.partitions,
                                      "rows": [asdict(r) for r in restarts]},
                          "leave": {"rate": args.rate, "rows": [asdict(r) for r in leaves]}}, indent=1))
        return
    if restarts:
        print_restart(restarts, label, args.events, args.partitions)
    if restarts and leaves:
        print()
    if leaves:
        print_leave(leaves, label, args.rate)


if __name__ == "__main__":
    main()
