"""OKX v5 public perpetual swaps: the websocket dialect, the listing and the push parser.

Pure, like ``producer.bybit``: no sockets, no clock. Points carry the ``source``
``okx_swap`` and the symbol exactly as OKX spells it (``BTC-USDT-SWAP``,
docs/contract.md, "Symbols"); the contract the producer reads every venue through is
``producer.venue`` (docs/producer.md, "Venues").

What OKX pushes on ``/ws/v5/public`` (``{"arg":{"channel","instId"},"data":[{..},..]}``,
every value a decimal string, every time a millisecond string; a push may carry several
``data`` items):

- ``mark-price`` per swap: ``markPx`` at ``ts``; every 200 ms while the mark moves,
  every 10 s while it does not;
- ``index-tickers`` per index (``BTC-USDT``, the ``uly`` of every swap priced on it):
  ``idxPx`` at ``ts``; every 100 ms on change, once a minute otherwise. One index stream
  serves every swap with that ``uly``: its points are written for each of them;
- ``funding-rate`` per swap, every 30 to 90 s: ``fundingRate``, the rate of the settlement
  at ``fundingTime``, and ``nextFundingTime``, the settlement after it. OKX moves some
  swaps from 8 h to 6, 4, 2 or 1 h and says to read the interval from the two times, so
  ``next_funding_time`` is ``fundingTime`` (the settlement the published rate is for) and
  the interval is ``nextFundingTime - fundingTime``;
- ``open-interest`` per swap, every 3 s when it changed: ``oi`` in contracts, ``oiCcy`` in
  the base coin, ``oiUsd``. Open interest is stored in base-coin units on every venue, so
  the point is ``oiCcy``; a contract is a venue-specific size (``PEPE-USDT-SWAP`` counts
  10,000,000 PEPE a contract).

The limits OKX documents, and what this module does about them:

- A subscribe request's args may total 64 KB (past it the socket is closed, 1009):
  :data:`SUBSCRIBE_CHUNK` args a request stay near 6 KB.
- 480 ``subscribe``/``unsubscribe``/``login`` requests a connection an hour: a connection
  of :data:`MAX_STREAMS_PER_CONNECTION` streams subscribes in three requests.
- OKX closes a connection past a per-connection channel count it does not publish (4008,
  4009); :data:`MAX_STREAMS_PER_CONNECTION` (about 75 swaps with their indices, some 1,200
  pushes a second at the fastest documented rates) keeps one reader per connection light.
- Connection attempts: 3 a second per IP; subscribe requests are paced at
  :data:`MAX_MESSAGES_PER_SECOND` a connection.
- A connection with nothing pushed for 30 s is closed (4004): the text ``ping``
  (answered by the text ``pong``) every :data:`PING_INTERVAL_S` keeps a quiet one open.
- REST, per 2 s: ``/api/v5/public/instruments`` 20 (per IP and instType), the funding-rate
  history (``limit`` <= 400, three months back) and the rubik open-interest history
  (``limit`` <= 100, the latest 1,440 bars) 10 each (per IP and instId); past a limit OKX
  answers HTTP 429 with code ``50011`` (:class:`OkxApiError`, ``rate_limited``).
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
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
from perpstream.producer.bybit import UNEXPECTED_TOPIC
from perpstream.producer.exceptions import FrameRejected, ProducerError
from perpstream.producer.venue import Ack, Control, Dialect, Instrument, Pong, shard_by_count
from perpstream.producer.venue_values import decimal_string as _decimal
from perpstream.producer.venue_values import millis as _millis
from perpstream.schemas import rules
from perpstream.schemas.models import Metric

SOURCE: Final = "okx_swap"

LIVE_WS_URL: Final = "wss://ws.okx.com:8443/ws/v5/public"
LIVE_REST_URL: Final = "https://www.okx.com"
INSTRUMENTS_PATH: Final = "/api/v5/public/instruments"
FUNDING_HISTORY_PATH: Final = "/api/v5/public/funding-rate-history"
OPEN_INTEREST_HISTORY_PATH: Final = "/api/v5/rubik/stat/contracts/open-interest-history"

# Channels (the part of a stream name before the colon).
MARK_PRICE: Final = "mark-price"
INDEX_TICKERS: Final = "index-tickers"
FUNDING_RATE: Final = "funding-rate"
OPEN_INTEREST: Final = "open-interest"
CHANNELS: Final = (MARK_PRICE, INDEX_TICKERS, FUNDING_RATE, OPEN_INTEREST)

#: The metric of the hours between two settlements (from the two funding times).
FUNDING_INTERVAL_HOURS: Final = Metric.FUNDING_INTERVAL_HOURS

#: OKX closes a connection with nothing pushed for 30 s; a ping every 20 s keeps it.
PING_INTERVAL_S: Final = 20.0
#: Args a subscribe request carries (a request may total 64 KB; 100 args are about 6 KB).
SUBSCRIBE_CHUNK: Final = 100
#: Streams a connection carries: OKX publishes no number, and closes past its own (4009).
MAX_STREAMS_PER_CONNECTION: Final = 300
#: Subscribe requests a second on one connection (OKX counts 480 an hour a connection).
MAX_MESSAGES_PER_SECOND: Final = 3.0
#: REST ``code`` of a rate-limited request (HTTP 429 on the public endpoints).
RATE_LIMIT_CODE: Final = "50011"
#: Longest symbol this module accepts, in UTF-8 bytes.
SYMBOL_MAX_BYTES: Final = 64
#: Channel args a parser remembers as read whole (OKX lists about 250 linear swaps, 4 args each).
MAX_KNOWN_ARGS: Final = 20_000

# Rejection reasons beyond Binance's and Bybit's (labels of the frames_rejected counter).
#: An ``index-tickers`` push for an index that no listed swap is priced on.
UNKNOWN_INDEX: Final = "unknown_index"
REJECT_REASONS: Final = (
    BAD_JSON, NOT_OBJECT, MISSING_FIELD, BAD_NUMBER, NON_FINITE, BAD_TIMESTAMP,
    BAD_SYMBOL, TOO_LARGE, UNEXPECTED_EVENT, UNEXPECTED_TOPIC, UNKNOWN_INDEX,
)

_OPS: Final = {"SUBSCRIBE": "subscribe", "UNSUBSCRIBE": "unsubscribe"}
#: The arg a 60018 refusal names ("Wrong URL or channel:mark-price,instId:X doesn't exist").
_REFUSED_ARG: Final = re.compile(r"channel:([^,\s]+),\s*instId:(\S+) doesn't exist")


# -- names ---------------------------------------------------------------------------------


def stream(channel: str, inst_id: str) -> str:
    """The stream name of one channel arg: ``mark-price:BTC-USDT-SWAP``."""
    return f"{channel}:{inst_id}"


def swap_streams(inst_id: str, index: str) -> tuple[str, ...]:
    """Every stream a swap needs: its three own channels and its index's tickers."""
    return (stream(MARK_PRICE, inst_id), stream(FUNDING_RATE, inst_id),
            stream(OPEN_INTEREST, inst_id), stream(INDEX_TICKERS, index))


def instruments_url(rest_base: str) -> str:
    """The perpetual swaps listing (linear and inverse; :func:`instruments` keeps the linear)."""
    return f"{rest_base.rstrip('/')}{INSTRUMENTS_PATH}?instType=SWAP"


@lru_cache(maxsize=65_536)
def _symbol_problem(symbol: str) -> str | None:
    """None for a name OKX could send (``BTC-USDT-SWAP``, ``BTC-USDT``), else what is wrong."""
    if not symbol:
        return "symbol is empty"
    try:
        size = len(symbol.encode("utf-8"))
    except UnicodeEncodeError:
        return f"symbol {symbol!r} is not valid Unicode (lone surrogate)"
    if size > SYMBOL_MAX_BYTES:
        return f"symbol is {size} bytes of UTF-8, more than {SYMBOL_MAX_BYTES}"
    for ch in symbol:
        if ch.isspace() or unicodedata.category(ch).startswith("C"):
            return f"symbol {symbol!r} has the character U+{ord(ch):04X}"
    return None


def _name(v: Any, field: str) -> str:
    if type(v) is not str:
        raise FrameRejected(BAD_SYMBOL, f"{field}={v!r} is not a string")
    # only strings short enough to be names reach the cache (a character is at least a byte)
    if len(v) > SYMBOL_MAX_BYTES:
        raise FrameRejected(BAD_SYMBOL, f"{field} is over {SYMBOL_MAX_BYTES} bytes")
    problem = _symbol_problem(v)
    if problem is not None:
        raise FrameRejected(BAD_SYMBOL, problem)
    return v


def _symbol(v: Any, field: str) -> str:
    """A swap's instId, the symbol its points carry: a name, and one the contract takes from
    ``okx_swap`` (docs/contract.md, "Symbols": upper case, ``-``), so that no point every
    consumer would dead-letter is published."""
    name = _name(v, field)
    problem = rules.symbol_problem(name, SOURCE)
    if problem is not None:
        raise FrameRejected(BAD_SYMBOL, problem)
    return name


# -- the websocket dialect -----------------------------------------------------------------


def _arg(name: str) -> dict[str, str]:
    channel, sep, inst_id = name.partition(":")
    if not sep or not channel or not inst_id:
        raise ValueError(f"stream {name!r} is not channel:instId")
    return {"channel": channel, "instId": inst_id}


def subscribe_message(streams: Sequence[str], request_id: int, method: str = "SUBSCRIBE") -> str:
    """``{"id":"7","op":"subscribe","args":[{"channel":..,"instId":..},..]}``.

    OKX echoes ``id`` (up to 32 alphanumerics) in the answer to every arg, so each answer
    is matched to its request; ``method`` is ``SUBSCRIBE`` or ``UNSUBSCRIBE``."""
    if method not in _OPS:
        raise ValueError(f"method {method!r} is not SUBSCRIBE or UNSUBSCRIBE")
    if not 0 <= request_id < 10**32:
        raise ValueError(f"request id {request_id} does not fit OKX's 32-character id")
    return json.dumps({"id": str(request_id), "op": _OPS[method], "args": [_arg(s) for s in streams]},
                      separators=(",", ":"))


def is_data_frame(frame: str | bytes) -> bool:
    """True for a push (``{"arg":..,"data":[..]}``); answers start ``{"id"`` or ``{"event"``."""
    if isinstance(frame, str):
        return frame.startswith('{"arg"') and '"data"' in frame
    return frame.startswith(b'{"arg"') and b'"data"' in frame


def _str(v: Any) -> str:
    return v if type(v) is str else ""


def _request_id(v: Any) -> int | None:
    """The id a request carried, where it is one of ours (digits)."""
    return int(v) if type(v) is str and 0 < len(v) <= 32 and v.isascii() and v.isdigit() else None


def _acked_stream(arg: Any) -> tuple[str, ...]:
    if type(arg) is dict and type(arg.get("channel")) is str and type(arg.get("instId")) is str:
        return (stream(arg["channel"], arg["instId"]),)
    return ()


def control(frame: str | bytes) -> Control | None:
    """The control answer a frame is, or None (a push, a notice, or garbage).

    OKX answers each arg of a request on its own: a request of 100 args gets 100
    :class:`Ack` s with the request's id, each naming its stream. A refusal names its
    arg only in words; a 60018 ("doesn't exist") is read back into the stream it refused."""
    if frame in ("pong", b"pong"):
        return Pong()
    if is_data_frame(frame):
        return None
    try:
        msg = load_json(frame)
    except FrameRejected:
        return None
    if type(msg) is not dict:
        return None
    event = msg.get("event")
    if event in ("subscribe", "unsubscribe"):
        return Ack(_request_id(msg.get("id")), None, _acked_stream(msg.get("arg")))
    if event == "error":
        code, text = _str(msg.get("code")), _str(msg.get("msg"))
        refused = _REFUSED_ARG.search(text)
        streams = (stream(refused[1], refused[2]),) if refused else ()
        return Ack(_request_id(msg.get("id")), f"{code}: {text}", streams)
    return None


DIALECT: Final = Dialect(
    source=SOURCE,
    subscribe=subscribe_message,
    control=control,
    is_data_frame=is_data_frame,
    chunk=SUBSCRIBE_CHUNK,
    shard=shard_by_count(MAX_STREAMS_PER_CONNECTION),
    max_messages_per_second=MAX_MESSAGES_PER_SECOND,
    ping="ping",
    ping_interval=PING_INTERVAL_S,
)


# -- REST: the listing ---------------------------------------------------------------------


class OkxApiError(ProducerError):
    """A REST answer whose envelope says the request failed (``code`` other than ``"0"``)."""

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(f"OKX code {code}: {msg}")
        self.code = code
        self.msg = msg
        #: OKX's rate limit (HTTP 429 with code 50011): back off, the request was fine.
        self.rate_limited = code == RATE_LIMIT_CODE


def data_of(body: str | bytes) -> list[Any]:
    """The ``data`` list of a v5 REST body; raises :class:`OkxApiError` on a ``code`` other
    than ``"0"`` and :class:`FrameRejected` on a body that is not an envelope."""
    msg = load_json(body)
    if type(msg) is not dict:
        raise FrameRejected(NOT_OBJECT, f"REST body is {type(msg).__name__}")
    code = msg.get("code")
    if type(code) is int:
        code = str(code)
    if type(code) is not str:
        raise FrameRejected(MISSING_FIELD, f"REST body without a code ({code!r})")
    if code != "0":
        raise OkxApiError(code, _str(msg.get("msg")))
    data = msg.get("data")
    if type(data) is not list:
        raise FrameRejected(MISSING_FIELD, "REST body without a data list")
    return data


class Listing(NamedTuple):
    """The live linear swaps of an instruments answer, and the entries skipped."""

    #: instId -> instrument, for every live linear swap whose fields read.
    instruments: dict[str, Instrument]
    #: Live linear entries skipped: instId (repr for a non-string) -> what is wrong with it.
    rejected: dict[str, str]


def _instrument(item: dict[str, Any]) -> Instrument:
    """One live linear swap entry; FrameRejected says what is wrong with it."""
    inst_id = _symbol(item.get("instId"), "instId")
    base = _name(item.get("ctValCcy"), "ctValCcy")  # linear: the coin a contract is worth
    quote = _name(item.get("settleCcy"), "settleCcy")
    index = _name(item.get("uly"), "uly")
    return Instrument(inst_id, base, quote, swap_streams(inst_id, index))


def listing(body: str | bytes) -> Listing:
    """Live linear swaps of ``/api/v5/public/instruments?instType=SWAP``.

    Inverse swaps (settled in the coin, ``BTC-USD-SWAP``) and swaps not ``live``
    (``suspend``, ``preopen``, ``rebase``) are not followed. The base coin is ``ctValCcy``,
    the coin a contract is worth and the unit of ``oiCcy``; the funding interval is left
    to the ``funding-rate`` channel, which gives it with every push."""
    out = Listing({}, {})
    for item in data_of(body):
        if type(item) is not dict or item.get("instType") != "SWAP" or item.get("ctType") != "linear" \
                or item.get("state") != "live":
            continue
        inst_id = item.get("instId")
        try:
            inst = _instrument(item)
        except FrameRejected as exc:
            out.rejected[inst_id if type(inst_id) is str else repr(inst_id)] = exc.detail
            continue
        out.instruments[inst.symbol] = inst
    return out


def instruments(body: str | bytes) -> dict[str, Instrument]:
    """instId -> :class:`Instrument` of every live linear swap (:func:`listing`)."""
    return listing(body).instruments


# -- pushes --------------------------------------------------------------------------------


def _field(item: dict[str, Any], name: str, channel: str) -> Any:
    try:
        return item[name]
    except KeyError:
        raise FrameRejected(MISSING_FIELD, f"{channel} data without {name!r}") from None


#: One point before it becomes a record: (symbol, metric, value, event time).
_Point = tuple[str, str, float, int]


def _mark_points(inst_id: str, item: dict[str, Any]) -> list[_Point]:
    return [(inst_id, Metric.MARK_PRICE, _decimal(_field(item, "markPx", MARK_PRICE), "markPx", False),
             _millis(_field(item, "ts", MARK_PRICE), "ts"))]


def _open_interest_points(inst_id: str, item: dict[str, Any]) -> list[_Point]:
    # oiCcy (base coin), not oi (contracts): the unit every venue's open interest is stored in
    return [(inst_id, Metric.OPEN_INTEREST, _decimal(_field(item, "oiCcy", OPEN_INTEREST), "oiCcy", False),
             _millis(_field(item, "ts", OPEN_INTEREST), "ts"))]


def _interval_hours(funding_time: int, next_time: Any) -> float | None:
    """Hours from ``fundingTime`` to ``nextFundingTime``; None where the push has no next
    time (absent or ``""``) or the two are not a positive whole number of minutes apart."""
    if next_time == "":
        return None
    gap = _millis(next_time, "nextFundingTime") - funding_time
    return gap / 3_600_000 if gap > 0 and gap % 60_000 == 0 else None


def _funding_points(inst_id: str, item: dict[str, Any]) -> list[_Point]:
    rate = _field(item, "fundingRate", FUNDING_RATE)
    funding_time = _millis(_field(item, "fundingTime", FUNDING_RATE), "fundingTime")
    hours = _interval_hours(funding_time, item.get("nextFundingTime", ""))
    et = _millis(_field(item, "ts", FUNDING_RATE), "ts")
    points: list[_Point] = []
    if rate != "":  # no rate published: no point, not a zero
        points.append((inst_id, Metric.FUNDING_RATE, _decimal(rate, "fundingRate", True), et))
    # the settlement the published rate is for, not the one after it
    points.append((inst_id, Metric.NEXT_FUNDING_TIME, float(funding_time), et))
    if hours is not None:
        points.append((inst_id, FUNDING_INTERVAL_HOURS, hours, et))
    return points


def _push(msg: Any) -> tuple[str, str, list[dict[str, Any]]]:
    """Channel, instId and data items of a push, checked."""
    if type(msg) is not dict:
        raise FrameRejected(NOT_OBJECT, f"push is {type(msg).__name__}")
    if "event" in msg:
        raise FrameRejected(UNEXPECTED_EVENT, f"event={msg['event']!r} on the data path")
    try:
        arg, data = msg["arg"], msg["data"]
    except KeyError as exc:
        raise FrameRejected(MISSING_FIELD, f"push without {exc.args[0]!r}") from None
    if type(arg) is not dict:
        raise FrameRejected(NOT_OBJECT, f"arg is {type(arg).__name__}")
    if "channel" not in arg or "instId" not in arg:
        raise FrameRejected(MISSING_FIELD, "arg without channel or instId")
    channel = arg["channel"]
    if type(channel) is not str or channel not in CHANNELS:
        raise FrameRejected(UNEXPECTED_TOPIC, f"channel={channel!r}")
    # an index names no stored symbol (its points go to the swaps priced on it)
    inst_id = (_name if channel == INDEX_TICKERS else _symbol)(arg["instId"], "instId")
    if type(data) is not list:
        raise FrameRejected(NOT_OBJECT, f"data is {type(data).__name__}")
    for item in data:
        if type(item) is not dict:
            raise FrameRejected(NOT_OBJECT, f"{channel} data item is {type(item).__name__}")
        if "instId" in item and item["instId"] != inst_id:
            raise FrameRejected(UNEXPECTED_TOPIC, f"{channel} of {inst_id} carries {item['instId']!r}")
    return channel, inst_id, data


_SWAP_READERS: Final[dict[str, Callable[[str, dict[str, Any]], list[_Point]]]] = {
    MARK_PRICE: _mark_points, FUNDING_RATE: _funding_points, OPEN_INTEREST: _open_interest_points,
}


class Parser:
    """Pushes to points (``producer.venue.FrameParser``).

    Stateless across frames except for the listing: an ``index-tickers`` push names an
    index, and its points belong to the swaps priced on it, which only the listing knows
    (:meth:`set_instruments`). A push is read whole or rejected whole with a reason."""

    def __init__(self, source: str = SOURCE, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> None:
        self.source = source
        self.max_bytes = max_bytes
        self._by_index: dict[str, tuple[str, ...]] = {}
        # (channel, instId) of args already read whole: their names need no second check
        self._known: set[tuple[str, str]] = set()

    def set_instruments(self, instruments: Mapping[str, Instrument]) -> None:
        """Follow this listing: an index's points go to every swap whose streams include it."""
        by_index: dict[str, list[str]] = {}
        for inst in instruments.values():
            for name in inst.streams:
                channel, _, index = name.partition(":")
                if channel == INDEX_TICKERS:
                    by_index.setdefault(index, []).append(inst.symbol)
        self._by_index = {index: tuple(sorted(swaps)) for index, swaps in by_index.items()}

    def swaps_of(self, index: str) -> tuple[str, ...]:
        """The swaps an index's points are written for."""
        return self._by_index.get(index, ())

    def _checked(self, msg: Any) -> tuple[str, str, list[dict[str, Any]]]:
        """:func:`_push`, with an arg read whole before checked by one lookup (a swap pushes
        15 times a second; its names do not change)."""
        if type(msg) is dict and "event" not in msg:
            arg, data = msg.get("arg"), msg.get("data")
            if type(arg) is dict and type(data) is list:
                channel, inst_id = arg.get("channel"), arg.get("instId")
                if type(channel) is str and type(inst_id) is str and (channel, inst_id) in self._known:
                    for item in data:
                        if type(item) is not dict or ("instId" in item and item["instId"] != inst_id):
                            break
                    else:
                        return channel, inst_id, data
        channel, inst_id, data = _push(msg)
        if len(self._known) >= MAX_KNOWN_ARGS:  # listings change over weeks: never unbounded
            self._known.clear()
        self._known.add((channel, inst_id))
        return channel, inst_id, data

    def parse(self, raw: str | bytes, ingest_ms: int) -> list[Record]:
        channel, inst_id, data = self._checked(load_json(raw, self.max_bytes))
        source = self.source
        if channel == MARK_PRICE and len(data) == 1:  # the common push, read without the tuples
            item = data[0]
            return [{"source": source, "symbol": inst_id, "metric": Metric.MARK_PRICE,
                     "value": _decimal(_field(item, "markPx", MARK_PRICE), "markPx", False),
                     "event_time": _millis(_field(item, "ts", MARK_PRICE), "ts"), "ingest_time": ingest_ms}]
        points: list[_Point] = []
        if channel == INDEX_TICKERS:
            swaps = self._by_index.get(inst_id)
            if swaps is None:
                raise FrameRejected(UNKNOWN_INDEX, f"no listed swap is priced on {inst_id}")
            for item in data:
                price = _decimal(_field(item, "idxPx", channel), "idxPx", False)
                et = _millis(_field(item, "ts", channel), "ts")
                points += [(swap, Metric.INDEX_PRICE, price, et) for swap in swaps]
        else:
            read = _SWAP_READERS[channel]
            for item in data:
                points += read(inst_id, item)
        return [{"source": source, "symbol": symbol, "metric": metric, "value": value,
                 "event_time": et, "ingest_time": ingest_ms} for symbol, metric, value, et in points]

    def reset(self) -> None:
        """Nothing is kept per connection."""
