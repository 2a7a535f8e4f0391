"""One history request of a backfill: retried, paged, paced and interruptible.

Binance requests go through the REST gate of :class:`~perpstream.producer.rest.BinanceRest`
(the weight budget per minute, 429/418/403 pauses honoured); the funding and
open-interest-history endpoints also have request pools of their own at
Binance, spaced by a :class:`Pool`. The other venues' requests go through a
:class:`~perpstream.producer.venue_rest.VenueRest` (the venue's budget in a
rolling window; a 429 or 403 pauses every call of the venue), and a rate limit
the venue states in its envelope (Bybit ``retCode`` 10006) pauses it too. A
retryable failure is retried with backoff, at most :data:`MAX_ATTEMPTS` times
(docs/producer.md, ``perpstream backfill``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from perpstream.producer import binance
from perpstream.producer.backfill.spec import Page
from perpstream.producer.exceptions import FrameRejected, RestError
from perpstream.producer.failures import RestFault
from perpstream.producer.history import Parsed
from perpstream.producer.rest import BinanceRest
from perpstream.producer.venue_rest import VenueRest
from perpstream.runtime.backoff import factory
from perpstream.runtime.logs import RateLimitedLog
from perpstream.runtime.telemetry import Telemetry

log = logging.getLogger(__package__)  # the command's one logger: perpstream.producer.backfill

#: Attempts of one request that fails in a retryable way (5xx, timeout, a body that is not JSON).
MAX_ATTEMPTS = 8
#: Binance's request pools of the two history endpoints: (requests, seconds).
FUNDING_POOL = (500, 300.0)
OI_HIST_POOL = (1000, 300.0)
#: Faults that pause the client until the venue's window has passed: waited out, never an attempt.
PAUSING = frozenset({RestFault.RATE_LIMITED, RestFault.BANNED, RestFault.BLOCKED})

T = TypeVar("T")


class Pool:
    """Spacing for an endpoint with its own request pool: ``requests`` per ``seconds`` times ``share``."""

    def __init__(self, requests: int, seconds: float, share: float) -> None:
        self.spacing = seconds / max(1, int(requests * share))
        self._next = 0.0

    async def acquire(self) -> None:
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next = max(now, self._next) + self.spacing


class Interrupted(Exception):
    """The stop event was set."""


class _Requests:
    """What every history client shares: the counters (``requests``, ``weight``,
    ``rejected``), the stop that ends it, backoff, and waits the stop interrupts."""

    def __init__(self, telemetry: Telemetry, *, max_frame_bytes: int, backoff_initial: float,
                 backoff_cap: float) -> None:
        self.telemetry = telemetry
        self.max_frame_bytes = max_frame_bytes
        self.requests = 0
        self.weight = 0
        self.rejected = 0
        self.stop: asyncio.Event = asyncio.Event()
        self._backoff = factory(backoff_initial, cap=backoff_cap)
        self._rlog = RateLimitedLog(log)

    def _count_rejected(self, rejected: list[FrameRejected], endpoint: str) -> None:
        for err in rejected:
            self.rejected += 1
            self.telemetry.inc("frames_rejected", 1, {"reason": err.reason})
            self._rlog.warning(f"reject:{endpoint}", "history item rejected",
                               {"endpoint": endpoint, "reason": err.reason, "detail": err.detail[:200]})

    async def _interruptible(self, coro: Any) -> Any:
        task = asyncio.ensure_future(coro)
        stopper = asyncio.ensure_future(self.stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise Interrupted()
        return task.result()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)
        if self.stop.is_set():
            raise Interrupted()


class HistoryRequests(_Requests):
    """Binance's history requests, through the REST gate and the endpoints' own pools."""

    def __init__(self, rest: BinanceRest, telemetry: Telemetry, *, max_frame_bytes: int,
                 backoff_initial: float, backoff_cap: float, share: float) -> None:
        super().__init__(telemetry, max_frame_bytes=max_frame_bytes, backoff_initial=backoff_initial,
                         backoff_cap=backoff_cap)
        self.rest = rest
        self.funding_pool = Pool(*FUNDING_POOL, share)
        self.oi_pool = Pool(*OI_HIST_POOL, share)

    async def get(self, path: str, params: dict[str, str], weight: int, endpoint: str,
                  parse: Callable[[Any], Parsed], pool: Pool | None = None) -> Parsed:
        """One request, retried; raises RestError (refused / permanent) or Interrupted."""
        delays = self._backoff()
        url = self.rest.base_url.rstrip("/") + path
        attempt = 0
        while attempt < MAX_ATTEMPTS:
            attempt += 1
            if self.stop.is_set():
                raise Interrupted()
            if pool is not None:
                await pool.acquire()
            self.requests += 1
            self.weight += weight
            try:
                body = await self._interruptible(self.rest.get(url, params, weight=weight, endpoint=endpoint))
                parsed = parse(binance.load_json(body, self.max_frame_bytes))
            except RestError as exc:
                if exc.fault is RestFault.RETRY and attempt < MAX_ATTEMPTS:
                    self._rlog.warning("retry", "history request failed; retrying",
                                       {"endpoint": endpoint, "error": str(exc)[:200]})
                    await self._pause(next(delays))
                    continue
                if exc.fault in PAUSING:
                    attempt -= 1  # the gate holds every call until the pause ends; not an attempt
                    continue
                raise
            except FrameRejected as exc:
                self.telemetry.inc("rest_bad_bodies", 1, {"endpoint": endpoint})
                if attempt >= MAX_ATTEMPTS:
                    raise RestError(200, f"{endpoint} answered an unusable body {MAX_ATTEMPTS} times: "
                                    f"{exc.detail[:200]}", fault=RestFault.REFUSED) from None
                await self._pause(next(delays))
                continue
            self._count_rejected(parsed.rejected, endpoint)
            return parsed
        raise RestError(0, f"{endpoint}: no answer after {MAX_ATTEMPTS} attempts", fault=RestFault.REFUSED)

    async def paged(self, path: str, base: dict[str, str], start: int, end: int, limit: int,
                    weight: int, endpoint: str, parse: Callable[[Any], Parsed], time_shift: int = 0,
                    pool: Pool | None = None) -> list[dict[str, Any]]:
        """Every point with event_time in [start, end): pages of ``limit`` from ``startTime``;
        a full page continues after its last time. ``time_shift`` maps an event time to the
        request's time (klines: closeTime - 59,999 = openTime)."""
        out: list[dict[str, Any]] = []
        cursor = start
        while cursor < end:
            params = {**base, "startTime": str(cursor - time_shift), "endTime": str(end - 1 - time_shift),
                      "limit": str(limit)}
            page = await self.get(path, params, weight, endpoint, parse, pool)
            out.extend(p for p in page.points if start <= p["event_time"] < end)
            if page.items < limit or page.last_time is None or page.last_time + time_shift + 1 <= cursor:
                break
            cursor = page.last_time + time_shift + 1
        return out


class VenueRequests(_Requests):
    """Requests to a venue other than Binance, through its :class:`VenueRest`."""

    def __init__(self, rest: VenueRest, telemetry: Telemetry, *, max_frame_bytes: int,
                 backoff_initial: float, backoff_cap: float) -> None:
        super().__init__(telemetry, max_frame_bytes=max_frame_bytes, backoff_initial=backoff_initial,
                         backoff_cap=backoff_cap)
        self.rest = rest

    async def call(self, send: Callable[[], Awaitable[T]], endpoint: str, weight: int = 1) -> T:
        """``send()`` (one request and its reading), retried; raises RestError (refused or
        permanent) or Interrupted. A rate limit is waited out and costs no attempt: an HTTP one
        has paused the client already, one the venue states in its envelope pauses it here."""
        delays = self._backoff()
        attempt = 0
        while attempt < MAX_ATTEMPTS:
            attempt += 1
            if self.stop.is_set():
                raise Interrupted()
            self.requests += 1
            self.weight += weight
            try:
                return await self._interruptible(send())
            except RestError as exc:
                if exc.fault in PAUSING:
                    if exc.retry_after is None:
                        self.rest.pause(self.rest.window, str(exc)[:100], endpoint)
                    attempt -= 1
                    continue
                if exc.fault is not RestFault.RETRY or attempt >= MAX_ATTEMPTS:
                    raise
                self._rlog.warning("retry", "history request failed; retrying", {
                    "source": self.rest.source, "endpoint": endpoint, "error": str(exc)[:200]})
            except FrameRejected as exc:
                self.telemetry.inc("rest_bad_bodies", 1, {"source": self.rest.source, "endpoint": endpoint})
                if attempt >= MAX_ATTEMPTS:
                    raise RestError(200, f"{endpoint} answered an unusable body {MAX_ATTEMPTS} times: "
                                    f"{exc.detail[:200]}", fault=RestFault.REFUSED) from None
            await self._pause(next(delays))
        raise RestError(0, f"{endpoint}: no answer after {MAX_ATTEMPTS} attempts", fault=RestFault.REFUSED)

    async def get(self, url: str, parse: Callable[[Any], Page], endpoint: str, *, weight: int = 1,
                  json_body: object = None) -> Page:
        """One page: GET ``url`` (POST ``json_body`` when given), read by ``parse``."""
        async def send() -> Page:
            body = await self.rest.request(url, json_body=json_body, weight=weight, endpoint=endpoint)
            return parse(binance.load_json(body, self.max_frame_bytes))

        page = await self.call(send, endpoint, weight)
        self._count_rejected(page.rejected, endpoint)
        return page
