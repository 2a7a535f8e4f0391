"""What a venue module gives the producer: the one contract every exchange is read through.

A venue module (``producer.binance``, ``producer.bybit``, ``producer.okx``,
``producer.hyperliquid``) is pure: no sockets, no clock. It describes

- how its websocket is spoken (:class:`Dialect`): the subscribe and unsubscribe
  messages, which frames are control answers (:class:`Ack`, :class:`Pong`) and
  never reach the data path, the application heartbeat it needs, how many
  streams a connection and a request may carry, and how fast a client may send;
- what it lists (:class:`Instrument`): the symbol exactly as the venue spells it,
  the base coin as its metadata names it (the cross-venue asset key is folded
  from it: docs/assets.md), the funding interval where the listing gives it, and
  the websocket streams the symbol needs;
- how its data frames become points: a parser object with
  ``parse(raw, ingest_ms) -> list[Record]`` that raises
  :class:`~producer.exceptions.FrameRejected` (with a reason label) for a frame
  it cannot read, and ``reset()`` for a parser that keeps state per connection.

The websocket state machine (``producer.ws_protocol``) owns everything that is
the same on every venue: pacing, acks, the silence watchdog, heartbeats,
reconnect and resubscribe, rotation. docs/producer.md, "Venues".
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

#: A MetricPoint as a plain dict (``source``, ``symbol``, ``metric``, ``value``,
#: ``event_time``, ``ingest_time``), the shape the encoder writes.
Record = dict[str, Any]


@dataclass(frozen=True, slots=True)
class Ack:
    """A venue's answer to a subscribe or unsubscribe request.

    ``request_id`` is the id the request carried, where the venue echoes it
    (None where it does not: OKX answers per channel). ``error`` is None when the
    request took, else the venue's words (code and message)."""

    request_id: int | None
    error: str | None = None
    #: The streams the answer names, where it names them (OKX echoes each ``arg``).
    streams: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Pong:
    """The answer to the application heartbeat."""


Control = Ack | Pong


@dataclass(frozen=True)
class Dialect:
    """How one venue's websocket is spoken (see the module doc)."""

    #: The ``source`` its points carry (docs/contract.md): ``binance_usdm``, ``bybit_linear`` ...
    source: str
    #: ``subscribe(streams, request_id, method)`` with method ``SUBSCRIBE`` or ``UNSUBSCRIBE``:
    #: the text frame to send.
    subscribe: Callable[[Sequence[str], int, str], str]
    #: ``control(frame)``: an :class:`Ack` or :class:`Pong` for a control answer, None for
    #: anything else (data, or garbage the data path rejects and counts).
    control: Callable[[str | bytes], Control | None]
    #: ``is_data_frame(frame)``: a cheap test every frame takes first. True only when the
    #: frame is surely data (it then skips :attr:`control`); False means "ask control".
    is_data_frame: Callable[[str | bytes], bool]
    #: Streams per subscribe request.
    chunk: int
    #: ``shard(streams)``: the streams split into groups, one connection each, within the
    #: venue's per-connection limits.
    shard: Callable[[Sequence[str]], list[list[str]]]
    #: Messages a client may send per second on one connection (pacing of requests).
    max_messages_per_second: float = 5.0
    #: The application heartbeat to send every :attr:`ping_interval` seconds, or None
    #: where the server pings and the websocket library answers (Binance).
    ping: str | None = None
    ping_interval: float = 20.0
    #: True where answers echo the request id (Binance, Bybit): requests are then kept until
    #: answered, to name the streams a refusal refused. False where they do not (OKX, Hyperliquid).
    acks_by_id: bool = True
    #: Rotate a connection (successor first, no gap) after this many seconds; inf: never.
    max_lifetime: float = float("inf")
    #: The websocket URL a connection opens, from the configured endpoint.
    url: Callable[[str], str] = lambda base: base


@dataclass(frozen=True, slots=True)
class Instrument:
    """One listed perpetual, as its venue's metadata gives it."""

    #: Exactly as the venue spells it (``1000PEPEUSDT``, ``PEPE-USDT-SWAP``, ``kPEPE``).
    symbol: str
    #: The base coin as the venue's metadata names it (``1000PEPE``, ``PEPE``, ``kPEPE``).
    base: str
    #: The quote (or settlement) coin: ``USDT``, ``USDC``, ``USD``.
    quote: str
    #: The websocket streams this instrument needs (several on OKX).
    streams: tuple[str, ...]
    #: Hours between settlements, where the listing says (None: the stream says, or 8).
    funding_interval_h: float | None = None


class FrameParser(Protocol):
    """Data frames to points (see the module doc)."""

    def parse(self, raw: str | bytes, ingest_ms: int) -> list[Record]: ...

    def reset(self) -> None: ...


def shard_by_count(limit: int) -> Callable[[Sequence[str]], list[list[str]]]:
    """At most ``limit`` streams a connection, in the order given."""

    def shard(streams: Sequence[str]) -> list[list[str]]:
        s = list(streams)
        return [s[i:i + limit] for i in range(0, len(s), limit)]

    return shard


def shard_by_chars(limit: int, per_stream_overhead: int = 0) -> Callable[[Sequence[str]], list[list[str]]]:
    """Streams whose names add up to at most ``limit`` characters a connection (Bybit
    counts the characters of a connection's subscription args)."""

    def shard(streams: Sequence[str]) -> list[list[str]]:
        out: list[list[str]] = []
        size = limit + 1
        for name in streams:
            n = len(name) + per_stream_overhead
            if size + n > limit:
                out.append([])
                size = 0
            out[-1].append(name)
            size += n
        return out

    return shard
