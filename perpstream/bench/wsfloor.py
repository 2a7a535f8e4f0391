"""The floor of ``perpstream bench frames``: a bare websockets client that only receives.

``python -m perpstream.bench.wsfloor URL STREAM [STREAM ...]`` opens the combined-stream
endpoint ``URL`` once per 200 streams (Binance's cap per connection, as the producer
shards) without permessage-deflate (as the producer by default), subscribes them, and
then only awaits ``recv()`` until it is terminated: no parsing, no Kafka. Its CPU per
frame is what the websockets library costs by itself on the same load
(docs/producer.md, "Frame path cost"). TLS trust comes from ``SSL_CERT_FILE``, as for
the producer.
"""

from __future__ import annotations

import asyncio
import json
import sys

import websockets

PER_CONNECTION = 200
CHUNK = 100


async def _one(url: str, streams: list[str]) -> None:
    async with websockets.connect(url, ping_interval=None, max_size=16_000_000, max_queue=64,
                                  compression=None) as ws:
        for i in range(0, len(streams), CHUNK):
            await ws.send(json.dumps({"method": "SUBSCRIBE", "params": streams[i:i + CHUNK], "id": i + 1}))
        recv = ws.recv
        while True:
            await recv()


async def main(url: str, streams: list[str]) -> None:
    groups = [streams[i:i + PER_CONNECTION] for i in range(0, len(streams), PER_CONNECTION)]
    await asyncio.gather(*(_one(url, g) for g in groups))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2:]))
