"""REST calls to a venue other than Binance: a request budget, classified failures.

Each venue states its own limit (Bybit 600 requests per 5 s per IP, OKX 20
instrument requests per 2 s, Hyperliquid a weight of 1,200 per minute); the
client spends at most ``share`` of it, in a rolling window, so a producer
next to the user's own tools leaves them room. Answers are sorted by the
producer's failure table (``producer.failures.classify_rest``, plus the
venue's own envelope codes: docs/failures.md, "Venue REST"): a rate limit or
a block pauses every call of this client for Retry-After (or the window),
anything transient is retried by the caller with backoff, an endpoint that
refuses us for good is permanent.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque

import aiohttp

from perpstream.producer.binance import sample
from perpstream.producer.exceptions import RestError
from perpstream.producer.failures import RestFault, classify_rest
from perpstream.producer.rest import retry_after
from perpstream.runtime.logs import RateLimitedLog
from perpstream.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)


class VenueRest:
    """GET/POST within a rolling budget of ``limit`` weight per ``window`` seconds."""

    def __init__(self, session: aiohttp.ClientSession, telemetry: Telemetry, *, source: str,
                 limit: int, window: float, share: float = 0.5, timeout: float = 10.0) -> None:
        self.session = session
        self.telemetry = telemetry
        self.source = source
        self.budget = max(1, int(limit * share))
        self.window = window
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._spent: deque[tuple[float, int]] = deque()
        self._paused_until = 0.0
        self._rlog = RateLimitedLog(log)

    async def _acquire(self, weight: int) -> None:
        while True:
            now = time.monotonic()
            if now < self._paused_until:
                await asyncio.sleep(self._paused_until - now)
                continue
            while self._spent and self._spent[0][0] <= now - self.window:
                self._spent.popleft()
            used = sum(w for _, w in self._spent)
            if used + weight <= self.budget or not self._spent:
                self._spent.append((now, weight))
                return
            await asyncio.sleep(self._spent[0][0] + self.window - now)

    async def request(self, url: str, *, json_body: object = None, weight: int = 1,
                      endpoint: str = "") -> str:
        """The body of a 2xx answer; raises :class:`RestError` (classified) otherwise."""
        await self._acquire(weight)
        labels = {"source": self.source, "endpoint": endpoint}
        try:
            if json_body is None:
                ctx = self.session.get(url, timeout=self.timeout)
            else:
                ctx = self.session.post(url, json=json_body, timeout=self.timeout)
            async with ctx as resp:
                raw, status, headers = await resp.read(), resp.status, resp.headers
        except (aiohttp.ClientError, TimeoutError) as exc:
            reason = "timeout" if isinstance(exc, TimeoutError) else "connection"
            self.telemetry.inc("rest_requests", 1, {**labels, "status": reason})
            raise RestError(0, f"{reason}: {exc!r}", fault=RestFault.RETRY) from exc
        body = raw.decode("utf-8", "replace")
        self.telemetry.inc("rest_requests", 1, {**labels, "status": str(status)})
        fault = classify_rest(status)
        if fault is None:
            return body
        wait = None
        if fault in (RestFault.RATE_LIMITED, RestFault.BLOCKED, RestFault.BANNED):
            wait = self.pause(retry_after(headers, self.window), f"HTTP {status}", endpoint)
        raise RestError(status, sample(body), wait, fault=fault)

    def pause(self, seconds: float, reason: str, endpoint: str = "") -> float:
        """No call of this client for ``seconds`` (a rate limit the venue answered)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)
        self.telemetry.inc("rest_pauses", 1, {"source": self.source})
        self._rlog.warning(f"pause:{self.source}", "venue REST rate-limited; pausing its calls", {
            "source": self.source, "reason": reason, "endpoint": endpoint, "pause_s": round(seconds, 2)})
        return seconds
