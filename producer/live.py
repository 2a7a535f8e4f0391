"""The live source: Binance markPrice websockets + open-interest polling, with
the followed symbol set refreshed from exchangeInfo at run time (``--all``).

It runs until ``stop``, or until a part of it meets a fault retrying cannot fix
(``producer.failures``): then it closes everything it opened and raises that
:class:`~producer.exceptions.PermanentFailure`, so the process exits non-zero
with the cause instead of idling.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import json
import logging
from collections.abc import Callable

import aiohttp

from perpstream.producer import binance
from perpstream.producer.exceptions import FrameRejected, PermanentFailure, RestError
from perpstream.producer.failures import RestFault
from perpstream.producer.funding_info import FUNDING_INFO_WEIGHT, funding_info_url, funding_intervals
from perpstream.producer.ingest import FrameSink
from perpstream.producer.rest import EDGE as REST_EDGE
from perpstream.producer.rest import BinanceRest, OpenInterestPoller, RestGate
from perpstream.producer.settings import ProducerSettings
from perpstream.producer.sources import now_ms
from perpstream.producer.tasks import BackgroundTasks
from perpstream.producer.websocket import StreamSet
from perpstream.runtime.backoff import BackoffFactory, factory
from perpstream.runtime.logs import RateLimitedLog
from perpstream.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)

#: Called with (symbols now followed, symbols just dropped).
SymbolsListener = Callable[[frozenset[str], set[str]], None]


class LiveSource:
    def __init__(
        self,
        settings: ProducerSettings,
        telemetry: Telemetry,
        backoff_factory: BackoffFactory | None = None,
        on_symbols: SymbolsListener | None = None,
    ) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.backoff_factory = backoff_factory or factory(settings.backoff_initial,
                                                          cap=settings.backoff_cap)
        self.on_symbols = on_symbols
        self.symbols: frozenset[str] = frozenset()
        self.streams: StreamSet | None = None
        self.poller: OpenInterestPoller | None = None
        #: Listing entries skipped for a broken symbol (logged and counted once each).
        self.rejected_symbols: dict[str, str] = {}
        self._rlog = RateLimitedLog(log)
        #: Set when symbols were added: their funding intervals are read at once.
        self._intervals_due = asyncio.Event()

    def _apply(self, symbols: set[str]) -> None:
        new = frozenset(symbols)
        if new == self.symbols:
            return
        added, removed = new - self.symbols, set(self.symbols - new)
        if self.symbols:
            log.info("symbol set changed",
                     extra={"added": sorted(added)[:50], "removed": sorted(removed)[:50]})
        self.symbols = new
        assert self.streams is not None and self.poller is not None
        if self.settings.all_market:
            self.streams.set_streams({binance.ALL_MARKET_STREAM})
        else:
            self.streams.set_streams(binance.mark_price_stream(s) for s in new)
        self.poller.set_symbols(new)
        if added:
            self._intervals_due.set()
        self.telemetry.set("symbols_followed", float(len(new)))
        if self.on_symbols is not None:
            self.on_symbols(new, removed)

    async def _listing(self, rest: BinanceRest) -> set[str]:
        body = await rest.exchange_info()
        try:
            doc = json.loads(body)
        except (ValueError, RecursionError) as exc:  # absurdly nested JSON included
            raise FrameRejected(binance.BAD_JSON, f"exchangeInfo body: {type(exc).__name__}") from None
        if not isinstance(doc, dict):
            raise FrameRejected(binance.NOT_OBJECT, f"exchangeInfo body is {type(doc).__name__}")
        listing = binance.perpetual_listing(doc)
        for sym, problem in listing.rejected.items():
            if sym not in self.rejected_symbols:
                self.rejected_symbols[sym] = problem
                self.telemetry.inc("listing_symbols_rejected", 1)
                log.error("exchangeInfo lists a symbol that breaks the symbol rule; it is skipped",
                          extra={"symbol": binance.sample(sym, 80), "problem": problem})
        return listing.symbols

    async def _refresh(self, rest: BinanceRest, stop: asyncio.Event) -> None:
        """Follow exchangeInfo: retry with backoff until it answers, then every interval."""
        delays = self.backoff_factory()
        while not stop.is_set():
            try:
                self._apply(await self._listing(rest))
                delays = self.backoff_factory()
                self._rlog.reset("listing")
                wait = self.settings.exchange_info_interval
            except RestError as exc:
                if exc.fault in (RestFault.PERMANENT, RestFault.REFUSED):
                    raise PermanentFailure(REST_EDGE, f"exchangeInfo answered HTTP {exc.status} ({exc}); "
                                           "retrying cannot help (check --rest-url)") from exc
                wait = next(delays)
                self._rlog.warning("listing", "exchangeInfo failed; retrying",
                                   {"error": str(exc)[:200], "retry_in_s": round(wait, 2)})
            except (FrameRejected, ValueError) as exc:  # a body that is not the expected JSON
                self.telemetry.inc("rest_bad_bodies", 1, {"endpoint": "exchangeInfo"})
                wait = next(delays)
                self._rlog.warning("listing", "exchangeInfo answer unusable; retrying",
                                   {"error": str(exc)[:200], "retry_in_s": round(wait, 2)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def _funding_intervals(self, rest: BinanceRest, sink: FrameSink, stop: asyncio.Event) -> None:
        """``fundingInfo`` (the symbols whose interval was adjusted; the others are 8 h), read
        when symbols are added and with the listing's period: every perpetual's interval is
        published when first seen and when it changes (docs/producer.md, "Venues")."""
        delays = self.backoff_factory()
        while not stop.is_set():
            wait = self.settings.exchange_info_interval
            # a delivery contract (BTCUSDT_261225) has no funding, so no interval either
            perpetuals = [s for s in self.symbols if "_" not in s]
            self._intervals_due.clear()
            try:
                if perpetuals:
                    body = await rest.get(funding_info_url(rest.base_url), weight=FUNDING_INFO_WEIGHT,
                                          endpoint="fundingInfo")
                    table = funding_intervals(json.loads(body), perpetuals)
                    for sym, problem in table.rejected.items():
                        self._rlog.warning(f"funding-info:{sym}", "fundingInfo item unusable; skipped",
                                           {"symbol": binance.sample(sym, 80), "problem": problem})
                    sink.on_funding_intervals(table.hours, now_ms())
                    delays = self.backoff_factory()
            except (RestError, FrameRejected, ValueError) as exc:
                wait = next(delays)
                self._rlog.warning("funding-info", "fundingInfo failed; retrying",
                                   {"error": str(exc)[:200], "retry_in_s": round(wait, 2)})
            waiters = [asyncio.ensure_future(e.wait()) for e in (stop, self._intervals_due)]
            try:
                await asyncio.wait(waiters, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for w in waiters:
                    w.cancel()

    async def run(self, sink: FrameSink, stop: asyncio.Event) -> None:
        s = self.settings
        inner = asyncio.Event()  # ``stop``, or a part failed permanently
        failure: list[BaseException] = []

        def on_failure(exc: BaseException) -> None:
            failure.append(exc)
            inner.set()

        tasks = BackgroundTasks(log, "live-source", on_failure)
        async with aiohttp.ClientSession() as session:
            gate = RestGate(self.telemetry, s.rest_weight_limit, s.rest_weight_share)
            rest = BinanceRest(session, s.rest_url, gate, self.telemetry, s.rest_timeout)
            dialect = dataclasses.replace(binance.DIALECT, shard=functools.partial(
                binance.shard, per_connection=s.ws_streams_per_connection))
            self.streams = StreamSet(
                s.ws_url, sink, self.telemetry, self.backoff_factory,
                dialect=dialect, name="binance", silence_timeout=s.ws_silence_timeout,
                max_lifetime=s.ws_max_lifetime, max_messages_per_second=s.ws_max_messages_per_second,
                open_timeout=s.ws_open_timeout, max_frame_bytes=s.max_frame_bytes,
                compression=s.ws_compression,
            )
            self.poller = OpenInterestPoller(rest, sink, self.telemetry, self.backoff_factory,
                                             interval=s.oi_interval, concurrency=s.rest_concurrency)
            tasks.spawn(self.poller.run(inner), name="oi-poller")
            tasks.spawn(self._funding_intervals(rest, sink, inner), name="funding-info")
            if s.all_symbols:
                tasks.spawn(self._refresh(rest, inner), name="listing")
            else:
                self._apply(set(s.symbol_list))
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
