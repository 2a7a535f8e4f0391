"""What every fake venue runs on: a real websocket server and a real HTTP server on loopback
ports of their own, served by one event loop on a background thread.

:class:`FakeVenue` owns that lifecycle (:meth:`~FakeVenue.start` / :meth:`~FakeVenue.stop`
or a ``with`` block, ``ws_url`` and ``rest_url``, :meth:`~FakeVenue.call` to run something
on the loop from the test thread) and the connection faults every venue offers
(:meth:`~FakeVenue.drop_connections`, :meth:`~FakeVenue.mute_connections`,
:meth:`~FakeVenue.inject`). A venue module (:mod:`perpstream.fakes.binance`,
:mod:`~perpstream.fakes.bybit`, :mod:`~perpstream.fakes.okx`,
:mod:`~perpstream.fakes.hyperliquid`) brings only what the venue does: its websocket
handler and options, its HTTP routes and the clocks that push. A venue that pushes on one
clock of ``rate`` ticks a second derives from :class:`TickingVenue`, which runs it.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import threading
from collections.abc import Coroutine
from http import HTTPStatus
from typing import Any, ClassVar, Generic, Protocol, Self, TypeVar

from aiohttp import web
from websockets.asyncio.server import ServerConnection, serve
from websockets.datastructures import Headers
from websockets.http11 import Request, Response


class Connection(Protocol):
    """What the shared faults need of a venue's record of one open websocket."""

    ws: ServerConnection
    #: True: the connection stays open but the venue sends nothing on it again.
    muted: bool


ConnT = TypeVar("ConnT", bound=Connection)


class FakeVenue(abc.ABC, Generic[ConnT]):
    """A fake venue's servers, thread and loop. Use as a context manager, or :meth:`start` /
    :meth:`stop`. Subclasses set :attr:`venue_name` and :attr:`ws_path` and implement
    :meth:`_handle_ws`, :meth:`_http_app` and :meth:`_clocks`."""

    #: The venue as messages name it (``fake Bybit did not start``); the thread is
    #: ``fake-<name in lower case>``.
    venue_name: ClassVar[str]
    #: The websocket's path; a handshake on any other is answered 404.
    ws_path: ClassVar[str]

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._thread_main, name=f"fake-{self.venue_name.lower()}",
                                        daemon=True)
        self._ready = threading.Event()
        #: The open websocket connections.
        self.conns: set[ConnT] = set()
        #: Websocket connections accepted since the start.
        self.connections_total = 0
        self._tasks: set[asyncio.Task[Any]] = set()
        self._background: list[asyncio.Task[Any]] = []
        self.ws_port = 0
        self.http_port = 0

    # -- what a venue brings -------------------------------------------------------------

    @abc.abstractmethod
    async def _handle_ws(self, ws: ServerConnection) -> None:
        """Serve one websocket connection until it closes."""

    @abc.abstractmethod
    def _http_app(self) -> web.Application:
        """The HTTP application: the venue's routes and middlewares."""

    @abc.abstractmethod
    def _clocks(self) -> list[Coroutine[Any, Any, None]]:
        """The tasks that run as long as the servers do (the pushes), cancelled at the stop."""

    def _ws_options(self) -> dict[str, Any]:
        """Keyword arguments of the websocket server (pings, frame size, TLS); by default the
        server never pings: the venue's clients keep a connection alive themselves."""
        return {"ping_interval": None}

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """The handshake's answer when it is refused (None: upgrade): 404 off :attr:`ws_path`."""
        if request.path.partition("?")[0] != self.ws_path:
            return Response(HTTPStatus.NOT_FOUND, "Not Found", Headers(), b"not found\n")
        return None

    async def _send(self, conn: ConnT, frame: str | bytes) -> None:
        """Send one frame on ``conn`` (a venue that keeps count of what it sent overrides this)."""
        await conn.ws.send(frame)

    # -- lifecycle ----------------------------------------------------------------

    def start(self) -> Self:
        self._thread.start()
        if not self._ready.wait(20):
            raise RuntimeError(f"fake {self.venue_name} did not start")
        return self

    def stop(self) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), self.loop)
        with contextlib.suppress(Exception):
            fut.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.ws_port}{self.ws_path}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    def _thread_main(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_until_complete(self._start())
        self._ready.set()
        self.loop.run_forever()

    async def _start(self) -> None:
        self._ws_server = await serve(self._handle_ws, "127.0.0.1", 0, process_request=self._process_request,
                                      **self._ws_options())
        self.ws_port = next(iter(self._ws_server.sockets)).getsockname()[1]
        self._runner = web.AppRunner(self._http_app(), access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.http_port = self._runner.addresses[0][1]
        self._background = [asyncio.create_task(clock) for clock in self._clocks()]

    async def _shutdown(self) -> None:
        for task in self._background:
            task.cancel()
        self._ws_server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._ws_server.wait_closed(), 5)
        await self._runner.cleanup()

    def call(self, fn: Any, *args: Any) -> Any:
        """Run ``fn(*args)`` on the server loop and wait (coroutine functions too)."""
        async def wrapper() -> Any:
            res = fn(*args)
            if asyncio.iscoroutine(res):
                res = await res
            return res

        return asyncio.run_coroutine_threadsafe(wrapper(), self.loop).result(30)

    def _spawn(self, coro: Any) -> None:
        """Run ``coro`` on the loop without waiting for it (kept referenced until done)."""
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- faults, from the test thread ------------------------------------------------------

    def drop_connections(self) -> int:
        """Close every open websocket (after what was already sent); returns how many."""
        async def drop() -> int:
            conns = list(self.conns)
            for c in conns:
                await c.ws.close(1001, "going away")
            return len(conns)

        return int(self.call(drop))

    def mute_connections(self) -> int:
        """The open connections stay open but the venue sends them nothing again (which frames
        fall silent is the venue's: see its module); new ones are served as usual. Returns how
        many."""
        def mute() -> int:
            for c in self.conns:
                c.muted = True
            return len(self.conns)

        return int(self.call(mute))

    def inject(self, *frames: str | bytes) -> int:
        """Send these raw frames (malformed ones included) on every open connection now;
        returns the connections."""
        async def send() -> int:
            conns = list(self.conns)
            for c in conns:
                for f in frames:
                    await self._send(c, f)
            return len(conns)

        return int(self.call(send))


class TickingVenue(FakeVenue[ConnT]):
    """A fake venue whose pushes follow one clock: tick :attr:`k` comes ``rate`` times a second
    and every open connection is handed it (:meth:`_emit`). While :attr:`paused` the clock
    stands still (connections stay open) and resumes at the rate, without a burst."""

    #: Ticks a second.
    rate: float
    #: The current tick.
    k: int
    #: While True the clock stands still.
    paused: bool

    @abc.abstractmethod
    async def _emit(self, conn: ConnT, k: int) -> None:
        """Send ``conn`` what tick ``k`` brings it."""

    def _clocks(self) -> list[Coroutine[Any, Any, None]]:
        return [self._run_clock()]

    async def _run_clock(self) -> None:
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            await asyncio.sleep(max(0.0, started + (self.k + 1) / self.rate - loop.time()))
            if self.paused:
                started = loop.time() - self.k / self.rate  # resume at the rate, without a burst
                continue
            self.k += 1
            await asyncio.gather(*(self._emit(c, self.k) for c in list(self.conns)), return_exceptions=True)
