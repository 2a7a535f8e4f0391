"""``perpstream snapshots`` (the group member) and ``perpstream freshness``.

Settings come from ``PERPSTREAM_*`` env vars; flags given on the command line
override them. Both commands open their own ClickHouse client: with the
embedded engine (chdb) only one process may open the data directory, so run
``freshness`` against a ClickHouse server or while the pipeline is stopped
(inside ``perpstream run`` the ``snapshot_stale_symbols`` gauge says the same).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from typing import Any

from perpstream.consumers import reading
from perpstream.consumers.clickhouse import open_client
from perpstream.consumers.snapshots.app import SnapshotService
from perpstream.consumers.snapshots.freshness import freshness
from perpstream.consumers.snapshots.settings import SnapshotSettings
from perpstream.runtime.health import Health
from perpstream.runtime.settings import (
    LOG_FLAGS,
    SettingsUse,
    add_log_flags,
    build_settings,
    declare_settings,
)
from perpstream.runtime.signals import stop_on_signals
from perpstream.runtime.telemetry import Telemetry, configure_logging, operator_endpoints
from perpstream.runtime.tuning import tune_gc

log = logging.getLogger(__name__)

#: flag dest -> settings field (a flag given on the command line overrides the environment)
_FLAGS = {
    "bootstrap_servers": "kafka_bootstrap_servers",
    "clickhouse_dsn": "clickhouse_dsn",
    "database": "clickhouse_database",
    "group_id": "group_id",
    "workers": "workers",
    "member_name": "member_name",
    "interval_ms": "snapshot_interval_ms",
    "windows": "snapshot_windows_s",
    "lateness_ms": "allowed_lateness_ms",
    "mark_stale_ms": "mark_stale_ms",
    "oi_poll_interval_ms": "oi_poll_interval_ms",
    "metrics_port": "metrics_port",
    "data_dir": "data_dir",
    **LOG_FLAGS,
}


def _windows(text: str) -> tuple[int, ...]:
    try:
        out = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected seconds like 60,300,3600, got {text!r}") from exc
    if not out:
        raise argparse.ArgumentTypeError("at least one window")
    return out


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--clickhouse-dsn", help="http(s)://host:8123 or chdb:///abs/dir (default: embedded)")
    p.add_argument("--database", help="ClickHouse database (default perpstream)")
    p.add_argument("--data-dir", help="embedded state directory (env PERPSTREAM_DATA_DIR; default: "
                   "the user data directory)")
    p.add_argument("--group-id", help="consumer group (default perpstream-snapshots)")
    p.add_argument("--interval-ms", type=int, help="snapshot interval (default 5000)")
    p.add_argument("--windows", type=_windows, help="window lengths in seconds (default 60,300,3600)")
    p.add_argument("--lateness-ms", type=int, help="allowed lateness (default 2000)")
    p.add_argument("--mark-stale-ms", type=int, help="mark age threshold (default 5000)")
    p.add_argument("--oi-poll-interval-ms", type=int, help="OI poll interval; stale after 3x (default 10000)")


def register(sub: Any) -> None:
    p = sub.add_parser("snapshots", help="run the snapshot consumer group (MarketSnapshots per symbol)")
    _common(p)
    p.add_argument("--bootstrap-servers", help="Kafka host:port list")
    p.add_argument("--workers", type=int, help="group members as threads in this process")
    p.add_argument("--member-name", help="static group membership: group.instance.id <name>-<worker>; "
                   "'' = dynamic (default: <host>-<group>; env PERPSTREAM_MEMBER_NAME)")
    p.add_argument("--metrics-port", type=int,
                   help="serve Prometheus metrics (/metrics), /healthz and /readyz on this port")
    add_log_flags(p)
    p.set_defaults(func=run_snapshots)
    declare_settings(p, SettingsUse(SnapshotSettings, _FLAGS))

    f = sub.add_parser("freshness", help="list markets (source, symbol) whose context is stale right now")
    _common(f)
    f.add_argument("--all", action="store_true", help="list fresh markets too")
    f.add_argument("--json", action="store_true", help="one JSON object per line")
    f.add_argument("--now-ms", type=int, help="evaluate at this epoch-ms instead of the clock")
    f.add_argument("--fail-on-stale", action="store_true", help="exit 3 when a market is stale")
    f.set_defaults(func=run_freshness)
    declare_settings(f, SettingsUse(SnapshotSettings, _FLAGS))


def settings_from(args: argparse.Namespace) -> SnapshotSettings:
    return build_settings(SnapshotSettings, args, _FLAGS)


def _open(settings: SnapshotSettings) -> Any:
    return open_client(settings.resolved_clickhouse_dsn(), **settings.clickhouse_options())


def run_snapshots(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    configure_logging(settings.log_level, settings.log_format)
    settings.require_bootstrap()
    tune_gc(settings.gc_threshold)
    telemetry, health = Telemetry(), Health()
    with operator_endpoints(telemetry, settings.metrics_port, health):
        client = _open(settings)
        try:
            with stop_on_signals() as stop:
                return SnapshotService(settings, client, telemetry, health=health).run(stop)
        finally:
            client.close()


def run_freshness(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    now_ms = args.now_ms if args.now_ms is not None else int(time.time() * 1000)
    reader = reading.open_reader(settings)
    try:
        rows = freshness(reader.client, settings.clickhouse_database, settings.engine_config(), now_ms=now_ms)
    finally:
        reader.close()
    shown = rows if args.all else [r for r in rows if r.stale]
    out = sys.stdout
    if args.json:
        for r in shown:
            out.write(json.dumps(r.as_dict()) + "\n")
    else:
        out.write(f"{len([r for r in rows if r.stale])} of {len(rows)} markets stale\n")
        for r in shown:
            d = r.as_dict()
            out.write(f"{r.source:<14} {r.symbol:<20} {'STALE' if r.stale else 'fresh':<6} "
                      f"mark_age_ms={d['mark_age_ms']} oi_age_ms={d['oi_age_ms']} "
                      f"{'; '.join(r.reasons)}\n")
    return 3 if args.fail_on_stale and any(r.stale for r in rows) else 0
