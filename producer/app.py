"""``ProducerApp``: one producer process (or thread) from settings to Kafka.

It owns an asyncio loop of its own, so it runs the same from the CLI's main
thread or from a worker thread of ``perpstream run``; it installs no signal
handlers (the caller sets the ``stop`` event). On stop, on ``duration``, or
when a replay file is exhausted it stops the source first, then drains the
buffers into Kafka within ``flush_timeout``.

A permanent failure (``producer.failures``) of the source (a websocket or
REST endpoint that refuses us for good) or of Kafka (authorisation, an
invalid topic, a producer that keeps failing fatally) stops the app the same
way, logs the cause at ERROR without a traceback, and makes :meth:`run`
return 1.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from perpstream.producer import binance
from perpstream.producer.encoding import MetricPointEncoder
from perpstream.producer.exceptions import PermanentFailure
from perpstream.producer.ingest import Ingest
from perpstream.producer.publisher import Publisher, producer_config
from perpstream.producer.settings import ProducerSettings
from perpstream.producer.sim_venues import (
    SIM_VENUES,
    BinanceScaledSim,
    SimBinanceScaledSource,
    SimVenueSource,
    simulated_venue,
)
from perpstream.producer.sources import ReplaySource, SimSource, SimulatedMarket, now_ms
from perpstream.producer.venue_ingest import VenueIngest
from perpstream.producer.venues import VENUES, VenueEndpoints
from perpstream.runtime import eventloop
from perpstream.runtime.backoff import BackoffFactory, factory
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.codec import metric_point_codec, registry_client, subject_for

if TYPE_CHECKING:
    from perpstream.runtime.health import Health, Heartbeat

log = logging.getLogger(__name__)

#: How often delivery callbacks are served, conflated values whose second is over are
#: published and counters reach the telemetry. Each wake-up costs the same whatever the load:
#: an idle producer took 1.4% of a core at 50 a second and 0.7% at 10 (docs/producer.md,
#: "Frame path cost"); 10 add at most 100 ms to a conflated point's 500 ms grace.
PUMP_INTERVAL = 0.1
#: The component name of the producer's health checks; how long its event loop may stall;
#: how often the readiness state is noted; how long Kafka may acknowledge nothing while points wait.
HEALTH_NAME = "producer"
LOOP_STALL = 30.0
OBSERVE_INTERVAL = 0.25
KAFKA_ACK_SILENCE = 10.0
SUMMARY_KEYS = (
    "frames_received", "points_published", "points_delivered", "frames_rejected", "reconnects",
    "rest_requests", "rest_weight_used", "delivery_failures", "points_dropped", "buffer_fill",
)


def build_source(
    settings: ProducerSettings, telemetry: Telemetry, backoff_factory: BackoffFactory | None = None,
    ingest: Ingest | None = None,
) -> Any:
    """The source the settings ask for; each has ``async run(sink, stop)``."""
    if settings.source == "sim":
        start = settings.sim_start_ms if settings.sim_start_ms is not None else now_ms()
        market = SimulatedMarket(settings.sim_symbols, settings.seed, start,
                                 int(settings.oi_interval * 1000))
        return SimSource(market, settings.sim_rate)
    if settings.source == "replay":
        assert settings.replay_file is not None
        return ReplaySource(settings.replay_file, settings.replay_rate)
    backoff = backoff_factory or factory(settings.backoff_initial, cap=settings.backoff_cap)
    # local: the live and REST sources load websockets and aiohttp (about 17 ms, python -X
    # importtime, and their memory), which a simulated or replayed market never uses
    if settings.polls_rest:
        from perpstream.producer.rest_source import RestSource

        settings.require_live_symbols()
        return RestSource(settings, telemetry, backoff, once=settings.once)
    from perpstream.producer.live import LiveSource

    settings.require_live_symbols()

    def on_symbols(current: frozenset[str], removed: set[str]) -> None:
        if ingest is not None:
            if settings.all_market:
                ingest.symbols = current  # the array stream carries every symbol
            ingest.forget(removed)

    return LiveSource(settings, telemetry, backoff, on_symbols)


@dataclasses.dataclass(frozen=True)
class _HealthState:
    """What the event loop last noted for :meth:`ProducerApp.readiness` (monotonic times)."""

    since: float = 0.0
    #: open websockets (None: not the live source), since when none is, and whether one ever was
    open_ws: int | None = None
    ws_down_since: float | None = None
    ws_seen: bool = False
    delivered: int = 0
    waiting: int = 0
    acked_at: float = 0.0


#: The ``source`` of the points of the simulated market: never the venue's own, so simulated
#: points can never be taken for (or mixed with) real ones in a store (docs/contract.md).
SIM_SOURCE = "sim"


def point_source(input_kind: str) -> str:
    """The MetricPoint ``source`` of what an input produces: the venue's, or ``sim``."""
    return SIM_SOURCE if input_kind == "sim" else binance.SOURCE


class ProducerApp:
    """Runs the producer until ``stop`` is set; see the module doc."""

    def __init__(
        self,
        settings: ProducerSettings,
        telemetry: Telemetry | None = None,
        *,
        backoff_factory: BackoffFactory | None = None,
        kafka_extra: dict[str, Any] | None = None,
        health: Health | None = None,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry or Telemetry()
        self._backoff_factory = backoff_factory
        self._kafka_extra = kafka_extra
        #: with a registry, the app's liveness and readiness are its component ``producer``
        self.health = health
        self._state = _HealthState()
        self.publisher: Publisher | None = None
        self.ingest: Ingest | None = None
        self.venue_ingests: list[VenueIngest] = []
        #: Set once the source runs (tests and ``perpstream run`` wait on it).
        self.started = threading.Event()
        #: The permanent failure that stopped the app, if one did.
        self.failure: PermanentFailure | None = None

    def run(self, stop: threading.Event) -> int:
        """Block until ``stop`` (or duration / end of replay); 0 when everything was delivered."""
        return eventloop.run(self._main(stop), self.settings.event_loop)

    async def _main(self, stop: threading.Event) -> int:
        # Long: the producer's start-up in order (settings, codec, publisher, source, health) and
        # its one shutdown path; each step is a line or two, and the order is the point.
        s = self.settings
        bootstrap = s.require_kafka()
        if s.source == "live" or s.polls_rest:
            s.require_live_symbols()
        codec = metric_point_codec(registry_client(s.schema_registry_config()), subject_for(s.metrics_topic),
                                   auto_register=s.schema_registry_auto_register)
        encoder = MetricPointEncoder(codec)  # resolves the schema id: a registry refusing fails here
        publisher = self.publisher = Publisher(
            producer_config(
                bootstrap, compression=s.kafka_compression, linger_ms=s.kafka_linger_ms,
                batch_size=s.kafka_batch_size, buffer_max_messages=s.buffer_max_messages,
                delivery_timeout_ms=s.kafka_delivery_timeout_ms, extra=self._kafka_extra,
                security=s.kafka_security(),
            ),
            s.metrics_topic, self.telemetry, overflow_max_points=s.overflow_max_points,
            order_key=encoder.event_time,
        )
        symbols = frozenset(s.symbol_list) if s.source == "live" and s.symbol_list else None
        ingest = self.ingest = Ingest(
            publisher, encoder, self.telemetry, max_frame_bytes=s.max_frame_bytes,
            symbols=symbols if s.all_market else None, source=point_source(s.source),
        )
        parts: list[tuple[Any, Any]] = []
        if "binance" in s.venue_list or s.source in ("replay", "rest"):  # sim: --venues says
            parts.append((build_source(s, self.telemetry, self._backoff_factory, ingest), ingest))
        parts.extend(self._venue_parts(publisher, encoder))
        self.venue_ingests = [sink for _, sink in parts if isinstance(sink, VenueIngest)]
        log.info("producer starting", extra={
            "source": s.source, "venues": s.venues, "topic": s.metrics_topic, "bootstrap": bootstrap,
            "fast_encoder": encoder.fast, "event_loop": type(asyncio.get_running_loop()).__module__,
        })
        astop = asyncio.Event()
        source_task = asyncio.create_task(self._run_sources(parts, astop), name="sources")
        beat = self._watch(publisher)
        pump_task = asyncio.create_task(self._pump(publisher, ingest, astop, parts, beat), name="pump")
        deadline = time.monotonic() + s.duration if s.duration else None
        self.started.set()
        rc = 0
        try:
            while not source_task.done() and publisher.failure is None:
                if stop.is_set() or (deadline is not None and time.monotonic() >= deadline):
                    break
                await asyncio.sleep(0.05)
        finally:
            astop.set()
            try:
                await asyncio.wait_for(source_task, timeout=max(5.0, s.flush_timeout / 2))
            except TimeoutError:  # wait_for cancelled it and waited for it to end
                log.error("source did not stop in time; cancelled")
            except PermanentFailure as exc:
                self._report_failure(exc)
                rc = 1
            except Exception:
                log.exception("source failed")
                rc = 1
            if publisher.failure is not None:
                self._report_failure(publisher.failure)
                rc = 1
            pump_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump_task
            ingest.sync()
            for vi in self.venue_ingests:
                vi.drain()  # the conflated values still held
                vi.sync()
            # Kafka that refuses us for good will not take the rest either: do not wait long.
            flush = min(s.flush_timeout, 2.0) if publisher.failure is not None else s.flush_timeout
            left = await asyncio.to_thread(publisher.close, flush)
            self._sync_publisher(publisher)
            if self.health is not None:
                self.health.stopped(HEALTH_NAME)
            log.info("producer stopped", extra=self._summary())
        return 1 if rc or left else 0

    def _watch(self, publisher: Publisher) -> Heartbeat | None:
        """Register liveness (the event loop turns) and readiness (see :meth:`readiness`)."""
        now = time.monotonic()
        live = self.settings.source == "live" and not self.settings.polls_rest
        self._state = _HealthState(since=now, open_ws=0 if live else None,
                                   ws_down_since=now if live else None, acked_at=now)
        if self.health is None:
            return None
        self.health.add_readiness(HEALTH_NAME, self.readiness)
        return self.health.heartbeat(HEALTH_NAME, LOOP_STALL)

    def _observe(self, publisher: Publisher, parts: list[tuple[Any, Any]], now: float) -> None:
        """Note, on the event loop's thread, what :meth:`readiness` reports from another one."""
        old = self._state
        open_ws: int | None = None
        if old.open_ws is not None:  # the live sources
            open_ws = sum(1 for src, _ in parts if getattr(src, "streams", None) is not None
                          for c in src.streams.connections if c.connected)
        waiting = publisher.pending
        self._state = dataclasses.replace(
            old, open_ws=open_ws, ws_seen=old.ws_seen or bool(open_ws),
            ws_down_since=(old.ws_down_since or now) if open_ws == 0 else None,
            delivered=publisher.delivered, waiting=waiting,
            acked_at=now if publisher.delivered != old.delivered or not waiting else old.acked_at)

    def readiness(self, now: float | None = None) -> str | None:
        """Why the producer is not ready (None: connected and delivering): no websocket open
        (live source), Kafka acknowledging nothing while points wait, or Kafka refusing it."""
        now = time.monotonic() if now is None else now
        st = self._state
        reasons = []
        if st.open_ws == 0:
            since = st.ws_down_since if st.ws_down_since is not None else st.since
            yet = "" if st.ws_seen else " yet"
            reasons.append(f"no websocket connected{yet} for {now - since:.0f} s")
        if st.waiting and now - st.acked_at > KAFKA_ACK_SILENCE:
            reasons.append(f"Kafka has acknowledged nothing for {now - st.acked_at:.0f} s "
                           f"({st.waiting:,} points waiting)")
        failure = self.publisher.failure if self.publisher is not None else None
        if failure is not None:
            reasons.append(f"Kafka refuses this producer: {failure.cause}")
        return "; ".join(reasons) or None

    def _venue_parts(self, publisher: Publisher, encoder: MetricPointEncoder) -> list[tuple[Any, Any]]:
        """A source and its ingest for every venue other than Binance that ``--venues`` names.

        With ``--source sim`` the venues are simulated (docs/producer.md, "Sources"); with one of
        them running, the simulated Binance also lists its scaled contracts and states its funding
        intervals, and alone it is the simulated market of :func:`build_source`, unchanged."""
        s = self.settings
        if s.source == "sim":
            start = s.sim_start_ms if s.sim_start_ms is not None else now_ms()
            oi_ms = int(s.oi_interval * 1000)
            sims: list[tuple[Any, Any]] = []
            for name in s.venue_list:
                if name in SIM_VENUES:
                    venue = simulated_venue(name, s.sim_symbols, s.seed, start, oi_ms)
                    sims.append((SimVenueSource(venue, s.sim_rate), VenueIngest(
                        publisher, encoder, self.telemetry, source=venue.source, parser=venue.parser(),
                        conflate_ms=s.conflate_ms)))
            if sims and "binance" in s.venue_list and self.ingest is not None:
                scaled = BinanceScaledSim(s.sim_symbols, s.seed, start, oi_ms)
                sims.append((SimBinanceScaledSource(scaled, s.sim_rate), self.ingest))
            return sims
        if s.source != "live":
            return []
        # local: websockets and aiohttp, as in build_source
        from perpstream.producer.venue_source import VenueSource

        backoff = self._backoff_factory or factory(s.backoff_initial, cap=s.backoff_cap)
        parts: list[tuple[Any, Any]] = []
        for name in s.venue_list:
            spec = VENUES.get(name)
            if spec is None:
                continue
            endpoints = VenueEndpoints(getattr(s, f"{name}_ws_url"), getattr(s, f"{name}_rest_url"),
                                       s.venue_symbols(name))
            source = VenueSource(spec, endpoints, self.telemetry, backoff,
                                 listing_interval=s.exchange_info_interval, rest_share=s.rest_weight_share,
                                 rest_timeout=s.rest_timeout, open_timeout=s.ws_open_timeout,
                                 max_frame_bytes=s.max_frame_bytes)
            sink = VenueIngest(publisher, encoder, self.telemetry, source=spec.source, parser=spec.parser(),
                               conflate_ms=s.conflate_ms)
            parts.append((source, sink))
        return parts

    async def _run_sources(self, parts: list[tuple[Any, Any]], stop: asyncio.Event) -> None:
        """Every source until ``stop``; the first that fails stops the others, then it is raised."""
        tasks = [asyncio.create_task(src.run(sink, stop), name=f"source-{i}")
                 for i, (src, sink) in enumerate(parts)]
        if not tasks:
            return
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        if len(tasks) > 1 and any(t.done() and t.exception() is not None for t in tasks):
            stop.set()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        for r in results:
            if isinstance(r, BaseException):
                raise r

    def _report_failure(self, exc: PermanentFailure) -> None:
        self.failure = exc
        log.error("producer stopping: permanent failure", extra={"edge": exc.edge, "cause": exc.cause})

    def _sync_publisher(self, publisher: Publisher) -> None:
        t = self.telemetry
        delivered = publisher.delivered - int(t.get("points_delivered"))
        if delivered:
            t.inc("points_delivered", delivered)

    def _summary(self) -> dict[str, float]:
        summary = self.telemetry.summary()
        return {k: summary.get(k, 0.0) for k in SUMMARY_KEYS}

    async def _pump(self, publisher: Publisher, ingest: Ingest, stop: asyncio.Event,
                    parts: list[tuple[Any, Any]], beat: Heartbeat | None = None) -> None:
        """Serve delivery callbacks, move counters to telemetry, log a summary line,
        keep the heartbeat and the readiness state current."""
        next_summary = time.monotonic() + self.settings.summary_interval
        next_trace = next_observe = 0.0
        while True:
            if beat is not None:
                beat.beat()
            now = time.monotonic()
            if now >= next_observe:
                next_observe = now + OBSERVE_INTERVAL
                self._observe(publisher, parts, now)
            try:
                publisher.poll(0)
            except Exception:  # the pump must outlive any single failure
                now = time.monotonic()
                if now >= next_trace:  # one traceback per half minute, not 50 a second
                    next_trace = now + 30.0
                    log.exception("serving the Kafka producer failed")
            ingest.sync()
            if self.venue_ingests:
                wall = now_ms()
                for vi in self.venue_ingests:
                    vi.tick(wall)
                    vi.sync()
            self._sync_publisher(publisher)
            if time.monotonic() >= next_summary:
                next_summary += self.settings.summary_interval
                log.info("producer summary", extra=self._summary())
            await asyncio.sleep(PUMP_INTERVAL)
