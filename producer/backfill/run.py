"""A whole backfill run: the symbols, the Kafka publisher, the REST session, the caller's stop.

One venue a run: Binance (the default) through :class:`~.fetch.Backfill`, the
others through :class:`~.venue_fetch.VenueBackfill` with the venue's
:class:`~perpstream.producer.venue_rest.VenueRest` budget.
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
from perpstream.producer.backfill.requests import Interrupted, VenueRequests
from perpstream.producer.backfill.venue_fetch import VenueBackfill
from perpstream.producer.backfill.venues import BINANCE, VenuePlan, venue_plan
from perpstream.producer.encoding import MetricPointEncoder
from perpstream.producer.exceptions import FrameRejected, PermanentFailure, RestError
from perpstream.producer.publisher import Publisher, producer_config
from perpstream.producer.rest import BinanceRest, RestGate
from perpstream.producer.settings import ProducerSettings
from perpstream.producer.venue_rest import VenueRest
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


async def _binance(s: ProducerSettings, telemetry: Telemetry, session: aiohttp.ClientSession,
                   publisher: Publisher, encoder: MetricPointEncoder, progress: Progress | None,
                   astop: asyncio.Event) -> BackfillResult:
    gate = RestGate(telemetry, s.rest_weight_limit, s.rest_weight_share)
    rest = BinanceRest(session, s.rest_url, gate, telemetry, s.rest_timeout)
    try:
        symbols = await _symbols(s, rest)
    except PermanentFailure as exc:
        return BackfillResult(failures={"*": f"{exc.edge}: {exc.cause}"})
    job = Backfill(s, telemetry, publisher, encoder.encode, rest, progress=progress)
    log.info("backfill starting", extra={"symbols": len(symbols), "since_ms": job.range.since,
                                         "until_ms": job.range.until, "topic": s.metrics_topic})
    return await job.run(symbols, astop)


async def _venue(plan: VenuePlan, s: ProducerSettings, telemetry: Telemetry, session: aiohttp.ClientSession,
                 publisher: Publisher, encoder: MetricPointEncoder, progress: Progress | None,
                 astop: asyncio.Event) -> BackfillResult:
    h = plan.history
    rest = VenueRest(session, telemetry, source=h.source, limit=h.rest_limit, window=h.rest_window,
                     share=s.rest_weight_share, timeout=s.rest_timeout)
    requests = VenueRequests(rest, telemetry, max_frame_bytes=s.max_frame_bytes,
                             backoff_initial=s.backoff_initial, backoff_cap=s.backoff_cap)
    requests.stop = astop
    symbols = list(plan.symbols or ())
    if plan.symbols is None:
        try:
            symbols = await h.listing(requests, plan.base)
        except Interrupted:
            return BackfillResult(venue=h.name, interrupted=True)
        except RestError as exc:
            return BackfillResult(venue=h.name, failures={"*": f"{h.name}_rest: listing failed: {exc}"[:400]})
    job = VenueBackfill(plan, s, telemetry, publisher, encoder.encode, requests, progress=progress)
    log.info("backfill starting", extra={
        "venue": h.name, "symbols": len(symbols), "since_ms": job.range.since, "until_ms": job.range.until,
        "topic": s.metrics_topic, "metrics": [t.kind.metric for t in plan.tracks]})
    return await job.run(symbols, astop)


async def backfill(settings: ProducerSettings, telemetry: Telemetry, stop: threading.Event,
                   progress: Progress | None = None, *, kafka_extra: dict[str, Any] | None = None,
                   venue: str = BINANCE, metrics: str | None = None) -> BackfillResult:
    """One venue's history: Binance by default; ``metrics`` (comma-separated) narrows another
    venue's kinds (docs/producer.md, ``perpstream backfill``)."""
    s = settings
    s.require_kafka()
    plan = None
    if venue == BINANCE:
        s.require_live_symbols()
    else:
        plan = venue_plan(s, venue, metrics)
    resolve_range(s)  # a bad range fails before anything is opened
    publisher, encoder = _publisher(s, telemetry, kafka_extra)
    astop = asyncio.Event()
    finished = threading.Event()
    _watch(stop, astop, finished)
    try:
        async with aiohttp.ClientSession() as session:
            if plan is None:
                result = await _binance(s, telemetry, session, publisher, encoder, progress, astop)
            else:
                result = await _venue(plan, s, telemetry, session, publisher, encoder, progress, astop)
    finally:
        left = await asyncio.to_thread(publisher.close, s.flush_timeout)
        finished.set()
    if left:
        result.failures.setdefault("*", f"kafka: {left:,} points not delivered")
    return result


def run_backfill(settings: ProducerSettings, telemetry: Telemetry, stop: threading.Event,
                 progress: Progress | None = None, *, venue: str = BINANCE) -> int:
    """Run a backfill to the end (or until ``stop``); 0 = delivered, 1 = failures (logged), 130 = stopped.

    Blocking, with an event loop of its own: ``perpstream up --backfill`` calls it before
    starting the live source (docs/snapshots.md, "Warm at minute one"). ``stop`` is only read.
    """
    return run(settings, telemetry, stop, progress, venue=venue).exit_code


def run(settings: ProducerSettings, telemetry: Telemetry, stop: threading.Event,
        progress: Progress | None = None, *, venue: str = BINANCE, metrics: str | None = None,
        kafka_extra: dict[str, Any] | None = None) -> BackfillResult:
    """:func:`run_backfill` with the whole result; the failures, the notes and the summary are logged."""
    result = asyncio.run(backfill(settings, telemetry, stop, progress, venue=venue, metrics=metrics,
                                  kafka_extra=kafka_extra))
    summary = {k: v for k, v in result.__dict__.items() if k not in ("failures", "notes")}
    summary["seconds"] = round(result.seconds, 2)
    for sym, why in sorted(result.failures.items()):
        log.error("backfill not delivered", extra={"venue": result.venue, "symbol": sym, "error": why})
    for note in result.notes:
        log.info("backfill note", extra={"venue": result.venue, "note": note})
    log.info("backfill finished" if not result.interrupted else "backfill interrupted", extra=summary)
    return result
