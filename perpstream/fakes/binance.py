"""A fake Binance USD-M: a real websocket server and a real HTTP server on
loopback, run on their own thread and event loop.

A test double, shipped in the package so that ``perpstream soak`` (docs/soak.md)
can drive the real websocket and REST path from an installed package; the
tests import it as ``tests.fakes.binance``. Never point a deployment at it.

Websocket (``ws_url`` = ``ws://127.0.0.1:P/market``): the combined-stream
endpoint ``/market/stream`` takes SUBSCRIBE / UNSUBSCRIBE messages, answers
``{"result": null, "id": n}``, pings the client every ``ping_interval``
seconds, and streams one markPriceUpdate per subscribed symbol per
simulated second (``tick`` wall seconds each). ``!markPrice@arr@1s`` sends
the array of every listed symbol.

Symbols are listed and streamed as Binance spells them: ``1000PEPEUSDT``,
dated delivery contracts such as ``BTCUSDT_261225`` (``contractType``
``CURRENT_QUARTER``, markPrice with ``"r": ""`` and ``"T": 0``) and
perpetuals with CJK names such as ``币安人生USDT``; a stream name is the symbol
lower-cased and is mapped back through the listing, never by upper-casing.

HTTP (``rest_url``): ``/fapi/v1/exchangeInfo`` lists ``listing`` with the
fields of a real entry (plus any raw ``extra_entries``, e.g. one whose
symbol breaks the rules), ``/fapi/v1/openInterest`` decodes its UTF-8
percent-encoded query itself (a query that is not valid UTF-8 gets Binance's
-1100 answer), records it raw in ``rest_queries``, and answers with a value
that changes every simulated second; every response carries
``X-MBX-USED-WEIGHT-1M``.

History and one-shot REST, as Binance documents them: ``/fapi/v1/fundingRate``
(settled funding every 8 h at 00/08/16 UTC; none for delivery contracts; a
pool of 500 requests per 5 minutes, 429 past it), ``/futures/data/openInterestHist``
(``period`` 5m..1d, the last 30 days of the wall clock only),
``/fapi/v1/fundingInfo`` (the symbols of ``funding_intervals`` with their
``fundingIntervalHours``, weight 0, counted in the pool it shares with
``fundingRate``; by default, with three perpetuals or more listed, the last
one sorted at 1 h, the one before at 4 h, and with four or more the one before
that at 8 h with only its cap adjusted; the markPrice ``T`` and the
``fundingRate`` history keep the 8 h schedule for every symbol),
``/fapi/v1/markPriceKlines`` and ``/fapi/v1/indexPriceKlines`` (``pair``, not
``symbol``; weight by ``limit``), ``/fapi/v1/premiumIndex`` (one symbol, or
all: weight 10) and the open interest above. History values are functions of
time only (:meth:`FakeBinance.mark_close` ...), so a test computes what a
backfill must store; the kline of the minute still open keeps changing, as
Binance's does. Every request's weight is added to the minute's
``X-MBX-USED-WEIGHT-1M`` and kept in ``weight_by_minute``; :meth:`hold_rest`
makes history requests wait (to interrupt a backfill at a known point).

Faults, callable from the test thread: :meth:`drop_connections`,
:meth:`send_garbage`, :meth:`mute_connections` (open but silent),
:meth:`refuse_connections`, :meth:`fail_rest` (429/418/5xx with
Retry-After), and :meth:`set_listing` for listings and delistings.

Everything the server sent successfully is recorded (``sent_points``), so a
test can check that no event sent while connected is missing downstream.
"""

from __future__ import annotations

import asyncio
import calendar
import json
import re
import threading
import time
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qs

from aiohttp import web
from websockets.asyncio.server import ServerConnection
from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from perpstream.fakes.server import FakeVenue
from perpstream.producer import binance

GARBAGE = [
    "{not json",
    '{"stream":"x@markPrice@1s","data":{"e":"markPriceUpdate","E":1790000000000,"s":"X"}}',
    '{"stream":"x@markPrice@1s","data":{"e":"markPriceUpdate","E":1790000000000,"s":"XUSDT",'
    '"p":"NaN","i":"1","P":"1","r":"0","T":0}}',
    "[1,2,3]",
]


def _value(symbol: str, k: int, salt: int) -> float:
    base = (sum(map(ord, symbol)) % 500) + 10 + salt
    return round(base * (1 + ((k * 7919 + salt) % 1000 - 500) / 100_000), 8)


_DELIVERY = re.compile(r"_(\d{2})(\d{2})(\d{2})$")


def is_delivery(symbol: str) -> bool:
    """``BTCUSDT_261225``: a dated delivery contract (no funding)."""
    return _DELIVERY.search(symbol) is not None


def contract_entry(symbol: str, status: str = "TRADING") -> dict[str, Any]:
    """An exchangeInfo ``symbols[]`` entry shaped like Binance's (the fields the
    producer reads and the ones around them)."""
    pair = _DELIVERY.sub("", symbol)
    quote = next((q for q in ("USDT", "USDC", "BUSD") if pair.endswith(q)), "USDT")
    m = _DELIVERY.search(symbol)
    if m is not None:
        yy, mm, dd = (int(x) for x in m.groups())
        delivery = calendar.timegm((2000 + yy, mm, dd, 8, 0, 0)) * 1000  # 08:00 UTC
        contract = "CURRENT_QUARTER"
    else:
        delivery, contract = 4_133_404_800_000, "PERPETUAL"
    return {
        "symbol": symbol, "pair": pair, "contractType": contract, "deliveryDate": delivery,
        "onboardDate": 1_569_398_400_000, "status": status, "baseAsset": pair[: -len(quote)] or pair,
        "quoteAsset": quote, "marginAsset": quote, "pricePrecision": 8, "quantityPrecision": 0,
        "underlyingType": "COIN", "settlePlan": 0, "triggerProtect": "0.0500",
    }


def default_funding_intervals(symbols: Iterable[str]) -> dict[str, int]:
    """What the fake's ``fundingInfo`` lists unless told: with three perpetuals or more, the
    last one sorted at 1 h and the one before at 4 h; with four or more, the one before that
    at 8 h (Binance lists symbols whose cap alone was adjusted, too)."""
    perpetuals = sorted(s for s in symbols if not is_delivery(s))
    if len(perpetuals) < 3:
        return {}
    out = {perpetuals[-2]: 4, perpetuals[-1]: 1}
    if len(perpetuals) >= 4:
        out[perpetuals[-3]] = 8
    return out


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    streams: set[str] = field(default_factory=set)
    muted: bool = False
    garbage: list[str] = field(default_factory=list)


class FakeBinance(FakeVenue[_Conn]):
    """See the module doc. Use as a context manager (starts/stops its thread)."""

    venue_name = "Binance"
    ws_path = "/market"

    def __init__(
        self,
        symbols: Iterable[str],
        *,
        start_ms: int = 1_790_000_000_000,
        tick: float = 0.2,
        ping_interval: float = 1.0,
        extra_entries: Iterable[dict[str, Any]] = (),
        ssl: Any = None,
        record: bool = True,
        funding_intervals: Mapping[str, int] | None = None,
        extra_funding_info: Iterable[Any] = (),
    ) -> None:
        super().__init__()
        # Long: one documented attribute a line; the fake's whole observable state in one place.
        self.listing: list[str] = sorted(symbols)
        #: Raw exchangeInfo entries listed after the generated ones (never streamed).
        self.extra_entries: list[dict[str, Any]] = list(extra_entries)
        self.start_ms = start_ms
        self.tick = tick
        self.ping_interval = ping_interval
        #: An ``ssl.SSLContext``: the websocket is served as ``wss://`` (``perpstream bench frames``).
        self.ssl = ssl
        #: False: frames sent are counted, not kept in ``sent_mark`` (long benchmark runs).
        self.record = record
        #: Websocket frames and markPrice updates (array items count one each) sent.
        self.frames_sent = 0
        self.updates_sent = 0
        self.k = 0
        self._lock = threading.Lock()
        #: (symbol, E) -> markPrice payload dict, for frames actually sent.
        self.sent_mark: dict[tuple[str, int], dict[str, Any]] = {}
        #: (symbol, time) -> openInterest payload dict, for responses actually sent.
        self.sent_oi: dict[tuple[str, int], dict[str, Any]] = {}
        #: Malformed frames actually sent (:meth:`send_garbage`).
        self.garbage_sent = 0
        self.subscribes: list[list[str]] = []
        self.unsubscribes: list[list[str]] = []
        self.refused = 0
        self.rest_requests: list[tuple[str, str | None, int]] = []
        #: Raw (still percent-encoded) query strings of the openInterest requests.
        self.rest_queries: list[str] = []
        self._refuse_until = 0.0
        self._rest_faults: list[tuple[int, float | None]] = []
        self._weight: dict[int, int] = {}
        #: Weight each wall-clock minute received (the X-MBX-USED-WEIGHT-1M it answered).
        self.weight_by_minute = self._weight
        #: (endpoint, params, monotonic time) of every history / premiumIndex request.
        self.history_requests: list[tuple[str, dict[str, str], float]] = []
        #: Status of the next history requests (429/418 with Retry-After, 500, ...).
        self._history_faults: list[tuple[int, float | None]] = []
        #: When set, history requests after the first ``_hold_after`` wait until released.
        self._hold_after: int | None = None
        self._held = asyncio.Event()
        self._funding_pool: list[float] = []
        #: symbol -> ``fundingIntervalHours`` that ``fundingInfo`` lists (see the module doc).
        self.funding_intervals: dict[str, int] = dict(
            default_funding_intervals(self.listing) if funding_intervals is None else funding_intervals)
        #: Raw ``fundingInfo`` items answered after the generated ones (e.g. a broken one).
        self.extra_funding_info: list[Any] = list(extra_funding_info)
        self._funding_info_faults: list[tuple[int, float | None]] = []
        #: premiumIndex items actually answered.
        self.sent_premium: list[dict[str, Any]] = []
        #: While True the clock stands still and nothing is streamed.
        self.paused = False
        #: With ``paused``: openInterest requests wait until the clock runs again, so that no
        #: point of the frozen second is answered twice (``perpstream soak``).
        self.hold_rest_while_paused = False

    # -- servers ------------------------------------------------------------------------

    @property
    def ws_url(self) -> str:
        return f"{'wss' if self.ssl is not None else 'ws'}://127.0.0.1:{self.ws_port}{self.ws_path}"

    def _ws_options(self) -> dict[str, Any]:
        # Binance pings its clients, and serves TLS when given a context.
        return {"ping_interval": self.ping_interval, "ping_timeout": max(5.0, self.ping_interval * 5),
                "ssl": self.ssl}

    def _http_app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/fapi/v1/ping", self._ping)
        app.router.add_get("/fapi/v1/exchangeInfo", self._exchange_info)
        app.router.add_get("/fapi/v1/openInterest", self._open_interest)
        app.router.add_get("/fapi/v1/fundingRate", self._funding_rate)
        app.router.add_get("/fapi/v1/fundingInfo", self._funding_info)
        app.router.add_get("/futures/data/openInterestHist", self._open_interest_hist)
        app.router.add_get("/fapi/v1/markPriceKlines", self._mark_klines)
        app.router.add_get("/fapi/v1/indexPriceKlines", self._index_klines)
        app.router.add_get("/fapi/v1/premiumIndex", self._premium_index)
        return app

    def _clocks(self) -> list[Coroutine[Any, Any, None]]:
        return [self._run_clock()]

    # -- faults and controls ------------------------------------------------------------

    def send_garbage(self) -> None:
        """Each open connection sends every kind of malformed frame once."""
        def queue() -> None:
            for c in self.conns:
                c.garbage.extend(GARBAGE)

        self.call(queue)

    def refuse_connections(self, seconds: float) -> None:
        """Websocket handshakes fail with HTTP 503 for ``seconds``."""
        self._refuse_until = time.monotonic() + seconds

    def fail_rest(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """The next ``count`` openInterest requests get ``status`` (with Retry-After)."""
        with self._lock:
            self._rest_faults.extend([(status, retry_after)] * count)

    def fail_funding_info(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """The next ``count`` fundingInfo requests get ``status`` (with Retry-After)."""
        with self._lock:
            self._funding_info_faults.extend([(status, retry_after)] * count)

    def fail_history(self, status: int, count: int = 1, retry_after: float | None = None) -> None:
        """The next ``count`` history / premiumIndex requests get ``status``."""
        with self._lock:
            self._history_faults.extend([(status, retry_after)] * count)

    def hold_rest(self, after: int | None) -> None:
        """History requests beyond the first ``after`` wait until ``hold_rest(None)``."""
        def apply() -> None:
            self._hold_after = after
            if after is None:
                self._held.set()
            else:
                self._held.clear()

        self.call(apply)

    def set_listing(self, symbols: Iterable[str]) -> None:
        self.listing = sorted(symbols)

    def open_streams(self) -> set[str]:
        return set().union(*(c.streams for c in list(self.conns))) if self.conns else set()

    # -- websocket ----------------------------------------------------------------------

    def _process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        if not request.path.startswith("/market/stream"):
            return Response(HTTPStatus.NOT_FOUND, "Not Found", Headers(), b"unknown path\n")
        if time.monotonic() < self._refuse_until:
            self.refused += 1
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, "Service Unavailable", Headers(), b"busy\n")
        return None

    async def _handle_ws(self, ws: ServerConnection) -> None:
        conn = _Conn(ws)
        # Streams named in the URL (``/stream?streams=a@markPrice@1s/b@markPrice@1s``) are
        # subscribed from the start, as Binance does.
        query = parse_qs(ws.request.path.partition("?")[2]) if ws.request is not None else {}
        conn.streams.update(s for s in "/".join(query.get("streams", [])).split("/") if s)
        self.conns.add(conn)
        self.connections_total += 1
        try:
            async for message in ws:
                req = json.loads(message)
                params = list(req.get("params", []))
                if req.get("method") == "SUBSCRIBE":
                    conn.streams.update(params)
                    self.subscribes.append(params)
                elif req.get("method") == "UNSUBSCRIBE":
                    conn.streams.difference_update(params)
                    self.unsubscribes.append(params)
                else:
                    await ws.send(json.dumps({"error": {"code": 2, "msg": "Invalid request"},
                                              "id": req.get("id")}))
                    continue
                await ws.send(json.dumps({"result": None, "id": req.get("id")}))
        except Exception:
            pass
        finally:
            self.conns.discard(conn)

    def payload(self, symbol: str, k: int) -> dict[str, Any]:
        e = self.start_ms + 1000 * k
        delivery = is_delivery(symbol)
        return {
            "e": "markPriceUpdate", "E": e, "s": symbol,
            "p": f"{_value(symbol, k, 0):.8f}", "ap": f"{_value(symbol, k, 0):.8f}",
            "P": f"{_value(symbol, k, 3):.8f}", "i": f"{_value(symbol, k, 1):.8f}",
            "r": "" if delivery else f"{(k % 13 - 6) / 100_000:.8f}",
            "T": 0 if delivery else (e // 28_800_000 + 1) * 28_800_000,
        }

    async def _run_clock(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            await asyncio.sleep(max(0.0, started + (self.k + 1) * self.tick - loop.time()))
            if self.paused:
                started += self.tick
                continue
            self.k += 1
            k = self.k
            await asyncio.gather(*(self._emit(c, k) for c in list(self.conns)), return_exceptions=True)

    async def _emit(self, conn: _Conn, k: int) -> None:
        if conn.muted:
            return
        while conn.garbage:
            await conn.ws.send(conn.garbage.pop(0))
            self.garbage_sent += 1
        by_name = {s.lower(): s for s in self.listing}  # stream name -> symbol as listed
        for stream in sorted(conn.streams):
            if stream == "!markPrice@arr@1s":
                items = [self.payload(s, k) for s in sorted(by_name.values())]
                await conn.ws.send(json.dumps({"stream": stream, "data": items}))
                self.frames_sent += 1
                self.updates_sent += len(items)
                if self.record:
                    for it in items:
                        self.sent_mark[(it["s"], it["E"])] = it
                continue
            symbol = by_name.get(stream.split("@", 1)[0])
            if symbol is None:
                continue
            d = self.payload(symbol, k)
            await conn.ws.send(json.dumps({"stream": stream, "data": d}))
            self.frames_sent += 1
            self.updates_sent += 1
            if self.record:
                self.sent_mark[(symbol, d["E"])] = d

    # -- HTTP -----------------------------------------------------------------------------

    def _headers(self, weight: int = 1) -> dict[str, str]:
        minute = int(time.time() // 60)
        with self._lock:
            self._weight[minute] = self._weight.get(minute, 0) + weight
            used = self._weight[minute]
        return {"X-MBX-USED-WEIGHT-1M": str(used)}

    async def _ping(self, request: web.Request) -> web.Response:
        """``GET /fapi/v1/ping``: ``{}`` (weight 1), what ``perpstream up`` checks first."""
        self.rest_requests.append(("ping", None, 200))
        return web.json_response({}, headers=self._headers())

    async def _exchange_info(self, request: web.Request) -> web.Response:
        headers = self._headers()
        self.rest_requests.append(("exchangeInfo", None, 200))
        symbols = [contract_entry(s) for s in self.listing] + self.extra_entries
        return web.json_response({
            "timezone": "UTC", "serverTime": self.start_ms + 1000 * self.k,
            "rateLimits": [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1,
                            "limit": 2400}],
            "symbols": symbols,
        }, headers=headers)

    async def _open_interest(self, request: web.Request) -> web.Response:
        headers = self._headers()
        raw_query = request.rel_url.raw_query_string
        self.rest_queries.append(raw_query)
        try:  # decoded here, strictly, as Binance does: UTF-8 percent-encoding
            symbol = parse_qs(raw_query, encoding="utf-8", errors="strict").get("symbol", [""])[0]
        except UnicodeDecodeError:
            self.rest_requests.append(("openInterest", None, 400))
            return web.json_response({"code": -1100, "msg": "Illegal characters found in parameter 'symbol'"},
                                     status=400, headers=headers)
        answer = self._fault(self._rest_faults, headers)
        while answer is None and self.paused and self.hold_rest_while_paused:
            await asyncio.sleep(0.05)  # answered once the clock runs again (or never: the client leaves)
            if request.transport is None or request.transport.is_closing():
                self.rest_requests.append(("openInterest", symbol, 499))  # the client gave up: never sent
                return web.Response(status=499)
        if answer is not None:
            self.rest_requests.append(("openInterest", symbol, answer.status))
            return answer
        if symbol not in self.listing:
            self.rest_requests.append(("openInterest", symbol, 400))
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400, headers=headers)
        k = self.k
        oi_time = self.start_ms + 1000 * k + 500
        d: dict[str, Any] = {"symbol": symbol, "openInterest": f"{_value(symbol, k, 7) * 100:.3f}",
                             "time": oi_time}
        self.rest_requests.append(("openInterest", symbol, 200))
        self.sent_oi[(symbol, oi_time)] = d
        return web.json_response(d, headers=headers)

    # -- history (values are functions of time: see the module doc) ----------------------

    FUNDING_PERIOD_MS = 8 * 3_600_000
    OI_HIST_DAYS = 30
    _PERIODS = {"5m": 300_000, "15m": 900_000, "30m": 1_800_000, "1h": 3_600_000, "2h": 7_200_000,
                "4h": 14_400_000, "6h": 21_600_000, "12h": 43_200_000, "1d": 86_400_000}

    @staticmethod
    def _k(ms: int) -> int:
        return ms // 1000

    def mark_close(self, symbol: str, close_time: int) -> float:
        """Close of the 1 m mark-price kline that closes at ``close_time``."""
        return _value(symbol, self._k(close_time + 1), 0)

    def index_close(self, pair: str, close_time: int) -> float:
        return _value(pair, self._k(close_time + 1), 1)

    def settled_funding(self, symbol: str, funding_time: int) -> float:
        return ((funding_time // self.FUNDING_PERIOD_MS) % 17 - 8) / 100_000

    def oi_hist(self, symbol: str, timestamp: int) -> float:
        return round(_value(symbol, self._k(timestamp), 7) * 100, 3)

    @staticmethod
    def _ints(q: dict[str, str], *names: str) -> list[int | None]:
        out: list[int | None] = []
        for n in names:
            v = q.get(n)
            out.append(int(v) if v is not None else None)
        return out

    async def _history_gate(self, endpoint: str, request: web.Request, weight: int) -> \
            tuple[dict[str, str], web.Response | None]:
        """Record the request; apply a queued fault or a hold. Returns (query, error answer)."""
        q = {k: v for k, v in request.rel_url.query.items()}
        self.history_requests.append((endpoint, q, time.monotonic()))
        if self._hold_after is not None and len(self.history_requests) > self._hold_after:
            await self._held.wait()
        return q, self._fault(self._history_faults, self._headers(weight))

    def _fault(self, faults: list[tuple[int, float | None]], headers: dict[str, str]) -> web.Response | None:
        """The answer of the next queued fault (with its Retry-After), or None."""
        with self._lock:
            fault = faults.pop(0) if faults else None
        if fault is None:
            return None
        status, retry_after = fault
        if retry_after is not None:
            headers["Retry-After"] = str(retry_after)
        body = {"code": -1003, "msg": "Too many requests"} if status in (418, 429) else \
            {"code": -1000, "msg": "internal"}
        return web.json_response(body, status=status, headers=headers)

    def _bad(self, msg: str, code: int = -1102) -> web.Response:
        return web.json_response({"code": code, "msg": msg}, status=400, headers=self._headers(0))

    async def _funding_rate(self, request: web.Request) -> web.Response:
        q, err = await self._history_gate("fundingRate", request, 1)
        if err is not None:
            return err
        now = time.monotonic()
        self._funding_pool = [t for t in self._funding_pool if now - t < 300] + [now]
        if len(self._funding_pool) > 500:
            return web.json_response({"code": -1003, "msg": "Too many requests"}, status=429,
                                     headers={**self._headers(0), "Retry-After": "1"})
        symbol = q.get("symbol", "")
        start, end, limit = self._ints(q, "startTime", "endTime", "limit")
        limit = min(limit or 100, 1000)
        now_ms = int(time.time() * 1000)
        end = min(end if end is not None else now_ms, now_ms)
        start = start if start is not None else end - limit * self.FUNDING_PERIOD_MS
        if symbol not in self.listing:
            return self._bad("Invalid symbol.", -1121)
        rows: list[dict[str, Any]] = []
        if not is_delivery(symbol):
            t = -(-start // self.FUNDING_PERIOD_MS) * self.FUNDING_PERIOD_MS
            while t <= end and len(rows) < limit:
                rows.append({"symbol": symbol, "fundingRate": f"{self.settled_funding(symbol, t):.8f}",
                             "fundingTime": t, "markPrice": f"{self.mark_close(symbol, t - 1):.8f}"})
                t += self.FUNDING_PERIOD_MS
        return web.json_response(rows, headers=self._headers(0))

    def funding_interval_hours(self, symbol: str) -> int:
        """Hours between settlements of ``symbol`` as ``fundingInfo`` tells them (8 unless listed)."""
        return self.funding_intervals.get(symbol, 8)

    async def _funding_info(self, request: web.Request) -> web.Response:
        """``GET /fapi/v1/fundingInfo``: weight 0; one request of the 500 per 5 minutes it
        shares with ``fundingRate`` (429 past them)."""
        headers = self._headers(0)
        answer = self._fault(self._funding_info_faults, headers)
        if answer is not None:
            self.rest_requests.append(("fundingInfo", None, answer.status))
            return answer
        now = time.monotonic()
        self._funding_pool = [t for t in self._funding_pool if now - t < 300] + [now]
        if len(self._funding_pool) > 500:
            self.rest_requests.append(("fundingInfo", None, 429))
            return web.json_response({"code": -1003, "msg": "Too many requests"}, status=429,
                                     headers={**headers, "Retry-After": "1"})
        items: list[Any] = [
            {"symbol": s, "adjustedFundingRateCap": "0.02500000", "adjustedFundingRateFloor": "-0.02500000",
             "fundingIntervalHours": h, "disclaimer": False}
            for s, h in sorted(self.funding_intervals.items())]
        self.rest_requests.append(("fundingInfo", None, 200))
        return web.json_response(items + self.extra_funding_info, headers=headers)

    async def _open_interest_hist(self, request: web.Request) -> web.Response:
        q, err = await self._history_gate("openInterestHist", request, 0)
        if err is not None:
            return err
        symbol = q.get("symbol", "")
        period = self._PERIODS.get(q.get("period", ""))
        if period is None:
            return self._bad("Invalid period.", -1120)
        if symbol not in self.listing:
            return self._bad("Invalid symbol.", -1121)
        start, end, limit = self._ints(q, "startTime", "endTime", "limit")
        limit = min(limit or 30, 500)
        now_ms = int(time.time() * 1000)
        oldest = now_ms - self.OI_HIST_DAYS * 86_400_000
        end = min(end if end is not None else now_ms, now_ms - now_ms % period - 1)
        start = max(start if start is not None else end - limit * period, oldest)
        rows: list[dict[str, Any]] = []
        t = -(-start // period) * period
        while t <= end and len(rows) < limit:
            oi = self.oi_hist(symbol, t)
            value = oi * self.mark_close(symbol, t - 1)
            rows.append({"symbol": symbol, "sumOpenInterest": f"{oi:.8f}",
                         "sumOpenInterestValue": f"{value:.8f}", "timestamp": t})
            t += period
        return web.json_response(rows, headers=self._headers(0))

    @staticmethod
    def kline_weight(limit: int) -> int:
        return 1 if limit < 100 else 2 if limit < 500 else 5 if limit <= 1000 else 10

    async def _klines(self, request: web.Request, name: str, key: str) -> web.Response:
        limit_q = request.rel_url.query.get("limit")
        limit = min(int(limit_q) if limit_q else 500, 1500)
        q, err = await self._history_gate(name, request, self.kline_weight(limit))
        if err is not None:
            return err
        who = q.get(key, "")
        if q.get("interval") != "1m":
            return self._bad("Invalid interval.", -1120)
        pairs = {_DELIVERY.sub("", s) for s in self.listing}
        if (who not in self.listing) if key == "symbol" else (who not in pairs):
            return self._bad("Invalid symbol.", -1121)
        start, end = self._ints(q, "startTime", "endTime")
        now_ms = int(time.time() * 1000)
        end = min(end if end is not None else now_ms, now_ms)
        start = start if start is not None else end - limit * 60_000
        rows: list[list[Any]] = []
        t = -(-start // 60_000) * 60_000
        value = self.mark_close if key == "symbol" else self.index_close
        while t <= end and len(rows) < limit:
            close_time = t + 59_999
            # the minute still open: its close is the latest value and keeps changing
            c = value(who, min(close_time, now_ms - 1) if close_time >= now_ms else close_time)
            if close_time >= now_ms:
                c = round(c * (1 + (now_ms % 997) / 1e6), 8)
            o = value(who, t - 1)
            rows.append([t, f"{o:.8f}", f"{max(o, c):.8f}", f"{min(o, c):.8f}", f"{c:.8f}", "0",
                         close_time, "0", 60, "0", "0", "0"])
            t += 60_000
        return web.json_response(rows, headers=self._headers(0))

    async def _mark_klines(self, request: web.Request) -> web.Response:
        return await self._klines(request, "markPriceKlines", "symbol")

    async def _index_klines(self, request: web.Request) -> web.Response:
        return await self._klines(request, "indexPriceKlines", "pair")

    def premium(self, symbol: str) -> dict[str, Any]:
        """The premiumIndex item of ``symbol`` now (the markPrice payload of the current second)."""
        d = self.payload(symbol, self.k)
        return {"symbol": symbol, "markPrice": d["p"], "indexPrice": d["i"], "estimatedSettlePrice": d["P"],
                "lastFundingRate": d["r"], "interestRate": "" if d["r"] == "" else "0.00010000",
                "nextFundingTime": d["T"], "time": d["E"]}

    async def _premium_index(self, request: web.Request) -> web.Response:
        symbol = request.rel_url.query.get("symbol")
        _, err = await self._history_gate("premiumIndex", request, 1 if symbol else 10)
        if err is not None:
            return err
        if symbol is None:
            items = [self.premium(s) for s in self.listing]
            self.sent_premium.extend(items)
            return web.json_response(items, headers=self._headers(0))
        if symbol not in self.listing:
            return self._bad("Invalid symbol.", -1121)
        item = self.premium(symbol)
        self.sent_premium.append(item)
        return web.json_response(item, headers=self._headers(0))

    # -- expectations -----------------------------------------------------------------------

    def expected_points(self) -> dict[tuple[str, str, int], float]:
        """(symbol, metric, event_time) -> value for everything sent so far."""
        out: dict[tuple[str, str, int], float] = {}
        for d in list(self.sent_mark.values()):
            for p in binance.mark_price_points(d, 0):
                out[(p["symbol"], p["metric"], p["event_time"])] = p["value"]
        for d in list(self.sent_oi.values()):
            p = binance.open_interest_point(d, 0)
            out[(p["symbol"], p["metric"], p["event_time"])] = p["value"]
        return out
