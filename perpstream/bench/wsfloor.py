"""The floors of ``perpstream bench frames``: a bare websocket client that only receives.

``python -m perpstream.bench.wsfloor [--lib websockets|picows] [--venue NAME] URL STREAM [...]``
subscribes the streams and then only receives until it is terminated: no parsing, no
Kafka. It runs on the producer's event loop (``perpstream.runtime.eventloop``: uvloop
where installed), without permessage-deflate (as the producer by default), so its CPU per
frame is what the library costs by itself on the same load and the same loop
(docs/producer.md, "Frame path cost"). TLS trust comes from ``SSL_CERT_FILE``, as for the
producer.

- ``--venue binance`` (the default): the combined-stream endpoint ``URL`` once per 200
  streams (Binance's cap per connection, as the producer shards), SUBSCRIBE requests of 100.
- any other venue of ``perpstream.producer.venues``: the messages of its
  :class:`~perpstream.producer.venue.Dialect` (its subscribe request, its chunk and its
  sharding into connections, its URL) and its application heartbeat every
  ``ping_interval``, as the producer speaks it; the requests go out at once (the fakes
  do not pace them).

Libraries:

- ``websockets`` (the producer's library): ``await recv()`` in a loop, each frame handed
  over as a ``str``, as the producer's read loop gets it.
- ``picows`` (a Cython client, the optional ``bench`` extra, never a dependency of the
  product): a listener whose ``on_ws_frame`` takes each text frame's payload as ``bytes``
  (what the producer's parser would be given); pings are answered by the library. picows
  2.3 requires aiofastnet and connects through its transports (plain and TLS) instead of
  the loop's: this floor is picows as installed, not its frame parser alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import ssl
from collections.abc import Callable
from typing import Any, NamedTuple

import websockets

from perpstream.bench import FLOORS
from perpstream.producer.venues import VENUES
from perpstream.runtime.eventloop import run

PER_CONNECTION = 200
CHUNK = 100


class Connection(NamedTuple):
    """One socket of the floor: where it connects, what it sends first, its heartbeat."""

    url: str
    requests: list[str]
    ping: str | None = None
    ping_interval: float = 20.0


def _subscribes(streams: list[str]) -> list[str]:
    return [json.dumps({"method": "SUBSCRIBE", "params": streams[i:i + CHUNK], "id": i + 1})
            for i in range(0, len(streams), CHUNK)]


def plan(venue: str, url: str, streams: list[str]) -> list[Connection]:
    """The connections a bare client of ``venue`` opens for ``streams``."""
    if venue == "binance":
        return [Connection(url, _subscribes(streams[i:i + PER_CONNECTION]))
                for i in range(0, len(streams), PER_CONNECTION)]
    d = VENUES[venue].dialect
    out = []
    for group in d.shard(streams):
        requests = [d.subscribe(group[i:i + d.chunk], i + 1, "SUBSCRIBE")
                    for i in range(0, len(group), d.chunk)]
        out.append(Connection(d.url(url), requests, d.ping, d.ping_interval))
    return out


async def _heartbeat(send: Callable[[str], Any], conn: Connection) -> None:
    while conn.ping is not None:
        await asyncio.sleep(conn.ping_interval)
        await send(conn.ping)


async def _websockets(conn: Connection) -> None:
    async with websockets.connect(conn.url, ping_interval=None, max_size=16_000_000, max_queue=64,
                                  compression=None) as ws:
        for msg in conn.requests:
            await ws.send(msg)
        beat = asyncio.create_task(_heartbeat(ws.send, conn))
        recv = ws.recv
        try:
            while True:
                await recv()
        finally:
            beat.cancel()


async def _picows(conn: Connection) -> None:
    # imported here: picows is optional, and the websockets floor must run without it
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    class Listener(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                frame.get_payload_as_bytes()

    ctx: Any = ssl.create_default_context() if conn.url.startswith("wss://") else None
    transport, _ = await ws_connect(Listener, conn.url, ssl_context=ctx, max_frame_size=16_000_000)
    for msg in conn.requests:
        transport.send(WSMsgType.TEXT, msg.encode())

    async def send(text: str) -> None:
        transport.send(WSMsgType.TEXT, text.encode())

    beat = asyncio.create_task(_heartbeat(send, conn))
    try:
        await transport.wait_disconnected()
    finally:
        beat.cancel()


async def main(lib: str, venue: str, url: str, streams: list[str]) -> None:
    one = _picows if lib == "picows" else _websockets
    await asyncio.gather(*(one(c) for c in plan(venue, url, streams)))


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m perpstream.bench.wsfloor")
    p.add_argument("--lib", choices=FLOORS, default="websockets")
    p.add_argument("--venue", choices=["binance", *VENUES], default="binance")
    p.add_argument("url")
    p.add_argument("streams", nargs="+")
    a = p.parse_args()
    run(main(a.lib, a.venue, a.url, a.streams))
