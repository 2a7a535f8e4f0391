"""The soak's faults: their kinds, the schedule that spreads them over the run, and each one's
injection and recovery (docs/soak.md, "Faults").

A fault is recovered when what it stopped grows again (:class:`Fault.watches`, a series of the
:class:`~perpstream.soak.observe.Sampler`); on Apache Kafka, when both groups have committed past
every partition's end at the fault and every replica is back in sync.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from perpstream.local import TansuBroker, ensure_topics
from perpstream.schemas.topics import DLQ_TOPIC, METRICS_TOPIC, SNAPSHOTS_TOPIC
from perpstream.soak.kinds import FAULT_KINDS, KAFKA_ONLY_FAULTS
from perpstream.soak.observe import PastEnds, Sampler, read_dlq
from perpstream.soak.processes import Member, SoakError, wait_until

if TYPE_CHECKING:
    from perpstream.soak.run import Soak

log = logging.getLogger("perpstream.soak")  # the soak's one logger, whichever module writes

_PRODUCT_TOPICS = [METRICS_TOPIC, SNAPSHOTS_TOPIC, DLQ_TOPIC]


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


class FaultSchedule:
    """The faults of one run, injected into ``soak``'s pipeline; each is appended to
    ``soak.faults`` once it has recovered (or the recovery timeout ran out)."""

    def __init__(self, soak: Soak, fake: Any, topics: dict[str, int], sampler: Sampler,
                 sink: Member, extra: Member, snaps: Member, switch: Path) -> None:
        self.soak, self.fake, self.topics, self.sampler = soak, fake, topics, sampler
        self.sink, self.extra, self.snaps, self.switch = sink, extra, snaps, switch
        self.opts = soak.opts

    def run(self) -> None:
        """Every fault asked for, spread over the first 85 % of the run, one after the other."""
        soak, opts = self.soak, self.opts
        kinds = [k for k in FAULT_KINDS if k in opts.faults]
        first = soak.now()
        span = max(0.0, opts.seconds * 0.85 - first)
        for i, kind in enumerate(kinds):
            at = first + span * i / max(1, len(kinds))
            wait_until(lambda at=at: soak.now() >= at, span + 1, "the next fault", 0.2)  # type: ignore[misc]
            time.sleep(1.0)  # the previous recovery settles
            log.info("soak: fault %s at %.1fs", kind, soak.now())
            if kind == "broker_restart" and soak.cluster is None:
                self._tansu_restart()
            elif kind == "broker_restart" or kind in KAFKA_ONLY_FAULTS:
                self._kafka_fault(kind)
            else:
                self._fault(kind)
            f = soak.faults[-1]
            log.info("soak: %s recovered in %ss", kind, f.recovery_s)

    def _record(self, kind: str, watches: str, injected: float, detail: str = "",
                lifted: float | None = None) -> Fault:
        soak = self.soak
        f = Fault(kind, watches, injected=round(injected, 3), detail=detail)
        f.lifted = round(soak.now() if lifted is None else lifted, 3)
        base = self.sampler.fresh()[watches]
        t = self.sampler.wait_growth(watches, base, self.opts.recovery_timeout)
        f.recovered = None if t is None else round(t - soak.start, 3)
        soak.faults.append(f)
        return f

    # -- the exchange and the product's processes --------------------------------------------------

    def _fault(self, kind: str) -> None:
        t0 = self.soak.now()
        fake = self.fake
        if kind == "ws_drop":
            n = fake.drop_connections()
            self._record(kind, "exchange_mark", t0, f"{n} connections closed")
        elif kind == "ws_silence":
            n = fake.mute_connections()
            self._record(kind, "exchange_mark", t0, f"{n} connections silent (watchdog 3 s)")
        elif kind == "bad_frames":
            before = fake.garbage_sent
            fake.send_garbage()
            wait_until(lambda: fake.garbage_sent > before, 30, "the bad frames to be sent")
            self._record(kind, "exchange_mark", t0, "4 malformed frames per connection")
        elif kind in ("rest_429", "rest_418"):
            self._rest_fault(kind)
        elif kind == "clickhouse_down":
            self.switch.touch()
            time.sleep(self.opts.clickhouse_down_s)
            self.switch.unlink()
            self._record(kind, "sink_committed", t0, f"inserts failed for {self.opts.clickhouse_down_s:g} s")
        elif kind == "sink_kill":
            self.sink.kill()
            self.sink.start()
            self._record(kind, "sink_committed", t0, "SIGKILL, restarted with the same member name")
        elif kind == "snapshots_kill":
            self.snaps.kill()
            self.snaps.start()
            self._record(kind, "snapshots_committed", t0, "SIGKILL, restarted")
        elif kind in ("member_join", "member_leave"):
            self._membership(kind, t0)
        else:  # pragma: no cover - the choices of --faults
            raise SoakError(f"unknown fault {kind}")

    def _rest_fault(self, kind: str) -> None:
        status = 429 if kind == "rest_429" else 418
        self.fake.fail_rest(status, 1, retry_after=2.0 if status == 429 else 3.0)
        wait_until(lambda: not self.fake._rest_faults, 60, f"the {status} to be answered")
        t0 = self.soak.now()  # injected when the producer met it
        self._record(kind, "exchange_oi", t0, f"openInterest answered {status}, Retry-After")

    def _membership(self, kind: str, t0: float) -> None:
        extra = self.extra
        if kind == "member_join":
            extra.start()
            wait_until(lambda: extra.alive() and (extra.metrics() or {}).get("batches", 0) > 0,
                       self.opts.recovery_timeout, "the joining member's first committed batch", 0.5)
            f = Fault(kind, "sink-extra batches", injected=round(t0, 3), lifted=round(t0, 3),
                      recovered=round(self.soak.now(), 3),
                      detail="second sink process (own store) joined the group")
            self.soak.faults.append(f)
            return
        rc = extra.stop()
        if rc != 0:
            raise SoakError(f"the leaving member exited with {rc}")
        self._record(kind, "sink_committed", t0, "the second sink process left (SIGTERM)")

    # -- the broker ----------------------------------------------------------------------------------

    def _tansu_restart(self) -> None:
        # memory storage: drain first (exchange held, consumers caught up, DLQ read), docs/soak.md
        soak, fake = self.soak, self.fake
        broker = soak.tansu
        assert broker is not None and soak.producer is not None
        t0 = soak.now()
        fake.paused = True
        time.sleep(max(1.5, self.opts.tick * 2))
        soak.wait_caught_up(soak.producer, self.sampler, 120)
        soak.dlq_before_restart += read_dlq(broker.bootstrap_servers)
        broker.stop()
        soak.delivered_base = soak.delivered_now
        stopped = soak.now()
        fake.paused = False  # the producer buffers and retries while the broker is away
        time.sleep(self.opts.broker_down_s)
        soak.tansu = TansuBroker(port=broker.port, log_path=soak.work / "tansu.log").start()
        ensure_topics(soak.tansu.bootstrap_servers, self.topics)
        self._record("broker_restart", "sink_committed", stopped,
                     f"down {self.opts.broker_down_s:g} s after a {stopped - t0:.1f} s drain; "
                     "memory storage: new, empty topics", lifted=soak.now())

    def _kafka_fault(self, kind: str) -> None:
        """A fault of Apache Kafka's own processes, on durable logs: nothing is drained, no
        topic is created again, the exchange keeps streaming. Data flows again when both
        groups have committed, on every partition that had records, past its end at the
        fault; the fault is over when the cluster is whole and every replica in sync
        (docs/soak.md, "Apache Kafka")."""
        soak = self.soak
        view = soak.view
        assert view is not None
        watches = "both groups past every partition's end at the fault"
        view.wait_in_sync(self.opts.recovery_timeout)  # the previous fault has healed
        watch = self.sampler.watch_past(view.ends())
        t0 = soak.now()
        if kind == "broker_kill":
            detail = self._broker_kill(watch, t0)
        elif kind == "broker_pause":
            detail = self._broker_pause()
        elif kind == "rolling_restart":
            detail, watch = self._rolling_restart(watch)
        elif kind == "broker_restart":
            detail = self._kafka_restart(t0)
        else:  # pragma: no cover - the choices of --faults
            raise SoakError(f"unknown fault {kind}")
        lifted = soak.now()
        at = self.sampler.wait_past(watch, self.opts.recovery_timeout)
        soak.faults.append(Fault(kind, watches, injected=round(t0, 3), lifted=round(lifted, 3),
                                 recovered=None if at is None else round(at - soak.start, 3), detail=detail))

    def _broker_kill(self, watch: PastEnds, t0: float) -> str:
        soak, cluster, view = self.soak, self.soak.cluster, self.soak.view
        assert cluster is not None and view is not None
        counts = cluster.leader_counts(_PRODUCT_TOPICS)
        node = cluster.busiest_leader(_PRODUCT_TOPICS)
        cluster.kill_node(node)
        if cluster.size > 1:  # the others take over: data must flow before the node is back
            self.sampler.wait_past(watch, self.opts.recovery_timeout)
        down = soak.now()
        cluster.start_node(node)
        back = soak.now()
        view.wait_in_sync(self.opts.recovery_timeout)
        return (f"SIGKILL of node {node} (led {counts[node]} of {sum(counts.values())} partitions), "
                f"restarted on its logs {down - t0:.1f} s later, listening after {back - down:.1f} s, "
                f"in sync {soak.now() - back:.1f} s later")

    def _broker_pause(self) -> str:
        soak, cluster, view = self.soak, self.soak.cluster, self.soak.view
        assert cluster is not None and view is not None
        node = cluster.busiest_leader(_PRODUCT_TOPICS)
        cluster.pause_node(node)
        time.sleep(self.opts.broker_pause_s)
        cluster.resume_node(node)
        back = soak.now()
        view.wait_in_sync(self.opts.recovery_timeout)
        return (f"SIGSTOP of node {node} for {self.opts.broker_pause_s:g} s, then SIGCONT; "
                f"in sync {soak.now() - back:.1f} s later")

    def _rolling_restart(self, watch: PastEnds) -> tuple[str, PastEnds]:
        """Each node in turn; returns the detail and the watch the fault's recovery waits on
        (a step that never let data through, or the first)."""
        cluster, view = self.soak.cluster, self.soak.view
        assert cluster is not None and view is not None
        steps: list[str] = []
        step_watch: PastEnds | None = watch
        for node in sorted(n.node_id for n in cluster.nodes):
            t = time.monotonic()
            if step_watch is None:
                step_watch = self.sampler.watch_past(view.ends())
            cluster.stop_node(node)
            cluster.start_node(node)
            view.wait_in_sync(self.opts.recovery_timeout)
            in_sync = time.monotonic() - t
            # each step must let data through on every partition, not only the first
            at_step = self.sampler.wait_past(step_watch, self.opts.recovery_timeout)
            if at_step is None:
                watch = step_watch  # never past: the fault did not recover
            step_watch = None
            flow = "never" if at_step is None else f"{at_step - t:.1f} s"
            steps.append(f"node {node}: in sync after {in_sync:.1f} s, data on every partition {flow}")
        return ("SIGTERM and restart of each node, the next once every replica is in sync (" +
                "; ".join(steps) + ")"), watch

    def _kafka_restart(self, t0: float) -> str:
        soak, cluster, view = self.soak, self.soak.cluster, self.soak.view
        assert cluster is not None and view is not None
        before = cluster.bootstrap_servers
        cluster.stop()
        stopped = soak.now()
        time.sleep(self.opts.broker_down_s)
        cluster.start()
        if cluster.bootstrap_servers != before:
            raise SoakError(f"the cluster came back on {cluster.bootstrap_servers}, not {before}")
        back = soak.now()
        view.wait_in_sync(self.opts.recovery_timeout)
        starting = back - stopped - self.opts.broker_down_s
        return (f"SIGTERM of every node ({stopped - t0:.1f} s), down {self.opts.broker_down_s:g} s, "
                f"started on the same logs and ports in {starting:.1f} s; "
                "durable storage: the topics, their records and the committed offsets survive")
