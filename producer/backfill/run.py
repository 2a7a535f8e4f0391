"""A whole backfill run: the symbols, the Kafka publisher, the REST session, the caller's stop.

:func:`run_backfill` is the blocking entry point ``perpstream up --backfill``
calls before it starts the live source (docs/snapshots.md, "Warm at minute
one"); it returns only when everything published is acknowledged.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

import aiohttp

from perpstream.producer import binance
from perpstream.producer.backfill.fetch import Backfill, BackfillResult, Progress
from perpstream.producer.backfill.plan import resolve_range
from perpstream.producer.encoding import MetricPointEncoder
from perpstream.producer.exceptions import FrameRejected, PermanentFailure, RestError
from perpstream.producer.publisher import Publisher, producer_config
from perpstream.producer.rest import BinanceRest, RestGate
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.codec import metric_point_codec, registry_client, subject_for

log = logging.getLogger(__package__)  # the command's one logger: perpstream.producer.backfill


async def _symbols(settings: ProducerSettings, rest: BinanceRest) -> list[str]:
    if settings.symbol_list:
        return settings.symbol_list
    try:
        body = await rest.exchange_info()
        return sorted(binance.perpetual_listing(binance.load_json(body, settings.max_frame_bytes)).symbols)
    except RestError as exc:
        raise PermanentFailure("binance_rest", f"exchangeInfo answered HTTP {exc.status} ({exc})") from exc
    except FrameRejected as exc:
        raise PermanentFailure("binance_rest", f"exchangeInfo answer unusable: {exc.detail[:200]}") from exc


def _publisher(s: ProducerSettings, telemetry: Telemetry, kafka_extra: dict[str, Any] | None) -> \
        tuple[Publisher, MetricPointEncoder]:
    """The live producer's publisher and encoder; a registry refusing the schema fails here."""
    codec = metric_point_codec(registry_client(s.schema_registry_config()), subject_for(s.metrics_topic),
                               auto_register=s.schema_registry_auto_register)
    encoder = MetricPointEncoder(codec)  # resolves the schema id
    publisher = Publisher(
        producer_config(s.require_kafka(), compression=s.kafka_compression, linger_ms=s.kafka_linger_ms,
                        batch_size=s.kafka_batch_size, buffer_max_messages=s.buffer_max_messages,
                        delivery_timeout_ms=s.kafka_delivery_timeout_ms, extra=kafka_extra,
                        security=s.kafka_security()),
        s.metrics_topic, telemetry, overflow_max_points=max(s.overflow_max_points, 200_000),
        order_key=encoder.event_time)
    return publisher, encoder


def _watch(stop: threading.Event, astop: asyncio.Event, finished: threading.Event) -> None:
    """The caller's ``stop``, seen on this loop (``astop``); the caller's event is never set here."""
    loop = asyncio.get_running_loop()

    def watch() -> None:
        while not finished.is_set():
            if stop.wait(0.1):
                loop.call_soon_threadsafe(astop.set)
                return

    threading.Thread(target=watch, daemon=True, name="backfill-stop").start()


async def backfill(settings: ProducerSettings, telemetry: Telemetry, stop: threading.Event,
                   progress: Progress | None = None, *, kafka_extra: dict[str, Any] | None = None) -> \
        BackfillResult:
    s = settings
    s.require_kafka()
    s.require_live_symbols()
    resolve_range(s)  # a bad range fails before anything is opened
    publisher, encoder = _publisher(s, telemetry, kafka_extra)
    astop = asyncio.Event()
    finished = threading.Event()
    _watch(stop, astop, finished)
    try:
        async with aiohttp.ClientSession() as session:
            gate = RestGate(telemetry, s.rest_weight_limit, s.rest_weight_share)
            rest = BinanceRest(session, s.rest_url, gate, telemetry, s.rest_timeout)
            try:
                symbols = await _symbols(s, rest)
            except PermanentFailure as exc:
                return BackfillResult(failures={"*": f"{exc.edge}: {exc.cause}"})
            job = Backfill(s, telemetry, publisher, encoder.encode, rest, progress=progress)
            log.info("backfill starting", extra={"symbols": len(symbols), "since_ms": job.range.since,
                                                 "until_ms": job.range.until, "topic": s.metrics_topic})
            result = await job.run(symbols, astop)
    finally:
        left = await asyncio.to_thread(publisher.close, s.flush_timeout)
        finished.set()
    if left:
        result.failures.setdefault("*", f"kafka: {left:,} points not delivered")
    return result


def run_backfill(settings: ProducerSettings, telemetry: Telemetry, stop: threading.Event,
                 progress: Progress | None = None) -> int:
    """Run a backfill to the end (or until ``stop``); 0 = delivered, 1 = failures (logged), 130 = stopped.

    Blocking, with an event loop of its own: ``perpstream up --backfill`` calls it before
    starting the live source (docs/snapshots.md, "Warm at minute one"). ``stop`` is only read.
    """
    return run(settings, telemetry, stop, progress).exit_code


def run(settings: ProducerSettings, telemetry: Telemetry, stop: threading.Event,
        progress: Progress | None = None) -> BackfillResult:
    """:func:`run_backfill` with the whole result; the failures and the summary are logged."""
    result = asyncio.run(backfill(settings, telemetry, stop, progress))
    summary = {k: v for k, v in result.__dict__.items() if k != "failures"}
    summary["seconds"] = round(result.seconds, 2)
    for sym, why in result.failures.items():
        log.error("backfill not delivered", extra={"symbol": sym, "error": why})
    log.info("backfill finished" if not result.interrupted else "backfill interrupted", extra=summary)
    return result
