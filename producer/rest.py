"""Binance REST: the request-weight gate, exchangeInfo, and the open-interest poller.

Binance allows 2,400 request weight per minute per IP and reports what was
used in ``X-MBX-USED-WEIGHT-1M`` on every response. :class:`RestGate` keeps
us under a configurable share of that: requests are spread evenly (one every
``60 / budget`` seconds at most), and when the header says the budget is
spent, calls wait for the next minute. A 429 pauses every REST call for
``Retry-After``; a 418 (IP banned, 2 minutes to 3 days) stops every REST call
until the ban ends, because calling during a ban lengthens it.

:class:`OpenInterestPoller` polls every symbol once per ``interval`` (or as
often as the budget allows, whichever is slower), one request at a time
spread over the interval, so polling never bursts and never starves: each
symbol's turn comes round-robin. 5xx answers and timeouts are retried with
backoff. Responses are handed to the sink as raw text; the ingest path
drops an observation whose ``time`` was already published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Iterable, Iterator
from typing import Any

import aiohttp

from producer import binance
from producer.exceptions import RestError
from producer.ingest import FrameSink
from producer.sources import now_ms
from service.backoff import BackoffFactory
from service.telemetry import Telemetry

log = logging.getLogger(__name__)

DEFAULT_RETRY_AFTER_429 = 60.0
DEFAULT_RETRY_AFTER_418 = 120.0


def _retry_after(headers: Any, default: float) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", default)))
    except (TypeError, ValueError):
        return default


class RestGate:
    """Shared budget and pause state for every REST call of one process."""

    def __init__(
        self, telemetry: Telemetry, limit: int = binance.REST_WEIGHT_LIMIT, share: float = 0.5,
    ) -> None:
        self.telemetry = telemetry
        self.budget = max(1, int(limit * share))
        self.min_spacing = 60.0 / self.budget
        self.used_weight = 0
        self._used_minute = -1
        self.paused_until = 0.0
        self.pause_reason = ""
        self._next_slot = 0.0
        telemetry.gauge_fn("rest_weight_used", lambda: float(self.used_weight))
        telemetry.gauge_fn("rest_paused", lambda: 1.0 if self.paused_until > time.monotonic() else 0.0)

    async def acquire(self, weight: int = 1) -> None:
        """Wait until a request of ``weight`` fits: not paused, spaced, under budget."""
        while True:
            now = time.monotonic()
            if self.paused_until > now:
                await asyncio.sleep(min(self.paused_until - now, 1.0))
                continue
            minute = int(time.time() // 60)
            if minute == self._used_minute and self.used_weight + weight > self.budget:
                await asyncio.sleep(min(60 - time.time() % 60 + 0.05, 1.0))
                continue
            if self._next_slot > now:
                await asyncio.sleep(self._next_slot - now)
                continue  # a pause may have started meanwhile
            self._next_slot = now + self.min_spacing * weight
            return

    def observe(self, headers: Any) -> None:
        raw = headers.get("X-MBX-USED-WEIGHT-1M")
        if raw is not None:
            with contextlib.suppress(ValueError):
                self.used_weight = int(raw)
                self._used_minute = int(time.time() // 60)

    def pause(self, seconds: float, reason: str) -> None:
        until = time.monotonic() + seconds
        if until > self.paused_until:
            self.paused_until = until
            self.pause_reason = reason


class BinanceRest:
    """GETs through the gate, turning statuses into pauses and :class:`RestError` s."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, gate: RestGate, telemetry: Telemetry,
                 timeout: float = 10.0) -> None:
        self.session = session
        self.base_url = base_url
        self.gate = gate
        self.telemetry = telemetry
        self.timeout = aiohttp.ClientTimeout(total=timeout)

    async def get(self, url: str, params: dict[str, str] | None = None, *, weight: int = 1,
                  endpoint: str = "") -> str:
        await self.gate.acquire(weight)
        t = self.telemetry
        try:
            async with self.session.get(url, params=params, timeout=self.timeout) as resp:
                body = await resp.text()
                status = resp.status
                headers = resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = "timeout" if isinstance(exc, TimeoutError) else "connection"
            t.inc("rest_requests", 1, {"endpoint": endpoint, "status": reason})
            raise RestError(0, f"{reason}: {exc!r}") from exc
        self.gate.observe(headers)
        t.inc("rest_requests", 1, {"endpoint": endpoint, "status": str(status)})
        t.inc("rest_weight_spent", weight)
        if status == 200:
            return body
        if status == 429:
            ra = _retry_after(headers, DEFAULT_RETRY_AFTER_429)
            self.gate.pause(ra, "rate_limited")
            log.warning("REST rate limited (429); pausing REST calls",
                        extra={"retry_after_s": ra, "body": binance.sample(body)})
            raise RestError(429, body[:200], ra)
        if status == 418:
            ra = _retry_after(headers, DEFAULT_RETRY_AFTER_418)
            self.gate.pause(ra, "banned")
            t.inc("rest_bans", 1)
            log.error("REST IP ban (418); no REST calls until it ends",
                      extra={"retry_after_s": ra, "body": binance.sample(body)})
            raise RestError(418, body[:200], ra)
        raise RestError(status, binance.sample(body))

    async def exchange_info(self) -> str:
        return await self.get(binance.exchange_info_url(self.base_url), weight=1, endpoint="exchangeInfo")

    async def open_interest(self, symbol: str) -> str:
        return await self.get(binance.open_interest_url(self.base_url), {"symbol": symbol}, weight=1,
                              endpoint="openInterest")


def retryable(exc: RestError) -> bool:
    return exc.status == 0 or exc.status in binance.RETRYABLE_HTTP_STATUSES


class OpenInterestPoller:
    """Round-robin open-interest polling within the gate's budget (see module doc)."""

    def __init__(
        self, rest: BinanceRest, sink: FrameSink, telemetry: Telemetry, backoff_factory: BackoffFactory,
        *, interval: float = 10.0, concurrency: int = 8,
    ) -> None:
        self.rest = rest
        self.sink = sink
        self.telemetry = telemetry
        self.interval = interval
        self.concurrency = concurrency
        self._backoff_factory = backoff_factory
        self.symbols: list[str] = []
        self._retry: deque[str] = deque()
        self._delays: Iterator[float] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def set_symbols(self, symbols: Iterable[str]) -> None:
        self.symbols = sorted(set(symbols))

    async def run(self, stop: asyncio.Event) -> None:
        sem = asyncio.Semaphore(self.concurrency)
        i = 0
        try:
            while not stop.is_set():
                if self._delays is not None:  # the last request failed in a retryable way
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), next(self._delays))
                    if stop.is_set():
                        break
                syms = self.symbols
                if not syms:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), 0.5)
                    continue
                if self._retry:
                    sym = self._retry.popleft()
                else:
                    sym = syms[i % len(syms)]
                    i += 1
                started = time.monotonic()
                await sem.acquire()
                task = asyncio.create_task(self._poll_one(sym, sem))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
                spacing = max(self.interval / len(syms), self.rest.gate.min_spacing)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, spacing - (time.monotonic() - started)))
        finally:
            for t in list(self._tasks):
                t.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _poll_one(self, symbol: str, sem: asyncio.Semaphore) -> None:
        try:
            body = await self.rest.open_interest(symbol)
        except RestError as exc:
            if retryable(exc):
                if self._delays is None:
                    self._delays = self._backoff_factory()
                if symbol in self.symbols and symbol not in self._retry:
                    self._retry.append(symbol)
                log.warning("open interest request failed; retrying with backoff",
                            extra={"symbol": symbol, "error": str(exc)[:200]})
            elif exc.status in (429, 418):
                if symbol not in self._retry:
                    self._retry.append(symbol)
            else:
                log.error("open interest request refused", extra={"symbol": symbol, "error": str(exc)[:300]})
            return
        finally:
            sem.release()
        self._delays = None
        self.sink.on_open_interest(body, now_ms())
