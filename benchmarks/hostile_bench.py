"""Hostile inputs in bulk at every boundary, judged by the same oracles as the unit tests.

Run: ``python -m benchmarks.hostile_bench [--count 100000] [--seed 1] [--boundary ws,oi,...]``.

Per boundary, ``--count`` inputs from the seeded generators of ``perpstream/fakes/hostile``
(input ``i`` comes from ``random.Random(f"{seed}:{i}")``, so any one of them can
be rebuilt from the two numbers printed next to it):

- ``ws``: websocket frames -> ``Ingest.on_ws_frame`` (boundary 1),
- ``oi``: open-interest bodies -> ``Ingest.on_open_interest`` (boundary 2),
- ``exchange_info``: parsed exchangeInfo -> ``perpetual_listing`` (boundary 2),
- ``records``: records on the topic -> ``row_decoder(metric_point_codec())`` (boundary 3).

Each input is judged (exactly what the contract allows, or rejected with a
reason; then a valid input after it still goes through) and the figures are
printed: inputs, outcomes, rejections by reason, mismatches and crashes (new,
or explained by a known bug of ``perpstream/fakes/hostile/known_bugs.py``), hangs, the
slowest single input and the growth of the resident set. An input still
running after ``--input-timeout`` seconds is aborted and counted as a hang
(SIGALRM; for code that never returns to the interpreter, faulthandler dumps
every thread's stack and ends the run). One long-lived product object per
boundary takes all the inputs, so caches and per-symbol state grow as they
would in a process that runs for weeks.

Exit status 1 on any mismatch, crash or hang; with ``--skip-known-bugs`` the
generators leave out the inputs built to trigger a known bug, and only new
failures count. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import faulthandler
import gc
import logging
import os
import random
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from perpstream.fakes.hostile.frames import exchange_info_case, oi_case, ws_case
from perpstream.fakes.hostile.harness import Deadline, DecoderHarness, IngestHarness, Tally
from perpstream.fakes.hostile.known_bugs import KNOWN_BUGS
from perpstream.fakes.hostile.outcomes import Case, Verdict
from perpstream.fakes.hostile.records import record_case
from perpstream.runtime.telemetry import JsonFormatter

_PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE / 1e6


class LogCount(logging.Handler):
    """Formats every line as the product would (JSON) and counts them, printing none."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: Counter[str] = Counter()
        self.broken = 0
        self._fmt = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._fmt.format(record)
        except Exception:
            self.broken += 1
        self.lines[record.levelname] += 1


@dataclass
class Boundary:
    name: str
    title: str
    make: Callable[[random.Random, bool], Case]
    run: Callable[[Case], Verdict]


def boundaries(deadline: Deadline) -> dict[str, Boundary]:
    ingest = IngestHarness(deadline=deadline)
    decoder = DecoderHarness(deadline=deadline)
    return {
        "ws": Boundary("ws", "boundary 1  websocket frames -> Ingest.on_ws_frame",
                       lambda r, kb: ws_case(r, known_bugs=kb), ingest.ws),
        "oi": Boundary("oi", "boundary 2  open-interest bodies -> Ingest.on_open_interest",
                       lambda r, kb: oi_case(r, known_bugs=kb), ingest.oi),
        "exchange_info": Boundary("exchange_info", "boundary 2  exchangeInfo -> perpetual_listing",
                                  lambda r, kb: exchange_info_case(r, known_bugs=kb), ingest.perpetuals),
        "records": Boundary("records", "boundary 3  records -> row_decoder(metric_point_codec())",
                            lambda r, kb: record_case(r, known_bugs=kb), decoder.run),
    }


def _size(case: Case) -> int:
    return len(case.data) if isinstance(case.data, str | bytes) else 0


def run_boundary(b: Boundary, count: int, seed: int, known_bugs: bool, hard_timeout: float,
                 logs: LogCount) -> tuple[Tally, dict[str, float]]:
    tally = Tally(b.name)
    gc.collect()
    base = peak = rss_mb()
    logs.lines.clear()
    started = time.perf_counter()
    for i in range(count):
        if i % 100 == 0:  # the backstop for an input stuck outside the interpreter
            faulthandler.dump_traceback_later(hard_timeout, exit=True)
        case = b.make(random.Random(f"{seed}:{i}"), known_bugs)
        tally.add(case, b.run(case), f"seed {seed} #{i}")
        if i % 256 == 0 or _size(case) > 100_000:
            peak = max(peak, rss_mb())
    faulthandler.cancel_dump_traceback_later()
    elapsed = time.perf_counter() - started
    gc.collect()
    end = rss_mb()
    return tally, {"seconds": elapsed, "base": base, "peak": max(peak, end), "end": end}


def _counts(c: Counter[str]) -> str:
    return ", ".join(f"{k} {n:,}" for k, n in c.most_common()) or "none"


def report(b: Boundary, t: Tally, fig: dict[str, float], logs: LogCount, show: int) -> None:
    o = t.outcomes
    print(b.title)
    print(f"  inputs          {t.inputs:,} in {fig['seconds']:.1f} s ({t.inputs / fig['seconds']:,.0f}/s), "
          f"each followed by a valid one")
    print(f"  families        {_counts(t.families)}")
    partly = ""
    if o["partial"]:
        partly = f" (+ {o['partial']:,} arrays partly: good items published, bad ones counted)"
    print(f"  accepted        {o['accepted']:,}{partly}")
    print(f"  rejected        {o['rejected']:,}; rejections by reason: {_counts(t.reasons)}")
    quiet = {"control": "control answers handed back", "duplicate": "open-interest duplicates",
             "nothing": "empty or filtered out"}
    others = ", ".join(f"{text} {o[k]:,}" for k, text in quiet.items() if o[k])
    if others:
        print(f"  not published   {others} (nothing counted as rejected, as the contract says)")
    for kind, label in (("mismatch", "mismatches"), ("crash", "crashes"), ("hang", "hangs")):
        n = t.failures[kind]
        triggers = _counts(t.known_kinds.get(kind, Counter()))
        detail = f" (new {t.new_kinds[kind]:,}; known-bug triggers in the others: {triggers})"
        print(f"  {label:<15} {n:,}" + (detail if n else ""))
    print(f"  slowest input   {t.slowest_ms:.1f} ms ({t.slowest})")
    print(f"  memory (RSS)    {fig['base']:.0f} MB at the start, peak {fig['peak'] - fig['base']:+.1f} MB, "
          f"{fig['end'] - fig['base']:+.1f} MB at the end (after gc)")
    broken = f"; {logs.broken} failed to format" if logs.broken else ""
    print(f"  log lines       {_counts(logs.lines)}{broken}")
    new = [s for s in t.samples if not s[2].explained][:show]
    for label, case, v in new:
        print(f"    NEW [{label}] {case.family}: {v.failure}\n        input {case.short(300)}")
    if t.known and show:
        print("  known bugs seen: " + "; ".join(f"{k} ({KNOWN_BUGS[k].where})" for k in sorted(t.known)))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=100_000, help="inputs per boundary")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--boundary", default="ws,oi,exchange_info,records",
                    help="comma-separated: ws, oi, exchange_info, records")
    ap.add_argument("--input-timeout", type=float, default=5.0,
                    help="seconds before one input counts as a hang")
    ap.add_argument("--skip-known-bugs", action="store_true",
                    help="leave out inputs built to trigger a known bug; fail on new failures only")
    ap.add_argument("--show", type=int, default=5, help="failing inputs to print per boundary")
    args = ap.parse_args(argv)

    logs = LogCount()
    root = logging.getLogger()
    root.handlers[:] = [logs]
    root.setLevel(logging.INFO)
    deadline = Deadline(args.input_timeout)
    table = boundaries(deadline)
    names = [n.strip() for n in args.boundary.split(",") if n.strip()]
    unknown = set(names) - set(table)
    if unknown:
        ap.error(f"unknown boundary {sorted(unknown)}; choose from {sorted(table)}")
    hard = max(60.0, 20 * args.input_timeout)
    print(f"hostile inputs: {args.count:,} per boundary, seed {args.seed}, "
          f"known-bug inputs {'left out' if args.skip_known_bugs else 'included'}, "
          f"input timeout {args.input_timeout:g} s (hard stop {hard:g} s)")
    failed = 0
    for name in names:
        b = table[name]
        tally, fig = run_boundary(b, args.count, args.seed, not args.skip_known_bugs, hard, logs)
        report(b, tally, fig, logs, args.show)
        failed += tally.new if args.skip_known_bugs else sum(tally.failures.values())
    print(f"result: {'FAIL' if failed else 'ok'} ({failed:,} failing inputs"
          f"{', known bugs tolerated' if args.skip_known_bugs else ''})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
