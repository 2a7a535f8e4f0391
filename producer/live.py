"""The live source: Binance markPrice websockets + open-interest polling, with
the followed symbol set refreshed from exchangeInfo at run time (``--all``)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Callable

import aiohttp

from producer import binance
from producer.exceptions import FrameRejected, RestError
from producer.ingest import FrameSink
from producer.rest import BinanceRest, OpenInterestPoller, RestGate
from producer.settings import ProducerSettings
from producer.websocket import MarkPriceStreams
from service.backoff import BackoffFactory, factory
from service.telemetry import Telemetry

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
        self.streams: MarkPriceStreams | None = None
        self.poller: OpenInterestPoller | None = None

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
        if self.settings.stream_mode == "all_market":
            self.streams.set_streams({binance.ALL_MARKET_STREAM})
        else:
            self.streams.set_streams(binance.mark_price_stream(s) for s in new)
        self.poller.set_symbols(new)
        self.telemetry.set("symbols_followed", float(len(new)))
        if self.on_symbols is not None:
            self.on_symbols(new, removed)

    async def _listing(self, rest: BinanceRest) -> set[str]:
        return binance.trading_perpetuals(json.loads(await rest.exchange_info()))

    async def _refresh(self, rest: BinanceRest, stop: asyncio.Event, first_done: asyncio.Event) -> None:
        """Follow exchangeInfo: retry with backoff until it answers, then every interval."""
        delays = self.backoff_factory()
        while not stop.is_set():
            try:
                self._apply(await self._listing(rest))
                first_done.set()
                delays = self.backoff_factory()
                wait = self.settings.exchange_info_interval
            except (RestError, FrameRejected, ValueError) as exc:
                wait = next(delays)
                log.warning("exchangeInfo failed",
                            extra={"error": str(exc)[:200], "retry_in_s": round(wait, 2)})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)

    async def run(self, sink: FrameSink, stop: asyncio.Event) -> None:
        s = self.settings
        async with aiohttp.ClientSession() as session:
            gate = RestGate(self.telemetry, s.rest_weight_limit, s.rest_weight_share)
            rest = BinanceRest(session, s.rest_url, gate, self.telemetry, s.rest_timeout)
            self.streams = MarkPriceStreams(
                s.ws_url, sink, self.telemetry, self.backoff_factory,
                per_connection=s.ws_streams_per_connection, silence_timeout=s.ws_silence_timeout,
                max_lifetime=s.ws_max_lifetime, max_messages_per_second=s.ws_max_messages_per_second,
                open_timeout=s.ws_open_timeout, max_frame_bytes=s.max_frame_bytes,
            )
            self.poller = OpenInterestPoller(rest, sink, self.telemetry, self.backoff_factory,
                                             interval=s.oi_interval, concurrency=s.rest_concurrency)
            tasks = [asyncio.create_task(self.poller.run(stop), name="oi-poller")]
            if s.all_symbols:
                tasks.append(asyncio.create_task(self._refresh(rest, stop, asyncio.Event()), name="listing"))
            else:
                self._apply(set(s.symbol_list))
            try:
                await stop.wait()
            finally:
                await self.streams.close()
                await asyncio.gather(*tasks, return_exceptions=True)
