"""``perpstream sink`` and ``perpstream query``.

Settings come from ``PERPSTREAM_*`` env vars; flags override them. The sink
needs a Kafka cluster (``--bootstrap-servers``); the embedded broker and the
whole pipeline in one process are ``perpstream run``'s job. Without
``--clickhouse-dsn`` both commands use the embedded engine under
``--data-dir``; only one process may open that directory, so ``query``
against the embedded engine works while no other process holds it.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from perpstream.consumers.clickhouse import open_client
from perpstream.consumers.reading import open_reader
from perpstream.consumers.sink import queries
from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.consumers.sink.service import run_sink
from perpstream.consumers.sink.settings import SinkSettings
from perpstream.errors import ConfigError
from perpstream.runtime.health import Health
from perpstream.runtime.output import iso_ms, print_rows
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


def register(sub: Any) -> None:
    p = sub.add_parser("sink", help="store MetricPoints from Kafka in ClickHouse (consumer group member)")
    _common(p)
    p.add_argument("--group-id", help="consumer group (default perpstream-sink)")
    p.add_argument("--workers", type=int, help="group members as threads in this process (default 1)")
    p.add_argument("--member-name", help="static group membership: group.instance.id <name>-<worker>; "
                   "'' = dynamic (default: <host>-<group>; env PERPSTREAM_MEMBER_NAME)")
    p.add_argument("--batch-size", type=int, help="records per batch")
    p.add_argument("--batch-ms", type=int, help="longest wait to fill a batch")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus text (/metrics), /healthz and /readyz "
                   "on this port")
    add_log_flags(p, level=False)  # --log-level: _common
    p.set_defaults(func=sink_command)
    declare_settings(p, SettingsUse(SinkSettings, _FIELDS))

    q = sub.add_parser("query", help="read what the sink stored, and the sink's consumer lag")
    qs = q.add_subparsers(dest="query", required=True, metavar="QUERY")
    latest = qs.add_parser("latest", help="latest value per symbol and metric")
    latest.add_argument("--symbol", action="append", help="repeatable; default all")
    latest.add_argument("--metric", action="append", help="repeatable; default all")
    series = qs.add_parser("series", help="time series of one symbol and metric")
    series.add_argument("--symbol", required=True)
    series.add_argument("--metric", required=True)
    series.add_argument("--since", help="ISO-8601 or epoch ms (default: 1 hour before --until)")
    series.add_argument("--until", help="ISO-8601 or epoch ms, exclusive (default: now)")
    series.add_argument("--limit", type=int, default=100_000)
    qs.add_parser("counts", help="exact count and freshest event time per metric (FINAL)")
    funding = qs.add_parser("funding", help="one asset's funding on every venue, side by side")
    funding.add_argument("--asset", required=True, help="the underlying asset: PEPE, BTC, ... "
                         "(1000PEPEUSDT, PEPE-USDT-SWAP and kPEPE are all PEPE; docs/assets.md)")
    lag = qs.add_parser("lag", help="consumer lag per partition")
    lag.add_argument("--group-id", help="default perpstream-sink")
    for sp in (latest, series, qs.choices["counts"], funding, lag):
        _common(sp)
        sp.add_argument("--format", choices=("table", "json", "csv"), default="table")
        sp.set_defaults(func=query_command)
        declare_settings(sp, SettingsUse(SinkSettings, _FIELDS))


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--bootstrap-servers",
                   help="Kafka host:port list (env PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--clickhouse-dsn",
                   help="http(s)://... or chdb:///abs/dir (default: embedded in --data-dir)")
    p.add_argument("--database", help="ClickHouse database (default perpstream)")
    p.add_argument("--data-dir", help="embedded state directory (env PERPSTREAM_DATA_DIR; default: "
                   "the user data directory)")
    p.add_argument("--topic", help="MetricPoint topic")
    p.add_argument("--log-level", choices=("DEBUG", "INFO", "WARNING", "ERROR"))


#: flag dest -> settings field (a flag given on the command line overrides the environment)
_FIELDS = {
    "bootstrap_servers": "kafka_bootstrap_servers", "clickhouse_dsn": "clickhouse_dsn",
    "database": "clickhouse_database", "data_dir": "data_dir", "topic": "metrics_topic",
    "log_level": "log_level", "group_id": "group_id", "workers": "workers",
    "batch_size": "batch_max_records", "batch_ms": "batch_max_ms", "metrics_port": "metrics_port",
    "member_name": "member_name",
    **LOG_FLAGS,
}


def settings_from_args(args: argparse.Namespace) -> SinkSettings:
    return build_settings(SinkSettings, args, _FIELDS)


def sink_command(args: argparse.Namespace, *, client_seam: Callable[[Any, SinkSettings], Any] | None = None
                 ) -> int:
    """``perpstream sink``. ``client_seam`` wraps the ClickHouse client after it is opened: the
    soak's own entry point injects its faults there (perpstream/soak/member.py); a production
    process never passes one."""
    settings = settings_from_args(args)
    settings.require_bootstrap()
    configure_logging(settings.log_level, settings.log_format)
    tune_gc(settings.gc_threshold)
    telemetry, health = Telemetry(), Health()
    with operator_endpoints(telemetry, settings.metrics_port, health):
        client = open_client(settings.resolved_clickhouse_dsn(), **settings.clickhouse_options())
        try:
            with stop_on_signals() as stop:
                store = client if client_seam is None else client_seam(client, settings)
                return run_sink(settings, store, stop, telemetry=telemetry, health=health)
        finally:
            with contextlib.suppress(Exception):
                client.close()


def parse_time_ms(text: str) -> int:
    """Epoch milliseconds from digits, or from an ISO-8601 time (UTC unless it says otherwise)."""
    if text.isdigit():
        return int(text)
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise ConfigError(f"expected epoch ms or ISO-8601, got {text!r}") from exc
    if t.tzinfo is None:
        t = t.replace(tzinfo=dt.UTC)
    return int(t.timestamp() * 1000)


def run_query(args: argparse.Namespace, settings: SinkSettings) -> list[dict[str, Any]]:
    if args.query == "lag":
        group = args.group_id or settings.group_id
        rows = queries.consumer_lag(settings.require_bootstrap(), group, settings.metrics_topic,
                                    extra_config=settings.kafka_security())
        return [r.as_dict() for r in rows]
    reader = open_reader(settings)
    client = reader.client
    try:
        db = settings.clickhouse_database
        if reader.may_write:
            migrate_sink(client, db)  # a fresh database answers with no rows instead of an error
        if args.query == "latest":
            return queries.latest(client, db, symbols=args.symbol, metrics=args.metric)
        if args.query == "series":
            until = parse_time_ms(args.until) if args.until else int(time.time() * 1000)
            since = parse_time_ms(args.since) if args.since else until - 3_600_000
            return queries.series(client, db, args.symbol, args.metric, since, until, limit=args.limit)
        if args.query == "funding":
            return queries.funding(client, db, args.asset)
        return queries.counts(client, db)
    finally:
        reader.close()


def query_command(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    rows = run_query(args, settings)
    if args.query == "funding" and args.format == "table":
        rows = [funding_for_people(r) for r in rows]
    print_rows(rows, args.format)
    return 0


def funding_for_people(r: dict[str, Any]) -> dict[str, Any]:
    """A ``query funding`` row as a table shows it: rates in percent, the settlement as an ISO-8601
    UTC time, notional rounded to the unit."""
    def pct(v: float | None, digits: int) -> str:
        return "-" if v is None else f"{v:.{digits}f} %"

    return {
        "venue": r["source"], "symbol": r["symbol"],
        "funding": pct(None if r["funding_rate"] is None else r["funding_rate"] * 100, 4),
        "interval": "-" if not r["interval_h"] else f"{r['interval_h']:g} h",
        "annualized": pct(r["annualized_pct"], 2),
        "next_funding": "-" if r["next_funding_time_ms"] is None else iso_ms(r["next_funding_time_ms"]),
        "oi_notional": "-" if r["oi_notional"] is None else f"{r['oi_notional']:,.0f}",
        "age": "-" if r["funding_age_s"] is None else f"{r['funding_age_s']:,.0f} s",
    }


