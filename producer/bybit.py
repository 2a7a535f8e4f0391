"""Bybit v5 linear payloads: pure parsing, no sockets.

Bybit's ``tickers.{symbol}`` topic sends one ``"type":"snapshot"`` and then
``"type":"delta"`` messages that carry only the fields that changed (a field
that is missing did not change; ``symbol`` is always there). :class:`TickerBook`
keeps the merged state per symbol, so a delta is read against the snapshot it
amends, and gives, for each message, the values of the published metrics that
message carried, stamped with the envelope's ``ts``. Symbols are kept as Bybit spells them and
checked by the contract's symbol rule (docs/contract.md, "Symbols").

Bybit sends every value as a decimal string, names kept as sent:

- ``markPrice`` mark price, ``indexPrice`` index price,
- ``fundingRate`` funding rate (``""`` where a contract has no funding),
- ``nextFundingTime`` next funding time, ms (``"0"`` or ``""`` where there is none),
- ``openInterest`` open interest in base-coin units (the unit the contract uses everywhere).

Other ticker fields (last price, 24 h volume, book tops ...) are ignored. A
message that cannot be read is rejected whole with a reason label, like
Binance frames (``producer.binance``), and never changes the book.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple

from perpstream.producer.binance import (
    BAD_JSON,
    BAD_NUMBER,
    BAD_SYMBOL,
    BAD_TIMESTAMP,
    DEFAULT_MAX_FRAME_BYTES,
    MISSING_FIELD,
    NON_FINITE,
    NOT_OBJECT,
    TOO_LARGE,
    UNEXPECTED_EVENT,
    Record,
    load_json,
)
from perpstream.producer.exceptions import FrameRejected, ProducerError
from perpstream.producer.venue import Ack, Control, Dialect, Instrument, shard_by_chars
from perpstream.producer.venue import Pong as PongAnswer
from perpstream.producer.venue_values import decimal_string as _decimal
from perpstream.producer.venue_values import millis as _millis
from perpstream.schemas.models import Metric
from perpstream.schemas.rules import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS, symbol_problem

SOURCE: Final = "bybit_linear"

LIVE_WS_URL: Final = "wss://stream.bybit.com/v5/public/linear"
LIVE_REST_URL: Final = "https://api.bybit.com"
INSTRUMENTS_PATH: Final = "/v5/market/instruments-info"
#: Bybit closes a public connection that sends nothing for a while; a ping every 20 s keeps it.
PING_INTERVAL_S: Final = 20.0
#: The args of one connection's subscriptions may not exceed this many characters.
MAX_ARGS_CHARS_PER_CONNECTION: Final = 21_000
#: ``retCode`` of a per-API rate limit (the IP limit is an HTTP 403 instead).
RATE_LIMIT_RET_CODE: Final = 10006

# Rejection reasons beyond Binance's (labels of the frames_rejected counter).
#: A delta for a symbol whose snapshot was not seen (on this connection): it cannot be merged.
DELTA_BEFORE_SNAPSHOT: Final = "delta_before_snapshot"
#: A topic other than ``tickers.{symbol}``, or a topic naming another symbol than its data.
UNEXPECTED_TOPIC: Final = "unexpected_topic"
REJECT_REASONS: Final = (
    BAD_JSON, NOT_OBJECT, MISSING_FIELD, BAD_NUMBER, NON_FINITE, BAD_TIMESTAMP,
    BAD_SYMBOL, TOO_LARGE, UNEXPECTED_EVENT, DELTA_BEFORE_SNAPSHOT, UNEXPECTED_TOPIC,
)

_TOPIC_PREFIX: Final = "tickers."
#: Topics a book remembers as read whole (Bybit lists about 500 linear perpetuals).
MAX_TOPICS: Final = 10_000

#: Ticker field -> metric, and whether the value can be negative (only funding can).
_FIELDS: Final[tuple[tuple[str, Metric, bool], ...]] = (
    ("markPrice", Metric.MARK_PRICE, False),
    ("indexPrice", Metric.INDEX_PRICE, False),
    ("fundingRate", Metric.FUNDING_RATE, True),
    ("nextFundingTime", Metric.NEXT_FUNDING_TIME, False),
    ("openInterest", Metric.OPEN_INTEREST, False),
)

#: A metric's value, or None where the venue says the contract has none (no funding).
Values = dict[Metric, float | None]


def tickers_topic(symbol: str) -> str:
    """The topic of one symbol, spelled exactly as Bybit spells the symbol."""
    return _TOPIC_PREFIX + symbol


class TickerUpdate(NamedTuple):
    """What one ``tickers`` message changed: ``values`` holds only the published metrics the
    message carried (all of them for a snapshot), each with ``event_time`` (envelope ``ts``)."""

    symbol: str
    event_time: int
    values: dict[Metric, float]
    snapshot: bool


class SubscribeAck(NamedTuple):
    """``{"success": true, "op": "subscribe", ...}`` (or ``"unsubscribe"``): the request took."""

    req_id: str
    conn_id: str


class Pong(NamedTuple):
    """The answer to ``{"op": "ping"}`` (``ret_msg`` "pong", or ``op`` "pong")."""

    conn_id: str


class ErrorAck(NamedTuple):
    """``{"success": false, "ret_msg": ...}``: Bybit refused a request (a bad topic ...)."""

    op: str
    message: str
    req_id: str


WsMessage = TickerUpdate | SubscribeAck | Pong | ErrorAck


def _price(v: Any, field: str) -> float:
    return _decimal(v, field, False)


def _rate(v: Any, field: str) -> float | None:
    # a contract without funding sends "": no point, not a zero
    return None if v == "" else _decimal(v, field, True)


def _next_time(v: Any, field: str) -> float | None:
    return None if v in ("0", "") else float(_millis(v, field))


#: Ticker field -> metric and the reader of its value (only funding can be negative), in
#: the order points are published.
_READERS: Final[tuple[tuple[str, Metric, Callable[[Any, str], float | None]], ...]] = tuple(
    (field, metric, {"fundingRate": _rate, "nextFundingTime": _next_time}.get(field, _price))
    for field, metric, _signed in _FIELDS
)


def _symbol(v: Any) -> str:
    if type(v) is not str:
        raise FrameRejected(BAD_SYMBOL, f"symbol={v!r} is not a string")
    problem = symbol_problem(v)
    if problem is not None:
        raise FrameRejected(BAD_SYMBOL, problem)
    return v


def _envelope(msg: Any) -> tuple[str, int, bool, dict[str, Any]]:
    """Symbol, event time, is-snapshot and data of a ``tickers`` message, checked."""
    if type(msg) is not dict:
        raise FrameRejected(NOT_OBJECT, f"tickers message is {type(msg).__name__}")
    try:
        topic, kind, data, ts = msg["topic"], msg["type"], msg["data"], msg["ts"]
    except KeyError as exc:
        raise FrameRejected(MISSING_FIELD, f"tickers message without {exc.args[0]!r}") from None
    if type(topic) is not str or not topic.startswith(_TOPIC_PREFIX):
        raise FrameRejected(UNEXPECTED_TOPIC, f"topic={topic!r}")
    if kind not in ("snapshot", "delta"):
        raise FrameRejected(UNEXPECTED_EVENT, f"type={kind!r}")
    if type(data) is not dict:
        raise FrameRejected(NOT_OBJECT, f"tickers data is {type(data).__name__}")
    if "symbol" not in data:
        raise FrameRejected(MISSING_FIELD, "tickers data without 'symbol'")
    symbol = _symbol(data["symbol"])
    if topic != _TOPIC_PREFIX + symbol:
        raise FrameRejected(UNEXPECTED_TOPIC, f"topic={topic!r} carries symbol {symbol!r}")
    return symbol, _millis(ts, "ts"), kind == "snapshot", data


class TickerBook:
    """The merged ``tickers`` state of each symbol of one connection.

    Why a book and not a stateless parser: a delta says nothing about fields it
    leaves out, and one for a symbol whose snapshot was never seen (or was lost
    with a connection) cannot be trusted to be complete later; it is rejected
    until the snapshot Bybit sends on (re)subscribing arrives. Call
    :meth:`reset` when a connection is replaced."""

    def __init__(self) -> None:
        self._state: dict[str, Values] = {}
        # topic -> the symbol it names, for topics already read whole (bounded: see _envelope)
        self._topics: dict[str, str] = {}

    def _envelope(self, msg: Any) -> tuple[str, int, bool, dict[str, Any]]:
        """:func:`_envelope`, with a topic seen before checked by one lookup: its symbol was
        found valid and equal to the topic's name, so a message of it needs only its data's
        symbol to match. A message on ten a second per symbol, so this is the hot path."""
        if type(msg) is dict:
            data, topic = msg.get("data"), msg.get("topic")
            symbol = self._topics.get(topic) if type(topic) is str else None
            if symbol is not None and type(data) is dict and data.get("symbol") == symbol:
                kind, ts = msg.get("type"), msg.get("ts")
                if (kind == "delta" or kind == "snapshot") and type(ts) is int \
                        and MIN_EVENT_TIME_MS <= ts < MAX_EVENT_TIME_MS:
                    return symbol, ts, kind == "snapshot", data
        symbol, event_time, snapshot, data = _envelope(msg)
        if len(self._topics) >= MAX_TOPICS:  # listings change over weeks; never grows without bound
            self._topics.clear()
        self._topics[msg["topic"]] = symbol
        return symbol, event_time, snapshot, data

    def merge(self, msg: Any) -> tuple[str, int, list[tuple[Metric, float]]]:
        """Merge one decoded ``tickers`` message (all or nothing): its symbol, event time, and
        the published metrics it carried with their values (what :meth:`apply` says, without
        the update object)."""
        symbol, event_time, snapshot, data = self._envelope(msg)
        state = self._state.get(symbol)
        if state is None and not snapshot:
            raise FrameRejected(DELTA_BEFORE_SNAPSHOT, f"delta for {symbol} before its snapshot")
        carried: Values = {}
        for field, metric, read in _READERS:
            if field in data:
                carried[metric] = read(data[field], field)
        if snapshot or state is None:
            self._state[symbol] = carried
        else:
            state.update(carried)
        return symbol, event_time, [(m, v) for m, v in carried.items() if v is not None]

    def apply(self, msg: Any) -> TickerUpdate:
        """Merge one decoded ``tickers`` message (all or nothing) and say what it changed."""
        symbol, event_time, values = self.merge(msg)
        snapshot = msg["type"] == "snapshot"
        return TickerUpdate(symbol, event_time, dict(values), snapshot)

    def current(self, symbol: str) -> dict[Metric, float]:
        """The symbol's latest value of each metric it has (empty before its snapshot)."""
        return {m: v for m, v in self._state.get(symbol, {}).items() if v is not None}

    def reset(self) -> None:
        """Forget every symbol: the next message of each must be a snapshot."""
        self._state.clear()


def _str(v: Any) -> str:
    return v if type(v) is str else ""


def _control(msg: dict[str, Any]) -> WsMessage:
    """A subscribe ack, pong or error ack; anything else is rejected."""
    op, ret_msg, success = msg.get("op"), msg.get("ret_msg"), msg.get("success")
    conn_id = _str(msg.get("conn_id"))
    if success is False:
        if type(ret_msg) is not str:
            raise FrameRejected(MISSING_FIELD, "refusal without a ret_msg text")
        return ErrorAck(_str(op), ret_msg, _str(msg.get("req_id")))
    if success is True and op in ("subscribe", "unsubscribe"):
        return SubscribeAck(_str(msg.get("req_id")), conn_id)
    if op == "pong" or (success is True and op == "ping" and ret_msg == "pong"):
        return Pong(conn_id)
    raise FrameRejected(UNEXPECTED_EVENT, f"op={op!r} success={success!r}")


def parse_ws_message(raw: str | bytes, book: TickerBook,
                     max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> WsMessage:
    """One websocket text of the linear public stream, read: a ticker update merged into
    ``book``, or a control answer. Raises :class:`FrameRejected` with a reason otherwise."""
    msg = load_json(raw, max_bytes)
    if type(msg) is not dict:
        raise FrameRejected(NOT_OBJECT, f"message is {type(msg).__name__}")
    if "topic" in msg:
        return book.apply(msg)
    return _control(msg)


def records(update: TickerUpdate, ingest_ms: int, source: str = SOURCE) -> list[Record]:
    """The MetricPoint records of one ticker update."""
    return [{"source": source, "symbol": update.symbol, "metric": metric, "value": value,
             "event_time": update.event_time, "ingest_time": ingest_ms}
            for metric, value in update.values.items()]


# -- REST ----------------------------------------------------------------------------------


class BybitApiError(ProducerError):
    """A REST answer whose envelope says the request failed (``retCode`` other than 0)."""

    def __init__(self, ret_code: int, ret_msg: str) -> None:
        super().__init__(f"Bybit retCode {ret_code}: {ret_msg}")
        self.ret_code = ret_code
        self.ret_msg = ret_msg

    @property
    def rate_limited(self) -> bool:
        return self.ret_code == RATE_LIMIT_RET_CODE


def instruments_url(rest_base: str, cursor: str = "", limit: int = 1000) -> str:
    """One page of the linear instruments; ``cursor`` is the previous page's ``nextPageCursor``."""
    url = f"{rest_base.rstrip('/')}{INSTRUMENTS_PATH}?category=linear&limit={limit}"
    return url + (f"&cursor={cursor}" if cursor else "")


def result_of(body: Any) -> dict[str, Any]:
    """The ``result`` object of a v5 REST envelope; raises :class:`BybitApiError` on a
    non-zero ``retCode`` and :class:`FrameRejected` on an envelope that is not one."""
    if type(body) is not dict:
        raise FrameRejected(NOT_OBJECT, f"REST body is {type(body).__name__}")
    code = body.get("retCode")
    if type(code) is not int:
        raise FrameRejected(MISSING_FIELD, f"REST body without an integer retCode ({code!r})")
    if code != 0:
        raise BybitApiError(code, _str(body.get("retMsg")))
    result = body.get("result")
    if type(result) is not dict:
        raise FrameRejected(MISSING_FIELD, "REST body without a result object")
    return result


class Listing(NamedTuple):
    """One page of ``instruments-info?category=linear`` as the producer follows it."""

    #: LinearPerpetual contracts with status Trading, symbol as Bybit spells it.
    symbols: set[str]
    #: symbol -> base coin (``1000PEPE`` for ``1000PEPEUSDT``: open interest is in these units).
    base_coins: dict[str, str]
    #: symbol -> hours between fundings (Bybit lists minutes).
    funding_hours: dict[str, float]
    #: symbol -> quote coin (``USDT``; ``USDC`` for the ``…PERP`` contracts).
    quote_coins: dict[str, str]
    #: Entries skipped: symbol (repr for a non-string) -> what is wrong with it.
    rejected: dict[str, str]
    #: The cursor of the next page, None on the last page.
    next_cursor: str | None


def _instrument(item: dict[str, Any]) -> tuple[str, str, float]:
    """Base coin, quote coin and funding hours of one perpetual entry; ValueError says what is
    wrong."""
    base, quote = item.get("baseCoin"), item.get("quoteCoin")
    if type(base) is not str or not base:
        raise ValueError(f"baseCoin={base!r} is not a coin name")
    if type(quote) is not str or not quote:
        raise ValueError(f"quoteCoin={quote!r} is not a coin name")
    minutes = item.get("fundingInterval")
    if type(minutes) is not int or minutes <= 0:
        raise ValueError(f"fundingInterval={minutes!r} is not a positive number of minutes")
    return base, quote, minutes / 60


def perpetual_listing(body: Any) -> Listing:
    """The trading perpetuals of one ``instruments-info?category=linear`` page.

    Dated futures, pre-launch and settling contracts are not followed. An entry
    whose symbol, base coin or funding interval is unreadable is skipped and
    reported in ``rejected``; it never costs the rest of the page."""
    result = result_of(body)
    items = result.get("list")
    if type(items) is not list:
        raise FrameRejected(MISSING_FIELD, "instruments-info result has no list")
    cursor = result.get("nextPageCursor")
    listing = Listing(set(), {}, {}, {}, {}, cursor if type(cursor) is str and cursor else None)
    for item in items:
        if type(item) is not dict or item.get("contractType") != "LinearPerpetual" \
                or item.get("status") != "Trading":
            continue
        sym = item.get("symbol")
        if type(sym) is not str:
            listing.rejected[repr(sym)] = "symbol is not a string"
            continue
        try:
            problem = symbol_problem(sym)
            if problem is not None:
                raise ValueError(problem)
            base, quote, hours = _instrument(item)
        except ValueError as exc:
            listing.rejected[sym] = str(exc)
            continue
        listing.symbols.add(sym)
        listing.base_coins[sym] = base
        listing.funding_hours[sym] = hours
        listing.quote_coins[sym] = quote
    return listing


def instruments(listing: Listing) -> dict[str, Instrument]:
    """The followed instruments of a listing (all its pages merged), one ``tickers`` stream each."""
    return {sym: Instrument(sym, listing.base_coins[sym], listing.quote_coins[sym],
                            (tickers_topic(sym),), listing.funding_hours[sym])
            for sym in listing.symbols}


# -- websocket dialect -----------------------------------------------------------------------


def subscribe_message(streams: Sequence[str], request_id: int, method: str = "SUBSCRIBE") -> str:
    """``{"op":"subscribe","args":[topics],"req_id":"n"}`` (or ``unsubscribe``)."""
    return json.dumps({"op": method.lower(), "args": list(streams), "req_id": str(request_id)},
                      separators=(",", ":"))


def control_answer(frame: str | bytes) -> Control | None:
    """A subscribe/unsubscribe answer or a pong; None for anything else."""
    try:
        msg = load_json(frame)
    except FrameRejected:
        return None
    if type(msg) is not dict or "topic" in msg:
        return None
    try:
        answer = _control(msg)
    except FrameRejected:
        return None
    if isinstance(answer, Pong):
        return PongAnswer()
    if isinstance(answer, TickerUpdate):
        return None
    # ASCII digits only: isdigit() is also true of "²" (which int() refuses) and of "١٢" (which
    # int() reads as 12), and no id the producer sent looks like either
    rid = answer.req_id if answer.req_id.isascii() and answer.req_id.isdigit() else ""
    request_id = int(rid) if rid and len(rid) < 19 else None
    if isinstance(answer, ErrorAck):
        return Ack(request_id, f"{answer.op}: {answer.message}"[:300])
    return Ack(request_id)


def is_data_frame(frame: str | bytes) -> bool:
    """Ticker pushes name their ``topic`` first; answers never carry one."""
    head = frame[:16]
    return ('"topic"' in head) if isinstance(head, str) else (b'"topic"' in head)


class Parser:
    """``tickers`` messages to points, merging deltas into the snapshot per symbol
    (:class:`TickerBook`). Bybit sends a snapshot on every (re)subscribe, so the book
    survives reconnects: a new socket's snapshot replaces what it holds."""

    def __init__(self, source: str = SOURCE, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.source = source
        self.max_bytes = max_bytes
        self.book = TickerBook()

    def parse(self, raw: str | bytes, ingest_ms: int) -> list[Record]:
        msg = load_json(raw, self.max_bytes)
        if type(msg) is not dict:
            raise FrameRejected(NOT_OBJECT, f"message is {type(msg).__name__}")
        if "topic" not in msg:
            _control(msg)  # rejected unless it is a control answer
            return []  # a control answer the state machine did not take (replay files)
        symbol, et, values = self.book.merge(msg)
        source = self.source
        return [{"source": source, "symbol": symbol, "metric": metric, "value": value, "event_time": et,
                 "ingest_time": ingest_ms} for metric, value in values]

    def reset(self) -> None:
        self.book.reset()


#: Bybit v5 public linear: ``{"op":"ping"}`` every 20 s keeps a connection; the args of one
#: connection's subscriptions may not exceed 21,000 characters (each counted with its quotes
#: and comma); no documented message rate for public topics, so requests go at 5 a second.
DIALECT: Final = Dialect(
    source=SOURCE,
    subscribe=subscribe_message,
    control=control_answer,
    is_data_frame=is_data_frame,
    chunk=50,
    shard=shard_by_chars(MAX_ARGS_CHARS_PER_CONNECTION, per_stream_overhead=3),
    max_messages_per_second=5.0,
    ping='{"op":"ping"}',
    ping_interval=PING_INTERVAL_S,
)
