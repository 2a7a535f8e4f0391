"""One key per underlying asset across venues: ``1000PEPEUSDT``, ``kPEPE`` and
``PEPE-USDT-SWAP`` are all PEPE.

Venues spell the same coin differently, and the cheap memecoins are listed in
lots: Binance's ``1000PEPEUSDT`` is priced per 1000 PEPE, Bybit writes SHIB's
lot as a suffix (``SHIB1000USDT``), Hyperliquid as a lower-case ``k``
(``kPEPE``), OKX not at all (its contract value ``ctVal`` carries the lot).
:func:`asset_of` folds those lots into :class:`AssetKey` ``(asset, scale,
quote)``, so a mark of the ``1000PEPE`` contract is ``scale`` times the price of
one PEPE, and open interest times mark is the same notional whatever the lot.

Rules (docs/assets.md has the table per venue and the worked examples):

- each venue has its grammar: the quote is stripped (``USDT``, ``USDC``; Bybit's
  ``PERP`` is USDC; OKX ``BASE-QUOTE-SWAP``, where ``USD`` is an inverse
  contract); a dated future (``BTCUSDT_261225``, ``BTC-USDT-251226``) or any
  other instrument the grammar does not read as a perpetual has no key;
- only the listed lots fold (:data:`SCALE_PREFIXES`, ``k`` on Hyperliquid
  only), and only when what remains starts with a letter, so ``1INCH`` stays
  ``1INCH``; :data:`OVERRIDES` lists the venue spellings the rule cannot read;
- the base the venue's instrument metadata gives (Binance ``baseAsset``, Bybit
  ``baseCoin``, OKX ``uly``, Hyperliquid ``universe[].name``) may be passed as
  ``base``; it replaces the guess of where the quote starts, and a base that
  contradicts the symbol gives no key rather than a wrong one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Final

BINANCE: Final = "binance_usdm"
BYBIT: Final = "bybit_linear"
OKX: Final = "okx_swap"
HYPERLIQUID: Final = "hyperliquid"
#: The simulated market: Binance's symbol grammar (``SIM0000USDT``).
SIM: Final = "sim"
#: The simulated venues (``sim.bybit_linear`` ...) spell symbols as the venue they play.
SIM_PREFIX: Final = "sim."

#: Lot prefixes, longest first, with the number of coins one lot holds.
#: ``10000000`` is Bybit's ``10000000AIDOGEUSDT``; ``1M`` is Binance's ``1MBABYDOGEUSDT``.
SCALE_PREFIXES: Final[tuple[tuple[str, int], ...]] = (
    ("10000000", 10_000_000),
    ("1000000", 1_000_000),
    ("100000", 100_000),
    ("10000", 10_000),
    ("1000", 1_000),
    ("1M", 1_000_000),
)
#: Hyperliquid's ``k`` prefix (``kPEPE``) is a lot of 1000.
HYPERLIQUID_K_SCALE: Final = 1_000

#: Venue spellings of a base that the prefix rule cannot read: (source, base) -> (asset, scale).
#: Each entry says why in docs/assets.md, "Overrides".
OVERRIDES: Final[Mapping[tuple[str, str], tuple[str, int]]] = {
    # Bybit writes SHIB's lot after the coin; 1000SHIB on Binance, kSHIB on Hyperliquid.
    (BYBIT, "SHIB1000"): ("SHIB", 1_000),
    # Bybit names Neiro (the coin Binance, OKX and Hyperliquid list as NEIRO) NEIROCTO,
    # to tell it from NEIROETH, a different coin.
    (BYBIT, "1000NEIROCTO"): ("NEIRO", 1_000),
}

_QUOTES: Final[Mapping[str, tuple[str, ...]]] = {
    BINANCE: ("USDT", "USDC"),
    SIM: ("USDT", "USDC"),
    BYBIT: ("USDT", "USDC"),
}
#: Bybit's USDC perpetuals end in PERP (``BTCPERP``, ``1000PEPEPERP``).
_BYBIT_PERP: Final = "PERP"
#: Hyperliquid perpetuals are margined and quoted in USDC.
_HYPERLIQUID_QUOTE: Final = "USDC"
_OKX_QUOTES: Final = frozenset({"USDT", "USDC", "USD"})
#: What marks a symbol as no perpetual in each concatenated grammar (dated futures).
_NOT_PERPETUAL: Final[Mapping[str, str]] = {BINANCE: "_", SIM: "_", BYBIT: "-"}


@dataclass(frozen=True, slots=True)
class AssetKey:
    """The underlying asset, the coins per contract unit, and the quote currency.

    ``mark / scale`` is the price of one coin of ``asset`` in ``quote``;
    ``quote == "USD"`` is an inverse (coin-margined) contract.
    """

    asset: str
    scale: int
    quote: str


def _plausible(asset: str) -> bool:
    """An asset name left after a lot prefix: it must start with a letter (``1INCH`` minus
    ``1`` would not even match a prefix, ``10000LADYS`` minus ``1000`` leaves ``0LADYS``)."""
    return bool(asset) and asset[0].isalpha()


def fold(source: str, base: str) -> tuple[str, int]:
    """(asset, scale) of a base as ``source`` spells it: overrides first, then the lot rules."""
    hit = OVERRIDES.get((source, base))
    if hit is not None:
        return hit
    if source == HYPERLIQUID and len(base) > 1 and base[0] == "k" and "A" <= base[1] <= "Z":
        return base[1:], HYPERLIQUID_K_SCALE
    for prefix, scale in SCALE_PREFIXES:
        if base.startswith(prefix) and _plausible(base[len(prefix):]):
            return base[len(prefix):], scale
    return base, 1


def _concatenated(source: str, symbol: str, base: str | None) -> tuple[str, str] | None:
    """(base, quote) of a Binance-style ``BASEQUOTE`` symbol (Binance, Bybit, sim)."""
    if _NOT_PERPETUAL[source] in symbol:
        return None
    if base is not None:
        if not symbol.startswith(base):
            return None
        quote = symbol[len(base):]
        if source == BYBIT and quote == _BYBIT_PERP:
            quote = "USDC"
        if not (quote.isascii() and quote.isalpha() and quote.isupper()):
            return None
        return base, quote
    if source == BYBIT and symbol.endswith(_BYBIT_PERP):
        return symbol[: -len(_BYBIT_PERP)], "USDC"
    for quote in _QUOTES[source]:
        if symbol.endswith(quote):
            return symbol[: -len(quote)], quote
    return None


def _okx(symbol: str, base: str | None) -> tuple[str, str] | None:
    """(base, quote) of an OKX perpetual swap ``BASE-QUOTE-SWAP``; ``base`` may be the
    instrument's ``uly`` (``PEPE-USDT``) or a linear swap's ``ctValCcy`` (``PEPE``)."""
    parts = symbol.split("-")
    if len(parts) != 3 or parts[2] != "SWAP" or parts[1] not in _OKX_QUOTES:
        return None
    if base is not None and base.split("-")[0] != parts[0]:
        return None
    return parts[0], parts[1]


def _hyperliquid(symbol: str, base: str | None) -> tuple[str, str] | None:
    """(coin, USDC) of a Hyperliquid perpetual. Spot pairs (``@107``) and builder-deployed
    markets (``dex:COIN``, their own collateral and oracle) are not read."""
    if not symbol.isalnum() or (base is not None and base != symbol):
        return None
    return symbol, _HYPERLIQUID_QUOTE


def asset_of(source: str, symbol: str, base: str | None = None) -> AssetKey | None:
    """The asset key of ``symbol`` on ``source``, or None when it is no perpetual there
    (a dated future, a spot pair), the venue is unknown, or ``base`` contradicts it. A simulated
    venue (``sim.okx_swap``) is read with the grammar of the venue it plays."""
    if source.startswith(SIM_PREFIX) and source[len(SIM_PREFIX):] in (BINANCE, BYBIT, OKX, HYPERLIQUID):
        source = source[len(SIM_PREFIX):]
    if source in _NOT_PERPETUAL:
        split = _concatenated(source, symbol, base)
    elif source == OKX:
        split = _okx(symbol, base)
    elif source == HYPERLIQUID:
        split = _hyperliquid(symbol, base)
    else:
        return None
    if split is None or not split[0]:
        return None
    asset, scale = fold(source, split[0])
    return AssetKey(asset, scale, split[1])


@lru_cache(maxsize=100_000)
def partition_key(source: str, symbol: str) -> bytes:
    """The Kafka key of a market's MarketSnapshots: its asset (``asset_of``'s), else the symbol.

    Every venue's market of one asset then shares a partition of the snapshots topic, so
    the asset member that owns it sees all of them (docs/snapshots.md, "Partitioning: one
    asset, one partition"); a market without a key (a dated future) keeps the symbol.
    Cached: the snapshot member calls it for every record it publishes.
    """
    key = asset_of(source, symbol)
    return (symbol if key is None else key.asset).encode()
