"""``perpstream bench``: throughput, CPU, memory and latency of every path, each next to
a baseline measured in the same run.

Scenarios (``all`` runs them in this order):

- ``frames``: websocket frames from the fake exchanges -> points to Kafka, ``perpstream produce``
  in a child process: Binance (per-symbol and all-market streams, plain and TLS) and every other
  venue at its live rate (``--frames-venues``), with each venue's share of one core per 1,000
  symbols and all of them summed at their listed symbol counts, and, with all four chosen, one
  producer process reading the four at once; baselines a bare client that
  only receives (websockets, and picows where installed: ``--floor``), and the peer
  (cryptofeed) where installed.
- ``produce``: replayed frames -> Kafka acks; baseline a raw confluent-kafka + fastavro loop.
- ``sink``: topic -> rows durable in ClickHouse, offsets committed; baselines a direct
  Arrow insert of decoded rows and the ceiling (a bare consume followed by that insert).
- ``snapshots``: the snapshot consumer; baseline the pure engine.
- ``e2e``: the whole embedded stack (broker, producer, sink, snapshots) at N x live load,
  N stepped up until a step is not held; reports the highest N held.
- ``live``: the footprint at live load (CPU share and RSS of every process) and its latency.

``--layout processes`` runs e2e and live with the producer, the sink and the snapshot member in
an OS process each (the default ``single``: all in one process, as ``perpstream run``).

Every scenario, and every e2e step, runs in a child process of its own (``python -m
perpstream.bench``): a fresh peak RSS, CPU-seconds of that run only, and one chdb
directory per process.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from typing import Any

from perpstream.pipeline import EMBEDDED_PARTITIONS

# The scenario modules are imported where a scenario runs: this module is imported to build every
# command's parser (perpstream.cli), and `perpstream --help` should not load them.
SCENARIOS = ("frames", "produce", "sink", "snapshots", "e2e", "live")
#: The websocket libraries ``bench frames`` can measure as a floor (perpstream.bench.wsfloor).
FLOORS = ("websockets", "picows")
#: The venues ``bench frames`` has cases for (``--frames-venues``), as ``--venues`` names them.
FRAME_VENUES = ("binance", "bybit", "okx", "hyperliquid")
#: ``bench all`` measures each venue case other than Binance's over at most this many seconds.
ALL_VENUE_SECONDS = 10.0
DEFAULT_STEPS = (1, 2, 4, 8, 12, 16, 20, 28)
E2E_TARGET_EVENTS_S = 50_000
LIVE_P99_MS = 1_000.0
LIVE_CPU_SHARE = 0.15
LIVE_RSS_MB = 400.0


def floor_spec(value: str) -> str:
    """``--floor``: ``auto`` or websocket libraries of :data:`FLOORS`, comma-separated."""
    names = [n.strip() for n in value.split(",") if n.strip()]
    if value != "auto" and (not names or any(n not in FLOORS for n in names)):
        raise argparse.ArgumentTypeError(f"{value!r}: give auto or names among {', '.join(FLOORS)}")
    return value if value == "auto" else ",".join(names)


def venues_spec(value: str) -> str:
    """``--frames-venues``: ``all`` or venues of :data:`FRAME_VENUES`, comma-separated."""
    names = [n.strip().lower() for n in value.split(",") if n.strip()]
    if value != "all" and (not names or any(n not in FRAME_VENUES for n in names)):
        raise argparse.ArgumentTypeError(f"{value!r}: give all or names among {', '.join(FRAME_VENUES)}")
    return value if value == "all" else ",".join(names)


def register(sub: Any) -> None:
    p = sub.add_parser("bench", help="benchmarks: figures next to baselines measured in the same run",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("scenario", choices=[*SCENARIOS, "all"])
    p.add_argument("--json", action="store_true", help="one JSON document instead of tables")
    p.add_argument("--seconds", type=float, default=20.0,
                   help="measured seconds of an e2e step and of each frames client (default 20); live "
                   "measures 3x this")
    p.add_argument("--warmup", type=float, default=10.0, help="seconds before an e2e/live step measures")
    p.add_argument("--steps", default=",".join(map(str, DEFAULT_STEPS)),
                   help="e2e load multiples N to try in order, stopping at the first not held")
    p.add_argument("--symbols", type=int, default=700, help="symbols of live load (and of produce/snapshots)")
    p.add_argument("--frame-seconds", type=int, default=60,
                   help="simulated seconds of the produce and snapshot-engine streams")
    p.add_argument("--consumer-seconds", type=int, default=180, help="simulated seconds of the snapshot "
                   "consumer's stream")
    p.add_argument("--events", type=int, default=500_000, help="events of the sink scenario")
    p.add_argument("--partitions", type=int, default=EMBEDDED_PARTITIONS,
                   help="partitions of the e2e/live topics (default: what up and run create on their "
                   "embedded broker; each costs the consumers an insert per batch)")
    p.add_argument("--rounds", type=int, default=2,
                   help="alternating rounds of produce, and of the producers of frames (best shown)")
    p.add_argument("--rss-seconds", type=float, default=20.0, help="real-time producer run for its RSS")
    p.add_argument("--no-memory", action="store_true", help="skip the snapshot engine's 1 h memory figure")
    p.add_argument("--profile", action="store_true",
                   help="cProfile the sink run (sink) and the last e2e step; the top entries are notes; "
                   "frames: one more producer run per case under py-spy --native, its CPU split in the notes")
    p.add_argument("--frame-symbols", type=int, default=200,
                   help="frames: symbols of the per-symbol streams (default 200)")
    p.add_argument("--frame-rate", type=float, default=10.0,
                   help="frames: frames/s of each per-symbol stream (default 10)")
    p.add_argument("--frames-tls", choices=("both", "plain", "tls"), default="both",
                   help="frames: plain ws://, TLS wss://, or both (default)")
    p.add_argument("--frames-warmup", type=float, default=3.0,
                   help="frames: seconds after subscribing before a client is measured (default 3)")
    p.add_argument("--floor", type=floor_spec, default="auto", metavar="LIBS",
                   help="frames: websocket libraries measured as a bare receiving client, comma-separated "
                   f"among {', '.join(FLOORS)}; auto (default): websockets, and picows when installed "
                   "(the report says which are not)")
    p.add_argument("--peer-python",
                   help="frames: a Python interpreter with cryptofeed installed, measured beside the "
                   "producer (default: $PERPSTREAM_BENCH_PEER_PYTHON, or this one if it has cryptofeed)")
    p.add_argument("--compare-checkout", metavar="DIR",
                   help="frames: also measure `perpstream produce` imported from another checkout (in the "
                   "cases its producer knows: Binance's, and the venues it reads)")
    p.add_argument("--frames-venues", type=venues_spec, default="all", metavar="VENUES",
                   help="frames: the venues whose cases run, comma-separated among "
                   f"{', '.join(FRAME_VENUES)}; all (default): every venue this checkout has a fake for and "
                   "its producer reads; with all four, one more case reads them in one producer process")
    p.add_argument("--frames-venue-symbols", type=int, metavar="N",
                   help="frames: symbols of each venue case other than Binance's (default: the venue's "
                   "listed count, perpstream.bench.venues.LISTED_SYMBOLS)")
    p.add_argument("--layout", choices=("single", "processes"), default="single",
                   help="e2e/live: single = the stack in one process, as `perpstream run` (default); "
                   "processes = producer, sink and snapshot member in an OS process each, with a chdb "
                   "directory per consumer")
    p.set_defaults(func=bench_command)


def scenario_kwargs(name: str, args: argparse.Namespace) -> dict[str, Any]:
    if name == "frames":
        return {"frame_symbols": args.frame_symbols, "frame_rate": args.frame_rate,
                "all_symbols": args.symbols, "seconds": args.seconds, "warmup": args.frames_warmup,
                "tls": args.frames_tls, "peer": args.peer_python, "compare_checkout": args.compare_checkout,
                "rounds": args.rounds, "floors": args.floor, "profile": args.profile,
                "venues": args.frames_venues, "venue_symbols": args.frames_venue_symbols,
                # bench all: the venue cases over short windows
                "venue_seconds": min(args.seconds, ALL_VENUE_SECONDS) if args.scenario == "all" else None}
    if name == "produce":
        return {"symbols": args.symbols, "seconds": args.frame_seconds, "rounds": args.rounds,
                "rss_seconds": args.rss_seconds}
    if name == "sink":
        return {"events": args.events, "profile": args.profile}
    if name == "snapshots":
        return {"symbols": args.symbols, "seconds": args.frame_seconds,
                "consumer_seconds": args.consumer_seconds, "memory": not args.no_memory}
    if name == "e2e":
        return {"seconds": args.seconds, "warmup": args.warmup, "symbols_per_n": args.symbols,
                "partitions": args.partitions, "layout": args.layout}
    return {"seconds": args.seconds * 3, "warmup": args.warmup, "symbols_per_n": args.symbols,
            "partitions": args.partitions, "layout": args.layout}


def run_child(kind: str, kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """One scenario or e2e step in a child process; its JSON result (last line of its stdout)."""
    proc = subprocess.run([sys.executable, "-m", "perpstream.bench", kind, json.dumps(kwargs)],
                          stdout=subprocess.PIPE, text=True, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise RuntimeError(f"bench {kind} failed (exit {proc.returncode})")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def run_scenario(name: str, args: argparse.Namespace,
                 child: Callable[[str, Mapping[str, Any]], dict[str, Any]] = run_child,
                 progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    kwargs = scenario_kwargs(name, args)
    if name == "e2e":
        steps = [float(s) for s in str(args.steps).split(",") if s.strip()]
        return e2e_report(steps, kwargs, args.profile, child, progress)
    if name == "live":
        from perpstream.bench.e2e import step_row
        from perpstream.bench.measure import report

        idle = child("idle", {"seconds": min(5.0, float(kwargs["seconds"]))})
        s = child("step", {"n": 1, **kwargs})
        return live_report(s, idle, report, step_row)
    return child(name, kwargs)


def e2e_report(steps: list[float], kwargs: Mapping[str, Any], profile: bool,
               child: Callable[[str, Mapping[str, Any]], dict[str, Any]],
               progress: Callable[[str], None] | None) -> dict[str, Any]:
    from perpstream.bench.e2e import HELD_P99_MS, HELD_RATE, step_row
    from perpstream.bench.measure import report, target

    done: list[dict[str, Any]] = []
    for i, n in enumerate(steps):
        last = i == len(steps) - 1
        s = child("step", {"n": n, **kwargs, "profile": profile and last})
        done.append(s)
        if progress:
            p99 = (s["latency_ms"]["event_to_clickhouse"] or {}).get("p99")
            progress(f"e2e {n:g}x: offered {s['offered_per_s']:,.0f}/s, stored {s['stored_per_s']:,.0f}/s, "
                     f"p99 event->ClickHouse {p99 if p99 is not None else '-'} ms, "
                     f"{'held' if s['held'] else 'NOT held'}")
        if not s["held"]:
            if profile and not last:  # profile the step that saturated
                done[-1]["profile"] = child("step", {"n": n, **kwargs, "profile": True}).get("profile")
            break
    held = [s for s in done if s["held"]]
    best = held[-1] if held else None
    sat = next((s for s in done if not s["held"]), None)
    best_rate = best["stored_per_s"] if best else 0.0
    notes = [f"held = stored and snapshot-handled rates >= {HELD_RATE} x offered and p99 event -> "
             f"ClickHouse <= {HELD_P99_MS:.0f} ms, over {kwargs['seconds']:g} s after {kwargs['warmup']:g} s "
             f"of warm-up; layout {kwargs.get('layout', 'single')}; CPU and peak RSS: "
             + (done[0].get("cpu_of", "the perpstream process + the broker") if done else "-")]
    if sat is None:
        notes.append(f"no step saturated up to {done[-1]['n']:g}x" if done else "no step ran")
    else:
        why = []
        if sat["failed"]:
            why.append(f"component(s) stopped: {', '.join(sat['failed'])}")
        if sat["stored_per_s"] < HELD_RATE * sat["offered_per_s"]:
            why.append(f"stored {sat['stored_per_s']:,.0f}/s of {sat['offered_per_s']:,.0f}/s offered")
        if sat["snapshot_records_per_s"] < HELD_RATE * sat["offered_per_s"]:
            why.append(f"snapshot member handled {sat['snapshot_records_per_s']:,.0f}/s")
        p99 = (sat["latency_ms"]["event_to_clickhouse"] or {}).get("p99")
        if p99 is None or p99 > HELD_P99_MS:
            why.append(f"p99 event -> ClickHouse {p99} ms")
        notes.append(f"saturates at {sat['n']:g}x: " + "; ".join(why))
    for s in done:
        if s.get("profile"):
            notes.append(f"cProfile at {s['n']:g}x (tottime):\n{s['profile']}")
    return report("e2e", kwargs, [step_row(s) for s in done],
                  [target("highest load held (events/s)", best_rate, f">= {E2E_TARGET_EVENTS_S:,}",
                          best_rate >= E2E_TARGET_EVENTS_S)],
                  notes, steps=done, held_n=best["n"] if best else None,
                  held_events_per_s=best_rate, saturated_n=sat["n"] if sat else None)


def live_report(s: dict[str, Any], idle: dict[str, Any], report: Any, step_row: Any) -> dict[str, Any]:
    from perpstream.bench.measure import row, target

    procs = s["processes"]
    rows = [step_row(s)]
    for name, p in procs.items():
        rows.append(row(f"process: {name} (pid {p['pid']})", round(s["stored_per_s"] * s["seconds"]),
                        s["seconds"], p["cpu_s"], p["peak_rss_mb"], cpu_of=name,
                        cpu_share=p["cpu_share"], rss_mb=p["rss_mb"]))
    rows.append(row("floor: embedded ClickHouse opened and migrated, idle", 0, idle["seconds"],
                    idle["cpu_s"], idle["peak_rss_mb"], cpu_of="perpstream process", role="baseline",
                    cpu_share=idle["cpu_share"], rss_mb=idle["rss_mb"]))
    share = sum(p["cpu_share"] for p in procs.values())
    rss = sum(p["peak_rss_mb"] or 0.0 for p in procs.values())
    p99 = (s["latency_ms"]["event_to_clickhouse"] or {}).get("p99")
    notes = [f"CPU share: CPU-seconds / wall seconds over {s['seconds']:g} s (1.0 = one core); "
             + ", ".join(f"{name} {p['cpu_share']:.1%}" for name, p in procs.items())
             + "; peak RSS = VmHWM over the whole run, start-up included",
             f"floor: a process with the product imported and embedded ClickHouse opened and migrated, "
             f"idle for {idle['seconds']:g} s: {idle['cpu_share']:.1%} of a core, peak RSS "
             f"{idle['peak_rss_mb']:,.0f} MB (of the stack's {rss:,.0f} MB)"]
    return report("live", {"seconds": s["seconds"], "warmup": s["warmup_s"], "symbols": s["symbols"],
                           "layout": s.get("layout", "single")},
                  rows, [target("p99 event -> ClickHouse (ms)", p99, f"<= {LIVE_P99_MS:.0f}",
                                p99 is not None and p99 <= LIVE_P99_MS),
                         target("CPU of the embedded stack (share of one core)", round(share, 4),
                                f"<= {LIVE_CPU_SHARE}", share <= LIVE_CPU_SHARE),
                         target("peak RSS of the embedded stack (MB)", round(rss, 1), f"<= {LIVE_RSS_MB:.0f}",
                                rss <= LIVE_RSS_MB)],
                  notes, step=s, idle=idle, cpu_share=round(share, 4), peak_rss_mb=round(rss, 1))


def bench_command(args: argparse.Namespace) -> int:
    from perpstream.bench.render import render

    names = list(SCENARIOS) if args.scenario == "all" else [args.scenario]
    out: dict[str, Any] = {"scenarios": {}}

    def progress(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    for name in names:
        progress(f"perpstream bench {name} ...")
        rep = run_scenario(name, args, progress=progress)
        out["scenarios"][name] = rep
        if not args.json:
            render(rep)
    if args.json:
        print(json.dumps(out, indent=1))
    return 0
