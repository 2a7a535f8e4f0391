"""Snapshot throughput and memory for 700 symbols. Prints figures; asserts nothing.

    .venv/bin/python -m benchmarks.snapshots_bench [--cpu 0] [--symbols 700] [--seconds 60]
        [--consumer-seconds 180] [--skip-memory] [--skip-consumer]

The scenario lives in :mod:`perpstream.bench.snapshots` (``perpstream bench
snapshots`` runs the same code; its docstring says what each figure is);
this program prints its tables. With ``--cpu N`` the benchmark (member
included) runs on CPU N and the broker on the others.
"""

from __future__ import annotations

import argparse

from perpstream.bench import snapshots
from perpstream.bench.render import render
from perpstream.runtime.settings import CommonSettings
from perpstream.runtime.tuning import tune_gc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--symbols", type=int, default=700)
    ap.add_argument("--seconds", type=int, default=60, help="event time of the engine's stream")
    ap.add_argument("--consumer-seconds", type=int, default=180,
                    help="event time of the consumer's stream (long enough that start-up does not dominate)")
    ap.add_argument("--batch", type=int, default=50_000, help="consumer batch_max_records")
    ap.add_argument("--batch-max-ms", type=int, default=50,
                    help="consumer batch_max_ms. A backlog fills every batch by size; the time bound only "
                         "decides how long the last, partial batch waits for records that never come")
    ap.add_argument("--skip-consumer", action="store_true")
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--gc-threshold", type=int, default=CommonSettings().gc_threshold,
                    help="as the commands apply at start-up (gc_threshold); 0 = the interpreter's default")
    ap.add_argument("--cpu", type=int, default=None,
                    help="pin the benchmark to this one CPU (the broker it starts runs on the others)")
    a = ap.parse_args()
    tune_gc(a.gc_threshold)  # what `perpstream snapshots` does
    render(snapshots.run(a.symbols, a.seconds, a.consumer_seconds, a.batch, a.batch_max_ms,
                         memory=not a.skip_memory, consumer=not a.skip_consumer, cpu=a.cpu))


if __name__ == "__main__":
    main()
