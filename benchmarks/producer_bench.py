"""Producer pipeline throughput next to a raw confluent-kafka + fastavro baseline.

Run: ``python -m benchmarks.producer_bench [--symbols 700] [--seconds 60]``.

Both sides take the same pre-generated raw markPrice / openInterest frames
(the simulated market, 700 symbols by default) and end when the broker has
acknowledged every message (``flush``). The baseline is the least code that
does the job: ``json.loads``, a dict per metric, ``fastavro.schemaless_writer``
with the single-object header, ``Producer.produce`` with the same
idempotent/zstd configuration. The pipeline is the producer's own path:
:class:`Ingest` (validation, rejection counting, OI dedup, freshness) ->
:class:`MetricPointEncoder` -> :class:`Publisher` (overflow, delivery
callbacks). A third figure runs the whole ``ProducerApp`` on a replay file
(asyncio loop, file reading, shutdown drain). Finally ``perpstream produce
--source sim`` runs with 700 symbols at real-time pace in a child process
and its peak RSS is reported.

The broker is ``PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS`` or a local Tansu.
Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
from confluent_kafka import Producer

from producer import binance
from producer.app import ProducerApp
from producer.encoding import MetricPointEncoder
from producer.ingest import Ingest
from producer.publisher import Publisher, producer_config
from producer.settings import ProducerSettings
from producer.sources import SimulatedMarket
from schemas.codec import metric_point_codec
from service.settings import CommonSettings
from service.telemetry import Telemetry
from service.tuning import tune_gc

Frames = list[tuple[str, str]]
START = 1_790_000_000_000


def _timed(fn: Callable[[], int]) -> tuple[int, float, float]:
    """(points, wall s, CPU s of this process: Python thread + librdkafka threads)."""
    c0, t0 = time.process_time(), time.perf_counter()
    n = fn()
    return n, time.perf_counter() - t0, time.process_time() - c0


def baseline(frames: Frames, bootstrap: str, topic: str) -> int:
    codec = metric_point_codec()
    parsed = codec.reader.parsed
    header = codec.header()
    p = Producer(producer_config(bootstrap))
    n = 0
    metrics = (("p", "mark_price"), ("i", "index_price"), ("P", "estimated_settle_price"),
               ("r", "funding_rate"))
    for kind, text in frames:
        now = time.time_ns() // 1_000_000
        d = json.loads(text)
        if kind == "ws":
            data = d["data"]
            sym = data["s"]
            key = sym.encode()
            recs = [{"source": "binance_usdm", "symbol": sym, "metric": m, "value": float(data[f]),
                     "event_time": data["E"], "ingest_time": now} for f, m in metrics]
            recs.append({"source": "binance_usdm", "symbol": sym, "metric": "next_funding_time",
                         "value": float(data["T"]), "event_time": data["E"], "ingest_time": now})
        else:
            key = d["symbol"].encode()
            recs = [{"source": "binance_usdm", "symbol": d["symbol"], "metric": "open_interest",
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
    ingest = Ingest(publisher, MetricPointEncoder(metric_point_codec()).encode, telemetry)
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
        "from producer.app import ProducerApp; from producer.settings import ProducerSettings;"
        "from service.telemetry import Telemetry;"
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--symbols", type=int, default=700)
    ap.add_argument("--seconds", type=int, default=60, help="simulated seconds of frames")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; the best of each is shown")
    ap.add_argument("--rss-seconds", type=float, default=20.0)
    ap.add_argument("--profile", action="store_true", help="cProfile one pipeline round instead")
    ap.add_argument("--gc-threshold", type=int, default=CommonSettings().gc_threshold,
                    help="as the commands apply at start-up (gc_threshold); 0 = the interpreter's default")
    args = ap.parse_args(argv)
    tune_gc(args.gc_threshold)  # what `perpstream produce` does; the baseline runs under it too

    broker: Any = None
    bootstrap = os.environ.get("PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        from perpstream.local import TansuBroker

        broker = TansuBroker().start()
        bootstrap = broker.bootstrap_servers
    from perpstream.local import ensure_topics

    try:
        frames = SimulatedMarket(args.symbols, seed=1, start_ms=START).frames(args.seconds)
        n_points = sum(len(binance.points_from_message(json.loads(t), 0)) if k == "ws" else 1
                       for k, t in frames)
        print(f"frames: {len(frames):,} ({args.symbols} symbols x {args.seconds} s), "
              f"MetricPoints: {n_points:,}; broker {bootstrap}")

        def topic() -> str:
            name = f"bench-{uuid.uuid4().hex[:8]}"
            ensure_topics(bootstrap, {name: 6})
            return name

        if args.profile:
            import cProfile
            import pstats

            prof = cProfile.Profile()
            prof.enable()
            pipeline(frames, bootstrap, topic())
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(15)
            return 0

        results: dict[str, list[tuple[int, float, float]]] = {"baseline": [], "pipeline": [], "app": []}
        for _ in range(args.rounds):
            results["baseline"].append(_timed(lambda: baseline(frames, bootstrap, topic())))
            results["pipeline"].append(_timed(lambda: pipeline(frames, bootstrap, topic())))
            results["app"].append(_timed(lambda: app_replay(frames, bootstrap, topic())))
        best = {k: max(v, key=lambda r: r[0] / r[1]) for k, v in results.items()}
        print(f"{'':34}{'points':>10}{'wall s':>9}{'CPU s':>8}{'points/s':>12}{'points/CPU-s':>14}")
        labels = {"baseline": "raw confluent-kafka + fastavro", "pipeline": "producer pipeline (Ingest)",
                  "app": "ProducerApp, replay file"}
        for k, (n, wall, cpu) in best.items():
            print(f"{labels[k]:34}{n:>10,}{wall:>9.2f}{cpu:>8.2f}{n / wall:>12,.0f}{n / cpu:>14,.0f}")
        b = best["baseline"]
        for k in ("pipeline", "app"):
            n, wall, cpu = best[k]
            print(f"ratio {k}/baseline: {(n / wall) / (b[0] / b[1]):.2f}x by wall time, "
                  f"{(n / cpu) / (b[0] / b[2]):.2f}x by CPU time")
        rss, delivered = rss_run(bootstrap, topic(), args.symbols, args.rss_seconds)
        print(f"peak RSS, `produce --source sim` with {args.symbols} symbols for {args.rss_seconds:.0f} s "
              f"at real-time pace: {rss:.0f} MB ({delivered:,} points delivered)")
    finally:
        if broker is not None:
            broker.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
