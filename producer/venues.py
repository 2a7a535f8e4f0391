"""The venues the producer can read, by the name users give them (``--venues``).

Binance keeps its own source (``producer.live``: the markPrice streams and the
open-interest poller); every other venue is a :class:`~producer.venue_source.VenueSpec`
read through the venue contract. docs/producer.md, "Venues".
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

from perpstream.producer import bybit, hyperliquid, okx
from perpstream.producer.exceptions import RestError
from perpstream.producer.failures import RestFault
from perpstream.producer.venue import Dialect, FrameParser, Instrument

if TYPE_CHECKING:  # the client loads aiohttp, which a simulated or replayed market never needs
    from perpstream.producer.venue_rest import VenueRest

#: ``fetch(rest, rest_base) -> instruments``: the venue's whole listing (every page).
ListingFetch = Callable[["VenueRest", str], Awaitable[dict[str, Instrument]]]


@dataclass(frozen=True)
class VenueSpec:
    """A venue as the producer runs it: its contract pieces and its published limits."""

    name: str
    source: str
    dialect: Dialect
    parser: Callable[[], FrameParser]
    fetch_listing: ListingFetch
    ws_url: str
    rest_url: str
    #: REST budget: ``rest_limit`` weight per ``rest_window`` seconds per IP.
    rest_limit: int
    rest_window: float
    #: How long a socket may stay silent before it is replaced (the venue's slowest push).
    silence_timeout: float = 30.0


@dataclass(frozen=True)
class VenueEndpoints:
    """What the user configured for one venue (``--bybit-ws-url`` ...)."""

    ws_url: str
    rest_url: str
    #: Only these symbols (as the venue spells them); None follows every listed perpetual.
    symbols: frozenset[str] | None = None


#: Pages of instruments a listing may take before it is considered endless (a cursor loop).
MAX_LISTING_PAGES: Final = 50


async def bybit_listing(rest: VenueRest, base: str) -> dict[str, Instrument]:
    """Every page of ``instruments-info?category=linear``; a per-API limit (retCode 10006)
    pauses the client like an HTTP 429 does."""
    cursor = ""
    merged: dict[str, Instrument] = {}
    for _ in range(MAX_LISTING_PAGES):
        body = await rest.request(bybit.instruments_url(base, cursor), endpoint="instruments-info")
        try:
            listing = bybit.perpetual_listing(json.loads(body))
        except bybit.BybitApiError as exc:
            if exc.rate_limited:
                wait = rest.pause(rest.window, f"retCode {exc.ret_code}", "instruments-info")
                raise RestError(200, str(exc), wait, code=exc.ret_code,
                                fault=RestFault.RATE_LIMITED) from None
            raise
        merged.update(bybit.instruments(listing))
        if listing.next_cursor is None:
            return merged
        cursor = listing.next_cursor
    raise ValueError(f"instruments-info returned more than {MAX_LISTING_PAGES} pages")


BYBIT: Final = VenueSpec(
    name="bybit", source=bybit.SOURCE, dialect=bybit.DIALECT, parser=bybit.Parser,
    fetch_listing=bybit_listing, ws_url=bybit.LIVE_WS_URL, rest_url=bybit.LIVE_REST_URL,
    rest_limit=600, rest_window=5.0, silence_timeout=10.0,
)

async def hyperliquid_listing(rest: VenueRest, base: str) -> dict[str, Instrument]:
    """``POST /info {"type":"meta"}``: every perpetual coin not delisted."""
    body = await rest.request(hyperliquid.info_url(base), json_body={"type": "meta"},
                              weight=hyperliquid.META_WEIGHT, endpoint="meta")
    return hyperliquid.instruments(body)


HYPERLIQUID: Final = VenueSpec(
    name="hyperliquid", source=hyperliquid.SOURCE, dialect=hyperliquid.DIALECT, parser=hyperliquid.Parser,
    fetch_listing=hyperliquid_listing, ws_url=hyperliquid.LIVE_WS_URL, rest_url=hyperliquid.LIVE_REST_URL,
    rest_limit=hyperliquid.REST_WEIGHT_LIMIT, rest_window=60.0, silence_timeout=30.0,
)

async def okx_listing(rest: VenueRest, base: str) -> dict[str, Instrument]:
    """``/api/v5/public/instruments?instType=SWAP``: the live linear swaps; code 50011 on a 2xx
    answer pauses the client like an HTTP 429 does."""
    body = await rest.request(okx.instruments_url(base), endpoint="instruments")
    try:
        return okx.instruments(body)
    except okx.OkxApiError as exc:
        if exc.rate_limited:
            wait = rest.pause(2.0, f"code {exc.code}", "instruments")
            raise RestError(200, str(exc), wait, fault=RestFault.RATE_LIMITED) from None
        raise


OKX: Final = VenueSpec(
    name="okx", source=okx.SOURCE, dialect=okx.DIALECT, parser=okx.Parser, fetch_listing=okx_listing,
    ws_url=okx.LIVE_WS_URL, rest_url=okx.LIVE_REST_URL, rest_limit=20, rest_window=2.0, silence_timeout=30.0,
)

#: The venues other than Binance, by the name ``--venues`` takes.
VENUES: Final[dict[str, VenueSpec]] = {"bybit": BYBIT, "okx": OKX, "hyperliquid": HYPERLIQUID}
#: Every name ``--venues`` takes, in the order ``all`` means.
VENUE_NAMES: Final = ("binance", "bybit", "okx", "hyperliquid")
