"""The simulated market on Bybit, OKX and Hyperliquid: each venue's own frames, read by
that venue's real parser.

``--source sim`` plays Binance (``producer.sources.SimulatedMarket``); with ``--venues``
naming other venues it plays them too, so the cross-venue picture (docs/assets.md) can
be seen on a machine without internet. Each simulated venue writes what the venue
writes, in its wire format, and hands it to a :class:`~producer.venue_ingest.VenueIngest`
with the venue's real parser: Bybit ``tickers`` snapshots then deltas ten times a
second, OKX ``mark-price`` five times a second, ``index-tickers`` every second,
``open-interest`` every 3 s and ``funding-rate`` about every minute, Hyperliquid one
``activeAssetCtx`` a second; and its listing body, read by the venue's listing parser.
Parsing, conflation and funding intervals run exactly as they do live
(docs/producer.md, "Sources").

What is simulated (:class:`Underlyings`): the coins ``SIM0000`` ... are the Binance
simulation's symbols, replayed from the same seed, so Bybit's ``SIM0000USDT``, OKX's
``SIM0000-USDT-SWAP`` and Hyperliquid's ``SIM0000`` walk around Binance's
``SIM0000USDT``; a scaled coin (``SIMPEPE``) is listed in lots of 1,000 where the venues
list lots (``1000SIMPEPEUSDT``, ``kSIMPEPE``) and per coin on OKX. Each venue walks its
own premium, index offset, funding deviation and share of open interest around the
shared coin (:class:`SimVenue`), so prices agree within a few basis points, funding
differs per venue (a rate per the venue's interval: Hyperliquid's hourly rate is about
an eighth of an 8-hourly one), and open interest is in the contract's base units, so
open interest times mark is the same notional story everywhere.

Points carry sources of their own (``sim.bybit_linear``, ``sim.okx_swap``,
``sim.hyperliquid``), never the venue's (docs/contract.md). The same seed and start
give the same frames.
"""

from __future__ import annotations

import asyncio
import json
import math
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, NamedTuple, cast

from perpstream.producer import binance, bybit, hyperliquid, okx
from perpstream.producer.ingest import FrameSink
from perpstream.producer.sources import BACKPRESSURE_DEADLINE, SimulatedMarket, now_ms, wait_uncongested
from perpstream.producer.venue import FrameParser, Instrument
from perpstream.producer.venue_ingest import VenueIngest
from perpstream.schemas.models import Metric

#: The ``source`` of a simulated venue's points: ``sim.`` and the venue's own.
SIM_PREFIX: Final = "sim."
HOUR_MS: Final = 3_600_000
#: How many frames are handed over before the source yields to the event loop; it yields
#: only between two contracts' frames of a second, so a conflated second is never split.
_YIELD_EVERY: Final = 256

_MARK: Final = Metric.MARK_PRICE
_INDEX: Final = Metric.INDEX_PRICE
_FUNDING: Final = Metric.FUNDING_RATE
_NEXT: Final = Metric.NEXT_FUNDING_TIME
_OI: Final = Metric.OPEN_INTEREST
_INTERVAL: Final = Metric.FUNDING_INTERVAL_HOURS


@dataclass(frozen=True, slots=True)
class ScaledCoin:
    """A cheap coin the venues list in lots (``1000PEPEUSDT``, ``kPEPE``; OKX per coin)."""

    coin: str
    #: Coins per lot on Binance, Bybit and Hyperliquid.
    lot: int
    #: Price of one coin at the start, USDT.
    price: float


#: The scaled coins every simulated venue lists besides ``SIM0000`` ...
SCALED_COINS: Final = (ScaledCoin("SIMPEPE", 1000, 1.1e-5),)
#: Each venue's share of the open interest of Binance's (simulated) market.
OI_SHARES: Final[Mapping[str, float]] = {"binance": 1.0, "bybit": 0.6, "okx": 0.45, "hyperliquid": 0.3}


class SimFrame(NamedTuple):
    """One frame as the venue sends it, and when the simulation has it arrive."""

    text: str
    #: Simulated receive time, ms (the event time of a venue whose frames carry none).
    receive_ms: int
    #: ``ws`` (a websocket frame) or ``oi`` (a Binance openInterest body).
    kind: str = "ws"


def decimal(x: float, digits: int = 10) -> str:
    """A decimal string as the venues write them: fixed point, ``digits`` significant digits."""
    if x == 0.0:
        return "0"
    places = max(0, min(18, digits - 1 - math.floor(math.log10(abs(x)))))
    return f"{x:.{places}f}"


def _clamp(x: float, bound: float) -> float:
    return -bound if x < -bound else bound if x > bound else x


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


class Underlyings:
    """The simulated coins every venue quotes, one simulated second at a time.

    ``SIM0000`` ... are :class:`SimulatedMarket`'s symbols replayed from the same seed
    (its frames are made and dropped: its state after each tick is the coin's), so each
    venue's ``SIM0000`` is Binance's ``SIM0000USDT``; the scaled coins walk here, from
    the seed too. Per coin: mark and index price of one coin, the 8-hourly funding rate,
    open interest in coins (Binance's)."""

    def __init__(self, n_symbols: int, seed: int, start_ms: int, oi_interval_ms: int = 10_000, *,
                 replay_market: bool = True) -> None:
        self.market = SimulatedMarket(n_symbols, seed, start_ms, oi_interval_ms)
        self.replay_market = replay_market
        self.start_ms = self.market.start_ms
        #: Coin names, and coins per lot where the venues list lots (1 otherwise).
        self.coins = [s.removesuffix("USDT") for s in self.market.symbols] + [c.coin for c in SCALED_COINS]
        self.lots = [1] * n_symbols + [c.lot for c in SCALED_COINS]
        n = len(self.coins)
        self.mark = [0.0] * n
        self.index = [0.0] * n
        self.funding = [0.0] * n
        self.oi = [0.0] * n
        self._rng = random.Random(f"{seed}:scaled")
        r = self._rng
        self._scaled = [[c.price * math.exp(r.uniform(-0.2, 0.2)), r.gauss(0, 2e-4), r.gauss(1e-4, 5e-5),
                         r.uniform(1e11, 1e12)] for c in SCALED_COINS]
        self._read()  # the state before the first second: what a listing is made from
        self.tick_index = 0

    def _read(self) -> None:
        for n in range(self.n_market):
            mark, basis, funding, oi = self.market.state(n)
            self.mark[n], self.index[n], self.funding[n], self.oi[n] = mark, mark / (1 + basis), funding, oi
        for k, (mark, basis, funding, oi) in enumerate(self._scaled):
            n = self.n_market + k
            self.mark[n], self.index[n], self.funding[n], self.oi[n] = mark, mark / (1 + basis), funding, oi

    @property
    def n_market(self) -> int:
        return len(self.market.symbols)

    def advance(self) -> int:
        """Walk one simulated second; returns its start (ms)."""
        t0 = self.start_ms + self.tick_index * 1000
        if self.replay_market:
            for _ in self.market.tick():
                pass
        gauss = self._rng.gauss
        for s in self._scaled:  # the walks of SimulatedMarket.tick
            s[0] *= math.exp(gauss(0, 5e-4))
            s[1] = 0.98 * s[1] + gauss(0, 2e-5)
            s[2] = 0.999 * s[2] + 1e-7 + gauss(0, 2e-6)
            s[3] = max(1.0, s[3] * (1 + gauss(0, 1e-3)))
        self._read()
        self.tick_index += 1
        return t0


class SimVenue:
    """One simulated venue: its listing body, and its frames one simulated second at a time.

    Each venue walks its own deviations from the shared coins (a premium of its mark
    that moves with every push, an index offset, a funding deviation and its share of
    open interest, bounded so the venues keep telling one story). :attr:`sent` holds,
    per (symbol, metric), the last (event time, value) the frames carried, as written,
    so a test can hold the parser's points to it."""

    name: ClassVar[str]
    venue_source: ClassVar[str]
    #: True where the venue's frames carry no time (Hyperliquid): the source then hands a
    #: frame over with its simulated receive time, which the parser takes as event time.
    stamps_receive_time: ClassVar[bool] = False

    def __init__(self, n_symbols: int, seed: int, start_ms: int, oi_interval_ms: int = 10_000) -> None:
        self.source = SIM_PREFIX + self.venue_source
        self.coins = self._underlyings(n_symbols, seed, start_ms, oi_interval_ms)
        self.start_ms = self.coins.start_ms
        self.rng = random.Random(f"{seed}:{self.name}")
        n, g = len(self.coins.coins), self.rng.gauss
        self._premium = [g(0, 3e-4) for _ in range(n)]
        self._index_offset = [g(0, 5e-5) for _ in range(n)]
        self._funding_dev = [g(0, 2e-5) for _ in range(n)]
        self._oi_walk = [g(0, 0.05) for _ in range(n)]
        self.share = OI_SHARES[self.name]
        self.sent: dict[tuple[str, str], tuple[int, float]] = {}

    def _underlyings(self, n_symbols: int, seed: int, start_ms: int, oi_interval_ms: int) -> Underlyings:
        return Underlyings(n_symbols, seed, start_ms, oi_interval_ms)

    @property
    def tick_index(self) -> int:
        return self.coins.tick_index

    # -- what each venue defines ----------------------------------------------------------

    def symbol(self, i: int) -> str:
        raise NotImplementedError

    def scale(self, i: int) -> int:
        """Coins per contract unit of coin ``i`` on this venue."""
        return self.coins.lots[i]

    def funding_hours(self, i: int) -> float:
        return 8.0

    def listing_body(self) -> str:
        raise NotImplementedError

    def instruments(self) -> dict[str, Instrument]:
        """The listing body read by the venue's real listing parser."""
        raise NotImplementedError

    def parser(self) -> FrameParser:
        raise NotImplementedError

    def _second(self, t0: int) -> list[list[SimFrame]]:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------

    @property
    def symbols(self) -> list[str]:
        return [self.symbol(i) for i in range(len(self.coins.coins))]

    def tick(self) -> list[list[SimFrame]]:
        """The frames of the next simulated second, one list per contract (or index), each in
        the order the venue sends them."""
        t0 = self.coins.advance()
        self._walk()
        return self._second(t0)

    def _walk(self) -> None:
        g = self.rng.gauss
        for i in range(len(self.coins.coins)):
            self._index_offset[i] = _clamp(0.95 * self._index_offset[i] + g(0, 5e-6), 5e-4)
            self._funding_dev[i] = _clamp(0.99 * self._funding_dev[i] + g(0, 1e-6), 5e-4)
            self._oi_walk[i] = _clamp(0.99 * self._oi_walk[i] + g(0, 2e-3), 0.2)

    def mark(self, i: int) -> float:
        """The contract's mark price at the next push: its premium moves with every push."""
        p = self._premium[i] = _clamp(0.9 * self._premium[i] + self.rng.gauss(0, 3e-5), 2e-3)
        return self.coins.mark[i] * (1 + p) * self.scale(i)

    def index(self, i: int) -> float:
        return self.coins.index[i] * (1 + self._index_offset[i]) * self.scale(i)

    def funding(self, i: int) -> float:
        """The rate of one settlement on this venue: the shared 8-hourly level plus the venue's
        own deviation, per the venue's interval."""
        return (self.coins.funding[i] + self._funding_dev[i]) * self.funding_hours(i) / 8

    def open_interest(self, i: int) -> float:
        """Open interest in contract units (lots, or coins where the venue lists coins)."""
        return self.coins.oi[i] * self.share * math.exp(self._oi_walk[i]) / self.scale(i)

    def next_funding(self, i: int, ts: int) -> int:
        period = int(self.funding_hours(i) * HOUR_MS)
        return (ts // period + 1) * period

    def _note(self, symbol: str, metric: str, ts: int, text: str | float) -> None:
        self.sent[(symbol, metric)] = (ts, float(text))


# -- Bybit -------------------------------------------------------------------------------------


class BybitSim(SimVenue):
    """Bybit v5 linear: ``tickers.{symbol}`` ten times a second, a snapshot with every
    field first, then deltas with the fields that changed; the listing is one
    ``instruments-info`` page with each contract's ``fundingInterval`` (every fourth
    ``SIM`` contract and the scaled ones settle every 4 h)."""

    name = "bybit"
    venue_source = bybit.SOURCE
    PUSHES_PER_SECOND: ClassVar[int] = 10

    def __init__(self, n_symbols: int, seed: int, start_ms: int, oi_interval_ms: int = 10_000) -> None:
        super().__init__(n_symbols, seed, start_ms, oi_interval_ms)
        self._book: list[dict[str, str] | None] = [None] * len(self.coins.coins)
        self._cs = 0

    def symbol(self, i: int) -> str:
        lot = self.coins.lots[i]
        return f"{lot if lot > 1 else ''}{self.coins.coins[i]}USDT"

    def funding_hours(self, i: int) -> float:
        return 4.0 if self.coins.lots[i] > 1 or i % 4 == 1 else 8.0

    def listing_body(self) -> str:
        items = [{
            "symbol": self.symbol(i), "contractType": "LinearPerpetual", "status": "Trading",
            "baseCoin": self.symbol(i).removesuffix("USDT"), "quoteCoin": "USDT", "settleCoin": "USDT",
            "launchTime": str(self.start_ms - 86_400_000), "deliveryTime": "0", "deliveryFeeRate": "",
            "priceScale": "6", "fundingInterval": int(self.funding_hours(i) * 60),
            "unifiedMarginTrade": True, "copyTrading": "both", "isPreListing": False,
        } for i in range(len(self.coins.coins))]
        result = {"category": "linear", "list": items, "nextPageCursor": ""}
        return _dumps({"retCode": 0, "retMsg": "OK", "result": result, "retExtInfo": {},
                       "time": self.start_ms})

    def instruments(self) -> dict[str, Instrument]:
        return bybit.instruments(bybit.perpetual_listing(json.loads(self.listing_body())))

    def parser(self) -> FrameParser:
        return bybit.Parser(self.source)

    def _fields(self, i: int, step: int, ts: int, book: dict[str, str]) -> None:
        """Move the ticker: prices every push, the index twice a second, open interest every
        second, the funding rate every 5 s."""
        mark = self.mark(i)
        last = mark * (1 + self.rng.gauss(0, 1e-4))
        book.update(markPrice=decimal(mark), lastPrice=decimal(last), bid1Price=decimal(last * 0.9999),
                    ask1Price=decimal(last * 1.0001), nextFundingTime=str(self.next_funding(i, ts)))
        if step % 5 == 0:
            book["indexPrice"] = decimal(self.index(i))
        if step == 0:
            oi = self.open_interest(i)
            book.update(openInterest=f"{oi:.3f}", openInterestValue=f"{oi * mark:.2f}")
            second = self.coins.tick_index - 1
            if second % 5 == 0 or "fundingRate" not in book:
                book["fundingRate"] = decimal(self.funding(i), 8)

    def _second(self, t0: int) -> list[list[SimFrame]]:
        out = []
        for i in range(len(self.coins.coins)):
            sym = self.symbol(i)
            frames = []
            for step in range(self.PUSHES_PER_SECOND):
                ts = t0 + step * (1000 // self.PUSHES_PER_SECOND) + i % 7
                before = self._book[i]
                book = dict(before) if before is not None else {
                    "symbol": sym, "fundingIntervalHour": str(int(self.funding_hours(i))),
                    "bid1Size": "12.5", "ask1Size": "9.8", "fundingCap": "0.005"}
                self._fields(i, step, ts, book)
                if before is None:
                    kind, data = "snapshot", book
                else:
                    changed = {k: v for k, v in book.items() if before.get(k) != v}
                    kind, data = "delta", {"symbol": sym, **changed}
                self._book[i] = book
                self._cs += 1
                frames.append(SimFrame(_dumps({"topic": bybit.tickers_topic(sym), "type": kind, "data": data,
                                               "cs": self._cs, "ts": ts}), ts))
                for field, metric in (("markPrice", _MARK), ("indexPrice", _INDEX), ("fundingRate", _FUNDING),
                                      ("nextFundingTime", _NEXT), ("openInterest", _OI)):
                    if field in data:
                        self._note(sym, metric, ts, data[field])
            out.append(frames)
        return out


# -- OKX ---------------------------------------------------------------------------------------


class OkxSim(SimVenue):
    """OKX v5 linear swaps: ``mark-price`` five times a second, ``index-tickers`` every
    second, ``open-interest`` every 3 s (``oiCcy`` in coins), ``funding-rate`` at the
    start and then about every minute; every fourth ``SIM`` swap settles every 4 h,
    which the parser reads as ``nextFundingTime - fundingTime``. Coins are listed per
    coin (``SIMPEPE-USDT-SWAP``), a contract worth ``ctVal`` coins."""

    name = "okx"
    venue_source = okx.SOURCE
    MARKS_PER_SECOND: ClassVar[int] = 5
    OI_EVERY_S: ClassVar[int] = 3
    FUNDING_EVERY_S: ClassVar[int] = 60

    def __init__(self, n_symbols: int, seed: int, start_ms: int, oi_interval_ms: int = 10_000) -> None:
        super().__init__(n_symbols, seed, start_ms, oi_interval_ms)
        #: Coins a contract is worth: a power of ten near 100 USDT of the coin at listing.
        self._ct_val = [10.0 ** round(math.log10(100 / p)) for p in self.coins.mark]
        self._index_day: list[tuple[float, float, float] | None] = [None] * len(self.coins.coins)

    def symbol(self, i: int) -> str:
        return f"{self.coins.coins[i]}-USDT-SWAP"

    def index_name(self, i: int) -> str:
        return f"{self.coins.coins[i]}-USDT"

    def scale(self, i: int) -> int:
        return 1

    def funding_hours(self, i: int) -> float:
        return 4.0 if i < self.coins.n_market and i % 4 == 2 else 8.0

    def listing_body(self) -> str:
        items = []
        for i in range(len(self.coins.coins)):
            coin = self.coins.coins[i]
            items.append({
                "instType": "SWAP", "instId": self.symbol(i), "uly": self.index_name(i),
                "instFamily": self.index_name(i), "ctType": "linear", "ctVal": decimal(self._ct_val[i]),
                "ctValCcy": coin, "ctMult": "1", "settleCcy": "USDT", "state": "live", "lever": "50",
                "listTime": str(self.start_ms - 86_400_000), "lotSz": "1", "minSz": "1", "tickSz": "0.0001",
                "baseCcy": "", "quoteCcy": "", "expTime": "", "ruleType": "normal",
            })
        return _dumps({"code": "0", "msg": "", "data": items})

    def instruments(self) -> dict[str, Instrument]:
        return okx.instruments(self.listing_body())

    def parser(self) -> FrameParser:
        return okx.Parser(self.source)

    def _push(self, channel: str, inst_id: str, item: dict[str, Any], ts: int) -> SimFrame:
        return SimFrame(_dumps({"arg": {"channel": channel, "instId": inst_id}, "data": [item]}), ts)

    def _index_frame(self, i: int, ts: int) -> SimFrame:
        px = self.index(i)
        first, high, low = self._index_day[i] or (px, px, px)
        self._index_day[i] = (first, max(high, px), min(low, px))
        text = decimal(px)
        self._note(self.symbol(i), _INDEX, ts, text)
        return self._push(okx.INDEX_TICKERS, self.index_name(i), {
            "instId": self.index_name(i), "idxPx": text, "high24h": decimal(max(high, px)),
            "low24h": decimal(min(low, px)), "open24h": decimal(first), "sodUtc0": decimal(first),
            "sodUtc8": decimal(first), "ts": str(ts)}, ts)

    def _funding_frame(self, i: int, ts: int) -> SimFrame:
        sym, rate = self.symbol(i), decimal(self.funding(i), 8)
        at = self.next_funding(i, ts)
        period = int(self.funding_hours(i) * HOUR_MS)
        self._note(sym, _FUNDING, ts, rate)
        self._note(sym, _NEXT, ts, at)
        self._note(sym, _INTERVAL, ts, self.funding_hours(i))
        return self._push(okx.FUNDING_RATE, sym, {
            "formulaType": "noRate", "fundingRate": rate, "fundingTime": str(at), "impactValue": "",
            "instId": sym, "instType": "SWAP", "interestRate": "", "method": "current_period",
            "maxFundingRate": "0.0075", "minFundingRate": "-0.0075", "nextFundingRate": "",
            "nextFundingTime": str(at + period), "premium": decimal(self._premium[i], 6),
            "settFundingRate": rate, "settState": "settled", "ts": str(ts)}, ts)

    def _oi_frame(self, i: int, ts: int, mark: float) -> SimFrame:
        sym, coins = self.symbol(i), self.open_interest(i)
        text = f"{coins:.2f}"
        self._note(sym, _OI, ts, text)
        return self._push(okx.OPEN_INTEREST, sym, {
            "instId": sym, "instType": "SWAP", "oi": f"{coins / self._ct_val[i]:.2f}", "oiCcy": text,
            "oiUsd": f"{coins * mark:.2f}", "ts": str(ts)}, ts)

    def _second(self, t0: int) -> list[list[SimFrame]]:
        out = []
        k = self.coins.tick_index - 1
        for i in range(len(self.coins.coins)):
            sym, jitter = self.symbol(i), i % 97
            frames = [self._index_frame(i, t0 + 50 + jitter)]
            mark = 0.0
            for step in range(self.MARKS_PER_SECOND):
                ts = t0 + step * (1000 // self.MARKS_PER_SECOND) + jitter
                mark = self.mark(i)
                text = decimal(mark)
                self._note(sym, _MARK, ts, text)
                frames.append(self._push(okx.MARK_PRICE, sym, {"instType": "SWAP", "instId": sym,
                                                                "markPx": text, "ts": str(ts)}, ts))
            if k == 0 or (k + i) % self.FUNDING_EVERY_S == 0:
                frames.append(self._funding_frame(i, t0 + 150 + jitter))
            if k % self.OI_EVERY_S == 0:
                frames.append(self._oi_frame(i, t0 + 300 + jitter, mark))
            frames.sort(key=lambda f: f.receive_ms)
            out.append(frames)
        return out


# -- Hyperliquid -------------------------------------------------------------------------------


class HyperliquidSim(SimVenue):
    """Hyperliquid perpetuals: one ``activeAssetCtx`` a second per coin, hourly funding
    (about an eighth of an 8-hourly rate), coins as ``meta`` names them (``SIM0000``,
    ``kSIMPEPE`` for 1,000 SIMPEPE). The frames carry no time: each is handed over with
    its simulated receive time, the event time of its points, as live."""

    name = "hyperliquid"
    venue_source = hyperliquid.SOURCE
    stamps_receive_time = True

    def symbol(self, i: int) -> str:
        lot = self.coins.lots[i]
        return ("k" if lot == 1000 else "") + self.coins.coins[i]

    def funding_hours(self, i: int) -> float:
        return hyperliquid.FUNDING_INTERVAL_H

    def listing_body(self) -> str:
        universe = [{"name": self.symbol(i), "szDecimals": 0 if self.coins.lots[i] > 1 else 2,
                     "maxLeverage": 10, "marginTableId": 10} for i in range(len(self.coins.coins))]
        return _dumps({"universe": universe, "marginTables": []})

    def instruments(self) -> dict[str, Instrument]:
        return hyperliquid.instruments(self.listing_body())

    def parser(self) -> FrameParser:
        return hyperliquid.Parser(self.source)

    def _second(self, t0: int) -> list[list[SimFrame]]:
        out = []
        for i in range(len(self.coins.coins)):
            coin, ts = self.symbol(i), t0 + 250 + i % 97
            mark, oracle, oi = self.mark(i), self.index(i), self.open_interest(i)
            ctx: dict[str, Any] = {
                "funding": decimal(self.funding(i), 8), "openInterest": f"{oi:.2f}",
                "prevDayPx": decimal(oracle), "dayNtlVlm": f"{oi * mark * 3:.2f}",
                "premium": decimal((mark - oracle) / oracle, 6), "oraclePx": decimal(oracle),
                "markPx": decimal(mark), "midPx": decimal(mark),
                "impactPxs": [decimal(mark * 0.9999), decimal(mark * 1.0001)], "dayBaseVlm": f"{oi * 3:.2f}",
            }
            for field, metric in (("markPx", _MARK), ("oraclePx", _INDEX), ("funding", _FUNDING),
                                  ("openInterest", _OI)):
                self._note(coin, metric, ts, ctx[field])
            self._note(coin, _NEXT, ts, self.next_funding(i, ts))
            text = _dumps({"channel": "activeAssetCtx", "data": {"coin": coin, "ctx": ctx}})
            out.append([SimFrame(text, ts)])
        return out


# -- Binance: the contracts the Binance simulation does not list -------------------------------


class BinanceScaledSim(SimVenue):
    """The scaled coins on the simulated Binance (``1000SIMPEPEUSDT``, 4 h funding), in
    Binance's own markPrice frames and openInterest bodies, beside the
    :class:`SimulatedMarket`, which lists ``SIM0000USDT`` ... Its listing is the funding
    interval of every simulated Binance contract, as ``fundingInfo`` gives them
    (:meth:`funding_intervals`): 8 h for the ``SIM`` contracts, whose next funding time is
    every 8 h."""

    name = "binance"
    venue_source = binance.SOURCE

    def __init__(self, n_symbols: int, seed: int, start_ms: int, oi_interval_ms: int = 10_000) -> None:
        super().__init__(n_symbols, seed, start_ms, oi_interval_ms)
        self.source = "sim"  # the Binance simulation's source (docs/contract.md)
        self.oi_interval_ms = max(1000, oi_interval_ms)

    def _underlyings(self, n_symbols: int, seed: int, start_ms: int, oi_interval_ms: int) -> Underlyings:
        return Underlyings(n_symbols, seed, start_ms, oi_interval_ms, replay_market=False)

    def symbol(self, i: int) -> str:
        lot = self.coins.lots[i]
        return f"{lot if lot > 1 else ''}{self.coins.coins[i]}USDT"

    def funding_hours(self, i: int) -> float:
        return 4.0 if self.coins.lots[i] > 1 else 8.0

    def funding_intervals(self) -> dict[str, float]:
        return {self.symbol(i): self.funding_hours(i) for i in range(len(self.coins.coins))}

    def _second(self, t0: int) -> list[list[SimFrame]]:
        out = []
        oi_due = (t0 - self.start_ms) % self.oi_interval_ms == 0
        for i in range(self.coins.n_market, len(self.coins.coins)):
            sym, e = self.symbol(i), t0 + i % 97
            mark, idx = self.mark(i), self.index(i)
            values = {"p": decimal(mark), "i": decimal(idx), "r": decimal(self.funding(i), 8)}
            frames = [SimFrame(_dumps({"stream": binance.mark_price_stream(sym), "data": {
                "e": "markPriceUpdate", "E": e, "s": sym, "p": values["p"], "ap": values["p"],
                "P": decimal(idx * (1 + self.rng.gauss(0, 5e-5))), "i": values["i"], "r": values["r"],
                "T": self.next_funding(i, e)}}), e)]
            for field, metric in (("p", _MARK), ("i", _INDEX), ("r", _FUNDING)):
                self._note(sym, metric, e, values[field])
            self._note(sym, _NEXT, e, self.next_funding(i, e))
            if oi_due:
                oi = f"{self.open_interest(i):.3f}"
                self._note(sym, _OI, t0 + 500 + i % 97, oi)
                frames.append(SimFrame(_dumps({"symbol": sym, "openInterest": oi, "time": t0 + 500 + i % 97}),
                                       t0 + 500 + i % 97, "oi"))
            out.append(frames)
        return out


#: The simulated venues other than Binance, by the name ``--venues`` takes.
SIM_VENUES: Final[Mapping[str, type[SimVenue]]] = {"bybit": BybitSim, "okx": OkxSim,
                                                   "hyperliquid": HyperliquidSim}


def simulated_venue(name: str, n_symbols: int, seed: int, start_ms: int,
                    oi_interval_ms: int = 10_000) -> SimVenue:
    """The simulated ``name`` (``bybit``, ``okx``, ``hyperliquid``) over ``n_symbols`` coins."""
    return SIM_VENUES[name](n_symbols, seed, start_ms, oi_interval_ms)


# -- sources -----------------------------------------------------------------------------------


async def _paced(venue: SimVenue, stop: asyncio.Event, rate: float, deliver: Callable[[SimFrame, int], None],
                 sink: FrameSink, deadline: float) -> None:
    """Hand over each simulated second once it is over, at ``rate`` simulated seconds per wall
    second (0: as fast as the sink takes them), yielding only between contracts."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    n = 0
    while not stop.is_set():
        if rate > 0:
            delay = started + (venue.tick_index + 1) / rate - loop.time()
            if delay > 0:
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
        ingest = now_ms()
        for frames in venue.tick():
            for frame in frames:
                deliver(frame, ingest)
            n += len(frames)
            if n >= _YIELD_EVERY:
                n = 0
                await asyncio.sleep(0)
                if sink.congested:
                    await wait_uncongested(sink, stop, deadline)
                ingest = now_ms()
        await asyncio.sleep(0)


class SimVenueSource:
    """Runs a simulated venue into its :class:`VenueIngest`, as
    :class:`~producer.sources.SimSource` runs the simulated Binance: ``rate`` simulated
    seconds per wall second (0 = as fast as the sink takes them), pausing while Kafka
    is congested. The listing is handed over first, as a live venue source does."""

    def __init__(self, venue: SimVenue, rate: float = 1.0,
                 backpressure_deadline: float = BACKPRESSURE_DEADLINE) -> None:
        self.venue = venue
        self.rate = rate
        self.backpressure_deadline = backpressure_deadline

    async def run(self, sink: VenueIngest, stop: asyncio.Event) -> None:
        venue = self.venue
        listed = venue.instruments()
        set_listing = getattr(sink.parser, "set_instruments", None)
        if set_listing is not None:
            set_listing(listed)
        sink.on_listing(listed, set(), venue.start_ms)
        stamped = venue.stamps_receive_time

        def deliver(frame: SimFrame, ingest_ms: int) -> None:
            sink.on_ws_frame(frame.text, frame.receive_ms if stamped else ingest_ms)

        # wait_uncongested reads only ``congested``, which VenueIngest has
        await _paced(venue, stop, self.rate, deliver, cast(FrameSink, sink), self.backpressure_deadline)


class SimBinanceScaledSource:
    """Runs :class:`BinanceScaledSim` into the simulated Binance's ingest: its funding
    intervals first (``fundingInfo``), then its frames, paced like :class:`SimVenueSource`."""

    def __init__(self, venue: BinanceScaledSim, rate: float = 1.0,
                 backpressure_deadline: float = BACKPRESSURE_DEADLINE) -> None:
        self.venue = venue
        self.rate = rate
        self.backpressure_deadline = backpressure_deadline

    async def run(self, sink: FrameSink, stop: asyncio.Event) -> None:
        sink.on_funding_intervals(self.venue.funding_intervals(), self.venue.start_ms)

        def deliver(frame: SimFrame, ingest_ms: int) -> None:
            if frame.kind == "oi":
                sink.on_open_interest(frame.text, ingest_ms)
            else:
                sink.on_ws_frame(frame.text, ingest_ms)

        await _paced(self.venue, stop, self.rate, deliver, sink, self.backpressure_deadline)
