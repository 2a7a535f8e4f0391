"""A fake OKX v5 public market: a real websocket server and a real HTTP server on loopback,
run on their own thread and event loop.

A test double, like :mod:`perpstream.fakes.bybit`: it plays OKX's public swaps as OKX
documents them, so the ``okx_swap`` producer (``producer.okx``, docs/producer.md, "Venues")
can be tested against the wire shapes before it ever meets the venue. Never point a
deployment at it.

Websocket (``ws_url`` = ``ws://127.0.0.1:P/ws/v5/public``): ``{"id":..,"op":"subscribe",
"args":[{"channel":..,"instId":..},..]}`` is answered arg by arg, ``{"id","event":"subscribe",
"arg","connId"}`` (``id`` only where the request had one); an arg that is not an object with
string ``channel`` and ``instId`` gets ``{"event":"error","code":"60012","msg":"Invalid
request: .."}``, one naming a channel or instrument that does not exist gets code 60018
("Wrong URL or channel:..,instId:.. doesn't exist. .."), an unknown ``op`` 60019. A
connection may send 480 subscribe/unsubscribe requests an hour (60014 past it), a request of
more than 64 KB closes it (1009), and past ``max_channels`` args it is closed (4009). The
text ``ping`` is answered ``pong``. A connection the fake has sent nothing for
``idle_timeout_s`` (30 s) is closed with 4004 "No data received in 30s", as OKX closes one
with nothing pushed; the pongs a client asks for keep a quiet one open.

Pushes are ``{"arg":{"channel","instId"},"data":[{..}]}`` with the documented fields, the
current value right after a subscription and then at the documented rates (each
configurable): ``mark-price`` every ``mark_interval_ms`` (200) when the mark moved, every
``mark_idle_ms`` (10 s) when it did not; ``index-tickers`` every ``index_interval_ms`` (100)
on change, every ``index_idle_ms`` (60 s) otherwise; ``open-interest`` every
``oi_interval_ms`` (3 s) when it changed; ``funding-rate`` every ``funding_push_ms`` (60 s).
``fundingTime`` is the next settlement on the swap's interval (8 h unless its
:class:`Swap` says 4 h or 1 h) and ``nextFundingTime`` the one after it.

HTTP (``rest_url``), envelope ``{"code":"0","msg":"","data":[..]}``:
``/api/v5/public/instruments`` (``instType`` SWAP; linear and inverse swaps, live and
suspended), ``/api/v5/public/funding-rate-history`` (``instId``; ``after``/``before``
bounds, exclusive; ``limit`` <= 400; newest first; three months back) and
``/api/v5/rubik/stat/contracts/open-interest-history`` (``instId``, ``period``,
``end``/``begin`` bounds, exclusive; ``limit`` <= 100; newest first; the latest 1,440 bars;
rows ``[ts, oi, oiCcy, oiUsd]``). OKX limits each per 2 s, per IP and instrument type
(instruments, 20) or instrument (the histories, 10 each); past a limit the answer is HTTP 429
``{"code":"50011","msg":"Too Many Requests","data":[]}``.

Every value is a function of time (:meth:`FakeOkx.mark_price_at`,
:meth:`~FakeOkx.index_price_at`, :meth:`~FakeOkx.funding_rate_at`,
:meth:`~FakeOkx.funding_time_at`, :meth:`~FakeOkx.settled_funding`,
:meth:`~FakeOkx.open_interest_at`), so a test knows what a consumer must see. Listings
change at run time (:meth:`~FakeOkx.add_swap`, :meth:`~FakeOkx.delist`,
:meth:`~FakeOkx.set_state`). Faults, callable from the test thread:
:meth:`~FakeOkx.drop_connections`, :meth:`~FakeOkx.mute_connections` (open but silent,
never closed for it) and :meth:`~FakeOkx.inject` (raw frames, malformed ones included).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
import uuid
from collections import deque
from collections.abc import Coroutine, Iterable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from aiohttp import web
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from perpstream.fakes.server import FakeVenue

WS_PATH = "/ws/v5/public"
INSTRUMENTS_PATH = "/api/v5/public/instruments"
FUNDING_HISTORY_PATH = "/api/v5/public/funding-rate-history"
OPEN_INTEREST_HISTORY_PATH = "/api/v5/rubik/stat/contracts/open-interest-history"
CHANNELS = ("mark-price", "index-tickers", "funding-rate", "open-interest")
#: A request may be 64 KB (the args of one subscribe); a larger one closes the socket, 1009.
MAX_REQUEST_BYTES = 64 * 1024
#: subscribe/unsubscribe requests a connection may send in an hour.
REQUESTS_PER_HOUR = 480
#: Settlements the funding history reaches back (three months).
FUNDING_HISTORY_DAYS = 90
#: Open-interest bars a period keeps.
OPEN_INTEREST_BARS = 1_440
HOUR_MS = 3_600_000
DAY_MS = 24 * HOUR_MS
#: rubik ``period`` -> (length ms, opening offset ms): 6H and longer open at UTC+8 midnight
#: unless spelled ``..utc``; the shorter ones divide 8 h, so their bars are the same either way.
PERIODS = {
    "5m": (300_000, 0), "15m": (900_000, 0), "30m": (1_800_000, 0), "1H": (HOUR_MS, 0),
    "2H": (2 * HOUR_MS, 0), "4H": (4 * HOUR_MS, 0), "6H": (6 * HOUR_MS, 8 * HOUR_MS),
    "12H": (12 * HOUR_MS, 8 * HOUR_MS), "1D": (DAY_MS, 8 * HOUR_MS), "6Hutc": (6 * HOUR_MS, 0),
    "12Hutc": (12 * HOUR_MS, 0), "1Dutc": (DAY_MS, 0),
}
_INST_TYPES = ("SPOT", "MARGIN", "SWAP", "FUTURES", "OPTION")
_NOT_FOUND_MSG = "Instrument ID, Instrument ID code or Spread ID doesn't exist."
_IDLE_REASON = "No data received in 30s"


@dataclass
class Swap:
    """One perpetual swap as the fake lists it; the rest of its listing follows from these."""

    inst_id: str
    #: Contract value, in ``ctValCcy`` (the base coin of a linear swap, USD of an inverse one).
    ct_val: str
    #: The level its prices move around, and their tick.
    price: str
    tick_sz: str
    ct_type: str = "linear"
    state: str = "live"
    #: Hours between settlements.
    funding_interval_h: int = 8

    @property
    def uly(self) -> str:
        """The index it is priced on: ``PEPE-USDT`` for ``PEPE-USDT-SWAP``."""
        return self.inst_id.removesuffix("-SWAP")

    @property
    def ct_val_ccy(self) -> str:
        base, _, quote = self.uly.partition("-")
        return base if self.ct_type == "linear" else quote

    @property
    def settle_ccy(self) -> str:
        base, _, quote = self.uly.partition("-")
        return quote if self.ct_type == "linear" else base

    @property
    def funding_period_ms(self) -> int:
        return self.funding_interval_h * HOUR_MS


#: Swaps shaped like OKX's: linear live ones (PEPE counts 10,000,000 coins a contract),
#: funding every 8, 4 or 1 h, an inverse swap and a suspended one a producer must skip.
DEFAULT_SWAPS = (
    Swap("BTC-USDT-SWAP", "0.01", "60000", "0.1"),
    Swap("ETH-USDT-SWAP", "0.1", "3000", "0.01"),
    Swap("PEPE-USDT-SWAP", "10000000", "0.00001", "0.0000000001", funding_interval_h=4),
    Swap("SHIB-USDT-SWAP", "1000000", "0.00002", "0.000000001"),
    Swap("BONK-USDT-SWAP", "100000", "0.00002", "0.0000000001", funding_interval_h=1),
    Swap("BTC-USD-SWAP", "100", "60000", "0.1", ct_type="inverse"),
    Swap("LUNA-USDT-SWAP", "1", "0.5", "0.0001", state="suspend"),
)
_CATALOGUE = {s.inst_id: s for s in DEFAULT_SWAPS}


def as_swap(spec: Swap | str) -> Swap:
    """A :class:`Swap` of its own for a spec (a fake changes its swaps' state): a bare name
    is the catalogue's swap, or a plain linear one."""
    known = spec if isinstance(spec, Swap) else _CATALOGUE.get(spec)
    return dataclasses.replace(known) if known is not None else Swap(str(spec), "1", "1.5", "0.0001")


def _salt(name: str) -> int:
    return sum(map(ord, name))


def _wave(name: str, slot: int) -> Decimal:
    """A step in -0.5% .. +0.5% that changes with every slot."""
    return Decimal((slot * 7919 + _salt(name)) % 1000 - 500) / 100_000


def _text(d: Decimal) -> str:
    """A decimal as OKX writes one: positional, never an exponent."""
    return format(d, "f")


def _now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(eq=False)
class _Conn:
    ws: ServerConnection
    conn_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    #: (channel, instId) -> (the value last pushed, its ts), None before the first push.
    args: dict[tuple[str, str], tuple[str, int] | None] = field(default_factory=dict)
    #: monotonic times of the subscribe/unsubscribe requests of the last hour
    requests: deque[float] = field(default_factory=deque)
    last_sent: float = field(default_factory=time.monotonic)
    muted: bool = False


class FakeOkx(FakeVenue[_Conn]):
    """See the module doc. Use as a context manager, or :meth:`start` / :meth:`stop`."""

    venue_name = "OKX"
    ws_path = WS_PATH

    def __init__(
        self,
        swaps: Iterable[Swap | str] = DEFAULT_SWAPS,
        *,
        mark_interval_ms: int = 200,
        mark_idle_ms: int = 10_000,
        mark_hold: int = 1,
        index_interval_ms: int = 100,
        index_idle_ms: int = 60_000,
        index_hold: int = 1,
        oi_interval_ms: int = 3_000,
        funding_push_ms: int = 60_000,
        idle_timeout_s: float = 30.0,
        max_channels: int | None = None,
        requests_per_hour: int = REQUESTS_PER_HOUR,
        instruments_limit: int = 20,
        funding_history_limit: int = 10,
        open_interest_history_limit: int = 10,
        list_ms: int | None = None,
        record: bool = True,
    ) -> None:
        super().__init__()
        self.swaps: dict[str, Swap] = {s.inst_id: s for s in map(as_swap, swaps)}
        self.mark_interval_ms, self.mark_idle_ms = mark_interval_ms, mark_idle_ms
        #: A price moves once every ``hold`` intervals (hold it longer to see the idle pushes).
        self.mark_hold, self.index_hold = mark_hold, index_hold
        self.index_interval_ms, self.index_idle_ms = index_interval_ms, index_idle_ms
        self.oi_interval_ms = oi_interval_ms
        self.funding_push_ms = funding_push_ms
        self.idle_timeout_s = idle_timeout_s
        #: Args a connection may hold (OKX closes past a number it does not publish; None: no limit).
        self.max_channels = max_channels
        self.requests_per_hour = requests_per_hour
        #: Requests allowed per 2 s, per path and instrument type or instrument.
        self.rest_limits = {INSTRUMENTS_PATH: instruments_limit, FUNDING_HISTORY_PATH: funding_history_limit,
                            OPEN_INTEREST_HISTORY_PATH: open_interest_history_limit}
        self.rest_window_s = 2.0
        #: When every swap was listed: history stops there (default: 400 days ago).
        self.list_ms = _now_ms() - 400 * DAY_MS if list_ms is None else list_ms
        self.record = record
        #: Connections closed because nothing was sent on them for ``idle_timeout_s``.
        self.idle_closed = 0
        #: Every push sent (decoded), in order, while ``record``.
        self.pushes: list[dict[str, Any]] = []
        #: While True nothing is pushed (connections stay open; the idle close still applies).
        self.paused = False
        #: (path, query, HTTP status) of every REST request.
        self.rest_requests: list[tuple[str, dict[str, str], int]] = []
        self._rest_times: dict[tuple[str, str], list[float]] = {}

    # -- servers ------------------------------------------------------------------------

    def _ws_options(self) -> dict[str, Any]:
        # OKX never pings: the client keeps a quiet connection open with the text "ping".
        return {"ping_interval": None, "max_size": MAX_REQUEST_BYTES}

    def _http_app(self) -> web.Application:
        app = web.Application(middlewares=[self._rate_limit])
        app.router.add_get(INSTRUMENTS_PATH, self._instruments)
        app.router.add_get(FUNDING_HISTORY_PATH, self._funding_history)
        app.router.add_get(OPEN_INTEREST_HISTORY_PATH, self._open_interest_history)
        return app

    def _clocks(self) -> list[Coroutine[Any, Any, None]]:
        return [*(self._pump(ch) for ch in CHANNELS), self._watch_idle()]

    # -- listings, from the test thread -----------------------------------------------------

    def add_swap(self, spec: Swap | str) -> Swap:
        """List a swap now (the instruments answer and the websocket know it at once)."""
        swap = as_swap(spec)

        def add() -> None:
            self.swaps[swap.inst_id] = swap

        self.call(add)
        return swap

    def delist(self, inst_id: str) -> None:
        """Take a swap off the listing: no more pushes for it, its subscriptions get 60018."""
        self.call(self.swaps.pop, inst_id, None)

    def set_state(self, inst_id: str, state: str) -> None:
        """Change a swap's ``state`` (``live``, ``suspend``, ``preopen`` ...)."""
        def change() -> None:
            self.swaps[inst_id].state = state

        self.call(change)

    # -- values (functions of time: see the module doc) -----------------------------------

    def _index_swap(self, index: str) -> Swap:
        return next(s for s in self.swaps.values() if s.uly == index)

    def _mark(self, inst_id: str, ts: int) -> Decimal:
        swap = self.swaps[inst_id]
        slot = ts // self.mark_interval_ms // self.mark_hold
        return (Decimal(swap.price) * (1 + _wave(inst_id, slot))).quantize(Decimal(swap.tick_sz))

    def _index(self, index: str, ts: int) -> Decimal:
        swap = self._index_swap(index)
        slot = ts // self.index_interval_ms // self.index_hold
        return (Decimal(swap.price) * (1 + _wave(index, slot))).quantize(Decimal(swap.tick_sz))

    def _settled(self, inst_id: str, funding_time: int) -> Decimal:
        period = self.swaps[inst_id].funding_period_ms
        return Decimal((funding_time // period + _salt(inst_id)) % 17 - 8) / 100_000

    def _funding(self, inst_id: str, ts: int) -> Decimal:
        # the rate of the coming settlement, moving each minute until it is settled
        return self._settled(inst_id, self.funding_time_at(inst_id, ts)) \
            + Decimal((ts // 60_000 + _salt(inst_id)) % 9 - 4) / 10_000_000

    def _open_interest(self, inst_id: str, ts: int) -> tuple[Decimal, Decimal, Decimal]:
        """(contracts, base coin, USD) open at ``ts``."""
        swap = self.swaps[inst_id]
        slot = ts // self.oi_interval_ms
        contracts = Decimal(100_000 + (slot * 31 + _salt(inst_id)) % 5_000) / 100
        mark = self._mark(inst_id, ts)
        if swap.ct_type == "linear":
            coin = contracts * Decimal(swap.ct_val)
            return contracts, coin, (coin * mark).quantize(Decimal("0.00000001"))
        usd = contracts * Decimal(swap.ct_val)
        return contracts, (usd / mark).quantize(Decimal("0.00000001")), usd

    def mark_price_at(self, inst_id: str, ts: int) -> float:
        """``markPx`` of a push stamped ``ts``."""
        return float(self._mark(inst_id, ts))

    def index_price_at(self, index: str, ts: int) -> float:
        """``idxPx`` of an ``index-tickers`` push of ``index`` (``BTC-USDT``) stamped ``ts``."""
        return float(self._index(index, ts))

    def funding_time_at(self, inst_id: str, ts: int) -> int:
        """``fundingTime`` at ``ts``: the next settlement, the one the published rate is for."""
        period = self.swaps[inst_id].funding_period_ms
        return (ts // period + 1) * period

    def funding_rate_at(self, inst_id: str, ts: int) -> float:
        """``fundingRate`` of a push stamped ``ts``."""
        return float(self._funding(inst_id, ts))

    def settled_funding(self, inst_id: str, funding_time: int) -> float:
        """The rate settled at ``funding_time`` (``realizedRate`` in the history, and
        ``settFundingRate`` of the pushes after it)."""
        return float(self._settled(inst_id, funding_time))

    def open_interest_at(self, inst_id: str, ts: int) -> float:
        """``oiCcy`` (base coin) at ``ts``, in a push or a history bar opening at ``ts``."""
        return float(self._open_interest(inst_id, ts)[1])

    # -- websocket ------------------------------------------------------------------

    async def _send(self, conn: _Conn, frame: str | bytes) -> None:
        """Send one frame, and note when: the idle close counts from the last frame sent."""
        await conn.ws.send(frame)
        conn.last_sent = time.monotonic()

    async def _handle_ws(self, ws: ServerConnection) -> None:
        conn = _Conn(ws)
        self.conns.add(conn)
        self.connections_total += 1
        try:
            async for message in ws:
                if conn.muted:
                    continue
                if message == "ping":
                    await self._send(conn, "pong")
                    continue
                replies, added, close = self._answer(conn, message)
                for reply in replies:
                    await self._send(conn, json.dumps(reply, separators=(",", ":")))
                if close is not None:
                    await ws.close(*close)
                    break
                now = _now_ms()
                for channel, inst_id in added:  # the current value right after subscribing
                    await self._maybe_push(conn, channel, inst_id, now - now % self._interval(channel))
        except ConnectionClosed:
            pass
        finally:
            self.conns.discard(conn)

    def _reply(self, conn: _Conn, req_id: str | None, **body: Any) -> dict[str, Any]:
        head = {} if req_id is None else {"id": req_id}
        return {**head, **body, "connId": conn.conn_id}

    def _exists(self, channel: str, inst_id: str) -> bool:
        if channel == "index-tickers":
            return any(s.uly == inst_id for s in self.swaps.values())
        return channel in CHANNELS and inst_id in self.swaps

    def _answer(self, conn: _Conn, message: str | bytes) -> \
            tuple[list[dict[str, Any]], list[tuple[str, str]], tuple[int, str] | None]:
        """The replies to one client message, the args it subscribed, and a close if it ends
        the connection."""
        text = message if isinstance(message, str) else message.decode("utf-8", "replace")
        try:
            req = json.loads(text)
        except ValueError:
            req = None
        invalid = f"Invalid request: {text}"
        if not isinstance(req, dict):
            return [self._reply(conn, None, event="error", code="60012", msg=invalid)], [], None
        rid = req.get("id")  # up to 32 alphanumerics
        if rid is not None and not (isinstance(rid, str) and rid.isascii() and rid.isalnum() \
                                    and len(rid) <= 32):
            return [self._reply(conn, None, event="error", code="60012", msg=invalid)], [], None
        op, args = req.get("op"), req.get("args")
        if op not in ("subscribe", "unsubscribe"):
            return [self._reply(conn, rid, event="error", code="60019", msg=f"Invalid op: {op}")], [], None
        if not isinstance(args, list) or not args:
            return [self._reply(conn, rid, event="error", code="60012", msg=invalid)], [], None
        now = time.monotonic()
        while conn.requests and now - conn.requests[0] >= 3600:
            conn.requests.popleft()
        if len(conn.requests) >= self.requests_per_hour:
            too_many = self._reply(conn, rid, event="error", code="60014", msg="Requests too frequent.")
            return [too_many], [], None
        conn.requests.append(now)
        return self._apply_args(conn, rid, op, args, invalid)

    def _apply_args(self, conn: _Conn, rid: str | None, op: str, args: list[Any], invalid: str) -> \
            tuple[list[dict[str, Any]], list[tuple[str, str]], tuple[int, str] | None]:
        replies: list[dict[str, Any]] = []
        added: list[tuple[str, str]] = []
        for arg in args:
            if not (isinstance(arg, dict) and isinstance(arg.get("channel"), str)
                    and isinstance(arg.get("instId"), str)):
                replies.append(self._reply(conn, rid, event="error", code="60012", msg=invalid))
                continue
            channel, inst_id = arg["channel"], arg["instId"]
            if not self._exists(channel, inst_id):
                replies.append(self._reply(
                    conn, rid, event="error", code="60018",
                    msg=f"Wrong URL or channel:{channel},instId:{inst_id} doesn't exist. Please use the "
                        "correct URL, channel and parameters referring to API document."))
                continue
            key = (channel, inst_id)
            if op == "unsubscribe":
                conn.args.pop(key, None)
            else:
                full = self.max_channels is not None and len(conn.args) >= self.max_channels
                if key not in conn.args and full:
                    return replies, added, (4009, "The number of subscription channels for this connection "
                                                  "exceeds the limit")
                conn.args[key] = None  # (re)subscribed: the current value is pushed at once
                added.append(key)
            replies.append(self._reply(conn, rid, event=op, arg={"channel": channel, "instId": inst_id}))
        return replies, added, None

    # -- pushes ------------------------------------------------------------------------------

    def _interval(self, channel: str) -> int:
        return {"mark-price": self.mark_interval_ms, "index-tickers": self.index_interval_ms,
                "funding-rate": self.funding_push_ms, "open-interest": self.oi_interval_ms}[channel]

    def _item(self, channel: str, inst_id: str, ts: int) -> tuple[dict[str, Any], str]:
        """The documented data item of a push at ``ts``, and the value whose change it reports."""
        if channel == "mark-price":
            mark = _text(self._mark(inst_id, ts))
            return {"instType": "SWAP", "instId": inst_id, "markPx": mark, "ts": str(ts)}, mark
        if channel == "index-tickers":
            return self._index_item(inst_id, ts)
        if channel == "open-interest":
            contracts, coin, usd = self._open_interest(inst_id, ts)
            return {"instId": inst_id, "instType": "SWAP", "oi": _text(contracts), "oiCcy": _text(coin),
                    "oiUsd": _text(usd), "ts": str(ts)}, _text(coin)
        return self._funding_item(inst_id, ts), str(ts)

    def _index_item(self, index: str, ts: int) -> tuple[dict[str, Any], str]:
        price, open24h = self._index(index, ts), self._index(index, ts - DAY_MS)
        utc0 = ts - ts % DAY_MS
        utc8 = ts - (ts + 8 * HOUR_MS) % DAY_MS
        return {"instId": index, "idxPx": _text(price), "high24h": _text(max(price, open24h)),
                "low24h": _text(min(price, open24h)), "open24h": _text(open24h),
                "sodUtc0": _text(self._index(index, utc0)), "sodUtc8": _text(self._index(index, utc8)),
                "ts": str(ts)}, _text(price)

    def _funding_item(self, inst_id: str, ts: int) -> dict[str, Any]:
        period = self.swaps[inst_id].funding_period_ms
        funding_time = self.funding_time_at(inst_id, ts)
        return {"formulaType": "noRate", "fundingRate": _text(self._funding(inst_id, ts)),
                "fundingTime": str(funding_time), "impactValue": "", "instId": inst_id, "instType": "SWAP",
                "interestRate": "", "method": "current_period", "maxFundingRate": "0.00375",
                "minFundingRate": "-0.00375", "nextFundingRate": "",
                "nextFundingTime": str(funding_time + period),
                "premium": _text(self._funding(inst_id, ts) / 2),
                "settFundingRate": _text(self._settled(inst_id, funding_time - period)),
                "settState": "settled", "ts": str(ts)}

    async def _maybe_push(self, conn: _Conn, channel: str, inst_id: str, ts: int) -> None:
        """Push the arg's value at ``ts`` where OKX would: always the first time, then on a
        change, or when the channel's idle interval has passed."""
        if (channel, inst_id) not in conn.args or not self._exists(channel, inst_id):
            return
        item, value = self._item(channel, inst_id, ts)
        last = conn.args[(channel, inst_id)]
        if last is not None and channel != "funding-rate":
            idle = {"mark-price": self.mark_idle_ms, "index-tickers": self.index_idle_ms}.get(channel)
            if value == last[0] and (idle is None or ts - last[1] < idle):
                return
        conn.args[(channel, inst_id)] = (value, ts)
        push = {"arg": {"channel": channel, "instId": inst_id}, "data": [item]}
        if self.record:
            self.pushes.append(push)
        await self._send(conn, json.dumps(push, separators=(",", ":")))

    async def _pump(self, channel: str) -> None:
        """Every interval of ``channel``, on the wall clock: what each connection is due. A slot
        the loop was late for is still served, so push times are exactly an interval apart."""
        interval = self._interval(channel)
        due = (_now_ms() // interval + 1) * interval
        while True:
            await asyncio.sleep(max(0.0, (due - _now_ms()) / 1000))
            ts, due = due, due + interval
            if self.paused:
                continue
            for conn in list(self.conns):
                if conn.muted:
                    continue
                with contextlib.suppress(ConnectionClosed):
                    for ch, inst_id in [k for k in conn.args if k[0] == channel]:
                        await self._maybe_push(conn, ch, inst_id, ts)

    async def _watch_idle(self) -> None:
        """OKX closes a connection with nothing pushed for 30 s (muted ones play a server that
        stopped sending without closing, and are left open)."""
        while True:
            await asyncio.sleep(min(1.0, self.idle_timeout_s / 4))
            now = time.monotonic()
            for conn in list(self.conns):
                if not conn.muted and now - conn.last_sent > self.idle_timeout_s:
                    self.conns.discard(conn)
                    self.idle_closed += 1
                    self._spawn(conn.ws.close(4004, _IDLE_REASON))

    # -- HTTP -----------------------------------------------------------------------------

    @web.middleware
    async def _rate_limit(self, request: web.Request, handler: Any) -> web.StreamResponse:
        """OKX's per-2-s limits: per IP and instType (instruments) or instId (the histories)."""
        query = dict(request.rel_url.query)
        limit = self.rest_limits.get(request.path)
        if limit is not None:
            key = (request.path, query.get("instType" if request.path == INSTRUMENTS_PATH else "instId", ""))
            now = time.monotonic()
            times = [t for t in self._rest_times.get(key, []) if now - t < self.rest_window_s]
            self._rest_times[key] = times
            if len(times) >= limit:
                self.rest_requests.append((request.path, query, 429))
                return self._error("50011", "Too Many Requests", 429)
            times.append(now)
        response: web.StreamResponse = await handler(request)
        self.rest_requests.append((request.path, query, response.status))
        return response

    @staticmethod
    def _ok(data: list[Any]) -> web.Response:
        return web.json_response({"code": "0", "msg": "", "data": data})

    @staticmethod
    def _error(code: str, msg: str, status: int = 200) -> web.Response:
        return web.json_response({"code": code, "msg": msg, "data": []}, status=status)

    @classmethod
    def _ints(cls, q: dict[str, str], limit_default: int, limit_most: int, *names: str) -> \
            tuple[int, list[int | None]] | web.Response:
        """``limit`` and the named time bounds of a query, or the error answer."""
        try:
            limit = int(q.get("limit", limit_default))
        except ValueError:
            limit = 0
        if not 1 <= limit <= limit_most:
            return cls._error("51000", "Parameter limit error", 400)
        bounds: list[int | None] = []
        for name in names:
            try:
                bounds.append(int(q[name]) if q.get(name) else None)
            except ValueError:
                return cls._error("51000", f"Parameter {name} error", 400)
        return limit, bounds

    def instrument(self, swap: Swap) -> dict[str, Any]:
        """An instruments ``data[]`` item shaped like OKX's swap entry."""
        linear = swap.ct_type == "linear"
        return {
            "alias": "", "auctionEndTime": "", "baseCcy": "", "category": "1", "contTdSwTime": "",
            "ctMult": "1", "ctType": swap.ct_type, "ctVal": swap.ct_val, "ctValCcy": swap.ct_val_ccy,
            "expTime": "", "futureSettlement": False, "groupId": "2" if linear else "1", "instCategory": "1",
            "instFamily": swap.uly, "instId": swap.inst_id, "instIdCode": 10_000 + _salt(swap.inst_id),
            "instType": "SWAP", "lever": "100" if linear else "125", "listTime": str(self.list_ms),
            "lotSz": "0.01" if linear else "1", "maxIcebergSz": "100000000.0000000000000000",
            "maxLmtAmt": "20000000", "maxLmtSz": "100000000", "maxMktAmt": "", "maxMktSz": "12000",
            "maxStopSz": "12000", "maxTriggerSz": "100000000.0000000000000000",
            "maxTwapSz": "100000000.0000000000000000", "minSz": "0.01" if linear else "1", "openType": "",
            "optType": "", "preMktSwTime": "", "quoteCcy": "", "ruleType": "normal",
            "settleCcy": swap.settle_ccy, "state": swap.state, "stk": "", "tickSz": swap.tick_sz,
            "tradeQuoteCcyList": [], "uly": swap.uly, "upcChg": [],
        }

    async def _instruments(self, request: web.Request) -> web.Response:
        q = dict(request.rel_url.query)
        inst_type = q.get("instType", "")
        if not inst_type:
            return self._error("50014", "Parameter instType can not be empty.", 400)
        if inst_type not in _INST_TYPES:
            return self._error("51000", "Parameter instType error", 400)
        if inst_type != "SWAP":
            return self._ok([])  # the fake lists swaps only
        swaps = [s for _, s in sorted(self.swaps.items())
                 if q.get("instId") in (None, s.inst_id) and q.get("instFamily") in (None, s.uly)]
        return self._ok([self.instrument(s) for s in swaps])

    def _history_swap(self, q: dict[str, str]) -> Swap | web.Response:
        inst_id = q.get("instId", "")
        if not inst_id:
            return self._error("50014", "Parameter instId can not be empty.", 400)
        swap = self.swaps.get(inst_id)
        return swap if swap is not None else self._error("51001", _NOT_FOUND_MSG)

    async def _funding_history(self, request: web.Request) -> web.Response:
        q = dict(request.rel_url.query)
        swap = self._history_swap(q)
        if isinstance(swap, web.Response):
            return swap
        parsed = self._ints(q, 400, 400, "after", "before")
        if isinstance(parsed, web.Response):
            return parsed
        limit, (after, before) = parsed
        period, now = swap.funding_period_ms, _now_ms()
        floor = max(self.list_ms, now - FUNDING_HISTORY_DAYS * DAY_MS)
        t = now - now % period  # the last settlement
        if after is not None:
            t = min(t, (after - 1) // period * period)
        rows: list[dict[str, str]] = []
        while t >= floor and (before is None or t > before) and len(rows) < limit:
            settled = self._settled(swap.inst_id, t)
            rows.append({"formulaType": "noRate", "fundingRate": _text(settled + Decimal("0.0000000031")),
                         "fundingTime": str(t), "instId": swap.inst_id, "instType": "SWAP",
                         "method": "current_period", "realizedRate": _text(settled)})
            t -= period
        return self._ok(rows)

    async def _open_interest_history(self, request: web.Request) -> web.Response:
        q = dict(request.rel_url.query)
        swap = self._history_swap(q)
        if isinstance(swap, web.Response):
            return swap
        if q.get("period", "5m") not in PERIODS:
            return self._error("51000", "Parameter period error", 400)
        length, offset = PERIODS[q.get("period", "5m")]
        parsed = self._ints(q, 100, 100, "end", "begin")
        if isinstance(parsed, web.Response):
            return parsed
        limit, (end, begin) = parsed

        def bar(ts: int) -> int:  # the opening of the bar ``ts`` falls in
            return ts - (ts + offset) % length

        newest = bar(_now_ms())
        floor = max(newest - (OPEN_INTEREST_BARS - 1) * length, bar(self.list_ms - 1) + length)
        t = newest if end is None else min(newest, bar(end - 1))
        rows: list[list[str]] = []
        while t >= floor and (begin is None or t > begin) and len(rows) < limit:
            contracts, coin, usd = self._open_interest(swap.inst_id, t)
            rows.append([str(t), _text(contracts), _text(coin), _text(usd)])
            t -= length
        return self._ok(rows)
