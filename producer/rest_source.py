"""``--source rest`` and ``--once``: the market context polled over REST only.

One round = ``GET /fapi/v1/premiumIndex`` (mark, index, estimated settle
price, funding rate and next funding time, all at the response's ``time``;
delivery contracts answer ``""`` funding and give no funding metrics) and
``GET /fapi/v1/openInterest`` per symbol, handed to the same
:class:`~producer.ingest.Ingest` as the websocket frames. premiumIndex is asked
once for every symbol (weight 10) when that is cheaper than one call per
symbol (weight 1 each), i.e. from 10 symbols on. Every request goes through the
:class:`~producer.rest.RestGate`, so rounds stretch when the weight budget
requires.

``--source rest`` repeats the round every ``rest_poll_interval`` seconds, for
networks where websockets are blocked; a failed request is retried in the next
round. ``--once`` runs one round: each request is retried with backoff (at
most :data:`ONCE_ATTEMPTS` times), and anything not fetched or not usable
ends the source with a :class:`~producer.exceptions.PermanentFailure` naming
it, so the process exits 1 (after flushing what it did get); otherwise the app
flushes and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import Awaitable, Callable

import aiohttp

from perpstream.producer import binance
from perpstream.producer.exceptions import FrameRejected, PermanentFailure, RestError
from perpstream.producer.failures import RestFault
from perpstream.producer.ingest import FrameSink
from perpstream.producer.rest import EDGE, BinanceRest, RestGate
from perpstream.producer.settings import ProducerSettings
from perpstream.producer.sources import now_ms
from perpstream.runtime.backoff import BackoffFactory
from perpstream.runtime.logs import RateLimitedLog
from perpstream.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)

ONCE_ATTEMPTS = 5
#: From this many symbols on, one premiumIndex call for all (weight 10) is the cheaper.
ALL_SYMBOLS_FROM = 10


class RestSource:
    def __init__(self, settings: ProducerSettings, telemetry: Telemetry, backoff_factory: BackoffFactory,
                 *, once: bool = False) -> None:
        self.settings = settings
        self.telemetry = telemetry
        self.backoff_factory = backoff_factory
        self.once = once
        self.rounds = 0
        self._rlog = RateLimitedLog(log)

    async def _symbols(self, rest: BinanceRest) -> list[str]:
        if self.settings.symbol_list:
            return self.settings.symbol_list
        body = await self._fetch(rest.exchange_info, "exchangeInfo")
        try:
            return sorted(binance.perpetual_listing(binance.load_json(body)).symbols)
        except FrameRejected as exc:
            raise PermanentFailure(EDGE, f"exchangeInfo answer unusable: {exc.detail[:200]}") from None

    async def _fetch(self, call: Callable[[], Awaitable[str]], what: str) -> str:
        """One request; retried with backoff in ``--once`` mode, raised as RestError otherwise."""
        delays = self.backoff_factory()
        attempts = 0
        while True:
            try:
                return await call()
            except RestError as exc:
                if exc.fault in (RestFault.PERMANENT, RestFault.REFUSED) or not self.once:
                    raise
                if exc.fault is RestFault.RETRY:
                    attempts += 1
                    if attempts >= ONCE_ATTEMPTS:
                        raise
                    await asyncio.sleep(next(delays))
                # a pause (429/418/403): the gate holds the next call until it ends

    async def _round(self, rest: BinanceRest, symbols: list[str], sink: FrameSink) -> list[str]:
        """One round; returns what was not delivered (empty when everything was)."""
        missed: list[str] = []
        rejected_before = self.telemetry.total("frames_rejected")
        url = rest.base_url.rstrip("/") + "/fapi/v1/premiumIndex"
        wanted = frozenset(symbols)
        def premium(symbol: str | None) -> Callable[[], Awaitable[str]]:
            if symbol is None:
                return lambda: rest.get(url, weight=10, endpoint="premiumIndex")
            return lambda: rest.get(url, {"symbol": symbol}, weight=1, endpoint="premiumIndex")

        calls = [("*", premium(None))] if len(symbols) >= ALL_SYMBOLS_FROM else \
            [(s, premium(s)) for s in symbols]
        for who, call in calls:
            try:
                body = await self._fetch(call, "premiumIndex")
            except RestError as exc:
                if exc.fault is RestFault.PERMANENT:
                    raise
                missed.append(f"premiumIndex {who}: HTTP {exc.status} {str(exc)[:120]}")
                continue
            got = sink.on_premium_index(body, now_ms(), wanted)
            if who == "*" and got < len(symbols):
                missed.append(f"premiumIndex: {len(symbols) - got} of {len(symbols)} symbols missing")
        for sym in symbols:
            try:
                body = await self._fetch(functools.partial(rest.open_interest, sym), "openInterest")
            except RestError as exc:
                if exc.fault is RestFault.PERMANENT:
                    raise
                missed.append(f"openInterest {sym}: HTTP {exc.status} {str(exc)[:120]}")
                continue
            sink.on_open_interest(body, now_ms())
        rejected = self.telemetry.total("frames_rejected") - rejected_before
        if rejected:
            missed.append(f"{rejected:.0f} answers or items rejected (frames_rejected)")
        self.rounds += 1
        return missed

    async def run(self, sink: FrameSink, stop: asyncio.Event) -> None:
        s = self.settings
        async with aiohttp.ClientSession() as session:
            gate = RestGate(self.telemetry, s.rest_weight_limit, s.rest_weight_share)
            rest = BinanceRest(session, s.rest_url, gate, self.telemetry, s.rest_timeout)
            try:
                symbols = await self._symbols(rest)
            except RestError as exc:
                raise PermanentFailure(EDGE, f"exchangeInfo answered HTTP {exc.status} ({exc})") from exc
            self.telemetry.set("symbols_followed", float(len(symbols)))
            while not stop.is_set():
                started = time.monotonic()
                try:
                    missed = await self._round(rest, symbols, sink)
                except RestError as exc:  # permanent in a continuous run: 401/404/451 ...
                    raise PermanentFailure(EDGE, f"HTTP {exc.status} ({exc}); check --rest-url") from exc
                if self.once:
                    if missed:
                        raise PermanentFailure(EDGE, "one-shot round incomplete: " + "; ".join(missed)[:600])
                    return
                if missed:
                    self._rlog.warning("missed", "REST round incomplete; retried next round",
                                       {"missed": "; ".join(missed)[:300]})
                wait = max(0.0, s.rest_poll_interval - (time.monotonic() - started))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
