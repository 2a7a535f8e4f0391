"""``perpstream produce`` and ``perpstream record``: flags -> settings -> app.

Flags override ``PERPSTREAM_*`` env vars. Signal handlers live here (not in
:class:`ProducerApp`), so the app can also run on a worker thread.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import threading
from pathlib import Path
from typing import IO, Any

from perpstream.producer.app import ProducerApp
from perpstream.producer.settings import ProducerSettings
from perpstream.producer.sources import Recorder
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

#: CLI flag dest -> settings field (only flags actually given override env).
_FIELDS = {
    "source": "source", "symbols": "symbols", "all": "all_symbols", "sim_symbols": "sim_symbols",
    "seed": "seed", "sim_rate": "sim_rate", "sim_start_ms": "sim_start_ms",
    "replay_rate": "replay_rate", "duration": "duration",
    "ws_url": "binance_ws_url", "rest_url": "binance_rest_url", "testnet": "testnet",
    "oi_interval": "oi_interval", "bootstrap_servers": "kafka_bootstrap_servers",
    "metrics_port": "metrics_port", "topic": "metrics_topic", "stream_mode": "stream_mode",
    "schema_registry_url": "schema_registry_url", "once": "once", "rest_interval": "rest_poll_interval",
    "schema_registry_auto_register": "schema_registry_auto_register",
    "venues": "venues", "conflate_ms": "conflate_ms",
    **{f"{v}_{k}": f"{v}_{k}" for v in ("bybit", "okx", "hyperliquid")
       for k in ("ws_url", "rest_url", "symbols")},
    **LOG_FLAGS,
}
#: What ``produce``, ``record`` and ``run`` build from their flags (service.settings.declare_settings).
#: ``--source replay:FILE`` sets ``source`` and ``replay_file`` both (:func:`source_option`).
PRODUCER_SETTINGS = SettingsUse(ProducerSettings, _FIELDS)


def source_option(*kinds: str) -> Any:
    """The ``--source`` argument type of every command that takes one (produce, run, up):
    one of ``kinds`` (``live``, ``rest``, ``sim``), or ``replay:FILE`` -> (source, replay file)."""
    expected = ", ".join([*kinds, "replay:FILE"])

    def parse(text: str) -> tuple[str, str | None]:
        if text in kinds:
            return text, None
        if text.startswith("replay:") and len(text) > len("replay:"):
            return "replay", text[len("replay:"):]
        if text == "replay":
            raise argparse.ArgumentTypeError("give the file: --source replay:FILE")
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")

    return parse


def _common_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--symbols", help="comma-separated symbols, e.g. BTCUSDT,ETHUSDT")
    p.add_argument("--all", action="store_true", default=None,
                   help="every PERPETUAL/TRADING symbol from exchangeInfo, refreshed at run time")
    p.add_argument("--stream-mode", choices=["auto", "per_symbol", "all_market"],
                   help="per-symbol @markPrice@1s streams or the !markPrice@arr@1s array; auto (default): "
                   "the array with --all or more than 50 symbols")
    p.add_argument("--duration", type=float, help="stop cleanly after this many seconds")
    p.add_argument("--ws-url", help="websocket base (env PERPSTREAM_BINANCE_WS_URL), "
                   "default wss://fstream.binance.com/market")
    p.add_argument("--rest-url", help="REST base (env PERPSTREAM_BINANCE_REST_URL), "
                   "default https://fapi.binance.com")
    p.add_argument("--testnet", action="store_true", default=None, help="use Binance futures testnet URLs")
    p.add_argument("--oi-interval", type=float, help="open-interest poll period per symbol, s (default 10)")
    add_venue_flags(p)
    add_log_flags(p)


def add_venue_flags(p: argparse.ArgumentParser) -> None:
    """``--venues`` and each venue's endpoints and symbols, named alike for every venue
    (docs/producer.md, "Venues")."""
    p.add_argument("--venues", help="comma-separated venues: binance, bybit, okx, hyperliquid, or all "
                   "(env PERPSTREAM_VENUES; default binance)")
    p.add_argument("--conflate-ms", type=int, help="publish the last value of each span of this many ms of "
                   "event time per symbol and metric (default 1000; 0 = every update)")
    for venue, ws, rest in (("bybit", "wss://stream.bybit.com/v5/public/linear", "https://api.bybit.com"),
                            ("okx", "wss://ws.okx.com:8443/ws/v5/public", "https://www.okx.com"),
                            ("hyperliquid", "wss://api.hyperliquid.xyz/ws", "https://api.hyperliquid.xyz")):
        env = f"PERPSTREAM_{venue.upper()}"
        p.add_argument(f"--{venue}-ws-url",
                       help=f"{venue} websocket endpoint (env {env}_WS_URL), default {ws}")
        p.add_argument(f"--{venue}-rest-url", help=f"{venue} REST base (env {env}_REST_URL), default {rest}")
        p.add_argument(f"--{venue}-symbols", help=f"{venue} symbols as the venue spells them "
                       f"(env {env}_SYMBOLS); default every listed perpetual")


def add_publish_flags(p: argparse.ArgumentParser) -> None:
    """Where the points go: the Kafka cluster, the Schema Registry and the metrics topic; the same for
    `produce` and `backfill` (docs/producer.md)."""
    p.add_argument("--bootstrap-servers",
                   help="Kafka host:port list (env PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--schema-registry-url",
                   help="Confluent Schema Registry (env PERPSTREAM_SCHEMA_REGISTRY_URL)")
    add_registry_flags(p)
    p.add_argument("--topic", help="metrics topic (default perpstream.metrics.v1)")


def add_registry_flags(p: argparse.ArgumentParser) -> None:
    """``--[no-]schema-registry-auto-register``: register the schema, or look up its id only
    (docs/producer.md, "Schema Registry")."""
    p.add_argument("--schema-registry-auto-register", action=argparse.BooleanOptionalAction, default=None,
                   help="register the MetricPoint schema under its subject (default), or only look up "
                   "the id of a schema registered beforehand (env PERPSTREAM_SCHEMA_REGISTRY_AUTO_REGISTER)")


def register(sub: Any) -> None:
    p = sub.add_parser("produce", help="stream Binance mark price / funding / open interest to Kafka")
    p.add_argument("--source", type=source_option("live", "rest", "sim"), metavar="live|rest|sim|replay:FILE",
                   help="default live; rest = premiumIndex + openInterest polled over REST (no websocket); "
                   "replay:FILE = a file written by `perpstream record`")
    p.add_argument("--once", action="store_true", default=None,
                   help="one REST round for the symbols (premiumIndex + openInterest), flushed, then exit")
    p.add_argument("--rest-interval", type=float,
                   help="--source rest: seconds between rounds (default 10)")
    _common_flags(p)
    p.add_argument("--sim-symbols", type=int, help="number of simulated symbols (default 20)")
    p.add_argument("--seed", type=int, help="simulated market seed (default 1)")
    p.add_argument("--sim-rate", type=float,
                   help="simulated seconds per wall second (default 1 = real time; 0 = unthrottled)")
    p.add_argument("--sim-start-ms", type=int, help="event time of the first simulated tick (default now)")
    p.add_argument("--replay-rate", type=float, help="replay speed factor (default 0 = as fast as possible)")
    add_publish_flags(p)
    p.add_argument("--metrics-port", type=int,
                   help="serve Prometheus text (/metrics), /healthz and /readyz on this port")
    p.set_defaults(func=produce_main)
    declare_settings(p, PRODUCER_SETTINGS)

    r = sub.add_parser("record", help="record raw live frames to a replay file (no Kafka)")
    _common_flags(r)
    r.add_argument("--out", required=True, help="replay file to write (JSON lines)")
    r.set_defaults(func=record_main, source="live")
    declare_settings(r, PRODUCER_SETTINGS)


def settings_from_args(args: argparse.Namespace) -> ProducerSettings:
    values: dict[str, Any] = {}
    source = getattr(args, "source", None)
    if isinstance(source, tuple):  # --source as source_option parsed it
        args = argparse.Namespace(**{**vars(args), "source": source[0]})
        if source[1] is not None:
            values["replay_file"] = source[1]
    return build_settings(ProducerSettings, args, _FIELDS, values=values)


def produce_main(args: argparse.Namespace) -> int:
    settings = settings_from_args(args)
    settings.require_kafka()
    if settings.source == "live" or settings.polls_rest:
        settings.require_live_symbols()
    configure_logging(settings.log_level, settings.log_format)
    tune_gc(settings.gc_threshold)
    telemetry, health = Telemetry(), Health()
    with operator_endpoints(telemetry, settings.metrics_port, health), stop_on_signals() as stop:
        return ProducerApp(settings, telemetry, health=health).run(stop)


def record_main(args: argparse.Namespace) -> int:
    # local: the live source (websockets' client, the REST poller) adds 17 ms to every command's
    # start (python -X importtime -c "import perpstream.cli"); only record and produce --source live use it
    from perpstream.producer.live import LiveSource

    settings = settings_from_args(args)
    settings.require_live_symbols()
    configure_logging(settings.log_level, settings.log_format)
    tune_gc(settings.gc_threshold)
    out_path = Path(args.out)

    async def main(out: IO[str], stop: threading.Event) -> int:
        astop = asyncio.Event()
        recorder = Recorder(out)
        task = asyncio.create_task(LiveSource(settings, Telemetry()).run(recorder, astop))
        loop = asyncio.get_running_loop()
        deadline = loop.time() + settings.duration if settings.duration else None
        while not task.done() and not stop.is_set():
            if deadline is not None and loop.time() >= deadline:
                break
            await asyncio.sleep(0.1)
        astop.set()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(task, 10)
        print(f"recorded {recorder.frames} frames to {out_path}", file=sys.stderr)
        return 0

    with out_path.open("a", encoding="utf-8") as out, stop_on_signals() as stop:
        return asyncio.run(main(out, stop))
