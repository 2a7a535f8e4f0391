"""Scenario ``produce``: frames -> Kafka acks, next to a raw confluent-kafka + fastavro loop.

Both sides take the same pre-generated raw markPrice / openInterest frames
(the simulated market, 700 symbols by default) and end when the broker has
acknowledged every message (``flush``). The baseline is the least code that
does the job: ``json.loads``, a dict per metric, ``fastavro.schemaless_writer``
with the single-object header, ``Producer.produce`` with the same
idempotent/zstd configuration. The pipeline is the producer's own path:
:class:`Ingest` (validation, rejection counting, OI dedup, freshness) ->
:class:`MetricPointEncoder` -> :class:`Publisher` (overflow, delivery
callbacks). A third figure runs the whole ``ProducerApp`` on a replay file
(asyncio loop, file reading, shutdown drain). Finally the producer runs with
the simulated source at real-time pace in a child process and its peak RSS is
reported. CPU-seconds are this process's (Python and librdkafka threads), not
the broker's.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import Producer

from perpstream.bench.measure import Span, report, row, target
from perpstream.local import TansuBroker, ensure_topics
from perpstream.producer.app import ProducerApp
from perpstream.producer.encoding import MetricPointEncoder
from perpstream.producer.ingest import Ingest
from perpstream.producer.publisher import Publisher, producer_config
from perpstream.producer.settings import ProducerSettings
from perpstream.producer.sources import SimulatedMarket
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.codec import metric_point_codec
from perpstream.schemas.models import Metric

Frames = list[tuple[str, str]]
START = 1_790_000_000_000


def _timed(fn: Callable[[], int]) -> tuple[int, Span]:
    """Points, and the wall and CPU time (Python thread + librdkafka threads) and peak RSS of ``fn``."""
    with Span() as span:
        n = fn()
    return n, span


def baseline(frames: Frames, bootstrap: str, topic: str) -> int:
    codec = metric_point_codec()
    parsed = codec.reader.parsed
    header = codec.header()
    p = Producer(producer_config(bootstrap))
    n = 0
    metrics = (("p", Metric.MARK_PRICE), ("i", Metric.INDEX_PRICE), ("P", Metric.ESTIMATED_SETTLE_PRICE),
               ("r", Metric.FUNDING_RATE))
    for kind, text in frames:
        now = time.time_ns() // 1_000_000
        d = json.loads(text)
        if kind == "ws":
            data = d["data"]
            sym = data["s"]
            key = sym.encode()
            recs = [{"source": "binance_usdm", "symbol": sym, "metric": m, "value": float(data[f]),
                     "event_time": data["E"], "ingest_time": now} for f, m in metrics]
            recs.append({"source": "binance_usdm", "symbol": sym, "metric": Metric.NEXT_FUNDING_TIME,
                         "value": float(data["T"]), "event_time": data["E"], "ingest_time": now})
        else:
            key = d["symbol"].encode()
            recs = [{"source": "binance_usdm", "symbol": d["symbol"], "metric": Metric.OPEN_INTEREST,
                     "value": float(d["openInterest"]), "event_time": d["time"], "ingest_time": now}]
        for r in recs:
            buf = io.BytesIO()
            buf.write(header)
            fastavro.schemaless_writer(buf, parsed, r)
            while True:
                try:
                    p.produce(topic, buf.getvalue(), key)
                    break
                except BufferError:
                    p.poll(0.01)
            n += 1
        if n % 1000 < 6:
            p.poll(0)
    p.flush(120)
    return n


def pipeline(frames: Frames, bootstrap: str, topic: str) -> int:
    telemetry = Telemetry()
    publisher = Publisher(producer_config(bootstrap), topic, telemetry)
    ingest = Ingest(publisher, MetricPointEncoder(metric_point_codec()), telemetry)
    on_ws, on_oi = ingest.on_ws_frame, ingest.on_open_interest
    for i, (kind, text) in enumerate(frames):
        now = time.time_ns() // 1_000_000
        if kind == "ws":
            on_ws(text, now)
        else:
            on_oi(text, now)
        if i % 200 == 0:
            publisher.poll(0)
            while publisher.congested:  # what the app's pausable sources do
                publisher.poll(0.01)
    left = publisher.flush(120)
    assert left == 0 and publisher.delivered == ingest.points
    return ingest.points


def app_replay(frames: Frames, bootstrap: str, topic: str) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "frames.jsonl")
        with path.open("w") as fh:
            for kind, text in frames:
                fh.write(json.dumps({"k": kind, "t": START, "f": text}) + "\n")
        telemetry = Telemetry()
        settings = ProducerSettings(kafka_bootstrap_servers=bootstrap, metrics_topic=topic,
                                    source="replay", replay_file=str(path))
        ProducerApp(settings, telemetry).run(threading.Event())
        return int(telemetry.get("points_delivered"))


def rss_run(bootstrap: str, topic: str, symbols: int, seconds: float) -> tuple[float, int]:
    """Peak RSS (MB) of `perpstream produce --source sim` at real-time pace, and points delivered."""
    env = dict(os.environ, PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS=bootstrap, PERPSTREAM_LOG_LEVEL="WARNING")
    code = (
        "import threading;"
        "from perpstream.producer.app import ProducerApp;"
        "from perpstream.producer.settings import ProducerSettings;"
        "from perpstream.runtime.telemetry import Telemetry;"
        f"s = ProducerSettings(source='sim', sim_symbols={symbols}, sim_rate=1, duration={seconds},"
        f" metrics_topic='{topic}', oi_interval=10);"
        "t = Telemetry(); ProducerApp(s, t).run(threading.Event());"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over fork+exec from this (bigger) process.
        "hwm = [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0];"
        "print(hwm, int(t.get('points_delivered')))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    kb, delivered = out.stdout.split()[-2:]
    return int(kb) / 1024, int(delivered)


@contextmanager
def broker_bootstrap() -> Iterator[str]:
    """``PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS``, else a local Tansu broker for the block."""
    bootstrap = os.environ.get("PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS")
    if bootstrap:
        yield bootstrap
        return
    with TansuBroker() as broker:
        yield broker.bootstrap_servers


def new_topic(bootstrap: str, partitions: int = 6) -> str:
    name = f"bench-{uuid.uuid4().hex[:8]}"
    ensure_topics(bootstrap, {name: partitions})
    return name


LABELS = {"baseline": "raw confluent-kafka + fastavro", "pipeline": "producer pipeline (Ingest)",
          "app": "ProducerApp, replay file"}


def run(symbols: int = 700, seconds: int = 60, rounds: int = 2, rss_seconds: float = 20.0) -> dict[str, Any]:
    """The scenario: ``rounds`` alternating rounds of the three paths (the best of each is
    reported), then the real-time RSS run."""
    with broker_bootstrap() as bootstrap:
        frames = SimulatedMarket(symbols, seed=1, start_ms=START).frames(seconds)
        results: dict[str, list[tuple[int, Span]]] = {"baseline": [], "pipeline": [], "app": []}
        for _ in range(rounds):
            results["baseline"].append(_timed(lambda: baseline(frames, bootstrap, new_topic(bootstrap))))
            results["pipeline"].append(_timed(lambda: pipeline(frames, bootstrap, new_topic(bootstrap))))
            results["app"].append(_timed(lambda: app_replay(frames, bootstrap, new_topic(bootstrap))))
        best = {k: max(v, key=lambda r: r[0] / r[1].wall_s) for k, v in results.items()}
        n, s = best["baseline"]
        base = row(LABELS["baseline"], n, s.wall_s, s.cpu_s, s.peak_rss_mb, role="baseline")
        rows = [base]
        for k in ("pipeline", "app"):
            n, s = best[k]
            rows.append(row(LABELS[k], n, s.wall_s, s.cpu_s, s.peak_rss_mb, baselines=[base]))
        rss, delivered = rss_run(bootstrap, new_topic(bootstrap), symbols, rss_seconds)
    pipe = rows[1]
    return report(
        "produce", {"symbols": symbols, "seconds": seconds, "rounds": rounds, "rss_seconds": rss_seconds,
                    "frames": len(frames), "broker": "external" if os.environ.get(
                        "PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS") else "local Tansu"},
        rows,
        [target("pipeline / raw baseline", pipe["ratios"][base["name"]], ">= 0.7",
                pipe["ratios"][base["name"]] >= 0.7),
         target("pipeline events/s", pipe["events_per_s"], ">= 100,000", pipe["events_per_s"] >= 100_000),
         target(f"peak RSS, produce --source sim, {symbols} symbols (MB)", round(rss, 1), "<= 150",
                rss <= 150)],
        [f"rounds: {rounds}, the best of each path shown; figures of this process (Python and "
         "librdkafka threads), the broker is apart",
         f"`produce --source sim` with {symbols} symbols for {rss_seconds:.0f} s at real-time pace in a "
         f"child process: peak RSS {rss:.0f} MB, {delivered:,} points delivered"],
        rss_run={"peak_rss_mb": round(rss, 1), "delivered": delivered, "seconds": rss_seconds},
    )
