"""Product bugs the hostile suite found and reported, by name.

Each has a ``pytest.mark.xfail(strict=True)`` test that shows it
(``tests/unit/test_hostile_*.py``, ``tests/integration/test_hostile_topic.py``):
when the owners fix one, that test passes, strict xfail turns it into a
failure, and the entry here and its xfail mark go. The oracles name the
trigger of an input they see (``triggers``), so a mismatch caused by one of
these is counted as "known" and any other one as new.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final


@dataclass(frozen=True)
class KnownBug:
    name: str
    where: str
    summary: str


_BUGS = (
    KnownBug(
        "number_int_overflow", "producer/binance.py _number",
        "a JSON integer literal wider than a double (309+ digits) in a price, funding rate or "
        "openInterest makes float(v) raise OverflowError, which escapes Ingest.on_ws_frame / "
        "on_open_interest (the websocket session ends with reason 'error'; an all-market frame "
        "loses its good items too)",
    ),
    KnownBug(
        "json_recursion", "producer/binance.py load_json",
        "deeply nested JSON ('[' * 100000, 100 kB) makes json.loads raise RecursionError, which "
        "load_json does not catch (only ValueError/UnicodeDecodeError): it escapes on_ws_frame / "
        "on_open_interest, and producer/live.py _listing for an exchangeInfo body",
    ),
    KnownBug(
        "symbol_filter_unhashable", "producer/binance.py points_from_message",
        "with a symbol filter (all-market stream), an item whose 's' is a list or object makes "
        "`item.get('s') not in symbols` raise TypeError, which escapes on_ws_frame",
    ),
    KnownBug(
        "lenient_decimal_strings", "producer/binance.py _number",
        "float(str) also accepts strings that are not decimals: ' 1.5' (any Unicode whitespace "
        "around), '1_000', fullwidth '\uff11\uff12\uff13', Arabic-Indic '\u0661\u0662\u0663'; "
        "they are published as numbers instead of being rejected as bad_number",
    ),
    KnownBug(
        "funding_time_zero_lenient", "producer/binance.py mark_price_points",
        "`if T != 0` treats \"T\": false, 0.0 and -0.0 like the delivery contracts' integer 0: the "
        "frame is published without next_funding_time instead of being rejected as bad_timestamp "
        "(not integer ms)",
    ),
    KnownBug(
        "exchange_info_not_object", "producer/binance.py perpetual_listing / trading_perpetuals",
        "a body that parses to a list, null, string or number raises AttributeError (.get on a "
        "non-dict) instead of FrameRejected; producer/live.py _refresh retries FrameRejected and "
        "ValueError ('exchangeInfo answer unusable; retrying') but not this, so the listing task "
        "of `produce --all` ends with 'background task failed' instead of retrying",
    ),
    KnownBug(
        "negative_enum_index", "schemas/codec.py AvroCodec.decode (fastavro reader)",
        "a negative metric enum index reads as symbols[index] (Python negative indexing): zigzag "
        "byte 0x03 (index -2) is open_interest, 0x05 (-3) next_funding_time; the row decoder "
        "falls back to the codec for it, so one flipped bit (0x02 index_price -> 0x03) stores "
        "the point under another identity instead of sending it to the DLQ",
    ),
    KnownBug(
        "tail_cache_unbounded", "consumers/runtime/decoding.py row_decoder (tails cache)",
        "the tails cache is keyed by data[p + 8:], the whole rest of the record: records with a "
        "valid prefix and large trailing bytes each keep their tail (verdict None) until 4,096 "
        "entries, up to 4,096 x the largest message retained per decoder",
    ),
    KnownBug(
        "symbol_cache_unbounded", "schemas/rules.py symbol_problem (lru_cache)",
        "lru_cache(maxsize=65_536) keys on the whole string, checked before any length bound: "
        "distinct huge symbols (frames up to 4 MB, records up to the broker limit) stay cached, up "
        "to 65,536 x their size, in the producer and in every consumer",
    ),
)

KNOWN_BUGS: Final[dict[str, KnownBug]] = {b.name: b for b in _BUGS}


def describe(name: str) -> str:
    bug = KNOWN_BUGS[name]
    return f"{bug.name} ({bug.where}): {bug.summary}"


def reason(name: str) -> str:
    """A short xfail reason: the bug's name and where it is (the whole story: :func:`describe`)."""
    bug = KNOWN_BUGS[name]
    return f"known bug {bug.name}, {bug.where}"
