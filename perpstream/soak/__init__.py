"""``perpstream soak``: the whole pipeline under load and a schedule of faults,
then an account that must balance (docs/soak.md).

This process owns the fake exchange (:mod:`perpstream.fakes.binance`, on a
thread) and the broker: the local Tansu broker (memory storage, the default), or
Apache Kafka on loopback (``--broker kafka --nodes 1|3``, durable logs, where
broker faults are real kills, pauses and restarts); the producer, the sink (chdb directory ``sink``),
the extra sink member that joins and leaves (its own directory ``sink-extra``)
and the snapshot consumer (directory ``snapshots``) are child processes, so
they can be SIGKILLed, and so that no chdb directory is opened by two processes.
After the run, with every child stopped, each directory is read by a short
child process of its own and the account is made here.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from perpstream.errors import PerpstreamError
from perpstream.kafka_runtime import KafkaCluster
from perpstream.local import TansuBroker, die_with_parent, ensure_topics, free_port, replication_for
from perpstream.schemas.topics import DLQ_TOPIC, METRICS_TOPIC, SNAPSHOTS_TOPIC

log = logging.getLogger(__name__)

SINK_GROUP = "soak-sink"
#: the entry point of the sink members: ``perpstream sink`` with the soak's fault hooks
SOAK_MEMBER = "perpstream.soak.member"
SNAPSHOTS_GROUP = "soak-snapshots"
DATABASE = "perpstream"
#: Every fault kind, in the order of the schedule.
FAULT_KINDS = (
    "ws_drop", "ws_silence", "bad_frames", "rest_429", "rest_418", "clickhouse_down", "sink_kill",
    "snapshots_kill", "member_join", "member_leave", "broker_kill", "broker_pause", "rolling_restart",
    "broker_restart",
)
#: Faults of a broker's own process: Apache Kafka only (Tansu keeps no durable logs to restart on).
KAFKA_ONLY_FAULTS = ("broker_kill", "broker_pause", "rolling_restart")
#: The default schedule on Tansu: every fault it can take. The sink group rebalances eagerly there,
#: since Tansu starts no second cooperative round after its static sink rejoins (docs/soak.md, "Faults").
DEFAULT_FAULTS = tuple(k for k in FAULT_KINDS if k not in KAFKA_ONLY_FAULTS)
#: The default schedule on Apache Kafka: every fault.
KAFKA_DEFAULT_FAULTS = FAULT_KINDS
#: The default SIGSTOP of ``broker_pause``: past librdkafka's request.timeout.ms (30 s, the producer's
#: produce requests) and socket.timeout.ms (60 s, every other request), which the clients keep.
BROKER_PAUSE_S = 65.0
#: The groups' committed offsets live here: a broker is back in sync when no partition of it, nor
#: of the product's topics, is under-replicated.
OFFSETS_TOPIC = "__consumer_offsets"
#: The soak's own Kafka clients (sampler, watermarks, replica sync) give up on a request after this
#: long, so that a hung broker costs a sample, not librdkafka's 60 s socket timeout.
VIEW_TIMEOUT_MS = 5000
#: Live Binance USD-M: about 700 symbols; the soak's default load is ten times that.
LIVE_SYMBOLS = 700


class SoakError(PerpstreamError):
    """The soak could not run to its account (a member did not start, a wait ran out)."""


@dataclass
class Fault:
    kind: str
    #: what must grow again for data to be flowing (see docs/soak.md)
    watches: str
    injected: float = 0.0
    lifted: float = 0.0
    recovered: float | None = None
    detail: str = ""

    @property
    def recovery_s(self) -> float | None:
        return None if self.recovered is None else round(self.recovered - self.injected, 2)


@dataclass
class Account:
    sent_points: int = 0
    sent_bad_frames: int = 0
    stored_points: int = 0
    dlq_records: int = 0
    #: rejections the producer counted (one malformed frame may count under more than one reason)
    rejected_frames: int = 0
    #: sent identities the producer rejected: the malformed frames carry none, so 0 is expected
    rejected_points: int = 0
    #: points the producer let go (``points_dropped``: its buffers full while Kafka was away);
    #: counted and logged, and lost, so the account cannot balance with any
    dropped_points: int = 0
    missing: int = 0
    unexpected: int = 0
    value_mismatches: int = 0
    duplicates_without_final: int = 0
    duplicates_across_stores: int = 0
    snapshots_compared: int = 0
    snapshot_mismatches: int = 0
    snapshots_not_recomputed: int = 0
    faults_not_recovered: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return (
            self.sent_points == self.stored_points + self.dlq_records + self.rejected_points
            and self.rejected_frames >= self.sent_bad_frames and self.dropped_points == 0
            and self.missing == 0 and self.unexpected == 0 and self.value_mismatches == 0
            and self.duplicates_without_final == 0 and self.duplicates_across_stores == 0
            and self.snapshot_mismatches == 0 and self.snapshots_not_recomputed == 0
            and self.snapshots_compared > 0 and self.faults_not_recovered == 0
        )


# -- observation ----------------------------------------------------------------------------------


@dataclass
class PastEnds:
    """Waits for both groups to commit, on every partition that had records, past that
    partition's end at a fault: records produced after it, consumed and stored."""

    ends: dict[int, int]
    at: float | None = None

    def reached(self, offsets: dict[str, list[int] | None]) -> bool:
        for parts in offsets.values():
            if parts is None:
                return False
            if any(parts[p] <= end for p, end in self.ends.items() if end > 0):
                return False
        return True


class Sampler:
    """Samples, every ``period`` s, what each fault stops: the exchange's sent mark and
    open-interest identities and the committed offsets of both groups. Each series is
    turned into monotone progress (a reset, e.g. a new broker's offsets, counts from 0)."""

    SERIES = ("exchange_mark", "exchange_oi", "sink_committed", "snapshots_committed")

    def __init__(self, fake: Any, bootstrap: str, partitions: int, t0: float, period: float = 0.25) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from perpstream.runtime.telemetry import kafka_logging

        self._fake = fake
        self._t0 = t0
        self._period = period
        self._tps = [TopicPartition(METRICS_TOPIC, p) for p in range(partitions)]
        self._consumers = {
            name: Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                            "socket.timeout.ms": VIEW_TIMEOUT_MS, **kafka_logging()})
            for name, group in (("sink_committed", SINK_GROUP), ("snapshots_committed", SNAPSHOTS_GROUP))
        }
        self._watches: list[PastEnds] = []
        self._last: dict[str, int] = {}
        self.progress: dict[str, int] = dict.fromkeys(self.SERIES, 0)
        self.seq = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="soak-sampler", daemon=True)

    def start(self) -> Sampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        for c in self._consumers.values():
            with contextlib.suppress(Exception):
                c.close()

    def committed_parts(self, name: str) -> list[int] | None:
        """The group's committed offset of each partition (0 where none), or None if unknown now."""
        try:
            got = self._consumers[name].committed(self._tps, timeout=3)
        except Exception:
            return None
        # a partition in error counts 0 (Tansu answers one without a commit in a new topic so)
        return [max(tp.offset, 0) for tp in got]

    def committed(self, name: str) -> int | None:
        parts = self.committed_parts(name)
        return None if parts is None else sum(parts)

    def _sample(self) -> tuple[dict[str, int | None], dict[str, list[int] | None]]:
        parts = {name: self.committed_parts(name) for name in ("sink_committed", "snapshots_committed")}
        return {
            "exchange_mark": len(self._fake.sent_mark), "exchange_oi": len(self._fake.sent_oi),
            **{name: None if p is None else sum(p) for name, p in parts.items()},
        }, parts

    def watch_past(self, ends: dict[int, int]) -> PastEnds:
        """From now on, note the first sample in which both groups are past ``ends``."""
        w = PastEnds(dict(ends))
        with self._cond:
            self._watches.append(w)
        return w

    def wait_past(self, w: PastEnds, timeout: float) -> float | None:
        """Monotonic time of the first sample past ``w``'s ends (since it was set), or None."""
        with self._cond:
            if self._cond.wait_for(lambda: w.at is not None, timeout) and w in self._watches:
                self._watches.remove(w)
            return w.at

    def _run(self) -> None:
        while not self._stop.is_set():
            values, parts = self._sample()
            now = time.monotonic()
            with self._cond:
                for w in self._watches:
                    if w.at is None and w.reached(parts):
                        w.at = now
                for name, v in values.items():
                    if v is None:
                        continue
                    prev = self._last.get(name)
                    if prev is not None:
                        self.progress[name] += v - prev if v >= prev else v
                    self._last[name] = v
                self.seq += 1
                self._cond.notify_all()
            self._stop.wait(self._period)

    def fresh(self, timeout: float = 30.0) -> dict[str, int]:
        """The progress of a sample taken entirely after this call."""
        with self._cond:
            target = self.seq + 2
            if not self._cond.wait_for(lambda: self.seq >= target, timeout):
                raise SoakError("the sampler stopped answering")
            return dict(self.progress)

    def wait_growth(self, name: str, baseline: int, timeout: float) -> float | None:
        """Monotonic time of the first sample with ``name`` past ``baseline``, or None."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while self.progress[name] <= baseline:
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(min(left, 1.0))
            return time.monotonic()


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


class KafkaView:
    """The soak's look at an Apache Kafka cluster: each metrics partition's end, and whether
    every replica of the topics that matter is in sync (docs/soak.md, "Apache Kafka")."""

    def __init__(self, bootstrap: str, partitions: int, topics: list[str]) -> None:
        from confluent_kafka.admin import AdminClient

        from perpstream.runtime.telemetry import kafka_logging

        common = {"bootstrap.servers": bootstrap, "socket.timeout.ms": VIEW_TIMEOUT_MS, **kafka_logging()}
        self._admin = AdminClient(common)
        self.partitions = partitions
        self.topics = [*topics, OFFSETS_TOPIC]

    def ends(self, timeout: float = 60.0) -> dict[int, int]:
        """The high watermark of each metrics partition, asked of each leader as the metadata
        names it now (a consumer's cached leader can be one that has lost the partition)."""
        from confluent_kafka import TopicPartition
        from confluent_kafka.admin import OffsetSpec

        deadline = time.monotonic() + timeout
        out: dict[int, int] = {}
        while True:
            ask = {TopicPartition(METRICS_TOPIC, p): OffsetSpec.latest()
                   for p in range(self.partitions) if p not in out}
            for tp, fut in self._admin.list_offsets(ask, request_timeout=5).items():
                with contextlib.suppress(Exception):
                    out[tp.partition] = int(fut.result().offset)
            if len(out) == self.partitions:
                return out
            if time.monotonic() > deadline:
                lacking = sorted(set(range(self.partitions)) - set(out))
                raise SoakError(f"no end offset for metrics partitions {lacking}")
            time.sleep(0.5)

    def under_replicated(self) -> int | None:
        """Partitions of :attr:`topics` with fewer in-sync replicas than replicas (or no leader),
        None when the metadata cannot be had."""
        try:
            md = self._admin.list_topics(timeout=5)
        except Exception:
            return None
        n = 0
        for name in self.topics:
            topic = md.topics.get(name)
            if topic is None or topic.error is not None:
                return None
            for part in topic.partitions.values():
                if part.error is not None or part.leader < 0 or len(part.isrs) < len(part.replicas):
                    n += 1
        return n

    def wait_in_sync(self, timeout: float) -> None:
        wait_until(lambda: self.under_replicated() == 0, timeout,
                   "every replica of the product topics and the group offsets to be in sync", 0.5)


# -- members --------------------------------------------------------------------------------------


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


# -- the run --------------------------------------------------------------------------------------


@dataclass
class SoakOptions:
    seconds: float
    symbols: int
    partitions: int = 6
    oi_interval: float = 10.0
    tick: float = 1.0
    faults: tuple[str, ...] = DEFAULT_FAULTS
    clickhouse_down_s: float = 5.0
    broker_down_s: float = 3.0
    recovery_timeout: float = 120.0
    work_dir: Path | None = None
    #: ``tansu`` (the local broker, memory storage) or ``kafka`` (Apache Kafka on loopback)
    broker: str = "tansu"
    #: Apache Kafka nodes: 1 or 3
    nodes: int = 1
    broker_pause_s: float = BROKER_PAUSE_S
    kafka_heap_mb: int = 384


def outage_buffer(opts: SoakOptions, seconds: float = 60.0) -> int:
    """Points the producer's buffers hold for ``seconds`` of the run's load (each of its two
    stages; docs/producer.md, "When the buffer is full"), at least the producer's default."""
    per_s = opts.symbols * (5 + 1 / opts.oi_interval)
    return max(100_000, int(per_s * seconds))


def _env(bootstrap: str, short_sessions: bool = True) -> dict[str, str]:
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


class Soak:
    def __init__(self, opts: SoakOptions, work: Path) -> None:
        self.opts = opts
        self.work = work
        self.faults: list[Fault] = []
        self.dlq_before_restart = 0
        #: points the producer had delivered when the current broker started
        self.delivered_base = 0
        self.delivered_now = 0
        self.producer: Member | None = None
        self.start = time.monotonic()
        self.tansu: TansuBroker | None = None
        self.cluster: KafkaCluster | None = None
        self.view: KafkaView | None = None

    def now(self) -> float:
        return time.monotonic() - self.start

    def run(self) -> tuple[Account, list[Fault], dict[str, Any]]:
        from perpstream.fakes.binance import FakeBinance

        opts = self.opts
        symbols = [f"SOAK{i:05d}USDT" for i in range(opts.symbols)]
        kafka = opts.broker == "kafka"
        topics = {METRICS_TOPIC: opts.partitions, SNAPSHOTS_TOPIC: opts.partitions, DLQ_TOPIC: 1}
        if kafka:
            # replication min(3, nodes), min.insync.replicas one less (docs/soak.md, "Apache Kafka")
            self.cluster = KafkaCluster(self.work / "kafka", nodes=opts.nodes, heap_mb=opts.kafka_heap_mb)
            self.cluster.start()
            bootstrap = self.cluster.bootstrap_servers
        else:
            self.tansu = TansuBroker(port=free_port(), log_path=self.work / "tansu.log").start()
            bootstrap = self.tansu.bootstrap_servers
        try:
            ensure_topics(bootstrap, topics)
            if kafka:
                self.view = KafkaView(bootstrap, opts.partitions, list(topics))
        except BaseException:
            self._stop_broker()
            raise
        env = _env(bootstrap, short_sessions=not kafka)
        switch = self.work / "clickhouse-down"
        sink_env = dict(env)
        # the soak's fault hooks reach the sink members through their own entry point
        hooks = ["--clickhouse-down-file", str(switch), "--stop-merges"]
        if not kafka:
            # members join and leave beside the static sink: Tansu starts no second cooperative
            # round after a static member rejoins, so the group rebalances eagerly there
            # (docs/soak.md, "Faults"); Apache Kafka keeps the default, cooperative-sticky
            sink_env["PERPSTREAM_PARTITION_ASSIGNMENT_STRATEGY"] = "range"
        info: dict[str, Any] = {"work_dir": str(self.work), "symbols": opts.symbols,
                                "partitions": opts.partitions, "broker": opts.broker,
                                "nodes": opts.nodes if kafka else 1}
        if kafka:
            info["replication"] = dict(zip(("replication_factor", "min_insync_replicas"),
                                           replication_for(opts.nodes), strict=True))
        with FakeBinance(symbols, tick=opts.tick, ping_interval=5.0,
                         start_ms=int(time.time() * 1000) // 1000 * 1000) as fake:
            fake.hold_rest_while_paused = True
            buffered = outage_buffer(opts)
            producer_env = {
                **env, "PERPSTREAM_SYMBOLS": ",".join(symbols),
                "PERPSTREAM_WS_SILENCE_TIMEOUT": "3", "PERPSTREAM_BACKOFF_INITIAL": "0.2",
                "PERPSTREAM_BACKOFF_CAP": "2", "PERPSTREAM_FLUSH_TIMEOUT": "120",
                # the fake exchange does not limit weight: enough for every symbol at its interval
                "PERPSTREAM_REST_WEIGHT_LIMIT": str(max(2400, int(4 * 60 * opts.symbols / opts.oi_interval))),
                "PERPSTREAM_REST_CONCURRENCY": "16",
                # the websocket is never paused: the buffers must hold the load for as long as
                # the broker restart keeps Kafka away (down, then the stalled client's timeout)
                "PERPSTREAM_BUFFER_MAX_MESSAGES": str(buffered),
                "PERPSTREAM_OVERFLOW_MAX_POINTS": str(buffered),
            }
            if not kafka:
                # a Tansu broker restarted in place forgets producer ids: the producer replaces a
                # client that delivered nothing for this long (docs/kafka.md).
                # Apache Kafka keeps them on its logs: the producer's default (120 s) stays, longer
                # than any outage here, so no client is replaced and no unacknowledged send re-sent
                producer_env["PERPSTREAM_KAFKA_DELIVERY_TIMEOUT_MS"] = "10000"
            producer = Member("producer", ["produce", "--ws-url", fake.ws_url, "--rest-url", fake.rest_url,
                                           "--oi-interval", str(opts.oi_interval)],
                              producer_env, self.work, free_port())
            sink = Member("sink", [*hooks, "sink", "--clickhouse-dsn", f"chdb://{self.work / 'sink'}",
                                   "--group-id", SINK_GROUP, "--member-name", "soak-sink"],
                          sink_env, self.work, free_port(), module=SOAK_MEMBER)
            # static on Apache Kafka (a static member stopped with SIGTERM leaves at once); dynamic
            # on Tansu, which never expires a static member that left
            extra = Member("sink-extra", [*hooks, "sink", "--clickhouse-dsn",
                                          f"chdb://{self.work / 'sink-extra'}", "--group-id", SINK_GROUP,
                                          "--member-name", "soak-sink-extra" if kafka else ""],
                           sink_env, self.work, free_port(), module=SOAK_MEMBER)
            snaps = Member("snapshots", ["snapshots", "--clickhouse-dsn", f"chdb://{self.work / 'snapshots'}",
                                         "--group-id", SNAPSHOTS_GROUP, "--member-name", "soak-snapshots"],
                           env, self.work, free_port())
            members = [producer, sink, extra, snaps]
            self.producer = producer
            sampler: Sampler | None = None
            try:
                for m in (sink, snaps, producer):
                    m.start()
                for m in (sink, snaps, producer):
                    m.wait_serving()
                sampler = Sampler(fake, bootstrap, opts.partitions, self.start).start()
                base = sampler.fresh()
                for name in Sampler.SERIES:
                    if sampler.wait_growth(name, base[name], opts.recovery_timeout) is None:
                        raise SoakError(f"no data flowing at the start ({name})")
                info["started_s"] = round(self.now(), 2)
                log.info("soak: data flowing after %.1fs", self.now())
                self._schedule(fake, topics, sampler, sink, extra, snaps, switch)
                info["faults_done_s"] = round(self.now(), 2)
                wait_until(lambda: self.now() >= opts.seconds, opts.seconds + 1, "the end of the run", 0.5)
                # the end: the exchange stops, the producer drains, the consumers catch up
                fake.paused = True
                time.sleep(max(1.5, opts.tick * 2))
                self._wait_caught_up(producer, sampler, 180)
                pm = producer.metrics() or {}
                rc = producer.stop()
                if rc != 0:
                    raise SoakError(f"the producer exited with {rc}: see {self.work / 'producer.log'}")
                info["producer"] = {k: pm.get(k, 0) for k in (
                    "points_published", "points_delivered", "points_dropped", "frames_rejected",
                    "reconnects", "rest_requests", "rest_bans")}
                rejected = int(pm.get("frames_rejected", 0))
                dropped = int(pm.get("points_dropped", 0))
                for m in (extra, sink, snaps):
                    rc = m.stop()
                    if rc != 0:
                        raise SoakError(f"{m.name} exited with {rc}: see {self.work / m.name}.log")
                dlq = self.dlq_before_restart + read_dlq(bootstrap)
                sent = fake.expected_points()
                bad = fake.garbage_sent
                info["exchange"] = {"connections": fake.connections_total, "mark_frames": len(fake.sent_mark),
                                    "oi_answers": len(fake.sent_oi),
                                    "rest_errors": sum(1 for r in fake.rest_requests if r[2] in (418, 429))}
            finally:
                if sampler is not None:
                    sampler.stop()
                for m in members:
                    with contextlib.suppress(Exception):
                        m.stop(30)
                        self._stop_broker()
        info["run_s"] = round(self.now(), 2)
        account = self._account(sent, bad, dlq, rejected, dropped)
        info["account_s"] = round(self.now() - info["run_s"], 2)
        return account, self.faults, info

    # -- the schedule -------------------------------------------------------------------------------

    def _stop_broker(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        if self.tansu is not None:
            self.tansu.stop()

    def _schedule(self, fake: Any, topics: dict[str, int], sampler: Sampler,
                  sink: Member, extra: Member, snaps: Member, switch: Path) -> None:
        opts = self.opts
        kinds = [k for k in FAULT_KINDS if k in opts.faults]
        first = self.now()
        span = max(0.0, opts.seconds * 0.85 - first)
        for i, kind in enumerate(kinds):
            at = first + span * i / max(1, len(kinds))
            wait_until(lambda at=at: self.now() >= at, span + 1, "the next fault", 0.2)  # type: ignore[misc]
            time.sleep(1.0)  # the previous recovery settles
            log.info("soak: fault %s at %.1fs", kind, self.now())
            if kind == "broker_restart" and self.cluster is None:
                self._tansu_restart(fake, topics, sampler)
            elif kind == "broker_restart" or kind in KAFKA_ONLY_FAULTS:
                self._kafka_fault(kind, sampler)
            else:
                self._fault(kind, fake, sampler, sink, extra, snaps, switch)
            f = self.faults[-1]
            log.info("soak: %s recovered in %ss", kind, f.recovery_s)

    def _record(self, kind: str, watches: str, sampler: Sampler, injected: float,
                detail: str = "", lifted: float | None = None) -> Fault:
        f = Fault(kind, watches, injected=round(injected, 3), detail=detail)
        f.lifted = round(self.now() if lifted is None else lifted, 3)
        base = sampler.fresh()[watches]
        t = sampler.wait_growth(watches, base, self.opts.recovery_timeout)
        f.recovered = None if t is None else round(t - self.start, 3)
        self.faults.append(f)
        return f

    def _fault(self, kind: str, fake: Any, sampler: Sampler, sink: Member, extra: Member, snaps: Member,
               switch: Path) -> None:
        t0 = self.now()
        if kind == "ws_drop":
            n = fake.drop_connections()
            self._record(kind, "exchange_mark", sampler, t0, f"{n} connections closed")
        elif kind == "ws_silence":
            n = fake.mute_connections()
            self._record(kind, "exchange_mark", sampler, t0, f"{n} connections silent (watchdog 3 s)")
        elif kind == "bad_frames":
            before = fake.garbage_sent
            fake.send_garbage()
            wait_until(lambda: fake.garbage_sent > before, 30, "the bad frames to be sent")
            self._record(kind, "exchange_mark", sampler, t0, "4 malformed frames per connection")
        elif kind in ("rest_429", "rest_418"):
            status = 429 if kind == "rest_429" else 418
            fake.fail_rest(status, 1, retry_after=2.0 if status == 429 else 3.0)
            wait_until(lambda: not fake._rest_faults, 60, f"the {status} to be answered")
            t0 = self.now()  # injected when the producer met it
            self._record(kind, "exchange_oi", sampler, t0, f"openInterest answered {status}, Retry-After")
        elif kind == "clickhouse_down":
            switch.touch()
            time.sleep(self.opts.clickhouse_down_s)
            switch.unlink()
            self._record(kind, "sink_committed", sampler, t0,
                         f"inserts failed for {self.opts.clickhouse_down_s:g} s")
        elif kind == "sink_kill":
            sink.kill()
            sink.start()
            self._record(kind, "sink_committed", sampler, t0, "SIGKILL, restarted with the same member name")
        elif kind == "snapshots_kill":
            snaps.kill()
            snaps.start()
            self._record(kind, "snapshots_committed", sampler, t0, "SIGKILL, restarted")
        elif kind == "member_join":
            extra.start()
            wait_until(lambda: extra.alive() and (extra.metrics() or {}).get("batches", 0) > 0,
                       self.opts.recovery_timeout, "the joining member's first committed batch", 0.5)
            f = Fault(kind, "sink-extra batches", injected=round(t0, 3), lifted=round(t0, 3),
                      recovered=round(self.now(), 3),
                      detail="second sink process (own store) joined the group")
            self.faults.append(f)
        elif kind == "member_leave":
            rc = extra.stop()
            if rc != 0:
                raise SoakError(f"the leaving member exited with {rc}")
            self._record(kind, "sink_committed", sampler, t0, "the second sink process left (SIGTERM)")
        else:  # pragma: no cover - the choices of --faults
            raise SoakError(f"unknown fault {kind}")

    def _tansu_restart(self, fake: Any, topics: dict[str, int], sampler: Sampler) -> None:
        # memory storage: drain first (exchange held, consumers caught up, DLQ read), docs/soak.md
        broker = self.tansu
        assert broker is not None
        t0 = self.now()
        fake.paused = True
        time.sleep(max(1.5, self.opts.tick * 2))
        assert self.producer is not None
        self._wait_caught_up(self.producer, sampler, 120)
        self.dlq_before_restart += read_dlq(broker.bootstrap_servers)
        broker.stop()
        self.delivered_base = self.delivered_now
        stopped = self.now()
        fake.paused = False  # the producer buffers and retries while the broker is away
        time.sleep(self.opts.broker_down_s)
        self.tansu = TansuBroker(port=broker.port, log_path=self.work / "tansu.log").start()
        ensure_topics(self.tansu.bootstrap_servers, topics)
        self._record("broker_restart", "sink_committed", sampler, stopped,
                     f"down {self.opts.broker_down_s:g} s after a {stopped - t0:.1f} s drain; "
                     "memory storage: new, empty topics", lifted=self.now())

    def _kafka_fault(self, kind: str, sampler: Sampler) -> None:
        """A fault of Apache Kafka's own processes, on durable logs: nothing is drained, no
        topic is created again, the exchange keeps streaming. Data flows again when both
        groups have committed, on every partition that had records, past its end at the
        fault; the fault is over when the cluster is whole and every replica in sync
        (docs/soak.md, "Apache Kafka")."""
        cluster, view = self.cluster, self.view
        assert cluster is not None and view is not None
        product = [METRICS_TOPIC, SNAPSHOTS_TOPIC, DLQ_TOPIC]
        watches = "both groups past every partition's end at the fault"
        view.wait_in_sync(self.opts.recovery_timeout)  # the previous fault has healed
        watch = sampler.watch_past(view.ends())
        t0 = self.now()
        if kind == "broker_kill":
            counts = cluster.leader_counts(product)
            node = cluster.busiest_leader(product)
            cluster.kill_node(node)
            if cluster.size > 1:  # the others take over: data must flow before the node is back
                sampler.wait_past(watch, self.opts.recovery_timeout)
            down = self.now()
            cluster.start_node(node)
            back = self.now()
            view.wait_in_sync(self.opts.recovery_timeout)
            detail = (f"SIGKILL of node {node} (led {counts[node]} of {sum(counts.values())} partitions), "
                      f"restarted on its logs {down - t0:.1f} s later, listening after {back - down:.1f} s, "
                      f"in sync {self.now() - back:.1f} s later")
        elif kind == "broker_pause":
            node = cluster.busiest_leader(product)
            cluster.pause_node(node)
            time.sleep(self.opts.broker_pause_s)
            cluster.resume_node(node)
            back = self.now()
            view.wait_in_sync(self.opts.recovery_timeout)
            detail = (f"SIGSTOP of node {node} for {self.opts.broker_pause_s:g} s, then SIGCONT; "
                      f"in sync {self.now() - back:.1f} s later")
        elif kind == "rolling_restart":
            steps: list[str] = []
            step_watch: PastEnds | None = watch
            for node in sorted(n.node_id for n in cluster.nodes):
                t = time.monotonic()
                if step_watch is None:
                    step_watch = sampler.watch_past(view.ends())
                cluster.stop_node(node)
                cluster.start_node(node)
                view.wait_in_sync(self.opts.recovery_timeout)
                in_sync = time.monotonic() - t
                # each step must let data through on every partition, not only the first
                at_step = sampler.wait_past(step_watch, self.opts.recovery_timeout)
                if at_step is None:
                    watch = step_watch  # never past: the fault did not recover
                step_watch = None
                flow = "never" if at_step is None else f"{at_step - t:.1f} s"
                steps.append(f"node {node}: in sync after {in_sync:.1f} s, data on every partition {flow}")
            detail = "SIGTERM and restart of each node, the next once every replica is in sync (" + \
                "; ".join(steps) + ")"
        elif kind == "broker_restart":
            before = cluster.bootstrap_servers
            cluster.stop()
            stopped = self.now()
            time.sleep(self.opts.broker_down_s)
            cluster.start()
            if cluster.bootstrap_servers != before:
                raise SoakError(f"the cluster came back on {cluster.bootstrap_servers}, not {before}")
            back = self.now()
            view.wait_in_sync(self.opts.recovery_timeout)
            starting = back - stopped - self.opts.broker_down_s
            detail = (f"SIGTERM of every node ({stopped - t0:.1f} s), down {self.opts.broker_down_s:g} s, "
                      f"started on the same logs and ports in {starting:.1f} s; "
                      "durable storage: the topics, their records and the committed offsets survive")
        else:  # pragma: no cover - the choices of --faults
            raise SoakError(f"unknown fault {kind}")
        lifted = self.now()
        at = sampler.wait_past(watch, self.opts.recovery_timeout)
        self.faults.append(Fault(kind, watches, injected=round(t0, 3), lifted=round(lifted, 3),
                                 recovered=None if at is None else round(at - self.start, 3), detail=detail))


    def _wait_caught_up(self, producer: Member, sampler: Sampler, timeout: float) -> None:
        """The exchange is paused: wait until the producer has delivered all it published (or
        dropped it, counted) and both groups have committed every record of this broker, with
        their committed offsets still for three samples in a row. On Apache Kafka the records on
        the topic are the partitions' ends. Tansu's watermarks are wrong, so there they are taken
        as what the producer delivered since the broker started, plus any copies of in-flight
        sends a broker took before the client that made them was replaced (those are
        unacknowledged: docs/producer.md, "Order across retries")."""
        still: list[tuple[int | None, int | None]] = []

        def caught_up() -> bool:
            m = producer.metrics() or {}
            pub, dlv = m.get("points_published", -1), m.get("points_delivered", -2)
            # Apache Kafka's watermarks are right: its logs say what is on the topic
            on_topic = int(dlv) - self.delivered_base if self.view is None else sum(self.view.ends().values())
            now = (sampler.committed("sink_committed"), sampler.committed("snapshots_committed"))
            still[:] = [*still[-2:], now] if still and still[-1] == now else [now]
            return (pub == dlv + m.get("points_dropped", 0) and len(still) == 3
                    and all(c is not None and c >= on_topic for c in now))

        wait_until(caught_up, timeout, "the producer to deliver and the consumers to catch up", 0.5)
        self.delivered_now = int((producer.metrics() or {}).get("points_delivered", 0))

    # -- the account --------------------------------------------------------------------------------

    def _account(self, sent: dict[tuple[str, str, int], float], bad: int, dlq: int, rejected: int,
                 dropped: int) -> Account:
        a = Account(sent_points=len(sent), sent_bad_frames=bad, dlq_records=dlq, rejected_frames=rejected,
                    dropped_points=dropped)
        stores = [d for d in ("sink", "sink-extra") if (self.work / d).exists()]
        stored: dict[tuple[str, str, int], tuple[str, float]] = {}
        points: list[tuple[str, str, int, str, float]] = []
        for d in stores:
            got = read_store(self.work / d, "points")
            a.duplicates_without_final += int(got["duplicates"])
            for symbol, metric, et, source, value in got["points"]:
                key = (symbol, metric, int(et))
                if key in stored:
                    a.duplicates_across_stores += 1
                    continue
                stored[key] = (source, float(value))
                points.append((symbol, metric, int(et), source, float(value)))
        a.stored_points = len(stored)
        missing = sent.keys() - stored.keys()
        unexpected = stored.keys() - sent.keys()
        a.missing, a.unexpected = len(missing), len(unexpected)
        a.examples += [f"missing {k}" for k in sorted(missing)[:3]]
        a.examples += [f"unexpected {k}" for k in sorted(unexpected)[:3]]
        for k, v in sent.items():
            if k in stored and stored[k][1] != v:
                a.value_mismatches += 1
                if len(a.examples) < 12:
                    a.examples.append(f"value {k}: sent {v!r}, stored {stored[k][1]!r}")
        self._snapshots(a, points)
        a.faults_not_recovered = sum(1 for f in self.faults if f.recovered is None)
        return a

    def _snapshots(self, a: Account, points: list[tuple[str, str, int, str, float]]) -> None:
        from perpstream.consumers.snapshots.engine import SnapshotEngine
        from perpstream.consumers.snapshots.settings import SnapshotSettings
        from perpstream.consumers.snapshots.store import SNAPSHOT_COLUMNS

        got = read_store(self.work / "snapshots", "snapshots")
        idx = [SNAPSHOT_COLUMNS.index(c) for c in ("symbol", "window_s", "snapshot_time")]
        table = {tuple(r[i] for i in idx): r for r in (tuple(x) for x in got["snapshots"])}
        engine = SnapshotEngine(SnapshotSettings().engine_config())
        for symbol, metric, et, source, value in sorted(points, key=lambda p: (p[2], p[0], p[1])):
            engine.add(source, symbol, metric, value, et)
        recomputed: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for s in engine.take_output():
            row = tuple(s[c] for c in SNAPSHOT_COLUMNS)
            recomputed[tuple(row[i] for i in idx)] = row
        for key, row in table.items():
            want = recomputed.get(key)
            if want is None:
                a.snapshots_not_recomputed += 1
                if len(a.examples) < 12:
                    a.examples.append(f"snapshot {key} stored but not recomputed")
                continue
            a.snapshots_compared += 1
            if _norm(want) != _norm(row):
                a.snapshot_mismatches += 1
                if len(a.examples) < 12:
                    a.examples.append(f"snapshot {key}: stored {row}, recomputed {want}")


def _norm(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """NaN equals NaN; booleans as booleans (the table gives 0/1)."""
    out: list[Any] = []
    for v in row:
        if isinstance(v, float) and v != v:
            out.append("nan")
        elif isinstance(v, bool):
            out.append(int(v))
        else:
            out.append(v)
    return tuple(out)


def read_dlq(bootstrap: str, quiet: float = 3.0, timeout: float = 60.0) -> int:
    """Records on the DLQ topic now, read from the start until ``quiet`` s without one."""
    from confluent_kafka import Consumer, TopicPartition

    from perpstream.runtime.telemetry import kafka_logging

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "soak-dlq-reader", "enable.auto.commit": False,
                  **kafka_logging()})
    n = 0
    try:
        c.assign([TopicPartition(DLQ_TOPIC, 0, 0)])
        deadline, last = time.monotonic() + timeout, time.monotonic()
        while time.monotonic() - last < quiet and time.monotonic() < deadline:
            msg = c.poll(0.5)
            if msg is not None and msg.error() is None:
                n += 1
                last = time.monotonic()
        return n
    finally:
        c.close()


# -- reading a stopped member's store (a child process per chdb directory) -------------------------

_READ_POINTS = (
    "SELECT symbol, metric, toUnixTimestamp64Milli(event_time), source, value FROM {db}.metric_points FINAL"
)


def read_store(directory: Path, what: str) -> dict[str, Any]:
    out = directory.parent / f"{directory.name}.{what}.json"
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from perpstream.soak import read_store_main; "
         "read_store_main(sys.argv[1:])", str(directory), what, str(out)],
        env=_env(""), capture_output=True, text=True, timeout=600, check=False,
    )
    if proc.returncode != 0:
        raise SoakError(f"reading {directory} failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def read_store_main(argv: list[str]) -> None:
    """Child: read a chdb directory no other process holds; write JSON to ``argv[2]``."""
    from perpstream.consumers.clickhouse import open_client
    from perpstream.consumers.snapshots.store import SNAPSHOT_COLUMNS

    directory, what, out = argv
    client = open_client(f"chdb://{directory}")
    result: dict[str, Any] = {}
    if what == "points":
        # merges could hide a duplicate: stopped before the first count (and in the sink, always)
        client.command(f"SYSTEM STOP MERGES {DATABASE}.metric_points")
        rows = client.query(
            f"SELECT count() - uniqExact(symbol, metric, event_time, source) FROM {DATABASE}.metric_points"
        ).result_rows
        result["duplicates"] = int(rows[0][0])
        result["points"] = [list(r) for r in client.query(_READ_POINTS.format(db=DATABASE)).result_rows]
    else:
        cols = ", ".join("toUnixTimestamp64Milli(snapshot_time)" if c == "snapshot_time" else c
                         for c in SNAPSHOT_COLUMNS)
        rows = client.query(f"SELECT {cols} FROM {DATABASE}.market_snapshots FINAL").result_rows
        result["snapshots"] = [
            [bool(v) if c == "stale" else v for c, v in zip(SNAPSHOT_COLUMNS, r, strict=True)] for r in rows
        ]
    Path(out).write_text(json.dumps(result, allow_nan=True))


# -- the command ----------------------------------------------------------------------------------


def register(sub: Any) -> None:
    p = sub.add_parser("soak", help="the pipeline under load and scheduled faults; "
                       "an account that must balance")
    p.add_argument("--minutes", type=float, default=10.0, help="length of the run (default 10)")
    p.add_argument("--seconds", type=float, help="length of the run in seconds (instead of --minutes)")
    p.add_argument("--symbols", type=int, default=10 * LIVE_SYMBOLS,
                   help=f"symbols of the simulated market, 1 markPrice/s each (default {10 * LIVE_SYMBOLS}: "
                   "10x live Binance)")
    p.add_argument("--oi-interval", type=float, default=10.0,
                   help="open-interest poll per symbol, s (default 10)")
    p.add_argument("--partitions", type=int, default=6, help="partitions of the metrics topic (default 6)")
    p.add_argument("--faults",
                   help=f"comma-separated fault kinds (known: {','.join(FAULT_KINDS)}; "
                   f"{', '.join(KAFKA_ONLY_FAULTS)} only with --broker kafka; default: every kind the "
                   "broker can take)")
    p.add_argument("--broker", choices=("tansu", "kafka"), default="tansu",
                   help="tansu: the local broker, memory storage (default); kafka: Apache Kafka on "
                   "loopback, durable logs (needs Java 17+)")
    p.add_argument("--nodes", type=int,
                   help="Apache Kafka nodes, 1 or 3 (default 3; only with --broker kafka)")
    p.add_argument("--broker-pause", type=float, default=BROKER_PAUSE_S,
                   help=f"seconds broker_pause keeps a node stopped (default {BROKER_PAUSE_S:g}: past the "
                   "clients' request and socket timeouts)")
    p.add_argument("--work-dir",
                   help="where the stores and logs go (default a new temporary directory, kept)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=soak_command)


def soak_command(args: argparse.Namespace) -> int:
    from perpstream.errors import ConfigError

    kafka = args.broker == "kafka"
    if args.nodes is not None and not kafka:
        raise ConfigError("--nodes: only with --broker kafka (the local Tansu broker is one process)")
    nodes = 3 if args.nodes is None else args.nodes
    if nodes not in (1, 3):
        raise ConfigError(f"--nodes: an Apache Kafka cluster on loopback has 1 or 3 nodes, not {nodes}")
    if args.faults is None:
        faults = KAFKA_DEFAULT_FAULTS if kafka else DEFAULT_FAULTS
    else:
        faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
    unknown = [f for f in faults if f not in FAULT_KINDS]
    if unknown:
        raise ConfigError(f"--faults: unknown fault kind(s) {', '.join(unknown)}; "
                          f"known: {', '.join(FAULT_KINDS)}")
    kafka_only = [f for f in faults if f in KAFKA_ONLY_FAULTS]
    if kafka_only and not kafka:
        raise ConfigError(f"--faults: {', '.join(kafka_only)} only with --broker kafka (a broker "
                          "process with durable logs to kill, pause or restart)")
    if not args.broker_pause > 0:
        raise ConfigError("--broker-pause must be positive")
    if "member_leave" in faults and "member_join" not in faults:
        raise ConfigError("--faults: member_leave needs member_join")
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    if seconds <= 0 or args.symbols < 1 or args.partitions < 1 or args.oi_interval <= 0:
        raise ConfigError("--minutes/--seconds, --symbols, --partitions and --oi-interval must be positive")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="perpstream-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    log.setLevel(logging.INFO)
    opts = SoakOptions(seconds=seconds, symbols=args.symbols, partitions=args.partitions,
                       oi_interval=args.oi_interval, faults=faults, work_dir=work, broker=args.broker,
                       nodes=nodes if kafka else 1, broker_pause_s=args.broker_pause)
    account, fault_list, info = Soak(opts, work).run()
    if args.json:
        print(json.dumps({"balanced": account.balanced, "account": asdict(account),
                          "faults": [{**asdict(f), "recovery_s": f.recovery_s} for f in fault_list],
                          "run": info}, default=str))
    else:
        print_report(account, fault_list, info)
    return 0 if account.balanced else 1


def print_report(a: Account, faults: list[Fault], info: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=110)
    broker = "Tansu" if info["broker"] == "tansu" else f"Apache Kafka, {info['nodes']} node(s)"
    t = Table(title=f"soak account: {info['symbols']} symbols, {info['run_s']} s, {broker}, "
              f"stores in {info['work_dir']}")
    t.add_column("term")
    t.add_column("how it is measured")
    t.add_column("value", justify="right")
    rows = [
        ("points the exchange sent", "distinct (symbol, metric, event_time) of ws frames + REST bodies",
         a.sent_points),
        ("bad frames the exchange sent", "malformed frames (send_garbage)", a.sent_bad_frames),
        ("points in ClickHouse", "metric_points FINAL, every sink store", a.stored_points),
        ("records in the DLQ", "DLQ topic records (on Tansu, read before each broker restart too)",
         a.dlq_records),
        ("rejections", "producer frames_rejected (its /metrics), by reason", a.rejected_frames),
        ("sent points rejected", "sent identities the producer rejected", a.rejected_points),
        ("points dropped", "producer points_dropped (buffers full while Kafka was away)", a.dropped_points),
        ("sent, not stored", "identity set difference", a.missing),
        ("stored, not sent", "identity set difference", a.unexpected),
        ("values differing", "stored value != sent value", a.value_mismatches),
        ("duplicates without FINAL", "count() - uniqExact(identity), merges stopped",
         a.duplicates_without_final),
        ("duplicates across stores", "identity in both sink stores", a.duplicates_across_stores),
        ("snapshots compared", "market_snapshots FINAL keys", a.snapshots_compared),
        ("snapshot mismatches", "vs the engine over metric_points, exact", a.snapshot_mismatches),
        ("snapshots not recomputed", "stored key the recomputation lacks", a.snapshots_not_recomputed),
        ("faults not recovered", "no data flowing again within the timeout", a.faults_not_recovered),
    ]
    for term, how, value in rows:
        t.add_row(term, how, str(value))
    t.add_row("[bold]sent = stored + DLQ + rejected[/bold]", f"{a.sent_points} = {a.stored_points} + "
              f"{a.dlq_records} + {a.rejected_points}; bad frames {a.sent_bad_frames} <= rejections "
              f"{a.rejected_frames}", "[green]balanced[/green]" if a.balanced else "[red]NOT BALANCED[/red]")
    console.print(t)
    ft = Table(title="faults (times from the start of the run, s)")
    for c in ("fault", "injected", "lifted", "data flowing", "recovery s", "watches", "detail"):
        ft.add_column(c)
    for f in faults:
        ft.add_row(f.kind, f"{f.injected:.1f}", f"{f.lifted:.1f}",
                   "-" if f.recovered is None else f"{f.recovered:.1f}",
                   "[red]never[/red]" if f.recovery_s is None else f"{f.recovery_s:.2f}", f.watches, f.detail)
    console.print(ft)
    for e in a.examples:
        console.print(f"  {e}")
