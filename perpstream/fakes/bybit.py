"""A fake Bybit v5 public market: a real websocket server and a real HTTP server on
loopback, run on their own thread and event loop.

A test double, like :mod:`perpstream.fakes.binance`: it plays the public linear market as
Bybit documents it, so that a Bybit producer can be written and tested against the wire
shapes before it ever meets the venue; its points will carry the ``source``
``bybit_linear`` (docs/contract.md). Never point a deployment at it.

Websocket (``ws_url`` = ``ws://127.0.0.1:P/v5/public/linear``): ``{"op":"subscribe",
"args":["tickers.BTCUSDT",...],"req_id":..}`` is answered by the ack ``success``,
``ret_msg``, ``conn_id``, ``req_id``, ``op``; the args of one connection may not add up to
more than 21,000 characters (a failed ack past it, nothing subscribed). Each subscribed
``tickers.{symbol}`` gets a ``"type":"snapshot"`` with every field, then ``"type":"delta"``
messages with ``symbol`` and only the fields that changed since the last message sent on
that connection, ``rate`` times a second (envelope ``topic``, ``type``, ``data``, ``cs``,
``ts``). ``{"op":"ping"}`` gets the pong message. The server never pings: the client must.

HTTP (``rest_url``), envelope ``{"retCode","retMsg","result","retExtInfo","time"}``:
``/v5/market/instruments-info`` (category linear, paged by ``limit`` ≤ 1000 and an opaque
``cursor`` → ``nextPageCursor``, empty on the last page), ``/v5/market/funding/history``
(symbol required, ``limit`` ≤ 200, newest first, ``startTime`` without ``endTime`` is a
``retCode`` 10001) and ``/v5/market/open-interest`` (``intervalTime`` 5min..1d, ``limit``
≤ 200, newest first, cursor). Past ``rest_limit`` requests in 5 s the answer is HTTP 403,
as Bybit's IP limit does. History values are functions of time only
(:meth:`FakeBybit.settled_funding`, :meth:`FakeBybit.open_interest_at`), so a test knows
what a backfill must store.

Faults, callable from the test thread: :meth:`drop_connections`, :meth:`mute_connections`
(open but silent) and :meth:`inject` (raw frames, malformed ones included).
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from websockets.asyncio.server import ServerConnection

from perpstream.fakes.server import TickingVenue

WS_PATH = "/v5/public/linear"
#: Characters the args of one connection may add up to (Bybit's documented limit).
ARGS_LIMIT = 21_000
#: ``intervalTime`` of /v5/market/open-interest and its length in ms.
INTERVALS = {"5min": 300_000, "15min": 900_000, "30min": 1_800_000, "1h": 3_600_000,
             "4h": 14_400_000, "1d": 86_400_000}
_QUOTES = ("USDT", "USDC", "PERP")


def base_coin(symbol: str) -> str:
    """``1000PEPEUSDT`` -> ``1000PEPE``: the symbol without its quote coin."""
    quote = next((q for q in _QUOTES if symbol.endswith(q) and len(symbol) > len(q)), "")
    return symbol[: len(symbol) - len(quote)] if quote else symbol


def _value(symbol: str, k: int, salt: int) -> float:
    base = (sum(map(ord, symbol)) % 500) + 10 + salt
    return round(base * (1 + ((k * 7919 + salt) % 1000 - 500) / 100_000), 8)


def _cursor(n: int) -> str:
    return base64.urlsafe_b64encode(f"page:{n}".encode()).decode()


def _uncursor(cursor: str) -> int | None:
    """The position an opaque cursor stands for; None when it is not one of ours."""
    try:
        tag, _, n = base64.urlsafe_b64decode(cursor.encode()).decode().partition(":")
        return int(n) if tag == "page" and int(n) >= 0 else None
    except ValueError:
        return None


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    conn_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: symbol -> the ticker fields last sent on this connection (None: snapshot still due)
    topics: dict[str, dict[str, str] | None] = field(default_factory=dict)
    args_chars: int = 0
    muted: bool = False


class FakeBybit(TickingVenue[_Conn]):
    """See the module doc. Use as a context manager, or :meth:`start` / :meth:`stop`."""

    venue_name = "Bybit"
    ws_path = WS_PATH

    def __init__(
        self,
        symbols: Iterable[str],
        *,
        rate: float = 10.0,
        start_ms: int | None = None,
        rest_limit: int = 600,
        funding_interval_min: int = 480,
        launch_ms: int | None = None,
        record: bool = True,
    ) -> None:
        super().__init__()
        self.listing: list[str] = sorted(symbols)
        #: Ticker messages per subscribed symbol per second (Bybit: every 100 ms).
        self.rate = rate
        self.start_ms = int(time.time() * 1000) if start_ms is None else start_ms
        #: Requests allowed in any 5 s; the next ones get HTTP 403.
        self.rest_limit = rest_limit
        self.funding_interval_min = funding_interval_min
        #: When every symbol was listed: history stops there (default: 30 days before now).
        self.launch_ms = int(time.time() * 1000) - 30 * 86_400_000 if launch_ms is None else launch_ms
        self.record = record
        self.k = 0
        #: While True the clock stands still: no ticker is sent (connections stay open).
        self.paused = False
        self.cs = 0
        #: Every ticker message sent (the decoded envelope), in order, while ``record``.
        self.sent_tickers: list[dict[str, Any]] = []
        #: (path, query, HTTP status) of every REST request.
        self.rest_requests: list[tuple[str, dict[str, str], int]] = []
        self._rest_times: list[float] = []

    # -- servers ------------------------------------------------------------------------
    # The venue never pings (the default of FakeVenue): the client keeps the connection alive
    # with {"op":"ping"}.

    def _http_app(self) -> web.Application:
        app = web.Application(middlewares=[self._rate_limit])
        app.router.add_get("/v5/market/instruments-info", self._instruments)
        app.router.add_get("/v5/market/funding/history", self._funding_history)
        app.router.add_get("/v5/market/open-interest", self._open_interest)
        return app

    # -- websocket ------------------------------------------------------------------

    async def _handle_ws(self, ws: ServerConnection) -> None:
        conn = _Conn(ws)
        self.conns.add(conn)
        self.connections_total += 1
        try:
            async for message in ws:
                answer = self._answer(conn, message)
                if answer is not None and not conn.muted:
                    await ws.send(json.dumps(answer))
                if not conn.muted:
                    await self._send_snapshots(conn)
        except Exception:
            pass
        finally:
            self.conns.discard(conn)

    def _ack(self, conn: _Conn, op: Any, req_id: Any, ok: bool, msg: str) -> dict[str, Any]:
        return {"success": ok, "ret_msg": msg, "conn_id": conn.conn_id,
                "req_id": "" if req_id is None else req_id, "op": op}

    def _answer(self, conn: _Conn, message: str | bytes) -> dict[str, Any] | None:
        """The reply to one client message (subscribe, unsubscribe, ping or anything else)."""
        try:
            req = json.loads(message)
        except ValueError:
            req = None
        if not isinstance(req, dict):
            return self._ack(conn, None, None, False, "error:request not json")
        op, req_id = req.get("op"), req.get("req_id")
        if op == "ping":
            return self._ack(conn, "ping", req_id, True, "pong")
        args = req.get("args")
        if op not in ("subscribe", "unsubscribe") or not isinstance(args, list) \
                or not all(isinstance(a, str) for a in args):
            return self._ack(conn, op, req_id, False, f"error:unknown op or args: {op}")
        if op == "unsubscribe":
            for a in args:
                conn.topics.pop(a.removeprefix("tickers."), None)
            return self._ack(conn, op, req_id, True, "")
        chars = sum(len(a) for a in args)
        if conn.args_chars + chars > ARGS_LIMIT:
            return self._ack(conn, op, req_id, False,
                             f"error:args length exceeds {ARGS_LIMIT} characters for this connection")
        bad = [a for a in args
               if not a.startswith("tickers.") or a.removeprefix("tickers.") not in self.listing]
        if bad:
            return self._ack(conn, op, req_id, False, f"Invalid symbol :[{','.join(bad)}]")
        conn.args_chars += chars
        for a in args:
            conn.topics.setdefault(a.removeprefix("tickers."), None)
        return self._ack(conn, op, req_id, True, "")

    @property
    def tick_ms(self) -> int:
        return max(1, round(1000 / self.rate))

    def ticker(self, symbol: str, k: int) -> dict[str, str]:
        """Every field of ``symbol``'s ticker at tick ``k``: prices move every tick, open
        interest every 3rd, the funding rate every 10th, the funding time every interval."""
        ts = self.start_ms + k * self.tick_ms
        period = self.funding_interval_min * 60_000
        oi = _value(symbol, k // 3, 7) * 100
        mark = _value(symbol, k, 0)
        return {
            "symbol": symbol, "tickDirection": "PlusTick" if k % 2 else "MinusTick",
            "lastPrice": f"{_value(symbol, k, 2):.8f}", "markPrice": f"{mark:.8f}",
            "indexPrice": f"{_value(symbol, k, 1):.8f}", "openInterest": f"{oi:.3f}",
            "openInterestValue": f"{oi * mark:.4f}", "fundingRate": f"{(k // 10 % 13 - 6) / 100_000:.8f}",
            "nextFundingTime": str((ts // period + 1) * period),
            "fundingIntervalHour": str(self.funding_interval_min // 60), "fundingCap": "0.005",
            "bid1Price": f"{mark * 0.9999:.8f}", "bid1Size": "1.0", "ask1Price": f"{mark * 1.0001:.8f}",
            "ask1Size": "1.0",
        }

    def _message(self, symbol: str, kind: str, data: dict[str, str], k: int) -> str:
        self.cs += 1
        env = {"topic": f"tickers.{symbol}", "type": kind, "data": data, "cs": self.cs,
               "ts": self.start_ms + k * self.tick_ms}
        if self.record:
            self.sent_tickers.append(env)
        return json.dumps(env)

    async def _send_snapshots(self, conn: _Conn) -> None:
        """A newly subscribed topic gets its snapshot at once, as Bybit sends it."""
        for symbol, last in list(conn.topics.items()):
            if last is None:
                full = self.ticker(symbol, self.k)
                conn.topics[symbol] = full
                await conn.ws.send(self._message(symbol, "snapshot", full, self.k))

    async def _emit(self, conn: _Conn, k: int) -> None:
        if conn.muted:
            return
        for symbol, last in list(conn.topics.items()):
            full = self.ticker(symbol, k)
            if last is None:
                conn.topics[symbol] = full
                await conn.ws.send(self._message(symbol, "snapshot", full, k))
                continue
            delta = {f: v for f, v in full.items() if last.get(f) != v}
            if not delta:
                continue
            conn.topics[symbol] = full
            await conn.ws.send(self._message(symbol, "delta", {"symbol": symbol, **delta}, k))

    # -- HTTP -----------------------------------------------------------------------------

    @web.middleware
    async def _rate_limit(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """Bybit's IP limit: past ``rest_limit`` requests in 5 s, HTTP 403 (no envelope)."""
        now = time.monotonic()
        self._rest_times = [t for t in self._rest_times if now - t < 5.0] + [now]
        query = dict(request.rel_url.query)
        if len(self._rest_times) > self.rest_limit:
            self.rest_requests.append((request.path, query, 403))
            return web.Response(status=403, text="access too frequent")
        response: web.StreamResponse = await handler(request)
        self.rest_requests.append((request.path, query, response.status))
        return response

    @staticmethod
    def _ok(result: dict[str, Any]) -> web.Response:
        return web.json_response({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                                  "time": int(time.time() * 1000)})

    @staticmethod
    def _error(msg: str, code: int = 10001) -> web.Response:
        """A refused request: HTTP 200, the reason in ``retCode`` / ``retMsg``, as Bybit answers."""
        return web.json_response({"retCode": code, "retMsg": msg, "result": {}, "retExtInfo": {},
                                  "time": int(time.time() * 1000)})

    @staticmethod
    def _limit(q: dict[str, str], default: int, most: int) -> int | None:
        try:
            n = int(q.get("limit", default))
        except ValueError:
            return None
        return n if 1 <= n <= most else None

    def instrument(self, symbol: str) -> dict[str, Any]:
        """An instruments-info ``list[]`` item shaped like Bybit's linear perpetual entry."""
        base = base_coin(symbol)
        quote = symbol[len(base):] or "USDT"
        return {
            "symbol": symbol, "contractType": "LinearPerpetual", "status": "Trading", "baseCoin": base,
            "quoteCoin": quote, "settleCoin": quote, "launchTime": str(self.launch_ms), "deliveryTime": "0",
            "deliveryFeeRate": "", "priceScale": "8",
            "leverageFilter": {"minLeverage": "1", "maxLeverage": "25.00", "leverageStep": "0.01"},
            "priceFilter": {"minPrice": "0.00000001", "maxPrice": "1999999.99999998",
                            "tickSize": "0.00000001"},
            "lotSizeFilter": {"maxOrderQty": "1000000", "minOrderQty": "1", "qtyStep": "1",
                              "postOnlyMaxOrderQty": "1000000", "maxMktOrderQty": "100000",
                              "minNotionalValue": "5"},
            "unifiedMarginTrade": True, "fundingInterval": self.funding_interval_min, "copyTrading": "both",
            "upperFundingRate": "0.005", "lowerFundingRate": "-0.005", "isPreListing": False,
        }

    async def _instruments(self, request: web.Request) -> web.Response:
        q = dict(request.rel_url.query)
        if q.get("category") != "linear":
            return self._error("params error: category only supports linear here")
        limit = self._limit(q, 500, 1000)
        if limit is None:
            return self._error("params error: limit must be 1..1000")
        names = [s for s in self.listing if q.get("symbol") in (None, s)]
        start = _uncursor(q["cursor"]) if q.get("cursor") else 0
        if start is None:
            return self._error("params error: invalid cursor")
        page = names[start:start + limit]
        more = start + limit < len(names)
        return self._ok({"category": "linear", "list": [self.instrument(s) for s in page],
                         "nextPageCursor": _cursor(start + limit) if more else ""})

    # -- history (values are functions of time: see the module doc) ----------------------

    def settled_funding(self, symbol: str, funding_time: int) -> float:
        """The rate settled at ``funding_time`` (a multiple of the funding interval)."""
        period = self.funding_interval_min * 60_000
        return ((funding_time // period + sum(map(ord, symbol))) % 17 - 8) / 100_000

    def open_interest_at(self, symbol: str, timestamp: int) -> float:
        """Open interest (base coin) of the interval starting at ``timestamp``."""
        return round(_value(symbol, timestamp // 60_000, 7) * 100, 3)

    @staticmethod
    def _ints(q: dict[str, str], *names: str) -> list[int | None] | None:
        try:
            return [int(q[n]) if n in q else None for n in names]
        except ValueError:
            return None

    def _history_query(self, q: dict[str, str], default_limit: int) -> \
            tuple[str, int, int | None, int] | web.Response:
        """(symbol, limit, startTime, endTime) of a history request, or its error answer."""
        if q.get("category") != "linear":
            return self._error("params error: category only supports linear here")
        symbol = q.get("symbol", "")
        if not symbol:
            return self._error("params error: symbol is required")
        if symbol not in self.listing:
            return self._error("params error: Symbol Invalid")
        limit = self._limit(q, default_limit, 200)
        times = self._ints(q, "startTime", "endTime")
        if limit is None or times is None:
            return self._error("params error: limit must be 1..200, times integers")
        start, end = times
        if start is not None and end is None:
            return self._error("params error: startTime needs endTime")
        now = int(time.time() * 1000)
        return symbol, limit, start, min(now if end is None else end, now)

    async def _funding_history(self, request: web.Request) -> web.Response:
        parsed = self._history_query(dict(request.rel_url.query), 200)
        if isinstance(parsed, web.Response):
            return parsed
        symbol, limit, start, end = parsed
        period = self.funding_interval_min * 60_000
        floor = max(self.launch_ms, start if start is not None else self.launch_ms)
        rows: list[dict[str, str]] = []
        t = end - end % period
        while t >= floor and len(rows) < limit:
            rows.append({"symbol": symbol, "fundingRate": f"{self.settled_funding(symbol, t):.8f}",
                         "fundingRateTimestamp": str(t)})
            t -= period
        return self._ok({"category": "linear", "list": rows})

    async def _open_interest(self, request: web.Request) -> web.Response:
        q = dict(request.rel_url.query)
        interval = INTERVALS.get(q.get("intervalTime", ""))
        if interval is None:
            return self._error(f"params error: intervalTime must be one of {', '.join(INTERVALS)}")
        parsed = self._history_query(q, 50)
        if isinstance(parsed, web.Response):
            return parsed
        symbol, limit, start, end = parsed
        if q.get("cursor"):  # the cursor names the newest timestamp of the next page
            resume = _uncursor(q["cursor"])
            if resume is None:
                return self._error("params error: invalid cursor")
            end = min(end, resume)
        floor = max(self.launch_ms, start if start is not None else self.launch_ms)
        rows: list[dict[str, str]] = []
        t = end - end % interval
        while t >= floor and len(rows) < limit:
            rows.append({"openInterest": f"{self.open_interest_at(symbol, t):.8f}", "timestamp": str(t)})
            t -= interval
        more = t >= floor
        return self._ok({"symbol": symbol, "category": "linear", "list": rows,
                         "nextPageCursor": _cursor(t) if more else ""})
