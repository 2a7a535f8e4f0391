"""The floors of ``perpstream bench frames``: a bare websocket client that only receives.

``python -m perpstream.bench.wsfloor [--lib websockets|picows] URL STREAM [STREAM ...]``
opens the combined-stream endpoint ``URL`` once per 200 streams (Binance's cap per
connection, as the producer shards) without permessage-deflate (as the producer by
default), subscribes them, and then only receives until it is terminated: no parsing,
no Kafka. It runs on the producer's event loop (``perpstream.runtime.eventloop``: uvloop
where installed), so its CPU per frame is what the library costs by itself on the same
load and the same loop (docs/producer.md, "Frame path cost"). TLS trust comes from
``SSL_CERT_FILE``, as for the producer.

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
from typing import Any

import websockets

from perpstream.bench import FLOORS
from perpstream.runtime.eventloop import run

PER_CONNECTION = 200
CHUNK = 100


def _subscribes(streams: list[str]) -> list[str]:
    return [json.dumps({"method": "SUBSCRIBE", "params": streams[i:i + CHUNK], "id": i + 1})
            for i in range(0, len(streams), CHUNK)]


async def _websockets(url: str, streams: list[str]) -> None:
    async with websockets.connect(url, ping_interval=None, max_size=16_000_000, max_queue=64,
                                  compression=None) as ws:
        for msg in _subscribes(streams):
            await ws.send(msg)
        recv = ws.recv
        while True:
            await recv()


async def _picows(url: str, streams: list[str]) -> None:
    # imported here: picows is optional, and the websockets floor must run without it
    from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

    class Listener(WSListener):
        def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
            if frame.msg_type == WSMsgType.TEXT:
                frame.get_payload_as_bytes()

    ctx: Any = ssl.create_default_context() if url.startswith("wss://") else None
    transport, _ = await ws_connect(Listener, url, ssl_context=ctx, max_frame_size=16_000_000)
    for msg in _subscribes(streams):
        transport.send(WSMsgType.TEXT, msg.encode())
    await transport.wait_disconnected()


async def main(lib: str, url: str, streams: list[str]) -> None:
    one = _picows if lib == "picows" else _websockets
    groups = [streams[i:i + PER_CONNECTION] for i in range(0, len(streams), PER_CONNECTION)]
    await asyncio.gather(*(one(url, g) for g in groups))


if __name__ == "__main__":
    p = argparse.ArgumentParser(prog="python -m perpstream.bench.wsfloor")
    p.add_argument("--lib", choices=FLOORS, default="websockets")
    p.add_argument("url")
    p.add_argument("streams", nargs="+")
    a = p.parse_args()
    run(main(a.lib, a.url, a.streams))
