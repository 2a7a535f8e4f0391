"""Websocket connection life for the markPrice streams.

:class:`StreamConnection` is one logical connection carrying up to 200
streams. It keeps it alive for weeks:

- reconnects forever with the injectable jittered backoff, which starts over
  after a connection that delivered data;
- subscribes its streams with SUBSCRIBE messages, paced under Binance's
  10 incoming messages per second per connection, and again after every
  reconnect (the streams are remembered here, not on the server);
- answers server pings (the websockets library replies to every ping);
- a silence watchdog reconnects a connection that should stream but has not
  delivered data for ``silence_timeout`` seconds (since 2026-04 an unrouted
  connection accepts SUBSCRIBE and then sends nothing);
- rotates before Binance's 24 h limit without a gap: the new connection is
  opened, subscribed and has delivered data before the old one is closed.
  Frames of the overlap arrive twice; the event identity dedupes them.

:class:`MarkPriceStreams` shards a changing set of streams over connections.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Iterable, Iterator
from typing import Any

import websockets
from websockets.exceptions import ConnectionClosed

from producer import binance
from producer.ingest import FrameSink
from producer.sources import now_ms
from service.backoff import BackoffFactory
from service.telemetry import Telemetry

log = logging.getLogger(__name__)

#: Streams per SUBSCRIBE message (Binance accepts more; smaller keeps frames modest).
SUBSCRIBE_CHUNK = 100
_ids = itertools.count(1)


class _Session:
    """One websocket of a :class:`StreamConnection` (two exist during a rotation)."""

    def __init__(self, owner: StreamConnection, ws: Any, serial: int) -> None:
        self.owner = owner
        self.ws = ws
        self.serial = serial
        self.opened_at = time.monotonic()
        self.first_data = asyncio.Event()
        self.last_data = time.monotonic()
        self.end_reason = ""
        self._send_lock = asyncio.Lock()
        self._last_send = 0.0
        self.pending: dict[int, tuple[str, list[str]]] = {}
        self.task: asyncio.Task[str] = asyncio.create_task(self._read(), name=f"{owner.name}#{serial}")

    async def send_request(self, method: str, streams: list[str]) -> None:
        for i in range(0, len(streams), SUBSCRIBE_CHUNK):
            chunk = streams[i:i + SUBSCRIBE_CHUNK]
            rid = next(_ids)
            self.pending[rid] = (method, chunk)
            async with self._send_lock:
                gap = 1.0 / self.owner.max_messages_per_second
                wait = self._last_send + gap - time.monotonic()
                if wait > 0:
                    await asyncio.sleep(wait)
                self._last_send = time.monotonic()
                await self.ws.send(binance.subscribe_message(chunk, rid, method))

    async def _read(self) -> str:
        """Read until the connection ends; returns why (``closed_<code>``, ``silence``).

        ``recv()`` is never cancelled (cancelling it mid-stream can hang): the
        watchdog and :meth:`close` end a session by closing its websocket, which
        makes ``recv()`` return what was already received and then raise.
        """
        owner = self.owner
        sink = owner.sink
        watchdog = asyncio.create_task(self._watchdog())
        try:
            if owner.streams:
                await self.send_request("SUBSCRIBE", sorted(owner.streams))
            recv = self.ws.recv
            while True:
                raw = await recv()
                ctl = sink.on_ws_frame(raw, now_ms())
                if ctl is not None:
                    self._on_control(ctl)
                    continue
                self.last_data = time.monotonic()
                if not self.first_data.is_set():
                    self.first_data.set()
        except ConnectionClosed as exc:
            if self.end_reason:
                return self.end_reason
            code = exc.rcvd.code if exc.rcvd is not None else None
            return f"closed_{code}" if code else "closed"
        finally:
            watchdog.cancel()

    async def _watchdog(self) -> None:
        """Close the connection when it should stream but has been silent too long."""
        timeout = self.owner.silence_timeout
        while True:
            await asyncio.sleep(max(0.05, self.last_data + timeout - time.monotonic()))
            now = time.monotonic()
            if now - self.last_data >= timeout:
                if not self.owner.streams:
                    self.last_data = now  # nothing subscribed: silence is expected
                    continue
                self.end_reason = "silence"
                await self._close_ws()
                return

    async def _close_ws(self) -> None:
        try:
            await asyncio.wait_for(self.ws.close(), 2)
        except Exception:
            with contextlib.suppress(Exception):
                self.ws.transport.abort()

    def _on_control(self, msg: dict[str, Any]) -> None:
        rid = msg.get("id")
        req = self.pending.pop(rid, None) if isinstance(rid, int) else None
        if "error" in msg:
            self.owner.telemetry.inc("subscribe_errors", 1)
            log.error("websocket request refused", extra={
                "connection": self.owner.name, "error": str(msg.get("error"))[:300],
                "request": req[0] if req else None, "streams": len(req[1]) if req else None,
            })

    async def close(self) -> None:
        """Close the websocket; frames already received are still handed to the sink."""
        if not self.end_reason:
            self.end_reason = "closed_by_us"
        await self._close_ws()
        try:
            await asyncio.wait_for(asyncio.shield(self.task), 5)
        except (TimeoutError, Exception):
            self.task.cancel()


class StreamConnection:
    """One logical connection (see the module doc). ``streams`` may change while it runs."""

    def __init__(
        self,
        name: str,
        url: str,
        sink: FrameSink,
        telemetry: Telemetry,
        backoff_factory: BackoffFactory,
        *,
        streams: Iterable[str] = (),
        silence_timeout: float = 10.0,
        max_lifetime: float = 23.5 * 3600,
        max_messages_per_second: float = 5.0,
        open_timeout: float = 10.0,
        max_frame_bytes: int = binance.DEFAULT_MAX_FRAME_BYTES,
    ) -> None:
        self.name = name
        self.url = url
        self.sink = sink
        self.telemetry = telemetry
        self.streams: set[str] = set(streams)
        self.silence_timeout = silence_timeout
        self.max_lifetime = max_lifetime
        self.max_messages_per_second = max_messages_per_second
        self.open_timeout = open_timeout
        self.max_frame_bytes = max_frame_bytes
        self._backoff_factory = backoff_factory
        self._sessions: list[_Session] = []
        self._serial = itertools.count(1)
        self._tasks: set[asyncio.Task[Any]] = set()
        #: Set while at least one session is connected.
        self.connected = asyncio.Event()

    # -- subscription changes -------------------------------------------------------

    def add(self, streams: Iterable[str]) -> None:
        new = sorted(set(streams) - self.streams)
        if new:
            self.streams.update(new)
            self._request("SUBSCRIBE", new)

    def remove(self, streams: Iterable[str]) -> None:
        gone = sorted(self.streams & set(streams))
        if gone:
            self.streams.difference_update(gone)
            self._request("UNSUBSCRIBE", gone)

    def _request(self, method: str, streams: list[str]) -> None:
        for s in self._sessions:
            t = asyncio.create_task(self._send_quietly(s, method, streams))
            self._tasks.add(t)
            t.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _send_quietly(session: _Session, method: str, streams: list[str]) -> None:
        # A closed connection re-subscribes everything on reconnect.
        with contextlib.suppress(ConnectionClosed):
            await session.send_request(method, streams)

    # -- life -------------------------------------------------------------------------

    async def _open(self, stop: asyncio.Event, delays: Iterator[float]) -> _Session | None:
        """Connect, retrying with backoff until it works or ``stop``."""
        while not stop.is_set():
            try:
                ws = await websockets.connect(
                    self.url, open_timeout=self.open_timeout, ping_interval=None,
                    # Frames a bit over the limit reach the parser and are counted as
                    # too_large; only absurd ones (4x) make the library drop the connection.
                    close_timeout=2, max_size=4 * self.max_frame_bytes, max_queue=64,
                )
            except (OSError, TimeoutError, websockets.InvalidHandshake) as exc:
                reason = type(exc).__name__
                self.telemetry.inc("ws_connect_failures", 1, {"reason": reason})
                delay = next(delays)
                log.warning("websocket connect failed", extra={
                    "connection": self.name, "error": str(exc)[:200], "retry_in_s": round(delay, 2)})
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
                continue
            session = _Session(self, ws, next(self._serial))
            self._sessions.append(session)
            self.connected.set()
            self.telemetry.inc("ws_connects", 1)
            log.info("websocket connected", extra={"connection": self.name, "streams": len(self.streams),
                                                   "session": session.serial})
            return session
        return None

    async def _drop(self, session: _Session) -> None:
        if session in self._sessions:
            self._sessions.remove(session)
        if not self._sessions:
            self.connected.clear()
        await session.close()

    async def run(self, stop: asyncio.Event) -> None:
        delays = self._backoff_factory()
        current: _Session | None = None
        try:
            while not stop.is_set():
                if current is None:
                    current = await self._open(stop, delays)
                    if current is None:
                        return
                stopper = asyncio.create_task(stop.wait())
                remaining = current.opened_at + self.max_lifetime - time.monotonic()
                await asyncio.wait({current.task, stopper}, timeout=max(0.0, remaining),
                                   return_when=asyncio.FIRST_COMPLETED)
                stopper.cancel()
                if stop.is_set():
                    return
                if current.task.done():
                    reason = "error" if current.task.exception() else current.task.result()
                    self.telemetry.inc("reconnects", 1, {"reason": reason.split("_")[0]})
                    log.warning("websocket connection ended; reconnecting",
                                extra={"connection": self.name, "reason": reason})
                    if current.first_data.is_set():
                        delays = self._backoff_factory()  # it was a good connection
                    await self._drop(current)
                    current = None
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), next(delays))
                    continue
                current = await self._rotate(current, stop, delays)
        finally:
            for s in list(self._sessions):
                await self._drop(s)

    async def _rotate(self, old: _Session, stop: asyncio.Event, delays: Iterator[float]) -> _Session | None:
        """Open the successor, wait until it streams, then close ``old`` (no gap)."""
        log.info("rotating websocket connection", extra={"connection": self.name})
        new = await self._open(stop, delays)
        if new is None:
            return old
        first = asyncio.create_task(new.first_data.wait())
        await asyncio.wait({first, new.task}, timeout=self.silence_timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        first.cancel()
        if new.first_data.is_set() or (not self.streams and not new.task.done()):
            await self._drop(old)
            self.telemetry.inc("ws_rotations", 1)
            return new
        # The successor never streamed: keep the old one, try again after a pause.
        await self._drop(new)
        old.opened_at = time.monotonic() - self.max_lifetime + min(60.0, next(delays))
        return old


class MarkPriceStreams:
    """A changing set of streams sharded over :class:`StreamConnection` s."""

    def __init__(
        self,
        url: str,
        sink: FrameSink,
        telemetry: Telemetry,
        backoff_factory: BackoffFactory,
        *,
        per_connection: int = binance.MAX_STREAMS_PER_CONNECTION,
        **connection_options: Any,
    ) -> None:
        self.url = url
        self.sink = sink
        self.telemetry = telemetry
        self.backoff_factory = backoff_factory
        self.per_connection = per_connection
        self.options = connection_options
        self.connections: list[StreamConnection] = []
        self._tasks: dict[StreamConnection, asyncio.Task[None]] = {}
        self._stop = asyncio.Event()
        self._names = itertools.count(1)
        telemetry.gauge_fn("ws_connections", lambda: float(
            sum(1 for c in self.connections if c.connected.is_set())))

    @property
    def streams(self) -> set[str]:
        return set().union(*(c.streams for c in self.connections)) if self.connections else set()

    def set_streams(self, wanted: Iterable[str]) -> None:
        """Subscribe new streams, unsubscribe gone ones, without restarting anything."""
        wanted = set(wanted)
        for conn in list(self.connections):
            conn.remove(conn.streams - wanted)
            if not conn.streams:
                self.connections.remove(conn)
                task = self._tasks.pop(conn, None)
                if task is not None:
                    task.cancel()
        missing = sorted(wanted - self.streams)
        for conn in self.connections:
            room = self.per_connection - len(conn.streams)
            if room > 0 and missing:
                conn.add(missing[:room])
                missing = missing[room:]
        for group in binance.shard(missing, self.per_connection):
            conn = StreamConnection(
                f"ws-{next(self._names)}", binance.combined_stream_url(self.url), self.sink,
                self.telemetry, self.backoff_factory, streams=group, **self.options,
            )
            self.connections.append(conn)
            self._tasks[conn] = asyncio.create_task(conn.run(self._stop), name=conn.name)

    async def close(self) -> None:
        self._stop.set()
        tasks = list(self._tasks.values())
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for t in pending:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
