"""The oracle's own reading of the venues other than Binance, written from their documents.

Sources, never the parsers: docs/contract.md ("Symbols": the rule of each ``source``;
the time range; finite values), docs/producer.md ("Venues": what each venue sends and
what becomes a point), and the venues' public payloads:

- **Bybit v5** ``tickers.{symbol}``: ``{"topic","type":"snapshot"|"delta","data":{..},
  "cs","ts"}``; every value a decimal string (``fundingRate`` ``""`` and
  ``nextFundingTime`` ``"0"``/``""`` where a contract has no funding: no point); a delta
  carries ``symbol`` and only what changed, so one for a symbol without a snapshot
  cannot be read; answers ``{"success","ret_msg","conn_id","req_id","op"}`` echo the
  ``req_id`` string the request carried.
- **Hyperliquid** ``activeAssetCtx``: ``{"channel":"activeAssetCtx","data":{"coin",
  "ctx":{"markPx","oraclePx","funding","openInterest",..}}}``, decimal strings on the
  wire and numbers in the venue's type definitions (both read); no timestamp, so every
  point is stamped with the receive time and the next funding time is the next whole
  UTC hour; the interval (1 h) is a point when a coin is first seen; spot markets
  (``activeSpotAssetCtx``, coins ``@107``, ``PURR/USDC``) are not perpetuals; answers are
  ``subscriptionResponse``, ``error``, ``pong`` and the greeting text.
- **OKX v5** pushes ``{"arg":{"channel","instId"},"data":[{..},..]}``, every value a
  decimal string and every time a millisecond string: ``mark-price`` (``markPx``, ``ts``),
  ``index-tickers`` per index (``idxPx``, ``ts``; its points are the index price of every
  listed swap whose ``uly`` it is, and an index no listed swap is priced on cannot be
  placed), ``funding-rate`` (``fundingRate``, ``""`` for none; ``fundingTime``, the
  settlement the rate is for, published as the next funding time; ``nextFundingTime``,
  the one after: the interval is the gap between the two when it is a positive whole
  number of minutes, and published only when it changes), ``open-interest`` (``oiCcy``,
  base-coin units, the unit every venue's open interest is stored in; ``oi`` is in
  contracts and not read). A push carries several items; it is read whole or rejected
  whole (producer/okx.py: "A push is read whole or rejected whole with a reason"), so
  one bad item costs the frame. Answers: ``{"event":"subscribe"|"unsubscribe","arg",
  "id"}`` per arg, ``{"event":"error","code","msg","id"}``, the text ``pong``.

Every rule answers with what the contract allows: a value, or the *set* of reasons an
input may be rejected for (the docs name reasons, not an order between them). Where
the docs leave a reading open (a time as a digit string where a number is documented,
digits padded with zeros), both readings are allowed: :class:`Policy`.

Each venue's model keeps what the oracle knows across frames (Bybit's snapshots,
Hyperliquid's coins already given an interval); :meth:`alternatives` says what a frame
may do and what the model takes from it if it is read (:data:`Effect`), and the harness
commits the effect of the alternative that happened.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final, Protocol

from perpstream.fakes.hostile.binance_rules import Triggers, number
from perpstream.fakes.hostile.jsontext import HugeInt
from perpstream.fakes.hostile.outcomes import Accept, FrameOutcome, Items, Point, Reject, bits
from perpstream.producer.binance import (
    BAD_NUMBER,
    BAD_SYMBOL,
    BAD_TIMESTAMP,
    MISSING_FIELD,
    NON_FINITE,
    NOT_OBJECT,
    REJECT_REASONS,
    UNEXPECTED_EVENT,
)
from perpstream.producer.bybit import DELTA_BEFORE_SNAPSHOT, UNEXPECTED_TOPIC
from perpstream.producer.okx import UNKNOWN_INDEX
from perpstream.schemas import rules
from perpstream.schemas.models import Metric

BYBIT: Final = "bybit_linear"
HYPERLIQUID: Final = "hyperliquid"
OKX: Final = "okx_swap"

#: Every reason a venue's rejection may be counted under (docs/producer.md, "Counters").
VENUE_REASONS: Final = frozenset(REJECT_REASONS) | {DELTA_BEFORE_SNAPSHOT, UNEXPECTED_TOPIC, UNKNOWN_INDEX}

#: The greeting Hyperliquid sends on connect (a sign of life, not data).
HYPERLIQUID_GREETING: Final = "Websocket connection established."
#: Hyperliquid's frame limit: an activeAssetCtx push is a few hundred bytes (docs/producer.md).
HYPERLIQUID_MAX_FRAME: Final = 65_536
HOUR_MS: Final = 3_600_000

#: What the model takes from a frame that is read (venue-specific tuple), or None.
Effect = tuple[Any, ...] | None
#: What ``Dialect.control`` may answer: ("pong",), ("ack", request id, refused?, streams or
#: None for "any"), or None (not a control answer).
Answer = tuple[Any, ...] | None


class VenueModel(Protocol):
    """What the oracle knows of one venue across frames (see the module doc)."""

    source: str

    def alternatives(self, msg: Any, ingest_ms: int) -> list[Alternative]:
        """What a decoded frame may do on the data path, each with its effect on the model."""
        ...

    def answers(self, raw: str | bytes, msg: Any) -> frozenset[Answer]:
        """What ``Dialect.control`` may make of a frame (``msg``: a reading of it, or None)."""
        ...

    def commit(self, effect: Effect) -> None:
        """Take in what an alternative that happened read."""
        ...


class Policy(enum.Enum):
    """How to read what the docs leave open: only as documented, or leniently too."""

    STRICT = "strict"
    LENIENT = "lenient"


@dataclass(frozen=True)
class Alternative:
    outcome: FrameOutcome
    effect: Effect = None


def _points(source: str, symbol: str, et: int, it: int,
            values: Iterable[tuple[str, float]]) -> tuple[Point, ...]:
    k = symbol.encode("utf-8")
    return tuple((k, source, symbol, metric, bits(v), et, it) for metric, v in values)


def symbol_reasons(v: Any, source: str) -> frozenset[str]:
    """Empty for a symbol the contract accepts from ``source`` (docs/contract.md, "Symbols")."""
    if type(v) is not str or rules.symbol_problem(v, source) is not None:
        return frozenset({BAD_SYMBOL})
    return frozenset()


def decimal(v: Any, *, signed: bool, json_numbers: bool) -> float | frozenset[str]:
    """A price, rate or amount: a decimal string (or, where the venue types them so, a JSON
    number), finite, and not negative unless ``signed``."""
    if not json_numbers and type(v) is not str:
        return frozenset({BAD_NUMBER})
    if type(v) is HugeInt:
        return frozenset({BAD_NUMBER, NON_FINITE})
    return number(v, non_negative=not signed, seen=Triggers())


def _digits(v: str) -> bool:
    return v != "" and v.isascii() and v.isdigit()


def millis(v: Any, *, documented: str, policy: Policy) -> int | frozenset[str]:
    """Epoch milliseconds in 2017..2100. ``documented`` is how the venue writes it: ``int``
    (a JSON integer) or ``str`` (a string of digits). Leniently, either form is read and a
    digit string may be padded with zeros."""
    bad = frozenset({BAD_TIMESTAMP})
    if type(v) is int:
        if documented != "int" and policy is Policy.STRICT:
            return bad
        t = v
    elif type(v) is str and _digits(v):
        if policy is Policy.STRICT and (documented != "str" or (len(v) > 1 and v[0] == "0")):
            return bad
        t = int(v) if len(v) <= 40 else rules.MAX_EVENT_TIME_MS  # 40 digits: past 2100 anyway
    else:
        return bad
    return t if rules.MIN_EVENT_TIME_MS <= t < rules.MAX_EVENT_TIME_MS else bad


def _union(*parts: Any) -> set[str]:
    out: set[str] = set()
    for p in parts:
        if isinstance(p, frozenset):
            out |= p
    return out


# -- Bybit ---------------------------------------------------------------------------------------

_BYBIT_FIELDS: Final = (
    ("markPrice", Metric.MARK_PRICE, False), ("indexPrice", Metric.INDEX_PRICE, False),
    ("fundingRate", Metric.FUNDING_RATE, True), ("nextFundingTime", Metric.NEXT_FUNDING_TIME, False),
    ("openInterest", Metric.OPEN_INTEREST, False))
_TICKERS: Final = "tickers."


def _bybit_value(field: str, v: Any, signed: bool, policy: Policy) -> float | frozenset[str] | None:
    """One ticker field: its value, None where the contract has no funding, or reasons."""
    if field == "fundingRate" and type(v) is str and v == "":
        return None
    if field == "nextFundingTime":
        if type(v) is str and v in ("", "0"):
            return None
        t = millis(v, documented="str", policy=policy)
        return t if isinstance(t, frozenset) else float(t)
    return decimal(v, signed=signed, json_numbers=False)


def bybit_answer(msg: Any) -> frozenset[Answer]:
    """What ``Dialect.control`` may make of a decoded Bybit message (None: not an answer)."""
    if type(msg) is not dict or "topic" in msg:
        return frozenset({None})
    op, success, ret_msg = msg.get("op"), msg.get("success"), msg.get("ret_msg")
    ids = _bybit_ids(msg.get("req_id"))
    if success is False:
        if type(ret_msg) is not str:
            return frozenset({None})
        return frozenset(("ack", i, True, None) for i in ids)
    if success is True and type(op) is str and op in ("subscribe", "unsubscribe"):
        return frozenset(("ack", i, False, None) for i in ids)
    if (type(op) is str and op == "pong") or (
            success is True and op == "ping" and type(ret_msg) is str and ret_msg == "pong"):
        return frozenset({("pong",)})
    return frozenset({None})


def _bybit_ids(v: Any) -> tuple[int | None, ...]:
    """The request an answer names: the producer sends ``str(n)``; anything else names none
    (leading zeros, an integer, or an id too long to be one of ours may also be read as n)."""
    if type(v) is str and _digits(v):
        n = int(v) if len(v) <= 40 else None
        canonical = len(v) <= 18 and (v == "0" or v[0] != "0")
        return (n,) if canonical else (None, n)
    if type(v) is int and v >= 0:
        return (None, v)
    return (None,)


class BybitModel:
    """The oracle's book: per symbol, the ticker values its snapshot and deltas gave."""

    source = BYBIT

    def __init__(self) -> None:
        self.state: dict[str, dict[str, float | None]] = {}

    def answers(self, raw: str | bytes, msg: Any) -> frozenset[Answer]:
        return bybit_answer(msg)

    def current(self, symbol: str) -> dict[str, float]:
        return {m: v for m, v in self.state.get(symbol, {}).items() if v is not None}

    def commit(self, effect: Effect) -> None:
        if effect is None:
            return
        kind, symbol, carried = effect
        if kind == "snapshot":
            self.state[symbol] = dict(carried)
        else:
            self.state[symbol].update(carried)

    def alternatives(self, msg: Any, ingest_ms: int) -> list[Alternative]:
        if type(msg) is not dict:
            return [Alternative(Reject(frozenset({NOT_OBJECT})))]
        if "topic" not in msg:
            if bybit_answer(msg) != {None}:  # an answer on the data path: nothing to publish
                return [Alternative(Items(())), Alternative(Reject(frozenset({UNEXPECTED_EVENT})))]
            return [Alternative(Reject(frozenset({UNEXPECTED_EVENT, MISSING_FIELD})))]
        out: list[Alternative] = []
        for policy in Policy:
            alt = self._ticker(msg, ingest_ms, policy)
            if alt not in out:
                out.append(alt)
        return out

    def _ticker(self, msg: dict[str, Any], ingest_ms: int, policy: Policy) -> Alternative:
        reasons: set[str] = set()
        if any(k not in msg for k in ("topic", "type", "data", "ts")):
            reasons.add(MISSING_FIELD)
        topic, kind, data = msg.get("topic"), msg.get("type"), msg.get("data")
        if "topic" in msg and not (type(topic) is str and topic.startswith(_TICKERS)):
            reasons.add(UNEXPECTED_TOPIC)
        if "type" in msg and not (type(kind) is str and kind in ("snapshot", "delta")):
            reasons.add(UNEXPECTED_EVENT)
        ts = millis(msg["ts"], documented="int", policy=policy) if "ts" in msg else None
        reasons |= _union(ts)
        if type(data) is not dict:
            return Alternative(Reject(frozenset(reasons | ({NOT_OBJECT} if "data" in msg else set()))))
        symbol = data.get("symbol")
        if "symbol" not in data:
            reasons.add(MISSING_FIELD)
        else:
            reasons |= symbol_reasons(symbol, BYBIT)
            if type(symbol) is str and type(topic) is str and topic != _TICKERS + symbol:
                reasons.add(UNEXPECTED_TOPIC)
        if type(symbol) is str and kind == "delta" and symbol not in self.state:
            reasons.add(DELTA_BEFORE_SNAPSHOT)
        carried: dict[str, float | None] = {}
        for field, metric, signed in _BYBIT_FIELDS:
            if field in data:
                v = _bybit_value(field, data[field], signed, policy)
                if isinstance(v, frozenset):
                    reasons |= v
                else:
                    carried[metric] = v
        if reasons:
            return Alternative(Reject(frozenset(reasons)))
        assert isinstance(ts, int) and isinstance(symbol, str)
        values = [(m, v) for m, v in carried.items() if v is not None]
        return Alternative(Items((Accept(_points(BYBIT, symbol, ts, ingest_ms, values)),)),
                           (kind, symbol, carried))


# -- Hyperliquid ---------------------------------------------------------------------------------

_HL_FIELDS: Final = (("markPx", Metric.MARK_PRICE, False), ("oraclePx", Metric.INDEX_PRICE, False),
                     ("funding", Metric.FUNDING_RATE, True), ("openInterest", Metric.OPEN_INTEREST, False))
_HL_CHANNEL: Final = "activeAssetCtx"


def is_spot_coin(v: Any) -> bool:
    """Spot markets are ``@{index}`` or ``BASE/QUOTE``; a perpetual's coin is neither."""
    return type(v) is str and (v.startswith("@") or "/" in v)


def hyperliquid_answer(raw: str | bytes, msg: Any) -> frozenset[Answer]:
    """What ``Dialect.control`` may make of a Hyperliquid frame (None: not an answer)."""
    if raw in (HYPERLIQUID_GREETING, HYPERLIQUID_GREETING.encode()):
        return frozenset({("pong",)})
    if type(msg) is not dict:
        return frozenset({None})
    channel, data = msg.get("channel"), msg.get("data")
    if channel == "pong":
        return frozenset({("pong",)})
    if channel == "subscriptionResponse":
        sub = data.get("subscription") if type(data) is dict else None
        coin = sub.get("coin") if type(sub) is dict else None
        return frozenset({("ack", None, False, (coin,) if type(coin) is str else ())})
    if channel == "error":
        return frozenset({("ack", None, True, _refused(data))})
    return frozenset({None})


def _refused(data: Any) -> tuple[str, ...] | None:
    """The coin an error names, where it ends in the subscription it refuses as the venue
    writes it (``Already subscribed: {"type":"activeAssetCtx","coin":"UNI"}``); None: any."""
    if type(data) is not str or not data.endswith("}") or data.count("{") != 1:
        return None
    try:
        sub = json.loads(data[data.index("{"):])
    except ValueError:
        return None
    coin = sub.get("coin") if type(sub) is dict else None
    return (coin,) if type(coin) is str else ()


def next_whole_hour(ms: int) -> int:
    return (ms // HOUR_MS + 1) * HOUR_MS


class HyperliquidModel:
    """The coins whose funding interval (1 h) has been published."""

    source = HYPERLIQUID

    def __init__(self) -> None:
        self.announced: set[str] = set()

    def answers(self, raw: str | bytes, msg: Any) -> frozenset[Answer]:
        return hyperliquid_answer(raw, msg)

    def commit(self, effect: Effect) -> None:
        if effect is not None:
            self.announced.add(effect[0])

    def alternatives(self, msg: Any, ingest_ms: int) -> list[Alternative]:
        if type(msg) is not dict:
            return [Alternative(Reject(frozenset({NOT_OBJECT})))]
        if hyperliquid_answer("", msg) != {None}:  # an answer on the data path: nothing to publish
            return [Alternative(Items(())), Alternative(Reject(frozenset({UNEXPECTED_EVENT})))]
        if "channel" not in msg:
            return [Alternative(Reject(frozenset({UNEXPECTED_EVENT, MISSING_FIELD})))]
        if msg["channel"] != _HL_CHANNEL:  # spot ctxs (activeSpotAssetCtx) included
            return [Alternative(Reject(frozenset({UNEXPECTED_EVENT})))]
        data = msg.get("data")
        if type(data) is not dict:
            return [Alternative(Reject(frozenset({NOT_OBJECT if "data" in msg else MISSING_FIELD})))]
        reasons: set[str] = set()
        coin = data.get("coin")
        if "coin" not in data:
            reasons.add(MISSING_FIELD)
        else:
            reasons |= symbol_reasons(coin, HYPERLIQUID)
            if is_spot_coin(coin):
                reasons.add(UNEXPECTED_EVENT)
        ctx = data.get("ctx")
        if type(ctx) is not dict:
            reasons.add(NOT_OBJECT if "ctx" in data else MISSING_FIELD)
            return [Alternative(Reject(frozenset(reasons)))]
        values: list[tuple[str, float]] = []
        for field, metric, signed in _HL_FIELDS:
            if field not in ctx:
                reasons.add(MISSING_FIELD)
                continue
            x = decimal(ctx[field], signed=signed, json_numbers=True)
            if isinstance(x, frozenset):
                reasons |= x
            else:
                values.append((metric, x))
        if reasons:
            return [Alternative(Reject(frozenset(reasons)))]
        assert isinstance(coin, str)
        values.append((Metric.NEXT_FUNDING_TIME, float(next_whole_hour(ingest_ms))))
        if coin not in self.announced:
            values.append((Metric.FUNDING_INTERVAL_HOURS, 1.0))
        points = _points(HYPERLIQUID, coin, ingest_ms, ingest_ms, values)
        return [Alternative(Items((Accept(points),)), (coin,))]


# -- OKX -----------------------------------------------------------------------------------------

_OKX_CHANNELS: Final = ("mark-price", "index-tickers", "funding-rate", "open-interest")
#: The field each channel's point is read from, and the metric it is.
_OKX_VALUE: Final = {"mark-price": ("markPx", Metric.MARK_PRICE),
                     "index-tickers": ("idxPx", Metric.INDEX_PRICE),
                     "open-interest": ("oiCcy", Metric.OPEN_INTEREST)}
MINUTE_MS: Final = 60_000


def _okx_ids(v: Any) -> tuple[int | None, ...]:
    """The request an answer names: the producer sends ``str(n)``, up to 32 digits."""
    if type(v) is str and _digits(v):
        n = int(v) if len(v) <= 40 else None
        return (n,) if len(v) <= 32 and (v == "0" or v[0] != "0") else (None, n)
    if type(v) is int and v >= 0:
        return (None, v)
    return (None,)


def okx_answer(raw: str | bytes, msg: Any) -> frozenset[Answer]:
    """What ``Dialect.control`` may make of an OKX frame (None: not an answer). A frame that
    opens as a push does (``{"arg"`` and a ``"data"``) is a push whatever else it says."""
    if raw in ("pong", b"pong"):
        return frozenset({("pong",)})
    push_shaped = (raw.startswith('{"arg"') and '"data"' in raw) if isinstance(raw, str) else \
        (raw.startswith(b'{"arg"') and b'"data"' in raw)
    if type(msg) is not dict:
        return frozenset({None})
    event, ids = msg.get("event"), _okx_ids(msg.get("id"))
    out: set[Answer] = {None} if push_shaped else set()
    if type(event) is str and event in ("subscribe", "unsubscribe"):
        arg = msg.get("arg")
        streams: tuple[str, ...] = ()
        if type(arg) is dict and type(arg.get("channel")) is str and type(arg.get("instId")) is str:
            streams = (f"{arg['channel']}:{arg['instId']}",)
        out |= {("ack", i, False, streams) for i in ids}
    elif type(event) is str and event == "error":
        out |= {("ack", i, True, None) for i in ids}
    else:
        out.add(None)
    return frozenset(out)


@dataclass
class _OkxFrame:
    """What one push gives, item by item, as the oracle reads it."""

    reasons: set[str]
    points: list[tuple[str, str, float, int]]


class OkxModel:
    """The listing (index -> the swaps priced on it) and the interval last published per swap."""

    source = OKX

    def __init__(self, swaps: dict[str, str]) -> None:
        #: swap -> the index (``uly``) it is priced on, as the listing the producer follows says.
        self.by_index: dict[str, list[str]] = {}
        for swap, index in swaps.items():
            self.by_index.setdefault(index, []).append(swap)
        self.intervals: dict[str, float] = {}

    def answers(self, raw: str | bytes, msg: Any) -> frozenset[Answer]:
        return okx_answer(raw, msg)

    def commit(self, effect: Effect) -> None:
        if effect is not None:
            self.intervals.update(effect[0])

    def alternatives(self, msg: Any, ingest_ms: int) -> list[Alternative]:
        if type(msg) is not dict:
            return [Alternative(Reject(frozenset({NOT_OBJECT})))]
        if "event" in msg:
            if okx_answer("", msg) != {None}:  # an answer on the data path: nothing to publish
                return [Alternative(Items(())), Alternative(Reject(frozenset({UNEXPECTED_EVENT})))]
            return [Alternative(Reject(frozenset({UNEXPECTED_EVENT})))]
        out: list[Alternative] = []
        for policy in Policy:
            alt = self._push(msg, ingest_ms, policy)
            if alt not in out:
                out.append(alt)
        return out

    def _push(self, msg: dict[str, Any], ingest_ms: int, policy: Policy) -> Alternative:
        if "arg" not in msg or "data" not in msg:
            return Alternative(Reject(frozenset({MISSING_FIELD})))
        arg, data = msg["arg"], msg["data"]
        if type(arg) is not dict:
            return Alternative(Reject(frozenset({NOT_OBJECT})))
        if "channel" not in arg or "instId" not in arg:
            return Alternative(Reject(frozenset({MISSING_FIELD})))
        channel, inst = arg["channel"], arg["instId"]
        reasons: set[str] = set()
        if not (type(channel) is str and channel in _OKX_CHANNELS):
            reasons.add(UNEXPECTED_TOPIC)
        if channel == "index-tickers":
            reasons |= _index_reasons(inst, self.by_index)
        else:
            reasons |= symbol_reasons(inst, OKX)
        if type(data) is not list or any(type(item) is not dict for item in data):
            return Alternative(Reject(frozenset(reasons | {NOT_OBJECT})))
        if any("instId" in item and item["instId"] != inst for item in data):
            reasons.add(UNEXPECTED_TOPIC)
        if reasons:
            return Alternative(Reject(frozenset(reasons)))
        frame = _OkxFrame(set(), [])
        for item in data:
            self._item(frame, channel, inst, item, policy)
        if frame.reasons:
            return Alternative(Reject(frozenset(frame.reasons)))
        return self._published(frame, ingest_ms)

    def _published(self, frame: _OkxFrame, ingest_ms: int) -> Alternative:
        """The points, funding intervals only where they change (in the push's order)."""
        last = dict(self.intervals)
        kept: list[Point] = []
        for symbol, metric, value, et in frame.points:
            if metric == Metric.FUNDING_INTERVAL_HOURS:
                if last.get(symbol) == value:
                    continue
                last[symbol] = value
            kept += _points(OKX, symbol, et, ingest_ms, [(metric, value)])
        changed = {s: v for s, v in last.items() if self.intervals.get(s) != v}
        return Alternative(Items((Accept(tuple(kept)),)), (changed,) if changed else None)

    def _item(self, frame: _OkxFrame, channel: str, inst: str, item: dict[str, Any], policy: Policy) -> None:
        ts = millis(item["ts"], documented="str", policy=policy) if "ts" in item else None
        if ts is None:
            frame.reasons.add(MISSING_FIELD)
        elif isinstance(ts, frozenset):
            frame.reasons |= ts
        if channel == "funding-rate":
            self._funding(frame, inst, item, ts, policy)
            return
        name, metric = _OKX_VALUE[channel]
        x = decimal(item[name], signed=False, json_numbers=False) if name in item else None
        if x is None:
            frame.reasons.add(MISSING_FIELD)
        elif isinstance(x, frozenset):
            frame.reasons |= x
        if isinstance(x, float) and isinstance(ts, int):
            swaps = self.by_index.get(inst, []) if channel == "index-tickers" else [inst]
            frame.points += [(s, metric, x, ts) for s in sorted(swaps)]

    def _funding(self, frame: _OkxFrame, inst: str, item: dict[str, Any], ts: Any, policy: Policy) -> None:
        for name in ("fundingRate", "fundingTime"):
            if name not in item:
                frame.reasons.add(MISSING_FIELD)
        rate = item.get("fundingRate")
        x = None if type(rate) is str and rate == "" else \
            decimal(rate, signed=True, json_numbers=False) if "fundingRate" in item else None
        if isinstance(x, frozenset):
            frame.reasons |= x
        at = millis(item["fundingTime"], documented="str", policy=policy) if "fundingTime" in item else None
        if isinstance(at, frozenset):
            frame.reasons |= at
        after = item.get("nextFundingTime", "")
        nxt = None if type(after) is str and after == "" else millis(after, documented="str", policy=policy)
        if isinstance(nxt, frozenset):
            frame.reasons |= nxt
        if frame.reasons or not isinstance(at, int) or not isinstance(ts, int):
            return
        if isinstance(x, float):
            frame.points.append((inst, Metric.FUNDING_RATE, x, ts))
        frame.points.append((inst, Metric.NEXT_FUNDING_TIME, float(at), ts))
        if isinstance(nxt, int) and nxt > at and (nxt - at) % MINUTE_MS == 0:
            frame.points.append((inst, Metric.FUNDING_INTERVAL_HOURS, (nxt - at) / HOUR_MS, ts))


def _index_reasons(inst: Any, by_index: dict[str, list[str]]) -> set[str]:
    """An index names no stored symbol; it must be one the listing prices a swap on."""
    if type(inst) is not str:
        return {BAD_SYMBOL}
    if inst in by_index:
        return set()
    return {UNKNOWN_INDEX, BAD_SYMBOL} if symbol_reasons(inst, OKX) else {UNKNOWN_INDEX}
