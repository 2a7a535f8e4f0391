"""One soak run: the broker, the fake exchange, the members, the faults, the end, the account.

This process owns the fake exchange (:mod:`perpstream.fakes.binance`, on a
thread) and the broker: the local Tansu broker (memory storage, the default), or
Apache Kafka on loopback (``--broker kafka --nodes 1|3``, durable logs, where
broker faults are real kills, pauses and restarts); the producer, the sink (chdb
directory ``sink``), the extra sink member that joins and leaves (its own
directory ``sink-extra``) and the snapshot consumer (directory ``snapshots``) are
child processes (docs/soak.md, "Processes").
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perpstream.fakes.binance import FakeBinance, is_delivery
from perpstream.kafka_runtime import KafkaCluster
from perpstream.local import TansuBroker, ensure_topics, free_port, free_ports, replication_for
from perpstream.schemas.topics import DLQ_TOPIC, METRICS_TOPIC, SNAPSHOTS_TOPIC
from perpstream.soak.account import Account, make_account
from perpstream.soak.faults import Fault, FaultSchedule
from perpstream.soak.kinds import BROKER_PAUSE_S, DEFAULT_FAULTS
from perpstream.soak.observe import SINK_GROUP, SNAPSHOTS_GROUP, KafkaView, Sampler, read_dlq
from perpstream.soak.processes import SOAK_MEMBER, Member, SoakError, member_env, wait_until

log = logging.getLogger("perpstream.soak")  # the soak's one logger, whichever module writes


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


@dataclass
class _Members:
    producer: Member
    sink: Member
    extra: Member
    snaps: Member

    def all(self) -> list[Member]:
        return [self.producer, self.sink, self.extra, self.snaps]


@dataclass
class _End:
    """What the run's end gives the account."""

    sent: dict[tuple[str, str, int], float]
    bad: int
    dlq: int
    rejected: int
    dropped: int
    #: the hours fundingInfo gives each perpetual the producer follows
    intervals: dict[str, float]


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
        opts = self.opts
        symbols = [f"SOAK{i:05d}USDT" for i in range(opts.symbols)]
        kafka = opts.broker == "kafka"
        topics = {METRICS_TOPIC: opts.partitions, SNAPSHOTS_TOPIC: opts.partitions, DLQ_TOPIC: 1}
        bootstrap = self._start_broker(topics)
        info: dict[str, Any] = {"work_dir": str(self.work), "symbols": opts.symbols,
                                "partitions": opts.partitions, "broker": opts.broker,
                                "nodes": opts.nodes if kafka else 1}
        if kafka:
            info["replication"] = dict(zip(("replication_factor", "min_insync_replicas"),
                                           replication_for(opts.nodes), strict=True))
        switch = self.work / "clickhouse-down"
        with FakeBinance(symbols, tick=opts.tick, ping_interval=5.0,
                         start_ms=int(time.time() * 1000) // 1000 * 1000) as fake:
            fake.hold_rest_while_paused = True
            members = self._members(fake, bootstrap, symbols, switch)
            self.producer = members.producer
            sampler: Sampler | None = None
            try:
                for m in (members.sink, members.snaps, members.producer):
                    m.start()
                for m in (members.sink, members.snaps, members.producer):
                    m.wait_serving()
                sampler = Sampler(fake, bootstrap, opts.partitions, self.start).start()
                self._wait_flowing(sampler)
                info["started_s"] = round(self.now(), 2)
                log.info("soak: data flowing after %.1fs", self.now())
                FaultSchedule(self, fake, topics, sampler, members.sink, members.extra, members.snaps,
                              switch).run()
                info["faults_done_s"] = round(self.now(), 2)
                wait_until(lambda: self.now() >= opts.seconds, opts.seconds + 1, "the end of the run", 0.5)
                end = self._end(fake, bootstrap, members, sampler, info)
            finally:
                if sampler is not None:
                    sampler.stop()
                for m in members.all():
                    with contextlib.suppress(Exception):
                        m.stop(30)
                        self._stop_broker()
        info["run_s"] = round(self.now(), 2)
        account = make_account(self.work, end.sent, end.bad, end.dlq, end.rejected, end.dropped, self.faults,
                               end.intervals)
        info["account_s"] = round(self.now() - info["run_s"], 2)
        return account, self.faults, info

    def _start_broker(self, topics: dict[str, int]) -> str:
        """The broker, its topics and (on Apache Kafka) the view of its replicas; its bootstrap."""
        opts = self.opts
        if opts.broker == "kafka":
            # replication min(3, nodes), min.insync.replicas one less (docs/soak.md, "Apache Kafka")
            self.cluster = KafkaCluster(self.work / "kafka", nodes=opts.nodes, heap_mb=opts.kafka_heap_mb)
            self.cluster.start()
            bootstrap = self.cluster.bootstrap_servers
        else:
            self.tansu = TansuBroker(port=free_port(), log_path=self.work / "tansu.log").start()
            bootstrap = self.tansu.bootstrap_servers
        try:
            ensure_topics(bootstrap, topics)
            if self.cluster is not None:
                self.view = KafkaView(bootstrap, opts.partitions, list(topics))
        except BaseException:
            self._stop_broker()
            raise
        return bootstrap

    def _members(self, fake: FakeBinance, bootstrap: str, symbols: list[str], switch: Path) -> _Members:
        """The producer, the sink, the extra sink and the snapshot consumer, not started yet."""
        opts = self.opts
        kafka = opts.broker == "kafka"
        env = member_env(bootstrap, short_sessions=not kafka)
        sink_env = dict(env)
        # the soak's fault hooks reach the sink members through their own entry point
        hooks = ["--clickhouse-down-file", str(switch), "--stop-merges"]
        if not kafka:
            # members join and leave beside the static sink: Tansu starts no second cooperative
            # round after a static member rejoins, so the group rebalances eagerly there
            # (docs/soak.md, "Faults"); Apache Kafka keeps the default, cooperative-sticky
            sink_env["PERPSTREAM_PARTITION_ASSIGNMENT_STRATEGY"] = "range"
        ports = free_ports(4)  # distinct: the members start later, one after the other
        producer = Member("producer", ["produce", "--ws-url", fake.ws_url, "--rest-url", fake.rest_url,
                                       "--oi-interval", str(opts.oi_interval)],
                          self._producer_env(env, symbols), self.work, ports[0])
        sink = Member("sink", [*hooks, "sink", "--clickhouse-dsn", f"chdb://{self.work / 'sink'}",
                               "--group-id", SINK_GROUP, "--member-name", "soak-sink"],
                      sink_env, self.work, ports[1], module=SOAK_MEMBER)
        # static on Apache Kafka (a static member stopped with SIGTERM leaves at once); dynamic
        # on Tansu, which never expires a static member that left
        extra = Member("sink-extra", [*hooks, "sink", "--clickhouse-dsn",
                                      f"chdb://{self.work / 'sink-extra'}", "--group-id", SINK_GROUP,
                                      "--member-name", "soak-sink-extra" if kafka else ""],
                       sink_env, self.work, ports[2], module=SOAK_MEMBER)
        snaps = Member("snapshots", ["snapshots", "--clickhouse-dsn", f"chdb://{self.work / 'snapshots'}",
                                     "--group-id", SNAPSHOTS_GROUP, "--member-name", "soak-snapshots"],
                       env, self.work, ports[3])
        return _Members(producer, sink, extra, snaps)

    def _producer_env(self, env: dict[str, str], symbols: list[str]) -> dict[str, str]:
        opts = self.opts
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
        if opts.broker != "kafka":
            # a Tansu broker restarted in place forgets producer ids: the producer replaces a
            # client that delivered nothing for this long (docs/kafka.md).
            # Apache Kafka keeps them on its logs: the producer's default (120 s) stays, longer
            # than any outage here, so no client is replaced and no unacknowledged send re-sent
            producer_env["PERPSTREAM_KAFKA_DELIVERY_TIMEOUT_MS"] = "10000"
        return producer_env

    def _wait_flowing(self, sampler: Sampler) -> None:
        base = sampler.fresh()
        for name in Sampler.SERIES:
            if sampler.wait_growth(name, base[name], self.opts.recovery_timeout) is None:
                raise SoakError(f"no data flowing at the start ({name})")

    def _end(self, fake: FakeBinance, bootstrap: str, members: _Members, sampler: Sampler,
             info: dict[str, Any]) -> _End:
        """The exchange stops, the producer drains, the consumers catch up, every member stops."""
        fake.paused = True
        time.sleep(max(1.5, self.opts.tick * 2))
        producer = members.producer
        self.wait_caught_up(producer, sampler, 180)
        pm = producer.metrics() or {}
        rc = producer.stop()
        if rc != 0:
            raise SoakError(f"the producer exited with {rc}: see {self.work / 'producer.log'}")
        info["producer"] = {k: pm.get(k, 0) for k in (
            "points_published", "points_delivered", "points_dropped", "frames_rejected",
            "reconnects", "rest_requests", "rest_bans")}
        for m in (members.extra, members.sink, members.snaps):
            rc = m.stop()
            if rc != 0:
                raise SoakError(f"{m.name} exited with {rc}: see {self.work / m.name}.log")
        dlq = self.dlq_before_restart + read_dlq(bootstrap)
        info["exchange"] = {"connections": fake.connections_total, "mark_frames": len(fake.sent_mark),
                            "oi_answers": len(fake.sent_oi),
                            "rest_errors": sum(1 for r in fake.rest_requests if r[2] in (418, 429))}
        intervals = {s: float(fake.funding_interval_hours(s)) for s in fake.listing if not is_delivery(s)}
        return _End(fake.expected_points(), fake.garbage_sent, dlq, int(pm.get("frames_rejected", 0)),
                    int(pm.get("points_dropped", 0)), intervals)

    def _stop_broker(self) -> None:
        if self.cluster is not None:
            self.cluster.stop()
        if self.tansu is not None:
            self.tansu.stop()

    def wait_caught_up(self, producer: Member, sampler: Sampler, timeout: float) -> None:
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
