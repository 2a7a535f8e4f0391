"""Sink throughput: topic -> rows durable in ClickHouse, next to a baseline.

    .venv/bin/python -m benchmarks.sink_bench [--events 500000] [--partitions 6]
        [--batch 20000] [--profile]

The scenario lives in :mod:`perpstream.bench.sink` (``perpstream bench sink``
runs the same code; its docstring says what each row is); this program prints
its tables. Uses PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS if set, else a local
Tansu broker; always an embedded ClickHouse in a temp directory.
"""

from __future__ import annotations

import argparse

from perpstream.bench import sink
from perpstream.bench.render import render
from perpstream.runtime.settings import CommonSettings
from perpstream.runtime.tuning import tune_gc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--partitions", type=int, default=6)
    ap.add_argument("--batch", type=int, default=20_000)
    ap.add_argument("--profile", action="store_true", help="cProfile the sink run, print the top entries")
    ap.add_argument("--gc-threshold", type=int, default=CommonSettings().gc_threshold,
                    help="as the commands apply at start-up (gc_threshold); 0 = the interpreter's default")
    args = ap.parse_args()
    tune_gc(args.gc_threshold)  # what `perpstream sink` does; the baseline runs under it too
    render(sink.run(args.events, args.partitions, args.batch, args.profile))


if __name__ == "__main__":
    main()
