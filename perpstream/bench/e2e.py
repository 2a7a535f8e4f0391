"""Scenarios ``e2e`` and ``live``: the whole embedded stack at N x live load.

Two layouts (``--layout``). ``single`` (the default): one step runs what
``perpstream run`` runs, in one process. ``processes``: the producer, the sink
member and the snapshot member each run in an OS process of their own, the
sink and the snapshot member each with its own chdb directory, as a deployment
with a ClickHouse server runs them (:mod:`perpstream.bench.processes`); the
rest of this description holds for both, and the CPU and RSS figures are then
those of every child. The single layout: a local Tansu
broker (a child process; ``PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS`` names another
one instead), embedded ClickHouse (chdb) in a temporary directory, the sink
group and the snapshot group (one member each, the product's default
settings) and the producer with the simulated market. N x live load is
``700 * N`` symbols at real-time pace (``sim_rate`` 1): one markPrice frame per
symbol per second (5 metrics) and open interest every 10 s, about
``3,570 * N`` events/s, with event times at wall time. (``sim_rate`` N would
offer the same load with event times running N times faster than the clock,
which makes "event time to stored" meaningless.) The producer starts on a
whole wall-clock second, so a tick's event time is the wall time it is due.

Latency, measured by the benchmark's subclass of the sink's handler: when a
batch's inserts have returned (the rows are in ``metric_points``, visible to
queries; the offsets are committed after that), the wall clock in ms minus
every stored row's ``event_time`` and ``ingest_time``. For snapshots: when the
snapshot handler's batch is done (snapshots produced, acknowledged and in
``market_snapshots``), the wall clock minus each snapshot's
``snapshot_time``; a snapshot for time T can only be emitted once the
watermark (max event time - allowed lateness, 2 s by default) passes T. The
resolution is one batch: every row of a batch gets the same completion time,
taken with a millisecond clock after the insert returns.

A step: start everything, wait for both groups to be assigned and the first
rows to be stored, let it run ``warmup`` s, then measure for ``seconds`` s:
events offered (the market's nominal rate), published, stored and applied
(handled) by the snapshot member per second, the latencies of what was stored in the
window, CPU-seconds of this process and of the broker (/proc/<pid>/stat),
and peak RSS of both (VmHWM). Held: stored and applied rates >= 0.97 x
offered and p99 event -> ClickHouse <= 2 s.
"""

from __future__ import annotations

import contextlib
import functools
import importlib
import logging
import os
import tempfile
import threading
import time
import uuid
from array import array
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from perpstream.bench.measure import peak_rss_mb, percentiles, proc_cpu_s, proc_status_mb, row

# The product's modules are imported inside the functions that use them: a member process of the
# processes layout imports this module for its latency helpers, and it must load only its own
# role to be measured as the product's command would be (perpstream/bench/member.py).

LIVE_SYMBOLS = 700
#: events per symbol per simulated second: 5 markPrice metrics + open interest every 10 s
EVENTS_PER_SYMBOL_S = 5.1
HELD_RATE = 0.97
HELD_P99_MS = 2_000.0
#: ``single``: the stack in one process, as ``perpstream run``; ``processes``: producer, sink and
#: snapshot member in an OS process each, as a deployment with a ClickHouse server runs them
LAYOUTS = ("single", "processes")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


class LatencyLog:
    """What completed for the events of the window: event times in ``[lo, hi)`` ms (the snapshots:
    snapshot times in it). Latencies (ms) in int32 arrays, so holding them costs 4 bytes each."""

    def __init__(self) -> None:
        self.lo, self.hi = 0, 0  # empty until the window is set
        self.event = array("i")
        self.ingest = array("i")
        self.snapshot = array("i")
        #: records of the window stored by the sink / handled by the snapshot member
        self.stored = 0
        self.snapshot_records = 0

    def window(self, rows: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        lo, hi = self.lo, self.hi
        return [r for r in rows if lo <= r[3] < hi]


def _sink_handler(client: Any, db: str, telemetry: Any, group: str, lat: LatencyLog) -> Any:
    from perpstream.consumers.runtime.batch import Batch
    from perpstream.consumers.sink.handler import ClickHouseSink

    class LatencySink(ClickHouseSink):
        def handle(self, batch: Batch) -> None:
            super().handle(batch)
            now = now_ms()
            for pb in batch.partitions.values():
                rows = lat.window(pb.rows)
                if rows:
                    lat.stored += len(rows)
                    lat.event.extend([now - r[3] for r in rows])
                    lat.ingest.extend([now - r[5] for r in rows])

    return LatencySink(client, db, telemetry=telemetry, group_id=group)


def _snapshot_factory(lat: LatencyLog) -> Any:
    from perpstream.consumers.snapshots.app import SnapshotService

    def factory(svc: SnapshotService, member: int) -> Any:
        h = SnapshotService.make_handler(svc, member)
        inner_handle, inner_write = h.handle, h.store.write_snapshots
        written: list[int] = []

        def write_snapshots(snaps: Any) -> None:
            inner_write(snaps)
            written.extend(s["snapshot_time"] for s in snaps)

        def handle(batch: Any) -> None:
            written.clear()
            inner_handle(batch)
            now = now_ms()
            lat.snapshot_records += sum(len(lat.window(pb.rows)) for pb in batch.partitions.values())
            lat.snapshot.extend([now - t for t in written if lat.lo <= t < lat.hi])

        h.store.write_snapshots = write_snapshots  # type: ignore[method-assign]
        h.handle = handle  # type: ignore[method-assign]
        return h

    return factory


@contextlib.contextmanager
def _broker() -> Iterator[tuple[str, int | None]]:
    external = os.environ.get("PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external, None
        return
    from perpstream.local import TansuBroker

    with tempfile.TemporaryDirectory(prefix="bench-broker-") as tmp, \
            TansuBroker(log_path=Path(tmp, "broker.log")) as broker:
        yield broker.bootstrap_servers, broker.pid


def _profiled(name: str, fn: Any, profiles: dict[str, Any] | None) -> Any:
    """``fn``, run under a cProfile of its own when profiling (cProfile sees one thread only)."""
    if profiles is None:
        return fn
    import cProfile

    prof = profiles[name] = cProfile.Profile()
    return functools.partial(prof.runcall, fn)


def _wait(cond: Any, timeout: float, what: str, alive: Any) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if not alive():
            raise RuntimeError(f"a component stopped while waiting for {what}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.05)


def step(n: float, seconds: float = 20.0, warmup: float = 10.0, symbols_per_n: int = LIVE_SYMBOLS,
         partitions: int = 6, profile: bool = False, layout: str = "single") -> dict[str, Any]:
    """One step at ``n`` x live load; the measurement of the window as a dict.

    ``layout`` ``single``: everything in this process (as ``perpstream run``); ``processes``: the
    producer, the sink and the snapshot member in an OS process each
    (:mod:`perpstream.bench.processes`)."""
    if layout == "processes":
        from perpstream.bench.processes import step as processes_step

        return processes_step(n, seconds=seconds, warmup=warmup, symbols_per_n=symbols_per_n,
                              partitions=partitions, profile=profile)
    if layout != "single":
        raise ValueError(f"unknown layout {layout!r} (one of {', '.join(LAYOUTS)})")
    from perpstream.consumers.clickhouse import open_client
    from perpstream.consumers.sink.migrations import migrate_sink
    from perpstream.consumers.sink.service import sink_loop
    from perpstream.consumers.sink.settings import SinkSettings
    from perpstream.consumers.snapshots.app import SnapshotService
    from perpstream.consumers.snapshots.settings import SnapshotSettings
    from perpstream.local import ensure_topics
    from perpstream.producer.app import ProducerApp
    from perpstream.producer.settings import ProducerSettings
    from perpstream.runtime.supervisor import run_once
    from perpstream.runtime.telemetry import Telemetry

    logging.getLogger().setLevel(logging.WARNING)
    symbols = max(1, round(symbols_per_n * n))
    offered = symbols * EVENTS_PER_SYMBOL_S
    telemetry, lat = Telemetry(), LatencyLog()
    suffix = uuid.uuid4().hex[:6]
    metrics, snaps_topic, dlq = f"bench-m-{suffix}", f"bench-s-{suffix}", f"bench-d-{suffix}"
    db = "bench"
    with _broker() as (bootstrap, broker_pid), tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmp:
        ensure_topics(bootstrap, {metrics: partitions, snaps_topic: partitions, dlq: partitions})
        client = open_client(f"chdb://{tmp}/ch")
        common: dict[str, Any] = {"kafka_bootstrap_servers": bootstrap, "clickhouse_database": db,
                                  "metrics_topic": metrics, "snapshots_topic": snaps_topic,
                                  "dlq_topic": dlq}
        overrides = {"session.timeout.ms": 6000, "heartbeat.interval.ms": 1000}  # as `run` on its broker
        sink_settings = SinkSettings(**common, group_id=f"bench-sink-{suffix}")
        snap_settings = SnapshotSettings(**common, group_id=f"bench-snap-{suffix}")
        migrate_sink(client, db)
        sink = sink_loop(sink_settings, client, telemetry=telemetry, consumer_overrides=overrides,
                         handler=_sink_handler(client, db, telemetry, sink_settings.group_id, lat))
        snapshots = SnapshotService(snap_settings, client, telemetry, consumer_overrides=overrides,
                                    handler_factory=_snapshot_factory(lat))
        consumers_stop, producer_stop = threading.Event(), threading.Event()
        profiles: dict[str, Any] | None = {} if profile else None
        threads = [run_once("sink", _profiled("sink", functools.partial(sink.run, consumers_stop), profiles)),
                   run_once("snapshots", _profiled(
                       "snapshots", functools.partial(snapshots.run, consumers_stop), profiles))]

        def alive() -> bool:
            return all(t.is_alive() for t in threads)

        _wait(lambda: bool(sink.assignment) and any(lp.assignment for lp in snapshots.loops), 60,
              "the groups' assignments", alive)
        time.sleep(1.0 - time.time() % 1.0 + 0.002)  # a tick's event time = its due wall time
        producer = ProducerApp(ProducerSettings(
            kafka_bootstrap_servers=bootstrap, metrics_topic=metrics, source="sim", sim_symbols=symbols,
            sim_rate=1.0, oi_interval=10.0), telemetry)
        producer_thread = run_once("producer", _profiled(
            "producer", functools.partial(producer.run, producer_stop), profiles))
        everything = [*threads, producer_thread]

        def all_alive() -> bool:
            return all(t.is_alive() for t in everything)

        _wait(lambda: telemetry.total("records_stored") > 0, 60, "the first stored rows", all_alive)
        time.sleep(warmup)
        # The window: whole seconds of event time, so it holds whole ticks of the market; what is
        # stored of it within the grace after its end counts.
        length = max(1, round(seconds))
        lo = (now_ms() // 1000 + 1) * 1000
        lat.lo, lat.hi = lo, lo + length * 1000
        time.sleep(max(0.0, lo / 1000 - time.time()))
        c0, b0, t0 = proc_cpu_s(), proc_cpu_s(broker_pid) if broker_pid else 0.0, time.perf_counter()
        published0 = telemetry.total("points_published")
        while time.time() * 1000 < lat.hi and all_alive():
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        cpu = proc_cpu_s() - c0
        bcpu = (proc_cpu_s(broker_pid) - b0) if broker_pid else None
        published = telemetry.total("points_published") - published0
        grace_end = lat.hi + HELD_P99_MS + 1_000
        while now_ms() < grace_end and all_alive() and (
                lat.stored < offered * length or lat.snapshot_records < offered * length):
            time.sleep(0.05)
        stored, handled = lat.stored, lat.snapshot_records
        lat.lo = lat.hi = 0  # nothing more counts
        self_rss, self_peak = proc_status_mb("VmRSS"), peak_rss_mb()
        broker_rss = proc_status_mb("VmRSS", broker_pid) if broker_pid else None
        broker_peak = peak_rss_mb(broker_pid) if broker_pid else None
        failed = [t.name for t in everything if not t.is_alive()]
        producer_stop.set()
        producer_thread.join(60)
        consumers_stop.set()
        for t in threads:
            t.join(60)
        telemetry.detach_gauges()
        client.close()
    processes = {
        "perpstream": {"pid": os.getpid(), "cpu_s": round(cpu, 2), "cpu_share": round(cpu / wall, 4),
                       "rss_mb": self_rss, "peak_rss_mb": self_peak},
        **({"broker": {"pid": broker_pid, "cpu_s": round(bcpu or 0.0, 2),
                       "cpu_share": round((bcpu or 0.0) / wall, 4), "rss_mb": broker_rss,
                       "peak_rss_mb": broker_peak}} if broker_pid else {}),
    }
    profile_text = None
    if profiles:
        import io
        import pstats

        text = io.StringIO()
        for name, prof in profiles.items():
            text.write(f"--- thread {name} (its whole run, start-up included)\n")
            pstats.Stats(prof, stream=text).sort_stats("tottime").print_stats(14)
        profile_text = text.getvalue()
    return step_result(
        layout="single", n=n, symbols=symbols, length=length, wall=wall, warmup=warmup, offered=offered,
        published=published, stored=stored, handled=handled, lat=lat, processes=processes, failed=failed,
        profile=profile_text)


def step_result(*, layout: str, n: float, symbols: int, length: int, wall: float, warmup: float,
                offered: float, published: float, stored: int, handled: int, lat: LatencyLog,
                processes: dict[str, dict[str, Any]], failed: list[str],
                profile: str | None = None, **extra: Any) -> dict[str, Any]:
    """A step's measurement as a dict, the held criteria applied (both layouts)."""
    event, ingest, snap = (percentiles(a) for a in (lat.event, lat.ingest, lat.snapshot))
    stored_rate = stored / length
    applied_rate = handled / length
    p99 = event["p99"] if event else None
    held = (not failed and stored_rate >= HELD_RATE * offered and applied_rate >= HELD_RATE * offered
            and p99 is not None and p99 <= HELD_P99_MS)
    cpu_s = sum(p["cpu_s"] for p in processes.values())
    out: dict[str, Any] = {
        "layout": layout, "n": n, "symbols": symbols, "seconds": length, "wall_s": round(wall, 2),
        "warmup_s": warmup, "offered_per_s": round(offered, 1),
        "published_per_s": round(published / wall, 1),
        "stored_per_s": round(stored_rate, 1), "snapshot_records_per_s": round(applied_rate, 1),
        "latency_ms": {"event_to_clickhouse": event, "ingest_to_clickhouse": ingest,
                       "snapshot_time_to_emitted": snap},
        "processes": processes,
        "cpu_of": " + ".join(f"{name} process" if name != "broker" else name for name in processes),
        "total": {"cpu_s": round(cpu_s, 2), "cpu_share": round(cpu_s / wall, 4),
                  "peak_rss_mb": round(sum(p["peak_rss_mb"] or 0.0 for p in processes.values()), 1)},
        "failed": failed, "held": held, **extra,
    }
    if profile:
        out["profile"] = profile
    return out


def step_row(s: dict[str, Any]) -> dict[str, Any]:
    """A step as a report row: stored events in the window, the CPU and peak RSS of every process,
    the ratio to the offered load."""
    procs = s["processes"].values()
    cpu = sum(p["cpu_s"] for p in procs)
    rss = sum(p["peak_rss_mb"] or 0.0 for p in procs)
    stored = round(s["stored_per_s"] * s["seconds"])
    return row(f"{s['n']:g}x live ({s['symbols']:,} symbols)", stored, s["seconds"], cpu, rss,
               baselines=[{"name": "offered", "events_per_s": s["offered_per_s"]}],
               latency={k: v for k, v in s["latency_ms"].items() if v},
               cpu_of=s.get("cpu_of", "perpstream process + broker"), held=s["held"], n=s["n"],
               layout=s.get("layout", "single"))


def idle_store(seconds: float = 5.0) -> dict[str, Any]:
    """The floor of the embedded stack's footprint: this interpreter with the product imported
    and embedded ClickHouse opened and migrated (sink and snapshot tables), doing nothing."""
    from perpstream.consumers.clickhouse import open_client
    from perpstream.consumers.sink.migrations import migrate_sink
    from perpstream.consumers.snapshots.store import migrate_snapshots

    for module in ("perpstream.pipeline", "perpstream.producer.app", "perpstream.consumers.sink.service",
                   "perpstream.consumers.snapshots.app"):
        importlib.import_module(module)  # the code a step runs, loaded

    with tempfile.TemporaryDirectory(prefix="bench-idle-") as tmp:
        client = open_client(f"chdb://{tmp}/ch")
        migrate_sink(client, "bench")
        migrate_snapshots(client, "bench")
        c0, t0 = proc_cpu_s(), time.perf_counter()
        time.sleep(seconds)
        wall, cpu = time.perf_counter() - t0, proc_cpu_s() - c0
        out = {"seconds": round(wall, 2), "cpu_s": round(cpu, 3), "cpu_share": round(cpu / wall, 4),
               "rss_mb": proc_status_mb("VmRSS"), "peak_rss_mb": peak_rss_mb()}
        client.close()
    return out
