"""``perpstream assets``: the cross-venue asset group member (docs/snapshots.md,
"Cross-venue asset snapshots"). Flags as ``perpstream snapshots``'s.

Settings come from ``PERPSTREAM_*`` env vars; flags given on the command line
override them. It opens its own ClickHouse client: with the embedded engine
(chdb) only one process may open the data directory, so beside a running
``perpstream run`` or ``up`` (which start the asset group themselves) it needs
a ClickHouse server.
"""

from __future__ import annotations

import argparse
from typing import Any

from perpstream.consumers.assets.app import AssetService
from perpstream.consumers.assets.settings import AssetSettings
from perpstream.consumers.clickhouse import open_client
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

#: flag dest -> settings field (a flag given on the command line overrides the environment)
_FLAGS = {
    "bootstrap_servers": "kafka_bootstrap_servers",
    "clickhouse_dsn": "clickhouse_dsn",
    "database": "clickhouse_database",
    "group_id": "group_id",
    "workers": "workers",
    "member_name": "member_name",
    "lateness_ms": "asset_lateness_ms",
    "quotes": "asset_quotes",
    "metrics_port": "metrics_port",
    "data_dir": "data_dir",
    **LOG_FLAGS,
}


def _quotes(text: str) -> tuple[str, ...]:
    out = tuple(q.strip() for q in text.split(",") if q.strip())
    if not out:
        raise argparse.ArgumentTypeError("at least one quote currency, like USDT,USDC,USD")
    return out


def register(sub: Any) -> None:
    p = sub.add_parser("assets", help="run the asset consumer group (AssetSnapshots across venues)")
    p.add_argument("--bootstrap-servers", help="Kafka host:port list")
    p.add_argument("--clickhouse-dsn", help="http(s)://host:8123 or chdb:///abs/dir (default: embedded)")
    p.add_argument("--database", help="ClickHouse database (default perpstream)")
    p.add_argument("--data-dir", help="embedded state directory (env PERPSTREAM_DATA_DIR; default: "
                   "the user data directory)")
    p.add_argument("--group-id", help="consumer group (default perpstream-assets)")
    p.add_argument("--workers", type=int, help="group members as threads in this process")
    p.add_argument("--member-name", help="static group membership: group.instance.id <name>-<worker>; "
                   "'' = dynamic (default: <host>-<group>; env PERPSTREAM_MEMBER_NAME)")
    p.add_argument("--lateness-ms", type=int, help="how far behind an asset's newest snapshot time a "
                   "venue's row may arrive (default 15000)")
    p.add_argument("--quotes", type=_quotes, help="quote currencies whose markets count "
                   "(default USDT,USDC,USD)")
    p.add_argument("--metrics-port", type=int,
                   help="serve Prometheus metrics (/metrics), /healthz and /readyz on this port")
    add_log_flags(p)
    p.set_defaults(func=run_assets)
    declare_settings(p, SettingsUse(AssetSettings, _FLAGS))


def settings_from(args: argparse.Namespace) -> AssetSettings:
    return build_settings(AssetSettings, args, _FLAGS)


def run_assets(args: argparse.Namespace) -> int:
    settings = settings_from(args)
    configure_logging(settings.log_level, settings.log_format)
    settings.require_bootstrap()
    tune_gc(settings.gc_threshold)
    telemetry, health = Telemetry(), Health()
    with operator_endpoints(telemetry, settings.metrics_port, health):
        client = open_client(settings.resolved_clickhouse_dsn(), **settings.clickhouse_options())
        try:
            with stop_on_signals() as stop:
                return AssetService(settings, client, telemetry, health=health).run(stop)
        finally:
            client.close()
