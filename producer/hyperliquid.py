"""Hyperliquid perpetuals: the websocket dialect, the ``meta`` listing and the
``activeAssetCtx`` parser. Pure: no sockets, no clock (docs/producer.md, "Venues").

Streams are coin names exactly as ``meta`` spells them (``BTC``, ``kPEPE`` for 1,000
PEPE): one ``activeAssetCtx`` subscription per coin. A push is
``{"channel":"activeAssetCtx","data":{"coin":"BTC","ctx":{...}}}`` whose perp ctx
carries (as decimal strings on the wire; the venue's type definitions say numbers, and
both are read):

- ``markPx`` mark price, ``oraclePx`` oracle price (published as the index price),
- ``funding`` the hourly funding rate of the next hourly settlement,
- ``openInterest`` open interest in coin units,
- ``dayNtlVlm``, ``dayBaseVlm``, ``prevDayPx``, ``midPx``, ``impactPxs``, ``premium``: ignored.

**Event time is the receive time.** Hyperliquid's ctx carries no timestamp, so every
point of a frame is stamped with ``ingest_ms``, the local clock when the frame was
read: ``event_time == ingest_time``. Replaying a recorded frame with its recorded
receive time gives the same points.

**The next funding time is derived, not sent.** Hyperliquid settles funding at every
whole UTC hour (its docs, Trading > Funding: "paid every hour"; the interval does not
depend on the asset), so ``next_funding_time`` is the first whole hour strictly after
the event time, and ``funding_interval_hours`` is 1. The interval is published with the
first frame of each coin on a connection (again after :meth:`Parser.reset`), not with
every frame: it is a property of the listing, and downstream keeps only changes anyway.

Symbols are kept exactly as spelled (``kPEPE`` keeps its lower-case ``k``) and checked
by the contract's rule for the ``hyperliquid`` source (docs/contract.md, "Symbols"): a
name the consumers would dead-letter is never published. A spot ctx (channel
``activeSpotAssetCtx``, a coin ``@107`` or a pair ``PURR/USDC``) is not a perpetual and is
rejected as ``unexpected_event``.

Limits are quoted from the venue's API docs (For developers > API): "Rate limits and
user limits" and "Websocket > Timeouts and heartbeats".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Final, NamedTuple

from perpstream.producer.binance import (
    BAD_JSON,
    BAD_NUMBER,
    BAD_SYMBOL,
    BAD_TIMESTAMP,
    MISSING_FIELD,
    NON_FINITE,
    NOT_OBJECT,
    TOO_LARGE,
    UNEXPECTED_EVENT,
    load_json,
)
from perpstream.producer.exceptions import FrameRejected
from perpstream.producer.venue import Ack, Control, Dialect, Instrument, Pong, Record, shard_by_count
from perpstream.schemas import rules
from perpstream.schemas.models import Metric
from perpstream.schemas.rules import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS

SOURCE: Final = "hyperliquid"

LIVE_WS_URL: Final = "wss://api.hyperliquid.xyz/ws"
LIVE_REST_URL: Final = "https://api.hyperliquid.xyz"
#: Every info request is ``POST {base}/info`` with a JSON body.
INFO_PATH: Final = "/info"

# -- the venue's limits (per IP unless said otherwise) ---------------------------------------
#: REST weight a minute; past it the answer is HTTP 429.
REST_WEIGHT_LIMIT: Final = 1200
RATE_LIMITED_STATUS: Final = 429
#: ``meta`` (and ``metaAndAssetCtxs``) weigh 20, as every info request not named lighter.
META_WEIGHT: Final = 20
#: ``fundingHistory`` weighs 20 plus 1 per 20 rows returned, and returns at most 500 rows.
FUNDING_HISTORY_WEIGHT: Final = 20
FUNDING_HISTORY_ROWS_PER_WEIGHT: Final = 20
FUNDING_HISTORY_MAX_ROWS: Final = 500
#: Websocket subscriptions across all of an IP's connections.
MAX_SUBSCRIPTIONS: Final = 1000
#: Websocket connections open at once, and new ones a minute.
MAX_CONNECTIONS: Final = 10
MAX_NEW_CONNECTIONS_PER_MINUTE: Final = 30
#: Messages a client may send a minute across all its connections (subscribes and pings).
MAX_MESSAGES_PER_MINUTE: Final = 2000
#: The server closes a connection the client has sent nothing on for this long.
IDLE_TIMEOUT_S: Final = 60.0

# -- our choices within them ------------------------------------------------------------------
#: Coins a connection carries: 1,000 subscriptions fill five connections, which leaves five of
#: the ten an IP may open for reconnects and rotation successors.
SUBSCRIPTIONS_PER_CONNECTION: Final = 200
#: Requests a connection sends a second: five connections subscribing at once send 1,800 a
#: minute, 200 under the limit for pings and a reconnect.
MAX_MESSAGES_PER_SECOND: Final = 6.0
#: A ping every 20 s: three inside the 60 s the server waits, so one late tick never costs
#: the connection.
PING_INTERVAL_S: Final = 20.0
PING: Final = '{"method":"ping"}'
#: An activeAssetCtx frame is a few hundred bytes; anything near this is not one.
MAX_FRAME_BYTES: Final = 65_536

#: Hyperliquid settles funding at every whole hour (UTC).
FUNDING_INTERVAL_MS: Final = 3_600_000
FUNDING_INTERVAL_H: Final = 1.0
FUNDING_INTERVAL_HOURS: Final = Metric.FUNDING_INTERVAL_HOURS

REJECT_REASONS: Final = (
    BAD_JSON, NOT_OBJECT, MISSING_FIELD, BAD_NUMBER, NON_FINITE, BAD_TIMESTAMP,
    BAD_SYMBOL, TOO_LARGE, UNEXPECTED_EVENT,
)

_CHANNEL: Final = "activeAssetCtx"
_SPOT_CHANNEL: Final = "activeSpotAssetCtx"
_DATA_PREFIX: Final = '{"channel":"activeAssetCtx",'
_DATA_PREFIX_BYTES: Final = _DATA_PREFIX.encode()
#: Sent by the server on connect (the venue's Python SDK skips it): no data, a sign of life.
GREETING: Final = "Websocket connection established."
_METHODS: Final = {"SUBSCRIBE": "subscribe", "UNSUBSCRIBE": "unsubscribe"}

#: ctx field -> metric, and whether the value may be negative (only funding may).
_FIELDS: Final[tuple[tuple[str, Metric, bool], ...]] = (
    ("markPx", Metric.MARK_PRICE, False),
    ("oraclePx", Metric.INDEX_PRICE, False),
    ("funding", Metric.FUNDING_RATE, True),
    ("openInterest", Metric.OPEN_INTEREST, False),
)


# -- symbols ---------------------------------------------------------------------------------


def symbol_problem(name: str) -> str | None:
    """None for a coin name the contract takes from ``hyperliquid``, else what is wrong with it.

    The contract's rule for this source (docs/contract.md, "Symbols"): letters of any
    script and either case (``kPEPE``), digits, ``_`` and ``-``, at most 64 bytes. A
    name it refuses (a builder-deployed ``dex:COIN``, ``BTC.X``) would be dead-lettered
    by every consumer, so it is refused here, where it is counted and logged."""
    return rules.symbol_problem(name, SOURCE)


def is_spot_coin(name: str) -> bool:
    """Spot markets are named ``@{index}`` or ``BASE/QUOTE`` (``PURR/USDC``); perps never."""
    return name.startswith("@") or "/" in name


def _coin(v: Any) -> str:
    if type(v) is not str:
        raise FrameRejected(BAD_SYMBOL, f"coin={v!r} is not a string")
    if is_spot_coin(v):  # before the name rule, which refuses "@" and "/" too
        raise FrameRejected(UNEXPECTED_EVENT, f"coin {v[:100]!r} is a spot market, not a perpetual")
    problem = symbol_problem(v)
    if problem is not None:
        raise FrameRejected(BAD_SYMBOL, problem)
    return v


# -- websocket dialect -----------------------------------------------------------------------


def subscribe_message(streams: Sequence[str], request_id: int = 0, method: str = "SUBSCRIBE") -> str:
    """The request for one coin: Hyperliquid takes one subscription a message and echoes no
    id, so ``request_id`` is unused and the dialect's chunk is 1."""
    if len(streams) != 1:
        raise ValueError(f"a Hyperliquid request names one coin, not {len(streams)}")
    if method not in _METHODS:
        raise ValueError(f"method {method!r} is not SUBSCRIBE or UNSUBSCRIBE")
    return json.dumps({"method": _METHODS[method],
                       "subscription": {"type": _CHANNEL, "coin": streams[0]}}, separators=(",", ":"))


def is_data_frame(frame: str | bytes) -> bool:
    """True only for an activeAssetCtx push (the server writes ``channel`` first)."""
    if isinstance(frame, str):
        return frame.startswith(_DATA_PREFIX)
    return frame.startswith(_DATA_PREFIX_BYTES)


def _subscription_coin(sub: Any) -> tuple[str, ...]:
    if type(sub) is dict and type(sub.get("coin")) is str:
        return (sub["coin"],)
    return ()


def _refused_coin(text: str) -> tuple[str, ...]:
    """The coin of a refusal whose text ends in the subscription it refuses
    (``Already subscribed: {"type":"activeAssetCtx","coin":"UNI"}``), where it does."""
    start = text.find("{")
    if start < 0:
        return ()
    try:
        return _subscription_coin(json.loads(text[start:]))
    except (ValueError, RecursionError):
        return ()


def _error_text(data: Any) -> str:
    """The venue's words: its text, or the data it sent instead written back as JSON (named by
    type where that cannot be written: nested deeper than the writer's stack goes)."""
    if type(data) is str:
        return data
    try:
        return json.dumps(data)
    except RecursionError:
        return f"error data: a {type(data).__name__} nested too deeply to write"


def control(frame: str | bytes) -> Control | None:
    """The control answer a frame is, or None (data, or garbage for the data path).

    ``subscriptionResponse`` echoes the (un)subscription it answers; ``error`` carries the
    venue's words, naming the subscription where it does; ``pong`` answers the ping; the
    greeting on connect is read as a sign of life like a pong. Never raises."""
    if frame == GREETING or frame == GREETING.encode():
        return Pong()
    try:
        msg = load_json(frame, MAX_FRAME_BYTES)
    except FrameRejected:
        return None
    if type(msg) is not dict:
        return None
    channel, data = msg.get("channel"), msg.get("data")
    if channel == "pong":
        return Pong()
    if channel == "subscriptionResponse":
        sub = data.get("subscription") if type(data) is dict else None
        return Ack(None, None, streams=_subscription_coin(sub))
    if channel == "error":
        text = _error_text(data)
        return Ack(None, text or "error", streams=_refused_coin(text))
    return None


DIALECT: Final = Dialect(
    source=SOURCE,
    subscribe=subscribe_message,
    control=control,
    is_data_frame=is_data_frame,
    chunk=1,
    shard=shard_by_count(SUBSCRIPTIONS_PER_CONNECTION),
    max_messages_per_second=MAX_MESSAGES_PER_SECOND,
    ping=PING,
    ping_interval=PING_INTERVAL_S,
)


# -- the activeAssetCtx parser ----------------------------------------------------------------


def _decimal(v: Any, field: str, signed: bool) -> float:
    # The wire sends decimal strings; the docs' types say numbers: both are read. A decimal is
    # ASCII without "_" or padding (float() alone also takes "1_000", " 1", fullwidth digits).
    if type(v) is str:
        if not v.isascii() or "_" in v or len(v.strip()) != len(v):
            raise FrameRejected(BAD_NUMBER, f"{field}={v!r} is not a decimal")
        try:
            x = float(v)
        except ValueError:
            raise FrameRejected(BAD_NUMBER, f"{field}={v!r} is not a number") from None
    elif type(v) is float:
        x = v
    elif type(v) is int:
        try:
            x = float(v)
        except OverflowError:
            raise FrameRejected(BAD_NUMBER, f"{field}: an integer of {len(str(v))} digits") from None
    else:
        raise FrameRejected(BAD_NUMBER, f"{field}={v!r} is not a number")
    if x - x != 0.0:  # nan and inf, without a call
        raise FrameRejected(NON_FINITE, f"{field}={v!r}")
    if not signed and x < 0:
        raise FrameRejected(BAD_NUMBER, f"{field}={v!r} is negative")
    return x


def next_funding_time(event_ms: int) -> int:
    """The first whole UTC hour strictly after ``event_ms``: Hyperliquid's next settlement."""
    return (event_ms // FUNDING_INTERVAL_MS + 1) * FUNDING_INTERVAL_MS


class AssetCtx(NamedTuple):
    """One perp ctx push, validated: the values as Hyperliquid sent them."""

    coin: str
    mark_price: float
    oracle_price: float
    funding: float
    open_interest: float


def read_ctx(msg: Any) -> AssetCtx:
    """The published fields of one decoded activeAssetCtx push (all or nothing)."""
    if type(msg) is not dict:
        raise FrameRejected(NOT_OBJECT, f"message is {type(msg).__name__}")
    channel = msg.get("channel")
    if channel != _CHANNEL:
        what = "a spot ctx, not a perpetual" if channel == _SPOT_CHANNEL else "not activeAssetCtx"
        raise FrameRejected(UNEXPECTED_EVENT, f"channel={channel!r} is {what}")
    data = msg.get("data")
    if type(data) is not dict:
        raise FrameRejected(NOT_OBJECT if "data" in msg else MISSING_FIELD,
                            f"activeAssetCtx data is {type(data).__name__}")
    if "coin" not in data:
        raise FrameRejected(MISSING_FIELD, "activeAssetCtx data without 'coin'")
    coin = _coin(data["coin"])
    ctx = data.get("ctx")
    if type(ctx) is not dict:
        raise FrameRejected(NOT_OBJECT if "ctx" in data else MISSING_FIELD,
                            f"activeAssetCtx ctx is {type(ctx).__name__}")
    values = []
    for field, _metric, signed in _FIELDS:
        if field not in ctx:
            raise FrameRejected(MISSING_FIELD, f"ctx of {coin} without {field!r}")
        values.append(_decimal(ctx[field], field, signed))
    return AssetCtx(coin, *values)


class Parser:
    """activeAssetCtx frames to points (a :class:`~producer.venue.FrameParser`).

    The only state is which coins have had their funding interval published on this
    connection (see the module doc); a rejected frame never changes it."""

    def __init__(self, source: str = SOURCE, max_bytes: int = MAX_FRAME_BYTES) -> None:
        self.source = source
        self.max_bytes = max_bytes
        self._announced: set[str] = set()

    def parse(self, raw: str | bytes, ingest_ms: int) -> list[Record]:
        """The points of one frame, all stamped ``ingest_ms``; raises
        :class:`FrameRejected` with a reason for a frame that is not a perp ctx push."""
        ctx = read_ctx(load_json(raw, self.max_bytes))
        if type(ingest_ms) is not int or not MIN_EVENT_TIME_MS <= ingest_ms < MAX_EVENT_TIME_MS:
            raise FrameRejected(BAD_TIMESTAMP, f"receive time {ingest_ms!r} is outside 2017..2100")
        values: list[tuple[str, float]] = [
            (Metric.MARK_PRICE, ctx.mark_price), (Metric.INDEX_PRICE, ctx.oracle_price),
            (Metric.FUNDING_RATE, ctx.funding),
            (Metric.NEXT_FUNDING_TIME, float(next_funding_time(ingest_ms))),
            (Metric.OPEN_INTEREST, ctx.open_interest),
        ]
        if ctx.coin not in self._announced:
            values.append((FUNDING_INTERVAL_HOURS, FUNDING_INTERVAL_H))
            self._announced.add(ctx.coin)
        return [{"source": self.source, "symbol": ctx.coin, "metric": metric, "value": value,
                 "event_time": ingest_ms, "ingest_time": ingest_ms} for metric, value in values]

    def reset(self) -> None:
        """A new connection: each coin's first frame states the funding interval again."""
        self._announced.clear()


# -- REST: the meta listing ------------------------------------------------------------------


def info_url(rest_base: str) -> str:
    return rest_base.rstrip("/") + INFO_PATH


def meta_request() -> bytes:
    """The body of ``POST /info`` for the perpetuals' metadata (weight :data:`META_WEIGHT`)."""
    return b'{"type":"meta"}'


class Listing(NamedTuple):
    """What ``meta`` lists."""

    #: Listed perpetuals, coin name -> instrument (delisted ones left out).
    instruments: dict[str, Instrument]
    #: Coins listed as delisted (``isDelisted: true``).
    delisted: set[str]
    #: Entries skipped: name (repr for a non-string) -> what is wrong with it.
    rejected: dict[str, str]


def _entry_problem(item: dict[str, Any]) -> str | None:
    for field, least in (("szDecimals", 0), ("maxLeverage", 1)):
        v = item.get(field)
        if type(v) is not int or v < least:
            return f"{field}={v!r} is not an integer >= {least}"
    if type(item.get("isDelisted", False)) is not bool:
        return f"isDelisted={item.get('isDelisted')!r} is not a boolean"
    return None


def listing(body: Any) -> Listing:
    """The perpetuals of a ``meta`` answer (the raw body, or its decoded JSON).

    An entry whose name or fields are unreadable is skipped and reported in ``rejected``;
    it never costs the rest of the universe. An answer that is not a ``meta`` object (an
    error text, ``null``) raises :class:`FrameRejected`."""
    if isinstance(body, str | bytes | bytearray):
        body = load_json(bytes(body) if isinstance(body, bytearray) else body)
    if type(body) is not dict:
        raise FrameRejected(NOT_OBJECT, f"meta answer is {type(body).__name__}: {str(body)[:200]}")
    universe = body.get("universe")
    if type(universe) is not list:
        raise FrameRejected(MISSING_FIELD, "meta answer has no universe list")
    out = Listing({}, set(), {})
    for item in universe:
        if type(item) is not dict or type(item.get("name")) is not str:
            name = item.get("name") if type(item) is dict else item
            out.rejected[repr(name)[:100]] = "not an entry with a string name"
            continue
        name = item["name"]
        problem = symbol_problem(name) or _entry_problem(item)
        if problem is None and (name in out.instruments or name in out.delisted):
            problem = "listed twice"
        if problem is not None:
            out.rejected[name] = problem
        elif item.get("isDelisted") is True:
            out.delisted.add(name)
        else:
            out.instruments[name] = Instrument(symbol=name, base=name, quote="USD", streams=(name,),
                                               funding_interval_h=FUNDING_INTERVAL_H)
    return out


def instruments(body: Any) -> dict[str, Instrument]:
    """The listed perpetuals of a ``meta`` answer, coin name -> instrument (see :func:`listing`)."""
    return listing(body).instruments
