"""``perpstream backfill``: the command's flags, its progress display and its last line.

Flags override ``PERPSTREAM_*`` env vars (docs/producer.md, ``perpstream backfill``).
``--venue`` picks one venue a run (Binance by default); ``--symbols`` and the
REST base are that venue's (``--bybit-rest-url`` ...), and a flag of another
venue is a configuration error. Exit status 0 when every symbol was
delivered, 1 with one line per failure, 2 for bad flags, 130 when interrupted
(run the same command again to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from perpstream.errors import ConfigError
from perpstream.producer import history
from perpstream.producer.backfill.fetch import EXIT_INTERRUPTED, BackfillResult, Progress
from perpstream.producer.backfill.plan import resolve_range
from perpstream.producer.backfill.run import run
from perpstream.producer.backfill.venues import BINANCE, HISTORIES, VENUE_CHOICES, venue_plan
from perpstream.producer.cli import add_publish_flags
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime.settings import SettingsUse, add_log_flags, build_settings, declare_settings
from perpstream.runtime.signals import stop_on_signals
from perpstream.runtime.telemetry import Telemetry, configure_logging

log = logging.getLogger(__package__)  # the command's one logger: perpstream.producer.backfill

_FIELDS = {
    "symbols": "symbols", "all": "all_symbols", "since": "backfill_since", "until": "backfill_until",
    "rest_url": "binance_rest_url", "testnet": "testnet", "bootstrap_servers": "kafka_bootstrap_servers",
    "schema_registry_url": "schema_registry_url", "topic": "metrics_topic", "data_dir": "data_dir",
    "schema_registry_auto_register": "schema_registry_auto_register",
    "resume": "backfill_resume", "oi_period": "backfill_oi_period", "log_level": "log_level",
    "log_format": "log_format",
}


#: Another venue's run takes its symbols and REST base from that venue's settings.
_BINANCE_ONLY = ("symbols", "rest_url", "testnet")


def _venue_fields(venue: str) -> dict[str, str]:
    return {**{k: v for k, v in _FIELDS.items() if k not in _BINANCE_ONLY},
            "symbols": f"{venue}_symbols", f"{venue}_rest_url": f"{venue}_rest_url"}


def register(sub: Any) -> None:
    p = sub.add_parser("backfill", help="fetch a venue's history over REST and publish it as MetricPoints")
    p.add_argument("--venue", choices=VENUE_CHOICES, default=BINANCE,
                   help="whose history: binance (default: klines, open interest, settled funding), bybit, "
                   "okx (settled funding, open interest) or hyperliquid (settled funding)")
    p.add_argument("--since", help="first event time: ISO-8601, epoch ms, or a duration ago (6h, 7d)")
    p.add_argument("--until", help="end of the range, exclusive (same forms; default now)")
    p.add_argument("--symbols", help="comma-separated symbols as the venue spells them: BTCUSDT (binance, "
                   "bybit), BTC-USDT-SWAP (okx), BTC (hyperliquid)")
    p.add_argument("--all", action="store_true", default=None, help="every perpetual the venue lists")
    p.add_argument("--rest-url",
                   help="Binance REST base (env PERPSTREAM_BINANCE_REST_URL), default https://fapi.binance.com")
    p.add_argument("--testnet", action="store_true", default=None, help="use Binance futures testnet URLs")
    for name, h in HISTORIES.items():
        default = ProducerSettings.model_fields[f"{name}_rest_url"].default
        p.add_argument(f"--{name}-rest-url", help=f"{h.title} REST base "
                       f"(env PERPSTREAM_{name.upper()}_REST_URL), default {default}")
    p.add_argument("--metrics", help="another venue's histories to fetch, comma-separated "
                   "(funding_rate_settled, open_interest); default every one it serves")
    add_publish_flags(p)
    p.add_argument("--data-dir", help="where the resume checkpoints live (env PERPSTREAM_DATA_DIR)")
    p.add_argument("--no-resume", dest="resume", action="store_false", default=None,
                   help="fetch and publish the whole range again, whatever the checkpoints say")
    p.add_argument("--oi-period", choices=list(history.OI_HIST_PERIODS),
                   help="period of the open-interest history (default 5m; bybit: 5m 15m 30m 1h 4h 1d, "
                   "okx: 5m 1h 1d)")
    add_log_flags(p)
    p.set_defaults(func=backfill_main)
    venue_flags = ({"symbols": f"{n}_symbols", f"{n}_rest_url": f"{n}_rest_url"} for n in HISTORIES)
    declare_settings(p, SettingsUse(ProducerSettings, _FIELDS),
                     *(SettingsUse(ProducerSettings, flags) for flags in venue_flags))


def _check_flags(args: argparse.Namespace) -> None:
    """A flag of another venue than ``--venue`` is a mistake: one line saying which flag fits."""
    venue = args.venue
    for name in HISTORIES:
        if name != venue and getattr(args, f"{name}_rest_url", None) is not None:
            raise ConfigError(f"--{name}-rest-url is for --venue {name}; this run is --venue {venue}")
    if venue == BINANCE:
        if args.metrics is not None:
            raise ConfigError("--metrics chooses among the histories of bybit, okx and hyperliquid; "
                              "--venue binance fetches all of its own")
        return
    if args.rest_url is not None:
        raise ConfigError(f"--rest-url is Binance's REST base; with --venue {venue} use --{venue}-rest-url")
    if args.testnet:
        raise ConfigError(f"--testnet is Binance's futures testnet; it does not go with --venue {venue}")


def backfill_main(args: argparse.Namespace) -> int:
    _check_flags(args)
    venue = args.venue
    settings = build_settings(ProducerSettings, args, _FIELDS if venue == BINANCE else _venue_fields(venue))
    settings.require_kafka()
    if venue == BINANCE:
        settings.require_live_symbols()
    else:
        venue_plan(settings, venue, args.metrics)
    resolve_range(settings)
    configure_logging(settings.log_level, settings.log_format)
    report, close = _progress_reporter()
    try:
        with stop_on_signals() as stop:
            result = run(settings, Telemetry(), stop, report, venue=venue, metrics=args.metrics)
    finally:
        close()
    return last_lines(result)


def last_lines(result: BackfillResult) -> int:
    """The notes, then one line: what was delivered, or what was not and how to go on."""
    for note in result.notes:
        print(f"perpstream backfill: note: {note}", file=sys.stderr)
    rc = result.exit_code
    who = "" if result.venue == BINANCE else f"{result.venue}: "
    if rc == EXIT_INTERRUPTED:
        print("perpstream backfill: interrupted; run the same command again to resume", file=sys.stderr)
    elif rc:
        why = "; ".join(f"{k}: {v}" if k != "*" else v for k, v in sorted(result.failures.items()))
        print(f"perpstream backfill: error: {who}not everything was delivered ({why[:500]}); "
              "run the same command again to resume", file=sys.stderr)
    else:
        print(f"perpstream backfill: {who}{result.points:,} points for {result.symbols} symbols "
              f"({result.chunks} chunks, {result.chunks_skipped} already delivered, {result.requests} "
              f"requests, weight {result.weight}) in {result.seconds:.1f} s", file=sys.stderr)
    return rc


def _progress_reporter(stream: Any = None) -> tuple[Progress, Callable[[], None]]:
    """A rich progress bar on a terminal, a log line every 5 s otherwise; returns (report, close)."""
    out = stream if stream is not None else sys.stdout
    if out.isatty():
        # local: rich.progress adds 25 ms to every command's start (python -X importtime); a bar only
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("backfill {task.fields[symbol]}"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn())
        task = bar.add_task("backfill", total=None, symbol="")
        bar.start()

        def report(done: int, total: int, symbol: str) -> None:
            bar.update(task, completed=done, total=total, symbol=symbol)

        return report, bar.stop
    last = [0.0]

    def log_line(done: int, total: int, symbol: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 5.0 or done == total:
            last[0] = now
            log.info("backfill progress", extra={"chunks_done": done, "chunks_total": total,
                                                 "symbol": symbol})

    return log_line, lambda: None
