"""Asset keys: each venue's grammar, the lot rule and its overrides, metadata bases.

The worked examples are read from docs/assets.md, so the table a user reads is
the behaviour the code has.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpstream.consumers.assets.keys import (
    BINANCE,
    BYBIT,
    HYPERLIQUID,
    OKX,
    OVERRIDES,
    SCALE_PREFIXES,
    SIM,
    AssetKey,
    asset_of,
    fold,
    partition_key,
)

DOC = Path(__file__).resolve().parents[3] / "docs" / "assets.md"
_ROW = re.compile(r"^\| `([a-z_]+)` \| `([^`]+)` \| ([^|]+?) \|\s*(\d*)\s*\|\s*([A-Z]*)\s*\|$")


def doc_examples() -> list[tuple[str, str, AssetKey | None]]:
    text = DOC.read_text("utf-8")
    section = text.split("### Worked examples", 1)[1].split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        if not line.startswith("| `"):
            continue
        m = _ROW.match(line)
        assert m, f"docs/assets.md: cannot read the example {line!r}"
        source, symbol, asset, scale, quote = m.groups()
        rows.append((source, symbol, None if asset == "—" else AssetKey(asset, int(scale), quote)))
    return rows


EXAMPLES = doc_examples()


def test_the_doc_has_pepe_shib_bonk_and_btc_on_every_venue() -> None:
    venues = {BINANCE, BYBIT, OKX, HYPERLIQUID, SIM}
    for asset in ("PEPE", "SHIB", "BONK", "BTC"):
        assert {s for s, _, k in EXAMPLES if k is not None and k.asset == asset} == venues, asset
    assert sum(k is None for _, _, k in EXAMPLES) == 4


@pytest.mark.parametrize(("source", "symbol", "key"), EXAMPLES, ids=[f"{s}:{y}" for s, y, _ in EXAMPLES])
def test_worked_examples_of_docs_assets(source: str, symbol: str, key: AssetKey | None) -> None:
    assert asset_of(source, symbol) == key


def test_pepe_on_four_venues_is_one_asset_and_the_lots_say_how_many_coins() -> None:
    keys = [asset_of(BINANCE, "1000PEPEUSDT"), asset_of(BYBIT, "1000PEPEUSDT"),
            asset_of(OKX, "PEPE-USDT-SWAP"), asset_of(HYPERLIQUID, "kPEPE")]
    assert [k.asset for k in keys if k] == ["PEPE"] * 4
    assert [k.scale for k in keys if k] == [1000, 1000, 1, 1000]


@pytest.mark.parametrize("source", [BINANCE, BYBIT, SIM])
def test_coins_that_begin_with_digits_keep_them(source: str) -> None:
    assert asset_of(source, "1INCHUSDT") == AssetKey("1INCH", 1, "USDT")
    assert asset_of(source, "0GUSDT") == AssetKey("0G", 1, "USDT")
    assert asset_of(source, "2ZUSDT") == AssetKey("2Z", 1, "USDT")
    assert asset_of(source, "4USDT") == AssetKey("4", 1, "USDT")
    # a lot followed by a digit is not a lot: 1000 + "0LADYS" is no coin
    assert fold(source, "10000LADYS") == ("LADYS", 10_000)
    assert fold(source, "1000") == ("1000", 1)


def test_k_is_a_lot_on_hyperliquid_only() -> None:
    assert fold(HYPERLIQUID, "kPEPE") == ("PEPE", 1000)
    assert fold(BINANCE, "kPEPE") == ("kPEPE", 1)
    assert fold(OKX, "kPEPE") == ("kPEPE", 1)
    assert fold(HYPERLIQUID, "k") == ("k", 1)
    assert fold(HYPERLIQUID, "kx") == ("kx", 1)  # the coin after k is upper case


def test_overrides_hold_only_on_their_venue() -> None:
    assert asset_of(BYBIT, "SHIB1000USDT") == AssetKey("SHIB", 1000, "USDT")
    assert asset_of(BINANCE, "SHIB1000USDT") == AssetKey("SHIB1000", 1, "USDT")
    assert asset_of(BINANCE, "1000NEIROCTOUSDT") == AssetKey("NEIROCTO", 1000, "USDT")
    for (source, base), (asset, scale) in OVERRIDES.items():
        assert fold(source, base) == (asset, scale)


@pytest.mark.parametrize(("source", "symbol"), [
    (BINANCE, "BTCUSDT_261225"), (BINANCE, "ETHUSDT_260327"), (SIM, "BTCUSDT_261225"),
    (BYBIT, "BTCUSDT-26DEC25"), (BYBIT, "BTC-26DEC25"), (BYBIT, "ETH-27MAR26"),
    (OKX, "BTC-USDT-251226"), (OKX, "BTC-USD-251226-100000-C"), (OKX, "BTC-USDT"), (OKX, "BTC-EUR-SWAP"),
    (HYPERLIQUID, "@107"), (HYPERLIQUID, "xyz:TSLA"), (HYPERLIQUID, ""),
    (BINANCE, "USDT"), (BINANCE, "BTCEUR"), (BINANCE, ""), (BYBIT, "PERP"),
    ("deribit", "BTC-PERPETUAL"), ("binance_coinm", "BTCUSD_PERP"),
])
def test_what_is_no_perpetual_or_no_known_venue_has_no_key(source: str, symbol: str) -> None:
    assert asset_of(source, symbol) is None


def test_bybit_usdc_perpetuals_end_in_perp() -> None:
    assert asset_of(BYBIT, "BTCPERP") == AssetKey("BTC", 1, "USDC")
    assert asset_of(BYBIT, "1000PEPEPERP") == AssetKey("PEPE", 1000, "USDC")
    assert asset_of(BINANCE, "BTCPERP") is None  # not Binance's grammar


def test_the_quote_is_read_from_the_end() -> None:
    assert asset_of(BINANCE, "TUSDUSDT") == AssetKey("TUSD", 1, "USDT")
    assert asset_of(BINANCE, "USDCUSDT") == AssetKey("USDC", 1, "USDT")
    assert asset_of(OKX, "USDC-USDT-SWAP") == AssetKey("USDC", 1, "USDT")


# -- metadata bases ----------------------------------------------------------------------


@pytest.mark.parametrize(("source", "symbol", "base", "key"), [
    (BINANCE, "1000PEPEUSDT", "1000PEPE", AssetKey("PEPE", 1000, "USDT")),
    (BINANCE, "币安人生USDT", "币安人生", AssetKey("币安人生", 1, "USDT")),
    (BINANCE, "BTCBUSD", "BTC", AssetKey("BTC", 1, "BUSD")),  # the base says where the quote starts
    (BYBIT, "SHIB1000USDT", "SHIB1000", AssetKey("SHIB", 1000, "USDT")),
    (BYBIT, "BTCPERP", "BTC", AssetKey("BTC", 1, "USDC")),
    (BYBIT, "10000LADYSUSDT", "10000LADYS", AssetKey("LADYS", 10_000, "USDT")),
    (OKX, "PEPE-USDT-SWAP", "PEPE-USDT", AssetKey("PEPE", 1, "USDT")),
    (OKX, "PEPE-USDT-SWAP", "PEPE", AssetKey("PEPE", 1, "USDT")),
    (OKX, "BTC-USD-SWAP", "BTC-USD", AssetKey("BTC", 1, "USD")),
    (HYPERLIQUID, "kPEPE", "kPEPE", AssetKey("PEPE", 1000, "USDC")),
    (SIM, "SIM0003USDT", "SIM0003", AssetKey("SIM0003", 1, "USDT")),
])
def test_a_base_from_the_venues_metadata(source: str, symbol: str, base: str, key: AssetKey) -> None:
    assert asset_of(source, symbol, base) == key


@pytest.mark.parametrize(("source", "symbol", "base"), [
    (BINANCE, "1000PEPEUSDT", "PEPE"),
    (BINANCE, "BTCUSDT", "BTCUSDT"),  # nothing left for the quote
    (BINANCE, "BTCUSDT_261225", "BTC"),  # still a dated future
    (BYBIT, "BTCUSDT", "ETH"),
    (OKX, "PEPE-USDT-SWAP", "BTC-USDT"),
    (OKX, "BTC-USD-SWAP", "USD"),  # an inverse swap's ctValCcy is its quote, not its base
    (HYPERLIQUID, "kPEPE", "PEPE"),
])
def test_a_base_that_contradicts_the_symbol_gives_no_key(source: str, symbol: str, base: str) -> None:
    assert asset_of(source, symbol, base) is None


# -- properties --------------------------------------------------------------------------

_coin = st.text(st.sampled_from("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"), min_size=1, max_size=12).filter(
    lambda s: s[0].isalpha())


@settings(max_examples=300, deadline=None)
@given(coin=_coin, lot=st.sampled_from(SCALE_PREFIXES), quote=st.sampled_from(["USDT", "USDC"]),
       source=st.sampled_from([BINANCE, BYBIT, SIM]))
def test_a_lot_before_any_coin_folds_to_that_coin(coin: str, lot: tuple[str, int], quote: str,
                                                   source: str) -> None:
    prefix, scale = lot
    expected = OVERRIDES.get((source, prefix + coin), (coin, scale))
    assert asset_of(source, prefix + coin + quote) == AssetKey(*expected, quote)
    assert asset_of(source, coin + quote) == AssetKey(*OVERRIDES.get((source, coin), (coin, 1)), quote)
    assert asset_of(OKX, f"{coin}-{quote}-SWAP") == AssetKey(coin, 1, quote)
    assert asset_of(HYPERLIQUID, "k" + coin) == AssetKey(coin, 1000, "USDC")


@settings(max_examples=500, deadline=None)
@given(source=st.sampled_from([BINANCE, BYBIT, OKX, HYPERLIQUID, SIM, "other"]), symbol=st.text(max_size=30),
       base=st.none() | st.text(max_size=20))
def test_any_text_gives_a_key_or_none_never_an_error(source: str, symbol: str, base: str | None) -> None:
    key = asset_of(source, symbol, base)
    assert key is None or (key.asset and key.scale >= 1 and key.quote)


@pytest.mark.parametrize("source, symbol, asset, scale", [
    ("sim", "SIM0001USDT", "SIM0001", 1),
    ("sim.bybit_linear", "1000SIMPEPEUSDT", "SIMPEPE", 1000),
    ("sim.okx_swap", "SIM0001-USDT-SWAP", "SIM0001", 1),
    ("sim.hyperliquid", "kSIMPEPE", "SIMPEPE", 1000),
])
def test_a_simulated_venue_is_read_with_the_grammar_of_the_venue_it_plays(
        source: str, symbol: str, asset: str, scale: int) -> None:
    key = asset_of(source, symbol)
    assert key is not None and (key.asset, key.scale) == (asset, scale)


def test_an_unknown_simulated_venue_has_no_key() -> None:
    assert asset_of("sim.nowhere", "SIM0001USDT") is None


@pytest.mark.parametrize("source, symbol, key", [
    ("binance_usdm", "1000PEPEUSDT", b"PEPE"),
    ("bybit_linear", "1000PEPEUSDT", b"PEPE"),
    ("okx_swap", "PEPE-USDT-SWAP", b"PEPE"),
    ("hyperliquid", "kPEPE", b"PEPE"),
    ("okx_swap", "BTC-USD-SWAP", b"BTC"),
    ("binance_usdm", "BTCUSDT_261225", b"BTCUSDT_261225"),  # no asset: the symbol
    ("elsewhere", "BTCUSDT", b"BTCUSDT"),
])
def test_the_snapshot_topic_key_is_the_asset_so_its_markets_share_a_partition(
        source: str, symbol: str, key: bytes) -> None:
    assert partition_key(source, symbol) == key
