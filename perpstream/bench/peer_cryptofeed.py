"""The peer of ``perpstream bench frames``: cryptofeed's Binance USD-M funding feed on the
same fake exchange, run by an interpreter where cryptofeed is installed (never a dependency
of perpstream; docs/producer.md, "Frame path cost").

``PEER_PYTHON perpstream/bench/peer_cryptofeed.py URL SYMBOL [SYMBOL ...]``: the
``FUNDING`` channel (cryptofeed's markPrice stream, ``<symbol>@markPrice`` streams named in
the URL, 200 per connection) with a callback that does nothing, until it is terminated.
The symbol list is given here instead of fetched, so that no REST call is made. This file
imports nothing of perpstream: it runs in the peer's environment.
"""

from __future__ import annotations

import sys
from typing import Any


def main(url: str, symbols: list[str]) -> None:
    # imported here: cryptofeed is the peer, installed (or not) in its own environment
    from cryptofeed import FeedHandler
    from cryptofeed.connection import WebsocketEndpoint
    from cryptofeed.defines import BINANCE_FUTURES, FUNDING, PERPETUAL
    from cryptofeed.exchanges import BinanceFutures
    from cryptofeed.symbols import Symbol, Symbols

    mapping: dict[str, str] = {}
    info: dict[str, dict[str, Any]] = {"tick_size": {}, "instrument_type": {}}
    for s in symbols:
        sym = Symbol(s[:-4], s[-4:], type=PERPETUAL)
        mapping[sym.normalized] = s
        info["tick_size"][sym.normalized] = "0.01"
        info["instrument_type"][sym.normalized] = PERPETUAL
    Symbols.set(BINANCE_FUTURES, mapping, info)

    class Fake(BinanceFutures):
        websocket_endpoints = [WebsocketEndpoint(url, options={"compression": None})]

    async def on_funding(*_: Any) -> None:
        return None

    fh = FeedHandler(config={"log": {"disabled": True}})
    fh.add_feed(Fake(symbols=list(mapping), channels=[FUNDING], callbacks={FUNDING: on_funding}))
    fh.run()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
