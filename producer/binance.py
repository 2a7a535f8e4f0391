"""Binance USD-M payloads: pure parsing and naming, no sockets.

Everything here takes the local clock as an argument (``ingest_ms``) so the
same raw frame always gives the same points, whichever source it came from
(live websocket, replay file, simulated market).

Binance field names are kept as sent, with a comment each:

- ``e`` event type ("markPriceUpdate"), ``E`` event time (ms),
- ``s`` symbol, ``p`` mark price, ``i`` index price,
- ``P`` estimated settle price, ``r`` funding rate, ``T`` next funding time (ms).

Dated delivery contracts send ``"r": ""`` and ``"T": 0``: they have no funding,
so no funding metric is emitted (not a zero). Newer fields (``ap``, ``st``)
are ignored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final, NamedTuple

from perpstream.producer.exceptions import FrameRejected
from perpstream.producer.venue import Ack, Control, Dialect
from perpstream.schemas.models import Metric
from perpstream.schemas.rules import MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS, symbol_problem

SOURCE: Final = "binance_usdm"

LIVE_WS_URL: Final = "wss://fstream.binance.com/market"
LIVE_REST_URL: Final = "https://fapi.binance.com"
TESTNET_WS_URL: Final = "wss://stream.binancefuture.com"
TESTNET_REST_URL: Final = "https://testnet.binancefuture.com"

ALL_MARKET_STREAM: Final = "!markPrice@arr@1s"
#: ``stream_mode`` auto reads the all-market stream above this many symbols (and with ``--all``):
#: there one array frame a second costs the producer less CPU than a frame per symbol.
ALL_MARKET_ABOVE: Final = 50
#: Binance caps a connection at 200 streams.
MAX_STREAMS_PER_CONNECTION: Final = 200
#: Request weight per minute per IP.
REST_WEIGHT_LIMIT: Final = 2400
#: Frames larger than this are rejected before parsing. The all-market array
#: for ~700 symbols is ~200 kB; anything near megabytes is not a markPrice frame.
DEFAULT_MAX_FRAME_BYTES: Final = 4_000_000

# Rejection reasons (labels of the frames_rejected counter).
BAD_JSON: Final = "bad_json"
NOT_OBJECT: Final = "not_object"
MISSING_FIELD: Final = "missing_field"
BAD_NUMBER: Final = "bad_number"
NON_FINITE: Final = "non_finite"
BAD_TIMESTAMP: Final = "bad_timestamp"
BAD_SYMBOL: Final = "bad_symbol"
TOO_LARGE: Final = "too_large"
UNEXPECTED_EVENT: Final = "unexpected_event"
REJECT_REASONS: Final = (
    BAD_JSON, NOT_OBJECT, MISSING_FIELD, BAD_NUMBER, NON_FINITE, BAD_TIMESTAMP,
    BAD_SYMBOL, TOO_LARGE, UNEXPECTED_EVENT,
)

_MARK: Final = Metric.MARK_PRICE
_INDEX: Final = Metric.INDEX_PRICE
_SETTLE: Final = Metric.ESTIMATED_SETTLE_PRICE
_FUNDING: Final = Metric.FUNDING_RATE
_NEXT_FUNDING: Final = Metric.NEXT_FUNDING_TIME
_OI: Final = Metric.OPEN_INTEREST

Record = dict[str, Any]


def mark_price_stream(symbol: str, fast: bool = True) -> str:
    """Stream name for one symbol: the symbol lower-cased, ``btcusdt@markPrice@1s``
    (or the 3 s stream). ``str.lower`` leaves scripts without case as they are:
    ``币安人生USDT`` streams as ``币安人生usdt@markPrice@1s``."""
    name = symbol.lower()
    return f"{name}@markPrice@1s" if fast else f"{name}@markPrice"


def combined_stream_url(ws_base: str) -> str:
    """The combined-stream endpoint under a base such as ``wss://fstream.binance.com/market``."""
    return ws_base.rstrip("/") + "/stream"


def open_interest_url(rest_base: str) -> str:
    return rest_base.rstrip("/") + "/fapi/v1/openInterest"


def exchange_info_url(rest_base: str) -> str:
    return rest_base.rstrip("/") + "/fapi/v1/exchangeInfo"


def shard(streams: Iterable[str], per_connection: int = MAX_STREAMS_PER_CONNECTION) -> list[list[str]]:
    """Split streams (sorted, so the layout is stable) into connection-sized groups."""
    if per_connection < 1:
        raise ValueError("per_connection must be >= 1")
    ordered = sorted(set(streams))
    return [ordered[i:i + per_connection] for i in range(0, len(ordered), per_connection)]


def subscribe_message(streams: Sequence[str], request_id: int, method: str = "SUBSCRIBE") -> str:
    return json.dumps({"method": method, "params": list(streams), "id": request_id}, separators=(",", ":"))


def control_answer(frame: str | bytes) -> Control | None:
    """A SUBSCRIBE/UNSUBSCRIBE answer: ``{"result": null, "id": n}`` or ``{"error": {..}, "id": n}``."""
    try:
        msg = json.loads(frame)
    except (ValueError, UnicodeDecodeError, RecursionError):  # absurd nesting is no answer either
        return None
    if not is_control(msg):
        return None
    rid = msg.get("id")
    error = msg.get("error")
    return Ack(rid if type(rid) is int else None, None if error is None else str(error)[:300])


def is_data_frame(frame: str | bytes) -> bool:
    """The cheap test every frame takes: a combined-stream frame names its stream
    first (``{"stream": ...``); acks and errors never do. Anything else is parsed."""
    head = frame[:24]
    return ('"stream"' in head) if isinstance(head, str) else (b'"stream"' in head)


class Listing(NamedTuple):
    """What exchangeInfo lists for a ``--all`` producer."""

    #: PERPETUAL contracts with status TRADING whose symbol follows the contract rule.
    symbols: set[str]
    #: Entries skipped because their symbol breaks the rule: symbol (repr for a
    #: non-string) -> what is wrong with it.
    rejected: dict[str, str]


def perpetual_listing(exchange_info: Mapping[str, Any]) -> Listing:
    """The PERPETUAL/TRADING symbols of an exchangeInfo answer.

    Dated delivery contracts (``CURRENT_QUARTER`` ...) and symbols not trading
    are not followed. An entry whose symbol breaks the symbol rule
    (``schemas.rules``) is skipped and reported in ``rejected``; it never costs
    the rest of the listing.
    """
    if type(exchange_info) is not dict:
        raise FrameRejected(NOT_OBJECT, f"exchangeInfo is {type(exchange_info).__name__}, not an object")
    symbols = exchange_info.get("symbols")
    if not isinstance(symbols, list):
        raise FrameRejected(MISSING_FIELD, "exchangeInfo has no symbols list")
    out: set[str] = set()
    rejected: dict[str, str] = {}
    for s in symbols:
        if not isinstance(s, dict) or s.get("contractType") != "PERPETUAL" or s.get("status") != "TRADING":
            continue
        sym = s.get("symbol")
        if type(sym) is not str:
            rejected[repr(sym)] = "symbol is not a string"
            continue
        problem = symbol_problem(sym)
        if problem is not None:
            rejected[sym] = problem
            continue
        out.add(sym)
    return Listing(out, rejected)


def sample(raw: str | bytes, limit: int = 200) -> str:
    """A truncated, printable excerpt of a frame for log lines."""
    text = raw.decode("utf-8", "replace") if isinstance(raw, bytes | bytearray) else str(raw)
    return text if len(text) <= limit else text[:limit] + f"...(+{len(text) - limit} chars)"


def _std_loads(raw: str | bytes) -> Any:
    return json.loads(raw)


try:  # orjson parses a markPrice frame in a third of the time (docs/producer.md, "Frame path cost")
    import orjson

    _fast_loads: Any = orjson.loads
except ImportError:  # pragma: no cover - orjson is a dependency; a stripped install still works
    _fast_loads = _std_loads


def load_json(raw: str | bytes, max_bytes: int = DEFAULT_MAX_FRAME_BYTES) -> Any:
    """The decoded frame, with the standard library's semantics exactly.

    orjson parses first; what it refuses (NaN, integers wider than 64 bits, lone
    surrogates, nesting past 1024, a byte-order mark, broken UTF-8) is parsed again by
    ``json.loads``, so every frame gets the answer ``json.loads`` gives it and only
    malformed frames pay twice. Where both accept a text they give the same objects."""
    if len(raw) > max_bytes:
        raise FrameRejected(TOO_LARGE, f"{len(raw)} bytes > {max_bytes}")
    try:
        return _fast_loads(raw)
    except (ValueError, RecursionError):  # orjson.JSONDecodeError is a ValueError; json's own below
        pass
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FrameRejected(BAD_JSON, str(exc)) from None
    except RecursionError:  # '[' * 100_000: nesting deeper than any payload
        raise FrameRejected(BAD_JSON, "nested too deeply") from None


def _number(v: Any, field: str, non_negative: bool) -> float:
    # Binance sends decimal strings; float() of a decimal string is the nearest
    # double, and repr() of it round-trips, so no precision is invented or lost.
    # Four calls per markPrice update: written for speed (docs/producer.md, "Frame path cost").
    if type(v) is str:
        # float() also takes what no decimal is: surrounding whitespace, "1_000",
        # digits of other scripts (fullwidth, Arabic-Indic); a decimal is ASCII, no "_", no padding
        # (strip() removes exactly the characters isspace() is true for, from both ends).
        if not v.isascii() or "_" in v or len(v.strip()) != len(v):
            raise FrameRejected(BAD_NUMBER, f"{field}={v!r} is not a decimal number")
        try:
            x = float(v)
        except ValueError:
            raise FrameRejected(BAD_NUMBER, f"{field}={v!r} is not a number") from None
    elif type(v) is float:
        x = v
    elif type(v) is int:
        try:
            x = float(v)
        except OverflowError:  # an integer literal wider than any double
            raise FrameRejected(BAD_NUMBER, f"{field}: an integer of {len(str(v))} digits") from None
    else:
        raise FrameRejected(BAD_NUMBER, f"{field}={v!r} is not a number")
    if x - x != 0.0:  # not math.isfinite(x), without the call: inf - inf and nan - nan are nan
        raise FrameRejected(NON_FINITE, f"{field}={v!r}")
    if non_negative and x < 0:
        raise FrameRejected(BAD_NUMBER, f"{field}={v!r} is negative")
    return x


def _millis(v: Any, field: str) -> int:
    if type(v) is not int:
        raise FrameRejected(BAD_TIMESTAMP, f"{field}={v!r} is not integer milliseconds")
    if not MIN_EVENT_TIME_MS <= v < MAX_EVENT_TIME_MS:
        raise FrameRejected(BAD_TIMESTAMP, f"{field}={v} is outside 2017..2100")
    return v


def _symbol(v: Any) -> str:
    if type(v) is not str:
        raise FrameRejected(BAD_SYMBOL, f"s={v!r} is not a string")
    problem = symbol_problem(v)
    if problem is not None:
        raise FrameRejected(BAD_SYMBOL, problem)
    return v


#: The metrics of a markPriceUpdate, in the order :func:`mark_price_values` gives their values.
MARK_PRICE_METRICS: Final = (_MARK, _INDEX, _SETTLE, _FUNDING, _NEXT_FUNDING)

#: One markPriceUpdate, validated: ``(symbol, event time ms, values)``, the values in the
#: order of :data:`MARK_PRICE_METRICS`, None where a metric is absent (no funding).
MarkPrice = tuple[str, int, tuple[float | None, ...]]


def mark_price_values(d: Any) -> MarkPrice:
    """The validated fields of one markPriceUpdate payload (all or nothing).

    The frame path encodes these straight into Avro bodies, without a record dict per
    point (docs/producer.md, "Frame path cost"); :func:`mark_price_points` builds the
    records from the same values, so both paths accept and refuse the same payloads."""
    if type(d) is not dict:
        raise FrameRejected(NOT_OBJECT, f"markPrice payload is {type(d).__name__}")
    try:
        e = d["e"]  # event type
        s = d["s"]  # symbol
        E = d["E"]  # event time, ms
        p = d["p"]  # mark price
        i = d["i"]  # index price
        P = d["P"]  # estimated settle price
        r = d["r"]  # funding rate ("" for delivery contracts)
        T = d["T"]  # next funding time, ms (0 for delivery contracts)
    except KeyError as exc:
        raise FrameRejected(MISSING_FIELD, f"markPriceUpdate without {exc.args[0]!r}") from None
    if e != "markPriceUpdate":
        raise FrameRejected(UNEXPECTED_EVENT, f"e={e!r}")
    symbol = _symbol(s)
    et = _millis(E, "E")
    return symbol, et, (
        _number(p, "p", True),
        _number(i, "i", True),
        _number(P, "P", True),
        None if r == "" else _number(r, "r", False),
        # only the integer 0 means "no funding"; false or 0.0 is bad
        None if type(T) is int and T == 0 else float(_millis(T, "T")),
    )


def mark_price_points(d: Any, ingest_ms: int, source: str = SOURCE) -> list[Record]:
    """The MetricPoint records of one markPriceUpdate payload (all or nothing)."""
    return records([mark_price_values(d)], ingest_ms, source)


def is_control(msg: Any) -> bool:
    """True for a SUBSCRIBE/UNSUBSCRIBE answer (``{"result": ..., "id": n}`` or an error)."""
    return type(msg) is dict and "id" in msg and ("result" in msg or "error" in msg)


def _filtered_out(symbol: Any, symbols: frozenset[str]) -> bool:
    """Only items whose ``s`` is one of the followed symbols are kept; anything else
    (another symbol, none, a list or object) is skipped without costing the frame."""
    return not (type(symbol) is str and symbol in symbols)


def mark_price_updates(msg: Any, symbols: frozenset[str] | None = None) -> list[MarkPrice]:
    """The markPriceUpdates of one decoded websocket message: combined ``{"stream", "data"}``,
    a raw payload, or the all-market array (:func:`mark_price_values` of each).

    An array is parsed item by item: one bad item is rejected (raised after the
    good ones are kept would lose them, so bad items are collected and the good
    updates returned via :class:`PartialFrame`). ``symbols``, when given, keeps
    only those symbols (the all-market stream sends every symbol).
    """
    data = msg.get("data", msg) if type(msg) is dict and "stream" in msg else msg
    if type(data) is list:
        out: list[MarkPrice] = []
        errors: list[FrameRejected] = []
        for item in data:
            if symbols is not None and type(item) is dict and _filtered_out(item.get("s"), symbols):
                continue
            try:
                out.append(mark_price_values(item))
            except FrameRejected as exc:
                errors.append(exc)
        if errors:
            raise PartialFrame(out, errors)
        return out
    if symbols is not None and type(data) is dict and _filtered_out(data.get("s"), symbols):
        return []
    return [mark_price_values(data)]


def points_from_message(
    msg: Any, ingest_ms: int, source: str = SOURCE, symbols: frozenset[str] | None = None,
) -> list[Record]:
    """The MetricPoint records of one decoded websocket message (:func:`mark_price_updates`);
    a partly bad array raises :class:`PartialFrame` with the good items' records."""
    try:
        updates = mark_price_updates(msg, symbols)
    except PartialFrame as exc:
        raise PartialFrame(records(exc.points, ingest_ms, source), exc.errors) from None
    return records(updates, ingest_ms, source)


def records(updates: list[MarkPrice], ingest_ms: int, source: str) -> list[Record]:
    """The MetricPoint records of validated markPriceUpdates (absent metrics left out)."""
    return [{"source": source, "symbol": symbol, "metric": metric, "value": v, "event_time": et,
             "ingest_time": ingest_ms}
            for symbol, et, values in updates
            for metric, v in zip(MARK_PRICE_METRICS, values, strict=True) if v is not None]


class PartialFrame(FrameRejected):
    """An array frame where some items were bad: ``points`` holds what the good ones gave
    (records from :func:`points_from_message`, updates from :func:`mark_price_updates`)."""

    def __init__(self, points: list[Any], errors: list[FrameRejected]) -> None:
        super().__init__(errors[0].reason, f"{len(errors)} bad item(s), first: {errors[0].detail}")
        self.points = points
        self.errors = errors


def open_interest_point(d: Any, ingest_ms: int, source: str = SOURCE) -> Record:
    """The MetricPoint of one ``GET /fapi/v1/openInterest`` response body."""
    if type(d) is not dict:
        raise FrameRejected(NOT_OBJECT, f"openInterest payload is {type(d).__name__}")
    try:
        oi = d["openInterest"]  # contracts open, decimal string
        s = d["symbol"]
        t = d["time"]  # observation time, ms
    except KeyError as exc:
        raise FrameRejected(MISSING_FIELD, f"openInterest without {exc.args[0]!r}") from None
    return {"source": source, "symbol": _symbol(s), "metric": _OI,
            "value": _number(oi, "openInterest", non_negative=True),
            "event_time": _millis(t, "time"), "ingest_time": ingest_ms}


#: How the markPrice websocket is spoken: the server pings (the websockets library answers),
#: a connection ends after 24 h (rotated at 23.5 h without a gap), 200 streams a connection,
#: at most 10 messages a second from the client (5 leaves room for pongs). docs/producer.md.
DIALECT: Final = Dialect(
    source=SOURCE,
    subscribe=subscribe_message,
    control=control_answer,
    is_data_frame=is_data_frame,
    chunk=100,
    shard=shard,
    max_messages_per_second=5.0,
    ping=None,
    max_lifetime=23.5 * 3600,
    url=combined_stream_url,
)
