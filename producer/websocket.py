"""The asyncio side of the venues' websockets: sockets, tasks and timers, nothing else.

Every decision (what to subscribe and when, which frame is data, when a
socket is silent, when and how to rotate, how long to back off, which
handshake failure is permanent) is made by the pure
:class:`producer.ws_protocol.ConnectionProtocol`. :class:`StreamConnection`
feeds it what the sockets report, with the monotonic time, and carries out
the actions it returns:

- ``Connect``: a task waits the delay, opens the socket (server pings are
  answered by the websockets library), then reads frames until it closes;
- ``Send``: queued to the socket's writer task, so frames leave in order;
- ``Deliver``: handed to the sink (normalisation) on the reader's turn;
- ``Close``: the socket is closed (aborted if the close handshake hangs);
  ``recv()`` is never cancelled, the reader ends when the socket does;
- ``Fail``: :meth:`StreamConnection.run` raises
  :class:`~producer.exceptions.PermanentFailure` with the cause.

One timer per connection: the run loop sleeps until the protocol's
:meth:`~producer.ws_protocol.ConnectionProtocol.next_deadline` or until
something changed, then calls ``tick``. Every task is kept and awaited
(``producer.tasks.BackgroundTasks``), and a reader that fails on a bug is
logged with its traceback and treated as a closed socket.

:class:`StreamSet` shards a changing set of streams over connections, within the
venue's per-connection limits (its :class:`~producer.venue.Dialect`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import websockets
from websockets.exceptions import ConnectionClosed, InvalidStatus

from perpstream.producer import binance
from perpstream.producer.exceptions import PermanentFailure
from perpstream.producer.sources import now_ms
from perpstream.producer.tasks import BackgroundTasks
from perpstream.producer.venue import Dialect
from perpstream.producer.ws_protocol import Action, Close, Connect, ConnectionProtocol, Deliver, Fail, Send
from perpstream.runtime.backoff import BackoffFactory
from perpstream.runtime.telemetry import Telemetry

log = logging.getLogger(__name__)

EDGE = "binance_websocket"


def edge_of(dialect: Dialect) -> str:
    """The failure-table edge of a venue's websocket: ``binance_websocket``, ``bybit_websocket`` ..."""
    return dialect.source.split("_")[0] + "_websocket"
#: How long a close handshake may take before the transport is aborted.
CLOSE_TIMEOUT = 2.0


class WsSink(Protocol):
    """Where a connection hands its data frames (``Ingest``, ``VenueIngest``)."""

    def on_ws_frame(self, raw: str | bytes, ingest_ms: int) -> Any | None: ...


@dataclass(eq=False)
class _SocketIO:
    id: int
    ws: Any = None
    outq: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None
    closing: bool = False


def handshake_details(exc: BaseException) -> tuple[int | None, str, float | None]:
    """(HTTP status, exception kind, Retry-After seconds) of a failed connect."""
    status: int | None = None
    retry_after: float | None = None
    if isinstance(exc, InvalidStatus):
        status = int(exc.response.status_code)
        raw = exc.response.headers.get("Retry-After")
        if raw is not None:
            with contextlib.suppress(ValueError):
                retry_after = max(0.0, float(raw))
    return status, type(exc).__name__, retry_after


class StreamConnection:
    """One logical connection (see the module doc). ``streams`` may change while it runs."""

    def __init__(
        self,
        name: str,
        url: str,
        sink: WsSink,
        telemetry: Telemetry,
        backoff_factory: BackoffFactory,
        *,
        streams: Iterable[str] = (),
        silence_timeout: float = 10.0,
        max_lifetime: float | None = None,
        max_messages_per_second: float | None = None,
        open_timeout: float = 10.0,
        max_frame_bytes: int = binance.DEFAULT_MAX_FRAME_BYTES,
        compression: str = "none",
        dialect: Dialect = binance.DIALECT,
    ) -> None:
        self.name = name
        #: permessage-deflate costs the producer more CPU per frame than parsing it
        #: (docs/producer.md, "Frame path cost"); it is asked for only when configured.
        self.compression: str | None = "deflate" if compression == "deflate" else None
        self.url = url
        self.sink = sink
        self.telemetry = telemetry
        self.open_timeout = open_timeout
        self.max_frame_bytes = max_frame_bytes
        self.protocol = ConnectionProtocol(
            name, streams, backoff=backoff_factory, telemetry=telemetry,
            silence_timeout=silence_timeout, max_lifetime=max_lifetime,
            max_messages_per_second=max_messages_per_second, dialect=dialect,
        )
        self.edge = edge_of(dialect)
        self.failure: PermanentFailure | None = None
        self._io: dict[int, _SocketIO] = {}
        self._tasks = BackgroundTasks(log, name)
        self._wake = asyncio.Event()
        self._closing = asyncio.Event()
        self._next_trace = 0.0

    @property
    def streams(self) -> set[str]:
        return self.protocol.streams

    @property
    def connected(self) -> bool:
        return self.protocol.open_sockets > 0

    # -- subscription changes -------------------------------------------------------

    def add(self, streams: Iterable[str]) -> None:
        self._perform(self.protocol.add(streams, time.monotonic()))

    def remove(self, streams: Iterable[str]) -> None:
        self._perform(self.protocol.remove(streams, time.monotonic()))

    def close(self) -> None:
        """Ask :meth:`run` to close every socket and return."""
        self._closing.set()
        self._wake.set()

    # -- life -------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` or :meth:`close`; raises :class:`PermanentFailure` on a
        fault retrying cannot fix."""
        bridge = asyncio.create_task(self._wake_on(stop), name=f"{self.name}-stop")
        try:
            self._perform(self.protocol.start(time.monotonic()))
            while not (stop.is_set() or self._closing.is_set() or self.failure is not None):
                deadline = self.protocol.next_deadline()
                timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
                self._wake.clear()
                self._perform(self.protocol.tick(time.monotonic()))
        finally:
            self._closing.set()
            self._perform(self.protocol.stop(time.monotonic()))
            await self._tasks.close(CLOSE_TIMEOUT + 3.0)
            bridge.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await bridge
        if self.failure is not None:
            raise self.failure

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._closing.set()
        self._wake.set()

    def _perform(self, actions: list[Action]) -> None:
        timers_changed = False
        for a in actions:
            if isinstance(a, Deliver):
                self.sink.on_ws_frame(a.frame, now_ms())
                continue
            timers_changed = True
            if isinstance(a, Send):
                io = self._io.get(a.socket)
                if io is not None and io.ws is not None and not io.closing:
                    io.outq.put_nowait(a.text)
            elif isinstance(a, Close):
                self._close(a.socket)
            elif isinstance(a, Connect):
                io = self._io[a.socket] = _SocketIO(a.socket)
                io.task = self._tasks.spawn(self._socket_main(io, a.delay), name=f"{self.name}#{a.socket}")
            elif isinstance(a, Fail) and self.failure is None:
                self.failure = PermanentFailure(self.edge, f"{self.name}: {a.cause}")
                log.error("websocket connection stops: permanent failure",
                          extra={"connection": self.name, "cause": a.cause})
        if timers_changed:
            self._wake.set()

    def _close(self, sid: int) -> None:
        io = self._io.get(sid)
        if io is None or io.closing:
            return
        io.closing = True
        if io.ws is None:  # still waiting or connecting: nothing to close politely
            if io.task is not None:
                io.task.cancel()
            return
        self._tasks.spawn(self._close_ws(io.ws), name=f"{self.name}#{sid}-close")

    @staticmethod
    async def _close_ws(ws: Any) -> None:
        try:
            await asyncio.wait_for(ws.close(), CLOSE_TIMEOUT)
        except Exception:  # a hung or broken close: drop the TCP connection instead
            with contextlib.suppress(Exception):
                ws.transport.abort()

    async def _socket_main(self, io: _SocketIO, delay: float) -> None:
        """Wait, connect, read until the socket ends; report each step to the protocol."""
        try:
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), delay)
                if self._closing.is_set():
                    return
            try:
                ws = await websockets.connect(
                    self.url, open_timeout=self.open_timeout, ping_interval=None,
                    # Frames a bit over the limit reach the parser and are counted as
                    # too_large; only absurd ones (4x) make the library drop the connection.
                    close_timeout=CLOSE_TIMEOUT, max_size=4 * self.max_frame_bytes, max_queue=64,
                    compression=self.compression,
                )
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                status, kind, retry_after = handshake_details(exc)
                self._perform(self.protocol.connect_failed(
                    io.id, time.monotonic(), status=status, kind=kind, detail=str(exc),
                    retry_after=retry_after))
                return
            io.ws = ws
            if io.closing:  # closed while the handshake ran
                await self._close_ws(ws)
                return
            await self._read(io, ws)
        finally:
            self._io.pop(io.id, None)

    async def _read(self, io: _SocketIO, ws: Any) -> None:
        writer = asyncio.create_task(self._write(io, ws), name=f"{self.name}#{io.id}-writer")
        code: int | None = None
        error: str | None = None
        try:
            self._perform(self.protocol.connected(io.id, time.monotonic()))
            recv = ws.recv
            data = self.protocol.data
            on_frame = self.sink.on_ws_frame
            sid = io.id
            while True:
                raw = await recv()
                actions = data(sid, raw, time.monotonic())
                if actions is None:  # the hot path: a data frame, nothing else to do
                    on_frame(raw, now_ms())
                else:
                    self._perform(actions)
        except ConnectionClosed as exc:
            code = exc.rcvd.code if exc.rcvd is not None else None
        except Exception as exc:  # a bug on the read path: logged, and the socket is replaced
            error = repr(exc)[:300]
            now = time.monotonic()
            if now >= self._next_trace:  # one traceback per half minute, the rest are counted
                self._next_trace = now + 30.0
                log.error("websocket reader failed", exc_info=exc, extra={"connection": self.name})
            await self._close_ws(ws)
        finally:
            writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        self._perform(self.protocol.closed(io.id, time.monotonic(), code=code, error=error))

    async def _write(self, io: _SocketIO, ws: Any) -> None:
        # A closed socket ends the writer; the reader reports the close.
        with contextlib.suppress(ConnectionClosed):
            while True:
                await ws.send(await io.outq.get())


class StreamSet:
    """A changing set of streams sharded over :class:`StreamConnection` s.

    A connection that fails permanently (or on a bug) sets :attr:`failed`
    with the exception in :attr:`failure`; the live source stops on it.
    """

    def __init__(
        self,
        url: str,
        sink: WsSink,
        telemetry: Telemetry,
        backoff_factory: BackoffFactory,
        *,
        dialect: Dialect = binance.DIALECT,
        name: str = "ws",
        **connection_options: Any,
    ) -> None:
        self.url = url
        self.sink = sink
        self.telemetry = telemetry
        self.backoff_factory = backoff_factory
        self.dialect = dialect
        self.name = name
        self.options = connection_options
        self.connections: list[StreamConnection] = []
        self.failure: BaseException | None = None
        self.failed = asyncio.Event()
        self._tasks = BackgroundTasks(log, f"{name}-streams", self._on_failure)
        self._stop = asyncio.Event()
        self._names = itertools.count(1)
        source = dialect.source
        telemetry.gauge_fn("ws_connections", lambda: {(("source", source),): float(
            sum(1 for c in self.connections if c.connected))}, part=source)

    def _on_failure(self, exc: BaseException) -> None:
        if self.failure is None:
            self.failure = exc
        self.failed.set()

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
                conn.close()  # its task ends by itself and is awaited in close()
        missing = sorted(wanted - self.streams)
        # Top up open connections within the venue's limit, then open new ones for the rest.
        for conn in self.connections:
            room: list[str] = []
            current = sorted(conn.streams)
            for stream in missing:
                if len(self.dialect.shard(current + room + [stream])) == 1:
                    room.append(stream)
            if room:
                conn.add(room)
                taken = set(room)
                missing = [s for s in missing if s not in taken]
        for group in self.dialect.shard(missing):
            conn = StreamConnection(
                f"{self.name}-{next(self._names)}", self.dialect.url(self.url), self.sink,
                self.telemetry, self.backoff_factory, streams=group, dialect=self.dialect, **self.options,
            )
            self.connections.append(conn)
            self._tasks.spawn(conn.run(self._stop), name=conn.name)

    async def close(self) -> None:
        self._stop.set()
        await self._tasks.close(10.0)
