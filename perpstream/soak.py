"""``perpstream soak``: the whole pipeline under load and a schedule of faults,
then an account that must balance (docs/soak.md).

This process owns the fake exchange (:mod:`perpstream.fake_exchange`, on a
thread) and the local broker; the producer, the sink (chdb directory ``sink``),
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

from perpstream.local import TansuBroker, _die_with_parent, ensure_topics, free_port
from schemas.exceptions import PerpstreamError
from schemas.topics import DLQ_TOPIC, METRICS_TOPIC, SNAPSHOTS_TOPIC

log = logging.getLogger(__name__)

SINK_GROUP = "soak-sink"
SNAPSHOTS_GROUP = "soak-snapshots"
DATABASE = "perpstream"
#: Every fault kind, in the order of the schedule.
FAULT_KINDS = (
    "ws_drop", "ws_silence", "bad_frames", "rest_429", "rest_418", "clickhouse_down", "sink_kill",
    "snapshots_kill", "member_join", "member_leave", "broker_restart",
)
#: The default schedule: every fault. The sink group rebalances eagerly here, since Tansu starts no
#: second cooperative round after its static sink rejoins (docs/soak.md, "Faults").
DEFAULT_FAULTS = FAULT_KINDS
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


class Sampler:
    """Samples, every ``period`` s, what each fault stops: the exchange's sent mark and
    open-interest identities and the committed offsets of both groups. Each series is
    turned into monotone progress (a reset, e.g. a new broker's offsets, counts from 0)."""

    SERIES = ("exchange_mark", "exchange_oi", "sink_committed", "snapshots_committed")

    def __init__(self, fake: Any, bootstrap: str, partitions: int, t0: float, period: float = 0.25) -> None:
        from confluent_kafka import Consumer, TopicPartition

        from service.telemetry import kafka_logging

        self._fake = fake
        self._t0 = t0
        self._period = period
        self._tps = [TopicPartition(METRICS_TOPIC, p) for p in range(partitions)]
        self._consumers = {
            name: Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False,
                            **kafka_logging()})
            for name, group in (("sink_committed", SINK_GROUP), ("snapshots_committed", SNAPSHOTS_GROUP))
        }
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

    def committed(self, name: str) -> int | None:
        try:
            got = self._consumers[name].committed(self._tps, timeout=3)
        except Exception:
            return None
        return sum(max(tp.offset, 0) for tp in got)

    def _sample(self) -> dict[str, int | None]:
        return {
            "exchange_mark": len(self._fake.sent_mark), "exchange_oi": len(self._fake.sent_oi),
            "sink_committed": self.committed("sink_committed"),
            "snapshots_committed": self.committed("snapshots_committed"),
        }

    def _run(self) -> None:
        while not self._stop.is_set():
            values = self._sample()
            with self._cond:
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


# -- members --------------------------------------------------------------------------------------


class Member:
    """One ``perpstream`` child process (its output in ``<work>/<name>.log``)."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], work: Path,
                 metrics_port: int | None = None) -> None:
        self.name, self.args, self.env, self.work = name, args, env, work
        self.metrics_port = metrics_port
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    def start(self) -> Member:
        self.starts += 1
        out = open(self.work / f"{self.name}.log", "ab")  # noqa: SIM115 - the child's output
        args = [*self.args, *(["--metrics-port", str(self.metrics_port)] if self.metrics_port else [])]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "perpstream.cli", *args], env=self.env, cwd=self.work,
            stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
            preexec_fn=_die_with_parent,
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


def outage_buffer(opts: SoakOptions, seconds: float = 60.0) -> int:
    """Points the producer's buffers hold for ``seconds`` of the run's load (each of its two
    stages; docs/producer.md, "When the buffer is full"), at least the producer's default."""
    per_s = opts.symbols * (5 + 1 / opts.oi_interval)
    return max(100_000, int(per_s * seconds))


def _env(bootstrap: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    env.update({
        "PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "PERPSTREAM_SESSION_TIMEOUT_MS": "6000", "PERPSTREAM_HEARTBEAT_INTERVAL_MS": "1000",
        "PERPSTREAM_LOG_LEVEL": "INFO",
    })
    root = str(Path(__file__).resolve().parents[1])
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

    def now(self) -> float:
        return time.monotonic() - self.start

    def run(self) -> tuple[Account, list[Fault], dict[str, Any]]:
        from perpstream.fake_exchange import FakeBinance

        opts = self.opts
        symbols = [f"SOAK{i:05d}USDT" for i in range(opts.symbols)]
        port = free_port()
        broker = TansuBroker(port=port, log_path=self.work / "tansu.log").start()
        topics = {METRICS_TOPIC: opts.partitions, SNAPSHOTS_TOPIC: opts.partitions, DLQ_TOPIC: 1}
        ensure_topics(broker.bootstrap_servers, topics)
        env = _env(broker.bootstrap_servers)
        switch = self.work / "clickhouse-down"
        sink_env = {**env, "PERPSTREAM_TEST_FAULT_CLICKHOUSE_DOWN_FILE": str(switch),
                    "PERPSTREAM_TEST_STOP_MERGES": "1",
                    # members join and leave beside the static sink: Tansu starts no second
                    # cooperative round after a static member rejoins, so the group rebalances
                    # eagerly here (docs/soak.md, "Faults")
                    "PERPSTREAM_PARTITION_ASSIGNMENT_STRATEGY": "range"}
        info: dict[str, Any] = {"work_dir": str(self.work), "symbols": opts.symbols,
                                "partitions": opts.partitions}
        with FakeBinance(symbols, tick=opts.tick, ping_interval=5.0,
                         start_ms=int(time.time() * 1000) // 1000 * 1000) as fake:
            fake.hold_rest_while_paused = True
            buffered = outage_buffer(opts)
            producer_env = {
                **env, "PERPSTREAM_SYMBOLS": ",".join(symbols),
                "PERPSTREAM_WS_SILENCE_TIMEOUT": "3", "PERPSTREAM_BACKOFF_INITIAL": "0.2",
                "PERPSTREAM_BACKOFF_CAP": "2", "PERPSTREAM_FLUSH_TIMEOUT": "120",
                # a broker restarted in place forgets producer ids: the producer replaces a client
                # that delivered nothing for this long (README, local broker differences)
                "PERPSTREAM_KAFKA_DELIVERY_TIMEOUT_MS": "10000",
                # the fake exchange does not limit weight: enough for every symbol at its interval
                "PERPSTREAM_REST_WEIGHT_LIMIT": str(max(2400, int(4 * 60 * opts.symbols / opts.oi_interval))),
                "PERPSTREAM_REST_CONCURRENCY": "16",
                # the websocket is never paused: the buffers must hold the load for as long as
                # the broker restart keeps Kafka away (down, then the stalled client's timeout)
                "PERPSTREAM_BUFFER_MAX_MESSAGES": str(buffered),
                "PERPSTREAM_OVERFLOW_MAX_POINTS": str(buffered),
            }
            producer = Member("producer", ["produce", "--ws-url", fake.ws_url, "--rest-url", fake.rest_url,
                                           "--oi-interval", str(opts.oi_interval)],
                              producer_env, self.work, free_port())
            sink = Member("sink", ["sink", "--clickhouse-dsn", f"chdb://{self.work / 'sink'}",
                                   "--group-id", SINK_GROUP, "--member-name", "soak-sink"],
                          sink_env, self.work, free_port())
            extra = Member("sink-extra", ["sink", "--clickhouse-dsn", f"chdb://{self.work / 'sink-extra'}",
                                          "--group-id", SINK_GROUP, "--member-name", ""],
                           sink_env, self.work, free_port())
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
                sampler = Sampler(fake, broker.bootstrap_servers, opts.partitions, self.start).start()
                base = sampler.fresh()
                for name in Sampler.SERIES:
                    if sampler.wait_growth(name, base[name], opts.recovery_timeout) is None:
                        raise SoakError(f"no data flowing at the start ({name})")
                info["started_s"] = round(self.now(), 2)
                log.info("soak: data flowing after %.1fs", self.now())
                broker = self._schedule(fake, broker, topics, sampler, sink, extra, snaps, switch)
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
                dlq = self.dlq_before_restart + read_dlq(broker.bootstrap_servers)
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
                broker.stop()
        info["run_s"] = round(self.now(), 2)
        account = self._account(sent, bad, dlq, rejected, dropped)
        info["account_s"] = round(self.now() - info["run_s"], 2)
        return account, self.faults, info

    # -- the schedule -------------------------------------------------------------------------------

    def _schedule(self, fake: Any, broker: TansuBroker, topics: dict[str, int], sampler: Sampler,
                  sink: Member, extra: Member, snaps: Member, switch: Path) -> TansuBroker:
        opts = self.opts
        kinds = [k for k in FAULT_KINDS if k in opts.faults]
        first = self.now()
        span = max(0.0, opts.seconds * 0.85 - first)
        for i, kind in enumerate(kinds):
            at = first + span * i / max(1, len(kinds))
            wait_until(lambda at=at: self.now() >= at, span + 1, "the next fault", 0.2)  # type: ignore[misc]
            time.sleep(1.0)  # the previous recovery settles
            log.info("soak: fault %s at %.1fs", kind, self.now())
            if kind == "broker_restart":
                broker = self._broker_restart(fake, broker, topics, sampler)
            else:
                self._fault(kind, fake, sampler, sink, extra, snaps, switch)
            f = self.faults[-1]
            log.info("soak: %s recovered in %ss", kind, f.recovery_s)
        return broker

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

    def _broker_restart(self, fake: Any, broker: TansuBroker, topics: dict[str, int],
                        sampler: Sampler) -> TansuBroker:
        # memory storage: drain first (exchange held, consumers caught up, DLQ read), docs/soak.md
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
        new = TansuBroker(port=broker.port, log_path=self.work / "tansu.log").start()
        ensure_topics(new.bootstrap_servers, topics)
        self._record("broker_restart", "sink_committed", sampler, stopped,
                     f"down {self.opts.broker_down_s:g} s after a {stopped - t0:.1f} s drain; "
                     "memory storage: new, empty topics", lifted=self.now())
        return new

    def _wait_caught_up(self, producer: Member, sampler: Sampler, timeout: float) -> None:
        """The exchange is paused: wait until the producer has delivered all it published (or
        dropped it, counted) and both groups have committed every record of this broker, with
        their committed offsets still for three samples in a row. Tansu's watermarks are wrong,
        so the records on the topic are taken as what the producer delivered since the broker
        started, plus any copies of in-flight sends a broker took before the client that made
        them was replaced (those are unacknowledged: docs/producer.md, "Order across retries")."""
        still: list[tuple[int | None, int | None]] = []

        def caught_up() -> bool:
            m = producer.metrics() or {}
            pub, dlv = m.get("points_published", -1), m.get("points_delivered", -2)
            on_topic = int(dlv) - self.delivered_base
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
        from consumers.snapshots.engine import SnapshotEngine
        from consumers.snapshots.settings import SnapshotSettings
        from consumers.snapshots.store import SNAPSHOT_COLUMNS

        got = read_store(self.work / "snapshots", "snapshots")
        idx = [SNAPSHOT_COLUMNS.index(c) for c in ("symbol", "window_s", "snapshot_time")]
        table = {tuple(r[i] for i in idx): r for r in (tuple(x) for x in got["snapshots"])}
        engine = SnapshotEngine(SnapshotSettings().engine_config())
        for symbol, metric, et, source, value in sorted(points, key=lambda p: (p[2], p[0], p[1])):
            engine.add(source, symbol, metric, value, et)
        recomputed: dict[tuple[Any, ...], tuple[Any, ...]] = {}
        for s in engine.out:
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

    from service.telemetry import kafka_logging

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
    from consumers.clickhouse import open_client
    from consumers.snapshots.store import SNAPSHOT_COLUMNS

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
    p.add_argument("--faults", default=",".join(DEFAULT_FAULTS),
                   help=f"comma-separated fault kinds (known: {','.join(FAULT_KINDS)}; "
                   f"default {','.join(DEFAULT_FAULTS)})")
    p.add_argument("--work-dir",
                   help="where the stores and logs go (default a new temporary directory, kept)")
    p.add_argument("--json", action="store_true", help="print the result as one JSON object")
    p.set_defaults(func=soak_command)


def soak_command(args: argparse.Namespace) -> int:
    from schemas.exceptions import ConfigError

    faults = tuple(f.strip() for f in args.faults.split(",") if f.strip())
    unknown = [f for f in faults if f not in FAULT_KINDS]
    if unknown:
        raise ConfigError(f"--faults: unknown fault kind(s) {', '.join(unknown)}; "
                          f"known: {', '.join(FAULT_KINDS)}")
    if "member_leave" in faults and "member_join" not in faults:
        raise ConfigError("--faults: member_leave needs member_join")
    seconds = args.seconds if args.seconds is not None else args.minutes * 60
    if seconds <= 0 or args.symbols < 1 or args.partitions < 1 or args.oi_interval <= 0:
        raise ConfigError("--minutes/--seconds, --symbols, --partitions and --oi-interval must be positive")
    work = Path(args.work_dir) if args.work_dir else Path(tempfile.mkdtemp(prefix="perpstream-soak-"))
    work.mkdir(parents=True, exist_ok=True)
    log.setLevel(logging.INFO)
    opts = SoakOptions(seconds=seconds, symbols=args.symbols, partitions=args.partitions,
                       oi_interval=args.oi_interval, faults=faults, work_dir=work)
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
    t = Table(title=f"soak account: {info['symbols']} symbols, {info['run_s']} s, "
              f"stores in {info['work_dir']}")
    t.add_column("term")
    t.add_column("how it is measured")
    t.add_column("value", justify="right")
    rows = [
        ("points the exchange sent", "distinct (symbol, metric, event_time) of ws frames + REST bodies",
         a.sent_points),
        ("bad frames the exchange sent", "malformed frames (send_garbage)", a.sent_bad_frames),
        ("points in ClickHouse", "metric_points FINAL, every sink store", a.stored_points),
        ("records in the DLQ", "DLQ topic records (read before each broker restart)", a.dlq_records),
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
