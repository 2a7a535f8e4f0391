"""The live source of a venue read through the venue contract: its listing, its websockets.

The listing is fetched at start (retried with backoff until it answers) and
again every ``listing_interval``: symbols that appear are subscribed, symbols
that disappear are unsubscribed and their state dropped, on the connections
that are open, without restarting anything. The websockets are a
:class:`~producer.websocket.StreamSet` speaking the venue's
:class:`~producer.venue.Dialect`, so reconnects, resubscription, heartbeats,
the silence watchdog and pacing are the same state machine as Binance's.

Like :class:`~producer.live.LiveSource` it runs until ``stop`` or a permanent
failure (an endpoint that refuses us for good), which it raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping

import aiohttp

from perpstream.producer.exceptions import FrameRejected, PermanentFailure, ProducerError, RestError
from perpstream.producer.failures import RestFault
from perpstream.producer.sources import now_ms
from perpstream.producer.tasks import BackgroundTasks
from perpstream.producer.venue import Instrument
from perpstream.producer.venue_ingest import VenueIngest
from perpstream.producer.venue_rest import VenueRest
from perpstream.producer.venues import VenueEndpoints, VenueSpec
from perpstream.producer.websocket import StreamSet
from perpstream.runtime.backoff import BackoffFactory
from perpstream.runtime.logs import RateLimitedLog
from perpstream.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)

class VenueSource:
    """One venue's listing and websockets, feeding a :class:`VenueIngest`."""

    def __init__(self, spec: VenueSpec, endpoints: VenueEndpoints, telemetry: Telemetry,
                 backoff_factory: BackoffFactory, *, listing_interval: float = 300.0,
                 rest_share: float = 0.5, rest_timeout: float = 10.0, open_timeout: float = 10.0,
                 max_frame_bytes: int = 4_000_000) -> None:
        self.spec = spec
        self.endpoints = endpoints
        self.telemetry = telemetry
        self.backoff_factory = backoff_factory
        self.listing_interval = listing_interval
        self.rest_share = rest_share
        self.rest_timeout = rest_timeout
        self.open_timeout = open_timeout
        self.max_frame_bytes = max_frame_bytes
        self.instruments: dict[str, Instrument] = {}
        self.streams: StreamSet | None = None
        self._rlog = RateLimitedLog(log)

    @property
    def edge(self) -> str:
        return f"{self.spec.name}_rest"

    def _apply(self, listed: Mapping[str, Instrument], sink: VenueIngest) -> None:
        wanted = self.endpoints.symbols
        followed = {s: i for s, i in listed.items() if wanted is None or s in wanted}
        removed = set(self.instruments) - set(followed)
        added = set(followed) - set(self.instruments)
        if self.instruments and (added or removed):
            log.info("symbol set changed", extra={"source": self.spec.source, "added": sorted(added)[:50],
                                                  "removed": sorted(removed)[:50]})
        self.instruments = followed
        set_listing = getattr(sink.parser, "set_instruments", None)
        if set_listing is not None:
            set_listing(followed)
        assert self.streams is not None
        self.streams.set_streams({st for i in followed.values() for st in i.streams})
        sink.on_listing(followed, removed, now_ms())
        self.telemetry.set("symbols_followed", float(len(followed)), {"source": self.spec.source})

    async def _refresh(self, rest: VenueRest, sink: VenueIngest, stop: asyncio.Event) -> None:
        """Follow the listing: retry with backoff until it answers, then every interval."""
        delays = self.backoff_factory()
        name = self.spec.name
        while not stop.is_set():
            try:
                self._apply(await self.spec.fetch_listing(rest, self.endpoints.rest_url), sink)
                delays = self.backoff_factory()
                self._rlog.reset(f"{name}:listing")
                wait = self.listing_interval
            except RestError as exc:
                if exc.fault is RestFault.PERMANENT:
                    raise PermanentFailure(self.edge, f"{name} listing answered HTTP {exc.status} ({exc}); "
                                           f"retrying cannot help (check --{name}-rest-url)") from exc
                wait = max(next(delays), exc.retry_after or 0.0)
                self._rlog.warning(f"{name}:listing", "venue listing failed; retrying",
                                   {"source": self.spec.source, "error": str(exc)[:200],
                                    "retry_in_s": round(wait, 2)})
            except (FrameRejected, ProducerError, ValueError) as exc:  # an unusable body
                self.telemetry.inc("rest_bad_bodies", 1, {"source": self.spec.source, "endpoint": "listing"})
                wait = next(delays)
                self._rlog.warning(f"{name}:listing", "venue listing answer unusable; retrying",
                                   {"source": self.spec.source, "error": str(exc)[:200],
                                    "retry_in_s": round(wait, 2)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def run(self, sink: VenueIngest, stop: asyncio.Event) -> None:
        inner = asyncio.Event()
        failure: list[BaseException] = []

        def on_failure(exc: BaseException) -> None:
            failure.append(exc)
            inner.set()

        spec = self.spec
        tasks = BackgroundTasks(log, f"{spec.name}-source", on_failure)
        async with aiohttp.ClientSession() as session:
            rest = VenueRest(session, self.telemetry, source=spec.source, limit=spec.rest_limit,
                             window=spec.rest_window, share=self.rest_share, timeout=self.rest_timeout)
            self.streams = StreamSet(self.endpoints.ws_url, sink, self.telemetry, self.backoff_factory,
                                     dialect=spec.dialect, name=spec.name,
                                     silence_timeout=spec.silence_timeout, open_timeout=self.open_timeout,
                                     max_frame_bytes=self.max_frame_bytes)
            tasks.spawn(self._refresh(rest, sink, inner), name=f"{spec.name}-listing")
            waiters = [asyncio.create_task(e.wait()) for e in (stop, inner, self.streams.failed)]
            try:
                await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()
                await asyncio.gather(*waiters, return_exceptions=True)
                inner.set()
                await self.streams.close()
                await tasks.close(10.0)
        if self.streams.failure is not None:
            failure.insert(0, self.streams.failure)
        if failure:
            raise failure[0]
