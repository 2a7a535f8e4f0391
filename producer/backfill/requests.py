"""One history request of a backfill: retried, paged, paced and interruptible.

Requests go through the REST gate of :class:`~perpstream.producer.rest.BinanceRest`
(the weight budget per minute, 429/418/403 pauses honoured); the funding and
open-interest-history endpoints also have request pools of their own at
Binance, spaced by a :class:`Pool`. A retryable failure is retried with
backoff, at most :data:`MAX_ATTEMPTS` times (docs/producer.md,
``perpstream backfill``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from perpstream.producer import binance
from perpstream.producer.exceptions import FrameRejected, RestError
from perpstream.producer.failures import RestFault
from perpstream.producer.history import Parsed
from perpstream.producer.rest import BinanceRest
from perpstream.runtime.backoff import factory
from perpstream.runtime.logs import RateLimitedLog
from perpstream.runtime.telemetry import Telemetry

log = logging.getLogger(__package__)  # the command's one logger: perpstream.producer.backfill

#: Attempts of one request that fails in a retryable way (5xx, timeout, a body that is not JSON).
MAX_ATTEMPTS = 8
#: Binance's request pools of the two history endpoints: (requests, seconds).
FUNDING_POOL = (500, 300.0)
OI_HIST_POOL = (1000, 300.0)


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


class HistoryRequests:
    """The requests of one run, counted (``requests``, ``weight``, ``rejected``); ``stop`` ends them."""

    def __init__(self, rest: BinanceRest, telemetry: Telemetry, *, max_frame_bytes: int,
                 backoff_initial: float, backoff_cap: float, share: float) -> None:
        self.rest = rest
        self.telemetry = telemetry
        self.max_frame_bytes = max_frame_bytes
        self.funding_pool = Pool(*FUNDING_POOL, share)
        self.oi_pool = Pool(*OI_HIST_POOL, share)
        self.requests = 0
        self.weight = 0
        self.rejected = 0
        self.stop: asyncio.Event = asyncio.Event()
        self._backoff = factory(backoff_initial, cap=backoff_cap)
        self._rlog = RateLimitedLog(log)

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
                if exc.fault in (RestFault.RATE_LIMITED, RestFault.BANNED, RestFault.BLOCKED):
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
            self._count_rejected(parsed, endpoint)
            return parsed
        raise RestError(0, f"{endpoint}: no answer after {MAX_ATTEMPTS} attempts", fault=RestFault.REFUSED)

    def _count_rejected(self, parsed: Parsed, endpoint: str) -> None:
        for err in parsed.rejected:
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
