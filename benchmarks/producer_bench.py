"""Producer pipeline throughput next to a raw confluent-kafka + fastavro baseline.

Run: ``python -m benchmarks.producer_bench [--symbols 700] [--seconds 60] [--profile]``.

The scenario lives in :mod:`perpstream.bench.produce` (``perpstream bench produce``
runs the same code); this program prints its tables, or with ``--profile``
cProfiles one pipeline round. The broker is
``PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS`` or a local Tansu. Figures are printed,
never asserted.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys

from perpstream.bench import produce
from perpstream.bench.render import render
from perpstream.runtime.settings import CommonSettings
from perpstream.runtime.tuning import tune_gc


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
    if args.profile:
        with produce.broker_bootstrap() as bootstrap:
            market = produce.SimulatedMarket(args.symbols, seed=1, start_ms=produce.START)
            frames = market.frames(args.seconds)
            prof = cProfile.Profile()
            prof.enable()
            produce.pipeline(frames, bootstrap, produce.new_topic(bootstrap))
            prof.disable()
        pstats.Stats(prof).sort_stats("tottime").print_stats(15)
        return 0
    render(produce.run(args.symbols, args.seconds, args.rounds, args.rss_seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
