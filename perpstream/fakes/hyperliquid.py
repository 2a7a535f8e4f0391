"""A fake Hyperliquid perpetuals market: a real websocket server and a real HTTP server on
loopback, run on their own thread and event loop.

A test double, like :mod:`perpstream.fakes.bybit`: it plays the public API as Hyperliquid
documents it (For developers > API: "Websocket", "Subscriptions", "Timeouts and
heartbeats", "Info endpoint > Perpetuals", "Rate limits and user limits"), so that the
Hyperliquid producer is written and tested against the wire shapes before it meets the
venue; its points carry the ``source`` ``hyperliquid`` (docs/contract.md). Never point a
deployment at it.

Websocket (``ws_url`` = ``ws://127.0.0.1:P/ws``): ``{"method":"subscribe","subscription":
{"type":"activeAssetCtx","coin":"BTC"}}`` is answered ``{"channel":"subscriptionResponse",
"data":{"method":"subscribe","subscription":{..}}}`` and followed, at once and then ``rate``
times a second, by ``{"channel":"activeAssetCtx","data":{"coin":..,"ctx":{..}}}`` with every
field of a perp ctx as decimal strings (:meth:`FakeHyperliquid.ctx`). Unsubscribe likewise.
A coin ``meta`` does not list, a second subscription of the same coin, or one past
``subscription_limit`` subscriptions over all connections (the per-IP limit: every client
here is one IP) is answered ``{"channel":"error","data":"<text>"}``. ``{"method":"ping"}``
gets ``{"channel":"pong"}``. A connection whose client sent nothing for ``idle_timeout``
seconds is closed. A delisted coin is acked (the venue knows it) but pushes nothing.

HTTP: ``POST /info`` with ``{"type":"meta"}``, ``{"type":"metaAndAssetCtxs"}`` and
``{"type":"fundingHistory","coin":..,"startTime":..,"endTime":..}`` (hourly rows
``coin``, ``fundingRate``, ``premium``, ``time``, oldest first, both ends inclusive, at most
500 an answer: page by the last ``time``). Requests weigh 20, fundingHistory 1 more per 20
rows returned; past ``weight_limit`` in any 60 s the answer is HTTP 429. A body that is not
JSON is a 400, one of the wrong shape a 422, as the venue answers.

Values are functions of the tick and the hour only (:meth:`FakeHyperliquid.ctx`,
:meth:`FakeHyperliquid.settled_funding`), so a test knows what must be stored; every push
is kept with its tick in :attr:`FakeHyperliquid.sent`. Listings change at run time with
:meth:`add_coin` and :meth:`delist`. Faults, callable from the test thread:
:meth:`drop_connections`, :meth:`mute_connections` (open but silent) and :meth:`inject` (raw
frames, malformed ones included).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from perpstream.fakes.server import TickingVenue

WS_PATH = "/ws"
INFO_PATH = "/info"
#: Subscriptions an IP may hold over all its connections.
SUBSCRIPTION_LIMIT = 1000
#: The server closes a connection its client sent nothing on for this long (seconds).
IDLE_TIMEOUT = 60.0
#: REST weight a minute, the weight of an info request, and of each 20 fundingHistory rows.
WEIGHT_LIMIT = 1200
INFO_WEIGHT = 20
ROWS_PER_WEIGHT = 20
#: Rows an answer over a time range holds at most.
MAX_ROWS = 500
HOUR_MS = 3_600_000
#: How the venue words a body of the wrong shape (HTTP 422).
_SHAPE = "Failed to deserialize the JSON body into the target type: "
DEFAULT_COINS = ("BTC", "ETH", "SOL", "kPEPE", "kSHIB", "kBONK")
DEFAULT_DELISTED = ("LOOM",)
#: szDecimals, maxLeverage of the coins the fake knows; others get (2, 10).
_SPECS = {"BTC": (5, 40), "ETH": (4, 25), "SOL": (2, 20), "kPEPE": (0, 10), "kSHIB": (0, 10),
          "kBONK": (0, 10), "LOOM": (1, 3)}


def _dec(x: float, places: int = 8) -> str:
    """A decimal string as Hyperliquid writes one: no exponent, no trailing zeros, ``97015.0``."""
    s = f"{x:.{places}f}".rstrip("0")
    return s + "0" if s.endswith(".") else s


def _value(coin: str, k: int, salt: int) -> float:
    base = (sum(map(ord, coin)) % 500) + 10 + salt
    return round(base * (1 + ((k * 7919 + salt) % 1000 - 500) / 100_000), 6)


def _sub(coin: str) -> dict[str, str]:
    return {"type": "activeAssetCtx", "coin": coin}


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    #: Subscribed coins, in the order subscribed.
    coins: dict[str, None] = field(default_factory=dict)
    muted: bool = False


class _BadBody(Exception):
    def __init__(self, status: int, text: str) -> None:
        super().__init__(text)
        self.status = status
        self.text = text


class FakeHyperliquid(TickingVenue[_Conn]):
    """See the module doc. Use as a context manager, or :meth:`start` / :meth:`stop`."""

    venue_name = "Hyperliquid"
    ws_path = WS_PATH

    def __init__(
        self,
        coins: Iterable[str] = DEFAULT_COINS,
        *,
        delisted: Iterable[str] = DEFAULT_DELISTED,
        rate: float = 1.0,
        weight_limit: int = WEIGHT_LIMIT,
        subscription_limit: int = SUBSCRIPTION_LIMIT,
        idle_timeout: float = IDLE_TIMEOUT,
        launch_ms: int | None = None,
        record: bool = True,
    ) -> None:
        super().__init__()
        now = int(time.time() * 1000)
        #: When the initial coins were listed: funding history starts there (default 30 days ago).
        self.launch_ms = now - 30 * 86_400_000 if launch_ms is None else launch_ms
        #: The ``meta`` universe in listing order (a coin's index is its asset id); entries are
        #: never removed, a delisted one is marked ``isDelisted``.
        self.universe: list[dict[str, Any]] = []
        self._launch: dict[str, int] = {}
        #: coin -> (tick, ms) of its delisting.
        self._delisted: dict[str, tuple[int, int]] = {}
        for coin in coins:
            self._list(coin, self.launch_ms)
        for coin in delisted:
            self._list(coin, self.launch_ms)
            self._mark_delisted(coin, 0, now)
        #: activeAssetCtx pushes per subscribed coin per second.
        self.rate = rate
        self.weight_limit = weight_limit
        self.subscription_limit = subscription_limit
        self.idle_timeout = idle_timeout
        self.record = record
        self.k = 0
        #: While True the clock stands still: nothing is pushed (connections stay open).
        self.paused = False
        #: Connections the server closed for their client's silence.
        self.idle_closed = 0
        #: Every push sent while ``record``: (tick, coin, the frame's text), in order.
        self.sent: list[tuple[int, str, str]] = []
        #: (request type, weight charged, HTTP status) of every info request.
        self.requests: list[tuple[str, int, int]] = []
        self._weights: list[tuple[float, int]] = []

    # -- servers ------------------------------------------------------------------------
    # The venue does not ping (the default of FakeVenue): a client keeps a quiet connection
    # with {"method":"ping"}.

    def _http_app(self) -> web.Application:
        app = web.Application()
        app.router.add_post(INFO_PATH, self._info)
        return app

    # -- listings -------------------------------------------------------------------------

    def _list(self, coin: str, launch_ms: int) -> None:
        if coin in self._launch:
            raise ValueError(f"{coin} is listed already")
        sz, lev = _SPECS.get(coin, (2, 10))
        self.universe.append({"szDecimals": sz, "name": coin, "maxLeverage": lev, "marginTableId": lev})
        self._launch[coin] = launch_ms

    def _mark_delisted(self, coin: str, k: int, ms: int) -> None:
        entry = next(e for e in self.universe if e["name"] == coin)
        entry.update({"isDelisted": True, "marginMode": "strictIsolated", "onlyIsolated": True})
        self._delisted[coin] = (k, ms)

    def add_coin(self, coin: str) -> None:
        """List ``coin`` now: ``meta`` names it, it can be subscribed, its history starts now."""
        self.call(self._list, coin, int(time.time() * 1000))

    def delist(self, coin: str) -> None:
        """Delist ``coin`` now: ``meta`` marks it ``isDelisted``, its pushes and history stop."""
        if coin not in self._launch or coin in self._delisted:
            raise ValueError(f"{coin} is not listed")
        self.call(lambda: self._mark_delisted(coin, self.k, int(time.time() * 1000)))

    @property
    def listed(self) -> list[str]:
        """The coins trading now, in listing order."""
        return [e["name"] for e in self.universe if e["name"] not in self._delisted]

    # -- connections ------------------------------------------------------------------------

    @property
    def subscriptions(self) -> int:
        return sum(len(c.coins) for c in self.conns)

    # -- websocket ----------------------------------------------------------------------

    async def _handle_ws(self, ws: ServerConnection) -> None:
        conn = _Conn(ws)
        self.conns.add(conn)
        self.connections_total += 1
        try:
            while True:
                try:
                    message = await asyncio.wait_for(ws.recv(), self.idle_timeout)
                except TimeoutError:
                    self.idle_closed += 1
                    await ws.close(1000, f"no message from the client in {self.idle_timeout:g} s")
                    return
                for reply in self._answer(conn, message):
                    if not conn.muted:
                        await ws.send(reply)
        except ConnectionClosed:
            pass
        finally:
            self.conns.discard(conn)

    @staticmethod
    def _frame(channel: str, data: Any) -> str:
        return json.dumps({"channel": channel, "data": data}, separators=(",", ":"))

    def _error(self, text: str) -> list[str]:
        return [self._frame("error", text)]

    def _answer(self, conn: _Conn, message: str | bytes) -> list[str]:
        """The frames one client message is answered with."""
        try:
            req = json.loads(message)
        except ValueError:
            req = None
        method = req.get("method") if isinstance(req, dict) else None
        if method == "ping":
            return [json.dumps({"channel": "pong"}, separators=(",", ":"))]
        sub = req.get("subscription") if isinstance(req, dict) else None
        if method not in ("subscribe", "unsubscribe") or not isinstance(sub, dict):
            text = message if isinstance(message, str) else message.decode("utf-8", "replace")
            return self._error(f"Error parsing JSON into valid websocket request: {text[:200]}")
        coin = sub.get("coin")
        if sub.get("type") != "activeAssetCtx" or not isinstance(coin, str) or coin not in self._launch:
            return self._error(f"Invalid subscription: {json.dumps(sub, separators=(',', ':'))}")
        echo = _sub(coin)
        said = json.dumps(echo, separators=(",", ":"))
        if method == "unsubscribe":
            if coin not in conn.coins:
                return self._error(f"Already unsubscribed: {said}")
            del conn.coins[coin]
            return [self._frame("subscriptionResponse", {"method": method, "subscription": echo})]
        if coin in conn.coins:
            return self._error(f"Already subscribed: {said}")
        if self.subscriptions >= self.subscription_limit:
            return self._error(f"Cannot track more than {self.subscription_limit} total subscriptions")
        conn.coins[coin] = None
        out = [self._frame("subscriptionResponse", {"method": method, "subscription": echo})]
        if coin not in self._delisted:
            out.append(self._push(coin, self.k))  # the current ctx at once, then every tick
        return out

    @property
    def tick_ms(self) -> float:
        return 1000 / self.rate

    def ctx(self, coin: str, k: int) -> dict[str, Any]:
        """Every field of ``coin``'s perp ctx at tick ``k``, as Hyperliquid writes them:
        prices move every tick, open interest every 3rd, the funding rate every 10th."""
        mark = _value(coin, k, 0)
        oracle = _value(coin, k, 1)
        oi = _value(coin, k // 3, 7) * 100
        prev = _value(coin, 0, 3)
        return {
            "funding": _dec(((k // 10) % 13 - 6) / 1_000_000, 10), "openInterest": _dec(oi, 3),
            "prevDayPx": _dec(prev), "dayNtlVlm": _dec(oi * prev * 3, 2),
            "premium": _dec((mark - oracle) / oracle, 8), "oraclePx": _dec(oracle), "markPx": _dec(mark),
            "midPx": _dec(mark), "impactPxs": [_dec(mark * 0.9999), _dec(mark * 1.0001)],
            "dayBaseVlm": _dec(oi * 3, 3),
        }

    def _push(self, coin: str, k: int) -> str:
        frame = self._frame("activeAssetCtx", {"coin": coin, "ctx": self.ctx(coin, k)})
        if self.record:
            self.sent.append((k, coin, frame))
        return frame

    async def _emit(self, conn: _Conn, k: int) -> None:
        if conn.muted:
            return
        for coin in list(conn.coins):
            if coin not in self._delisted:
                await conn.ws.send(self._push(coin, k))

    # -- HTTP: /info ---------------------------------------------------------------------------

    def _used_weight(self, now: float) -> int:
        self._weights = [(t, w) for t, w in self._weights if now - t < 60.0]
        return sum(w for _, w in self._weights)

    @staticmethod
    async def _body(request: web.Request) -> dict[str, Any]:
        raw = await request.read()
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise _BadBody(400, f"Failed to parse the request body as JSON: {exc}") from None
        if not isinstance(body, dict) or not isinstance(body.get("type"), str):
            raise _BadBody(422, _SHAPE + "missing field `type`")
        return body

    async def _info(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            kind = body["type"]
            now = time.monotonic()
            if self._used_weight(now) + INFO_WEIGHT > self.weight_limit:
                self.requests.append((kind, 0, 429))
                return web.Response(status=429, text="null", content_type="application/json")
            answer = self._answer_info(kind, body)
        except _BadBody as bad:
            self.requests.append(("?", 0, bad.status))
            return web.Response(status=bad.status, text=bad.text)
        weight = INFO_WEIGHT + (len(answer) // ROWS_PER_WEIGHT if kind == "fundingHistory" else 0)
        self._weights.append((now, weight))
        self.requests.append((kind, weight, 200))
        return web.json_response(answer)

    def _answer_info(self, kind: str, body: dict[str, Any]) -> Any:
        margin = [[lev, {"description": "", "marginTiers": [{"lowerBound": "0.0", "maxLeverage": lev}]}]
                  for lev in sorted({e["maxLeverage"] for e in self.universe})]
        if kind == "meta":
            return {"universe": self.universe, "marginTables": margin}
        if kind == "metaAndAssetCtxs":
            ctxs = [self.ctx(e["name"], self._delisted.get(e["name"], (self.k, 0))[0]) for e in self.universe]
            return [{"universe": self.universe, "marginTables": margin, "collateralToken": 0}, ctxs]
        if kind == "fundingHistory":
            return self._funding_history(body)
        raise _BadBody(422, _SHAPE + f"unknown variant `{kind}`")

    # -- funding history (values are functions of the hour: see the module doc) -------------

    @staticmethod
    def funding_time(hour_ms: int) -> int:
        """When the settlement of the hour starting ``hour_ms`` is stamped: a few tens of ms
        after the hour, as the venue's rows are (``1683849600076``)."""
        return hour_ms + 50 + (hour_ms // HOUR_MS * 7919) % 50

    @staticmethod
    def settled_funding(coin: str, hour_ms: int) -> float:
        """The rate settled at the hour starting ``hour_ms``."""
        return ((hour_ms // HOUR_MS + sum(map(ord, coin))) % 17 - 8) / 1_000_000

    @staticmethod
    def _premium(coin: str, hour_ms: int) -> float:
        return ((hour_ms // HOUR_MS * 31 + len(coin)) % 21 - 10) / 100_000

    def _funding_history(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        coin, start, end = body.get("coin"), body.get("startTime"), body.get("endTime")
        if not isinstance(coin, str):
            raise _BadBody(422, _SHAPE + "missing field `coin`")
        if type(start) is not int or (end is not None and type(end) is not int):
            raise _BadBody(422, _SHAPE + "missing field `startTime` (startTime, endTime: integer ms)")
        now = int(time.time() * 1000)
        end = now if end is None else min(end, now)
        if coin not in self._launch:
            return []
        stop = self._delisted[coin][1] if coin in self._delisted else now
        rows: list[dict[str, Any]] = []
        hour = max(start, self._launch[coin]) // HOUR_MS * HOUR_MS
        while len(rows) < MAX_ROWS and hour <= end:
            t = self.funding_time(hour)
            if max(start, self._launch[coin]) <= t <= min(end, stop):
                rows.append({"coin": coin, "fundingRate": _dec(self.settled_funding(coin, hour), 10),
                             "premium": _dec(self._premium(coin, hour), 10), "time": t})
            hour += HOUR_MS
        return rows
