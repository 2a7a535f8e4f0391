"""Binance REST: the request-weight gate, exchangeInfo, and the open-interest poller.

Binance allows 2,400 request weight per minute per IP and reports what was
used in ``X-MBX-USED-WEIGHT-1M`` on every response. :class:`RestGate` keeps
us under a configurable share of that: requests are spread evenly (one every
``60 / budget`` seconds at most), and when the header says the budget is
spent, calls wait for the next minute. A 429 pauses every REST call for
``Retry-After``; a 418 (IP banned, 2 minutes to 3 days) stops every REST call
until the ban ends, because calling during a ban lengthens it; a 403 (the
web application firewall) pauses like a ban. The gate takes its clocks and
its sleep as arguments, so tests run it on fake time.

What each answer means is decided once, in ``producer.failures.classify_rest``
(table in docs/producer.md, "Failures by edge").

:class:`OpenInterestPoller` polls every symbol once per ``interval`` (or as
often as the budget allows, whichever is slower), one request at a time
spread over the interval, so polling never bursts and never starves: each
symbol's turn comes round-robin. Transient failures are retried with
backoff; a symbol Binance refuses (400 "Invalid symbol", ...) is dropped and
logged; an endpoint that refuses every request (404, 451, ...) stops the
producer with :class:`~producer.exceptions.PermanentFailure`. Responses are
handed to the sink as raw text; the ingest path drops an observation whose
``time`` was already published.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from typing import Any
from urllib.parse import quote

import aiohttp
import yarl

from perpstream.producer import binance
from perpstream.producer.exceptions import PermanentFailure, RestError
from perpstream.producer.failures import (
    REST_DISPOSITION,
    Disposition,
    RestFault,
    binance_error_code,
    classify_rest,
)
from perpstream.producer.ingest import FrameSink
from perpstream.producer.sources import now_ms
from perpstream.producer.tasks import BackgroundTasks
from perpstream.runtime.backoff import BackoffFactory
from perpstream.runtime.logs import RateLimitedLog
from perpstream.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)

EDGE = "binance_rest"
DEFAULT_RETRY_AFTER_429 = 60.0
DEFAULT_RETRY_AFTER_418 = 120.0
#: Binance does not say how long a firewall block lasts; wait this long between tries.
DEFAULT_RETRY_AFTER_403 = 300.0
#: Longest single sleep of :meth:`RestGate.acquire`, so a pause that is lifted or
#: extended meanwhile is noticed.
_MAX_NAP = 1.0

Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[Any]]


def retry_after(headers: Any, default: float) -> float:
    try:
        return max(0.0, float(headers.get("Retry-After", default)))
    except (TypeError, ValueError):
        return default


def query_url(url: str, params: dict[str, str]) -> yarl.URL:
    """``url?k=v`` with every value percent-encoded as UTF-8, exactly as it goes on the wire.

    Binance symbols can be non-ASCII (``币安人生USDT``) and Binance expects UTF-8
    percent-encoding. The URL is built here and marked as encoded, so no client
    library re-encodes it in its own way (yarl, for one, leaves ``/`` and ``:`` as
    they are in a query; here only unreserved characters stay literal).
    """
    query = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in params.items())
    return yarl.URL(f"{url}?{query}" if query else url, encoded=True)


class RestGate:
    """Shared budget and pause state for every REST call of one process.

    ``clock`` is monotonic seconds (spacing, pauses); ``wall`` is epoch seconds,
    because Binance's weight window is the calendar minute; ``sleep`` waits.
    """

    def __init__(
        self,
        telemetry: Telemetry,
        limit: int = binance.REST_WEIGHT_LIMIT,
        share: float = 0.5,
        *,
        clock: Clock = time.monotonic,
        wall: Clock = time.time,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.telemetry = telemetry
        self.budget = max(1, int(limit * share))
        self.min_spacing = 60.0 / self.budget
        self.used_weight = 0
        self._used_minute = -1
        self.paused_until = 0.0
        self.pause_reason = ""
        self._next_slot = 0.0
        self._clock = clock
        self._wall = wall
        self._sleep = sleep
        telemetry.gauge_fn("rest_weight_used", lambda: float(self.used_weight))
        telemetry.gauge_fn("rest_paused", lambda: 1.0 if self.paused else 0.0)

    @property
    def paused(self) -> bool:
        return self.paused_until > self._clock()

    def _minute(self) -> int:
        return int(self._wall() // 60)

    async def acquire(self, weight: int = 1) -> None:
        """Wait until a request of ``weight`` fits: not paused, spaced, under budget."""
        while True:
            now = self._clock()
            if self.paused_until > now:
                await self._sleep(min(self.paused_until - now, _MAX_NAP))
                continue
            if self._minute() == self._used_minute and self.used_weight + weight > self.budget:
                wall = self._wall()
                await self._sleep(min(60 - wall % 60 + 0.05, _MAX_NAP))
                continue
            if self._next_slot > now:
                await self._sleep(self._next_slot - now)
                continue  # a pause may have started meanwhile
            self._next_slot = now + self.min_spacing * weight
            return

    def observe(self, headers: Any) -> None:
        """Take the used weight from a response's ``X-MBX-USED-WEIGHT-1M``."""
        raw = headers.get("X-MBX-USED-WEIGHT-1M")
        if raw is not None:
            with contextlib.suppress(ValueError):
                self.used_weight = int(raw)
                self._used_minute = self._minute()

    def pause(self, seconds: float, reason: str) -> None:
        """No call before ``seconds`` from now; a longer pause already running stays."""
        until = self._clock() + seconds
        if until > self.paused_until:
            self.paused_until = until
            self.pause_reason = reason

    def on_answer(self, fault: RestFault | None, headers: Any) -> float | None:
        """Apply what an answer means to every later call; returns the pause, if any."""
        self.observe(headers)
        if fault is RestFault.RATE_LIMITED:
            seconds = retry_after(headers, DEFAULT_RETRY_AFTER_429)
        elif fault is RestFault.BANNED:
            seconds = retry_after(headers, DEFAULT_RETRY_AFTER_418)
            self.telemetry.inc("rest_bans", 1)
        elif fault is RestFault.BLOCKED:
            seconds = retry_after(headers, DEFAULT_RETRY_AFTER_403)
        else:
            return None
        self.pause(seconds, fault.value)
        return seconds


class BinanceRest:
    """GETs through the gate; every non-2xx answer becomes a classified :class:`RestError`."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, gate: RestGate, telemetry: Telemetry,
                 timeout: float = 10.0) -> None:
        self.session = session
        self.base_url = base_url
        self.gate = gate
        self.telemetry = telemetry
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._rlog = RateLimitedLog(log)

    async def get(self, url: str, params: dict[str, str] | None = None, *, weight: int = 1,
                  endpoint: str = "") -> str:
        await self.gate.acquire(weight)
        t = self.telemetry
        target = query_url(url, params or {})
        try:
            async with self.session.get(target, timeout=self.timeout) as resp:
                raw = await resp.read()
                status = resp.status
                headers = resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = "timeout" if isinstance(exc, TimeoutError) else "connection"
            t.inc("rest_requests", 1, {"endpoint": endpoint, "status": reason})
            raise RestError(0, f"{reason}: {exc!r}", fault=RestFault.RETRY) from exc
        body = raw.decode("utf-8", "replace")
        t.inc("rest_requests", 1, {"endpoint": endpoint, "status": str(status)})
        t.inc("rest_weight_spent", weight)
        code = binance_error_code(body) if not 200 <= status < 300 else None
        fault = classify_rest(status, code)
        paused = self.gate.on_answer(fault, headers)
        if fault is None:
            return body
        if paused is not None:
            level = logging.ERROR if fault is not RestFault.RATE_LIMITED else logging.WARNING
            self._rlog.log(level, f"pause:{fault}", f"REST {fault.value} ({status}); no REST call "
                           "until the pause ends", {"retry_after_s": paused, "endpoint": endpoint,
                                                    "body": binance.sample(body)})
        raise RestError(status, binance.sample(body), paused, code=code, fault=fault)

    async def exchange_info(self) -> str:
        return await self.get(binance.exchange_info_url(self.base_url), weight=1, endpoint="exchangeInfo")

    async def open_interest(self, symbol: str) -> str:
        return await self.get(binance.open_interest_url(self.base_url), {"symbol": symbol}, weight=1,
                              endpoint="openInterest")


def retryable(exc: RestError) -> bool:
    """Retried with backoff by the caller (pauses are the gate's business)."""
    return exc.fault is RestFault.RETRY


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
        #: Symbols Binance refused (4xx about the request): not polled while listed.
        self.refused: dict[str, str] = {}
        self.failure: PermanentFailure | None = None
        self._wanted: set[str] = set()
        self._retry: deque[str] = deque()
        self._delays: Iterator[float] | None = None
        self._tasks = BackgroundTasks(log, "oi-poller")
        self._rlog = RateLimitedLog(log)

    def set_symbols(self, symbols: Iterable[str]) -> None:
        self._wanted = set(symbols)
        # A symbol that left the listing and came back gets another chance.
        for s in list(self.refused):
            if s not in self._wanted:
                del self.refused[s]
        self.symbols = sorted(self._wanted - set(self.refused))

    async def run(self, stop: asyncio.Event) -> None:
        """Poll until ``stop``; raises :class:`PermanentFailure` when the endpoint refuses us."""
        sem = asyncio.Semaphore(self.concurrency)
        i = 0
        try:
            while not stop.is_set() and self.failure is None:
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
                self._tasks.spawn(self._poll_one(sym, sem), name=f"oi-{sym}")
                spacing = max(self.interval / len(syms), self.rest.gate.min_spacing)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(0.0, spacing - (time.monotonic() - started)))
        finally:
            await self._tasks.close(0.0)
        if self.failure is not None:
            raise self.failure

    async def _poll_one(self, symbol: str, sem: asyncio.Semaphore) -> None:
        try:
            body = await self.rest.open_interest(symbol)
        except RestError as exc:
            self._on_error(symbol, exc)
            return
        finally:
            sem.release()
        self._delays = None
        self._rlog.reset("retry")
        self.sink.on_open_interest(body, now_ms())

    def _on_error(self, symbol: str, exc: RestError) -> None:
        fault = exc.fault
        if fault is RestFault.RETRY:
            if self._delays is None:
                self._delays = self._backoff_factory()
            self._requeue(symbol)
            self._rlog.warning("retry", "open interest request failed; retrying with backoff",
                               {"symbol": symbol, "error": str(exc)[:200]})
        elif REST_DISPOSITION[fault] is Disposition.TRANSIENT:  # a pause: the gate holds every call
            self._requeue(symbol)
        elif fault is RestFault.REFUSED:
            self.refused[symbol] = str(exc)[:300]
            self.symbols = [s for s in self.symbols if s != symbol]
            self.telemetry.inc("oi_symbols_dropped", 1)
            log.error("open interest refused for this symbol; it is not polled any more",
                      extra={"symbol": symbol, "status": exc.status, "code": exc.code,
                             "error": str(exc)[:300]})
        elif self.failure is None:
            self.failure = PermanentFailure(
                EDGE, f"openInterest answered HTTP {exc.status} ({exc}); the endpoint refuses every "
                "request (check --rest-url and where this runs from)")

    def _requeue(self, symbol: str) -> None:
        if symbol in self.symbols and symbol not in self._retry:
            self._retry.append(symbol)
