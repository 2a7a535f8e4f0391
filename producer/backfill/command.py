"""``perpstream backfill``: the command's flags, its progress display and its last line.

Flags override ``PERPSTREAM_*`` env vars (docs/producer.md, ``perpstream backfill``);
exit status 0 when every symbol was delivered, 1 with one line per failure,
130 when interrupted (run the same command again to resume).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from perpstream.producer import history
from perpstream.producer.backfill.fetch import EXIT_INTERRUPTED, Progress
from perpstream.producer.backfill.plan import resolve_range
from perpstream.producer.backfill.run import run
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


def register(sub: Any) -> None:
    p = sub.add_parser("backfill", help="fetch Binance history over REST and publish it as MetricPoints")
    p.add_argument("--since", help="first event time: ISO-8601, epoch ms, or a duration ago (6h, 7d)")
    p.add_argument("--until", help="end of the range, exclusive (same forms; default now)")
    p.add_argument("--symbols", help="comma-separated symbols, e.g. BTCUSDT,ETHUSDT")
    p.add_argument("--all", action="store_true", default=None, help="every PERPETUAL/TRADING symbol")
    p.add_argument("--rest-url",
                   help="REST base (env PERPSTREAM_BINANCE_REST_URL), default https://fapi.binance.com")
    p.add_argument("--testnet", action="store_true", default=None, help="use Binance futures testnet URLs")
    add_publish_flags(p)
    p.add_argument("--data-dir", help="where the resume checkpoints live (env PERPSTREAM_DATA_DIR)")
    p.add_argument("--no-resume", dest="resume", action="store_false", default=None,
                   help="fetch and publish the whole range again, whatever the checkpoints say")
    p.add_argument("--oi-period", choices=list(history.OI_HIST_PERIODS),
                   help="period of the open-interest history (default 5m)")
    add_log_flags(p)
    p.set_defaults(func=backfill_main)
    declare_settings(p, SettingsUse(ProducerSettings, _FIELDS))


def backfill_main(args: argparse.Namespace) -> int:
    settings = build_settings(ProducerSettings, args, _FIELDS)
    settings.require_kafka()
    settings.require_live_symbols()
    resolve_range(settings)
    configure_logging(settings.log_level, settings.log_format)
    report, close = _progress_reporter()
    try:
        with stop_on_signals() as stop:
            result = run(settings, Telemetry(), stop, report)
    finally:
        close()
    rc = result.exit_code
    if rc == EXIT_INTERRUPTED:
        print("perpstream backfill: interrupted; run the same command again to resume", file=sys.stderr)
    elif rc:
        why = "; ".join(f"{k}: {v}" if k != "*" else v for k, v in sorted(result.failures.items()))
        print(f"perpstream backfill: error: not everything was delivered ({why[:500]}); "
              "run the same command again to resume", file=sys.stderr)
    else:
        print(f"perpstream backfill: {result.points:,} points for {result.symbols} symbols "
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
