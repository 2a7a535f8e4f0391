"""The life of one logical websocket connection to a venue, as a pure state machine.

No sockets, no tasks, no clock of its own: like python-websockets' sans-I/O
``Protocol`` (bytes in, events and bytes out; the asyncio connection around
it only moves bytes), :class:`ConnectionProtocol` is fed what happened, with
the monotonic time it happened at, and answers with what to do:

======================================  =============================================
event (method)                          typical actions
======================================  =============================================
:meth:`~ConnectionProtocol.start`       ``Connect`` the first socket
:meth:`~ConnectionProtocol.connected`   ``Send`` the SUBSCRIBE messages (paced)
:meth:`~ConnectionProtocol.received`    ``Deliver`` a data frame; acks and errors are
                                        handled here and never delivered; the
                                        successor's first data ``Close`` s the old socket
:meth:`~ConnectionProtocol.closed`      ``Connect`` again after a backoff delay
:meth:`~ConnectionProtocol.connect_failed`  ``Connect`` again later, or ``Fail`` (permanent)
:meth:`~ConnectionProtocol.tick`        paced ``Send`` s, ``Close`` a silent socket,
                                        ``Connect`` a rotation successor
:meth:`~ConnectionProtocol.add` /       ``Send`` SUBSCRIBE / UNSUBSCRIBE (paced)
:meth:`~ConnectionProtocol.remove`
:meth:`~ConnectionProtocol.stop`        ``Close`` everything, never reconnect
======================================  =============================================

:meth:`~ConnectionProtocol.next_deadline` says when ``tick`` is due next, so
the adapter (``producer.websocket``) sleeps exactly that long; tests drive the
machine with a fake clock and no sleeping at all.

What is venue-specific comes from the venue's :class:`~producer.venue.Dialect`
(the message formats, which frames are control answers, the heartbeat, the
limits); everything else is the same for every venue. What it owns, and why:

- **Pacing.** Binance closes a connection that sends more than 10 messages a
  second (it counts what the client sends). SUBSCRIBE/UNSUBSCRIBE messages,
  at most the dialect's ``chunk`` streams each, leave a socket at least
  ``1 / max_messages_per_second`` seconds (+1 ms) apart (default 5/s, leaving
  room for pongs).
- **Control frames.** The dialect reads acks, refusals and pongs (Binance:
  ``{"result": null, "id": n}`` and ``{"error": {...}, "id": n}``); answers are
  matched to the request they answer where the venue echoes its id; a refusal
  is counted (``subscribe_errors``) and logged with the streams it refused.
  None reaches the data path.
- **Heartbeat.** Where the venue wants the client to ping (Bybit
  ``{"op":"ping"}``, OKX ``ping``, Hyperliquid ``{"method":"ping"}``), every
  open socket sends the dialect's ping every ``ping_interval`` seconds.
- **Silence.** Since 2026-04 an unrouted connection accepts SUBSCRIBE and
  then sends nothing; a socket that should stream and delivered no data for
  ``silence_timeout`` is closed and replaced.
- **Rotation.** Binance ends a connection after 24 h. At ``max_lifetime`` a
  successor is opened and subscribed; only when it has delivered data is the
  old socket closed, so there is no gap (the overlap's frames arrive twice;
  the event identity dedupes them downstream). A successor that fails or
  stays silent is dropped and the rotation is tried again later.
- **Memory of streams.** The stream set lives here, not on the server: every
  new socket subscribes all of it.
- **Backoff.** Reconnect delays come from the injected generator, which starts
  over once a socket delivered data.
- **Handshake failures**, sorted by ``producer.failures.classify_handshake``:
  transient ones are retried forever (Retry-After honoured), permanent ones
  end the connection with ``Fail``.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import Enum
from typing import Final

from perpstream.producer import binance
from perpstream.producer.failures import (
    RATE_LIMITED_HANDSHAKE_WAIT,
    HandshakeFault,
    classify_handshake,
    close_is_suspicious,
)
from perpstream.producer.venue import Ack, Control, Dialect
from perpstream.runtime.backoff import BackoffFactory
from perpstream.runtime.logs import RateLimitedLog
from perpstream.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)

#: Longest wait before a failed rotation is tried again.
ROTATION_RETRY_CAP: Final = 60.0
#: How many stream names an error log line carries (the count is always there).
_LOGGED_STREAMS: Final = 20


# -- actions ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Send:
    """Send this text frame on socket ``socket``."""

    socket: int
    text: str


@dataclass(frozen=True, slots=True)
class Close:
    """Close socket ``socket`` (frames it already received still arrive as events)."""

    socket: int
    reason: str


@dataclass(frozen=True, slots=True)
class Connect:
    """Open a new socket with id ``socket`` after ``delay`` seconds.

    ``purpose`` is ``initial``, ``reconnect`` or ``rotation`` (a successor
    opened while the current socket still streams).
    """

    socket: int
    delay: float
    purpose: str


@dataclass(frozen=True, slots=True)
class Deliver:
    """Hand this data frame to the data path (normalisation)."""

    socket: int
    frame: str | bytes


@dataclass(frozen=True, slots=True)
class Fail:
    """A permanent fault: stop this connection and report ``cause``."""

    cause: str


Action = Send | Close | Connect | Deliver | Fail


# -- state -----------------------------------------------------------------------------------


class SocketState(Enum):
    CONNECTING = "connecting"
    OPEN = "open"
    CLOSING = "closing"


@dataclass(slots=True)
class _Socket:
    id: int
    purpose: str
    state: SocketState = SocketState.CONNECTING
    opened_at: float = 0.0
    last_data: float = 0.0
    has_data: bool = False
    #: Why we closed it ("" until we do).
    end_reason: str = ""
    #: Requests waiting for their pacing slot: (method, streams).
    outbox: deque[tuple[str, list[str]]] = field(default_factory=deque)
    next_send: float = 0.0
    #: Requests sent and not answered yet: id -> (method, streams).
    pending: dict[int, tuple[str, list[str]]] = field(default_factory=dict)
    #: When the next application heartbeat is due (inf: the dialect has none).
    next_ping: float = float("inf")


class ConnectionProtocol:
    """One logical connection; see the module doc. Not thread-safe, no I/O."""

    def __init__(
        self,
        name: str,
        streams: Iterable[str] = (),
        *,
        backoff: BackoffFactory,
        telemetry: Telemetry | None = None,
        silence_timeout: float = 10.0,
        max_lifetime: float | None = None,
        max_messages_per_second: float | None = None,
        chunk: int | None = None,
        log_interval: float = 30.0,
        dialect: Dialect = binance.DIALECT,
    ) -> None:
        if max_messages_per_second is None:
            max_messages_per_second = dialect.max_messages_per_second
        if max_messages_per_second <= 0:
            raise ValueError("max_messages_per_second must be > 0")
        self.name = name
        self.streams: set[str] = set(streams)
        self.telemetry = telemetry if telemetry is not None else Telemetry()
        self.silence_timeout = silence_timeout
        self.max_lifetime = dialect.max_lifetime if max_lifetime is None else max_lifetime
        # 1 ms of margin: float sums of the gap and the adapter's timer must never
        # squeeze one more message into a second than the limit allows.
        self.send_gap = 1.0 / max_messages_per_second + 0.001
        self.chunk = chunk or dialect.chunk
        self.dialect = dialect
        self._is_data = dialect.is_data_frame
        self._backoff = backoff
        self._delays: Iterator[float] = backoff()
        self._sockets: dict[int, _Socket] = {}
        self._socket_ids = itertools.count(1)
        self._request_ids = itertools.count(1)
        self.primary: int | None = None
        self.successor: int | None = None
        self.rotate_at = float("inf")
        self.stopped = False
        self.failure: str | None = None
        self._now = 0.0
        self._rlog = RateLimitedLog(log, log_interval, clock=lambda: self._now)

    # -- introspection ---------------------------------------------------------------------

    def state(self, socket: int) -> SocketState | None:
        s = self._sockets.get(socket)
        return s.state if s is not None else None

    @property
    def open_sockets(self) -> int:
        return sum(1 for s in self._sockets.values() if s.state is SocketState.OPEN)

    def next_deadline(self) -> float | None:
        """When :meth:`tick` has something to do next (None: nothing is scheduled)."""
        due: list[float] = []
        for s in self._sockets.values():
            if s.state is not SocketState.OPEN:
                continue
            if s.outbox:
                due.append(s.next_send)
            due.append(s.next_ping)
            if self.streams:
                if s.id == self.primary:
                    due.append(s.last_data + self.silence_timeout)
                elif s.id == self.successor and not s.has_data:
                    due.append(s.opened_at + self.silence_timeout)
        p = self._sockets.get(self.primary) if self.primary is not None else None
        if p is not None and p.state is SocketState.OPEN and self.successor is None:
            due.append(self.rotate_at)
        first = min(due, default=float("inf"))
        return None if first == float("inf") else first

    # -- events ----------------------------------------------------------------------------

    def start(self, now: float) -> list[Action]:
        self._now = now
        s = self._new_socket("initial")
        self.primary = s.id
        return [Connect(s.id, 0.0, "initial")]

    def connected(self, socket: int, now: float) -> list[Action]:
        """The socket's opening handshake succeeded."""
        self._now = now
        s = self._sockets.get(socket)
        if s is None or self.stopped:
            return [Close(socket, "stopped")]
        s.state = SocketState.OPEN
        s.opened_at = s.last_data = now
        s.next_send = now
        if self.dialect.ping is not None:
            s.next_ping = now + self.dialect.ping_interval
        self.telemetry.inc("ws_connects", 1)
        log.info("websocket connected", extra={"connection": self.name, "socket": socket,
                                               "purpose": s.purpose, "streams": len(self.streams)})
        self._rlog.reset(f"{self.name}:connect")
        if socket == self.primary:
            self.rotate_at = now + self.max_lifetime
        out: list[Action] = []
        if socket == self.successor and not self.streams:
            out.extend(self._promote(s, now))  # nothing to wait for: no gap is possible
        self._queue(s, "SUBSCRIBE", sorted(self.streams))
        out.extend(self._flush(s, now))
        return out

    def connect_failed(self, socket: int, now: float, *, status: int | None = None, kind: str = "",
                       detail: str = "", retry_after: float | None = None) -> list[Action]:
        """The opening handshake failed: HTTP ``status`` instead of 101 (None: no answer)."""
        self._now = now
        s = self._sockets.pop(socket, None)
        if s is None or self.stopped:
            return []
        fault = classify_handshake(status, kind)
        reason = f"http_{status}" if status is not None else (kind or "error")
        self.telemetry.inc("ws_connect_failures", 1, {"reason": reason})
        if fault is HandshakeFault.PERMANENT:
            cause = (f"websocket handshake refused ({reason}): {detail[:200]}; "
                     "retrying cannot help (check the websocket URL and where this runs from)")
            return self._fail(cause, now)
        delay = next(self._delays)
        if fault is HandshakeFault.RATE_LIMITED:
            delay = max(delay, retry_after if retry_after is not None else RATE_LIMITED_HANDSHAKE_WAIT)
        elif retry_after is not None:
            delay = max(delay, retry_after)
        if socket == self.successor:
            self.successor = None
            self.rotate_at = now + min(ROTATION_RETRY_CAP, delay)
            self._rlog.warning(f"{self.name}:rotate", "websocket rotation failed to connect; "
                               "keeping the current socket", {"connection": self.name, "reason": reason,
                                                               "error": detail[:200]})
            return []
        self._rlog.warning(f"{self.name}:connect", "websocket connect failed", {
            "connection": self.name, "reason": reason, "error": detail[:200], "retry_in_s": round(delay, 2)})
        new = self._new_socket("reconnect")
        self.primary = new.id
        return [Connect(new.id, delay, "reconnect")]

    def data(self, socket: int, frame: str | bytes, now: float) -> list[Action] | None:
        """:meth:`received`, with None for the common case: a data frame on a socket that
        already streams, whose only action is to deliver it (the read loop then hands it
        over without an action list per frame; docs/producer.md, "Frame path cost")."""
        s = self._sockets.get(socket)
        if s is not None and s.has_data and self._is_data(frame):
            s.last_data = now
            return None
        return self.received(socket, frame, now)

    def received(self, socket: int, frame: str | bytes, now: float) -> list[Action]:
        """A text (or binary) frame arrived on ``socket``."""
        s = self._sockets.get(socket)
        if not self._is_data(frame):
            answer = self.dialect.control(frame)
            if answer is not None:
                self._now = now
                if s is not None:
                    self._on_control(s, answer)
                return []
        if s is None:
            return [Deliver(socket, frame)]
        s.last_data = now
        if s.has_data:
            return [Deliver(socket, frame)]
        self._now = now
        s.has_data = True
        self._delays = self._backoff()  # a socket that streams: the next backoff starts over
        out: list[Action] = [Deliver(socket, frame)]
        if socket == self.successor:
            out.extend(self._promote(s, now))
        return out

    def closed(self, socket: int, now: float, *, code: int | None = None,
               error: str | None = None) -> list[Action]:
        """The socket is gone (closed by either side, or failed while reading)."""
        self._now = now
        s = self._sockets.pop(socket, None)
        if s is None or self.stopped:
            return []
        if socket == self.successor:  # died before streaming: keep the old socket, retry later
            self.successor = None
            self.rotate_at = now + min(ROTATION_RETRY_CAP, next(self._delays))
            self._rlog.warning(f"{self.name}:rotate", "websocket rotation successor closed early", {
                "connection": self.name, "code": code, "error": error})
            return []
        if socket != self.primary:
            return []  # an old socket we closed after a rotation
        reason = s.end_reason or ("error" if error else "closed")
        self.telemetry.inc("reconnects", 1, {"reason": reason})
        if code is not None:
            self.telemetry.inc("ws_closes", 1, {"code": str(code)})
        level = logging.ERROR if close_is_suspicious(code) else logging.WARNING
        succ = self._sockets.get(self.successor) if self.successor is not None else None
        if succ is not None:
            # The successor is already subscribed to everything: it takes over.
            self.primary, self.successor = succ.id, None
            self.rotate_at = (succ.opened_at if succ.state is SocketState.OPEN else now) + self.max_lifetime
            self._rlog.log(level, f"{self.name}:closed", "websocket connection ended; its successor "
                           "takes over", {"connection": self.name, "reason": reason, "code": code})
            return []
        delay = next(self._delays)
        self._rlog.log(level, f"{self.name}:closed", "websocket connection ended; reconnecting", {
            "connection": self.name, "reason": reason, "code": code, "error": error,
            "retry_in_s": round(delay, 2)})
        new = self._new_socket("reconnect")
        self.primary = new.id
        self.rotate_at = float("inf")
        return [Connect(new.id, delay, "reconnect")]

    def tick(self, now: float) -> list[Action]:
        """Timers: pacing, the silence watchdog, rotation."""
        self._now = now
        out: list[Action] = []
        for s in list(self._sockets.values()):
            if s.state is not SocketState.OPEN:
                continue
            if s.outbox:
                out.extend(self._flush(s, now))
            if now >= s.next_ping and self.dialect.ping is not None:
                s.next_ping = now + self.dialect.ping_interval
                out.append(Send(s.id, self.dialect.ping))
            if not self.streams:
                s.last_data = max(s.last_data, now)  # nothing subscribed: silence is expected
                continue
            if s.id == self.primary and now - s.last_data >= self.silence_timeout:
                s.state, s.end_reason = SocketState.CLOSING, "silence"
                self._rlog.warning(f"{self.name}:silence", "websocket silent; reconnecting", {
                    "connection": self.name, "silent_s": round(now - s.last_data, 2),
                    "streams": len(self.streams)})
                out.append(Close(s.id, "silence"))
            elif s.id == self.successor and not s.has_data and now - s.opened_at >= self.silence_timeout:
                s.state, s.end_reason = SocketState.CLOSING, "rotation_failed"
                self._sockets.pop(s.id, None)
                self.successor = None
                self.rotate_at = now + min(ROTATION_RETRY_CAP, next(self._delays))
                self._rlog.warning(f"{self.name}:rotate", "websocket rotation successor stayed silent; "
                                   "keeping the current socket", {"connection": self.name})
                out.append(Close(s.id, "rotation_failed"))
        p = self._sockets.get(self.primary) if self.primary is not None else None
        if (p is not None and p.state is SocketState.OPEN and self.successor is None
                and now >= self.rotate_at):
            succ = self._new_socket("rotation")
            self.successor = succ.id
            log.info("rotating websocket connection", extra={"connection": self.name})
            out.append(Connect(succ.id, 0.0, "rotation"))
        return out

    def add(self, streams: Iterable[str], now: float) -> list[Action]:
        """Follow more streams: SUBSCRIBE on every open socket (connecting ones
        subscribe the whole set when they open)."""
        self._now = now
        new = sorted(set(streams) - self.streams)
        if not new:
            return []
        if not self.streams:
            for s in self._sockets.values():
                s.last_data = max(s.last_data, now)  # the silence clock starts now
        self.streams.update(new)
        return self._request_all("SUBSCRIBE", new, now)

    def remove(self, streams: Iterable[str], now: float) -> list[Action]:
        self._now = now
        gone = sorted(self.streams & set(streams))
        if not gone:
            return []
        self.streams.difference_update(gone)
        return self._request_all("UNSUBSCRIBE", gone, now)

    def stop(self, now: float) -> list[Action]:
        """Close every socket; nothing reconnects after this."""
        self._now = now
        self.stopped = True
        out: list[Action] = []
        for s in self._sockets.values():
            if s.state is not SocketState.CLOSING:
                s.state, s.end_reason = SocketState.CLOSING, "stopped"
                out.append(Close(s.id, "stopped"))
        return out

    # -- internals --------------------------------------------------------------------------

    def _new_socket(self, purpose: str) -> _Socket:
        s = _Socket(next(self._socket_ids), purpose)
        self._sockets[s.id] = s
        return s

    def _fail(self, cause: str, now: float) -> list[Action]:
        self.failure = cause
        out: list[Action] = [Fail(cause)]
        out.extend(self.stop(now))
        return out

    def _promote(self, succ: _Socket, now: float) -> list[Action]:
        """The successor streams: it becomes the primary, the old socket is closed."""
        out: list[Action] = []
        old = self._sockets.get(self.primary) if self.primary is not None else None
        self.primary, self.successor = succ.id, None
        self.rotate_at = succ.opened_at + self.max_lifetime
        self.telemetry.inc("ws_rotations", 1)
        if old is not None and old.id != succ.id:
            old.state, old.end_reason = SocketState.CLOSING, "rotated"
            self._sockets.pop(old.id, None)
            out.append(Close(old.id, "rotated"))
        log.info("websocket rotated", extra={"connection": self.name, "socket": succ.id})
        return out

    def _queue(self, s: _Socket, method: str, streams: list[str]) -> None:
        for i in range(0, len(streams), self.chunk):
            s.outbox.append((method, streams[i:i + self.chunk]))

    def _request_all(self, method: str, streams: list[str], now: float) -> list[Action]:
        out: list[Action] = []
        for s in self._sockets.values():
            if s.state is SocketState.OPEN:
                self._queue(s, method, streams)
                out.extend(self._flush(s, now))
        return out

    def _flush(self, s: _Socket, now: float) -> list[Action]:
        """Send what the pacing allows now; the rest waits for :meth:`tick`."""
        out: list[Action] = []
        while s.outbox and now >= s.next_send:
            method, streams = s.outbox.popleft()
            rid = next(self._request_ids)
            if self.dialect.acks_by_id:
                s.pending[rid] = (method, streams)
            out.append(Send(s.id, self.dialect.subscribe(streams, rid, method)))
            s.next_send = now + self.send_gap
        return out

    def _on_control(self, s: _Socket, answer: Control) -> None:
        if not isinstance(answer, Ack):
            return  # a pong: the heartbeat is answered
        req = s.pending.pop(answer.request_id, None) if answer.request_id is not None else None
        if answer.error is None:
            return
        self.telemetry.inc("subscribe_errors", 1)
        method, streams = req if req is not None else (None, list(answer.streams))
        self._rlog.error(f"{self.name}:refused", "websocket request refused", {
            "connection": self.name, "error": answer.error[:300], "request": method,
            "request_id": answer.request_id, "streams": streams[:_LOGGED_STREAMS],
            "stream_count": len(streams)})
