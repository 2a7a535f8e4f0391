"""Hostile websocket frames of the venues read through the venue contract (Bybit, Hyperliquid).

Regressions: the parser bugs this suite found, each fixed and kept fixed here.
"""

from __future__ import annotations

import json

import pytest

from perpstream.producer import bybit, hyperliquid
from perpstream.producer.exceptions import FrameRejected
from perpstream.producer.venue import Ack
from perpstream.schemas import rules

# -- regressions: the bugs this suite found in the venues' parsers, fixed and kept fixed ----------


def test_a_bybit_unsubscribe_answer_is_an_answer() -> None:
    """Bybit answers an unsubscribe like a subscribe; read as data it was counted as
    ``unexpected_event`` and its request was never marked answered."""
    raw = json.dumps({"success": True, "ret_msg": "", "conn_id": "c1", "req_id": "12", "op": "unsubscribe"})
    assert bybit.control_answer(raw) == Ack(12)
    assert bybit.Parser().parse(raw, 1) == []


@pytest.mark.parametrize("req_id", ["\u00b2", "\u0661\u0662", "\U0001d7d7", "\uff11"])
def test_a_bybit_answer_whose_req_id_is_not_ascii_digits_names_no_request(req_id: str) -> None:
    """``"²".isdigit()`` is true and ``int("²")`` raises: the ValueError escaped
    ``Dialect.control``, and the websocket reader replaced the socket."""
    raw = json.dumps({"success": True, "ret_msg": "", "conn_id": "c1", "req_id": req_id, "op": "subscribe"})
    assert bybit.control_answer(raw) == Ack(None)


@pytest.mark.parametrize("depth", [990, 1_020])
def test_a_hyperliquid_error_answer_nested_deeply_is_still_an_answer(depth: int) -> None:
    """The frame reads (the JSON reader takes 1,024 levels), but writing its data back as the
    refusal's text overflowed the stack: RecursionError escaped ``Dialect.control``."""
    raw = '{"channel":"error","data":' + "[" * depth + "]" * depth + "}"
    answer = hyperliquid.control(raw)
    assert isinstance(answer, Ack) and answer.request_id is None and answer.error


@pytest.mark.parametrize("coin", ["xyz:TSLA", "BTC.X", "BTC$", "\U0001f680", "BTC\u00a0"])
def test_a_hyperliquid_coin_the_contract_refuses_is_rejected_and_never_published(coin: str) -> None:
    """The parser kept its own, looser name rule: these coins were published, and every
    consumer then dead-lettered their points (docs/contract.md, "Symbols")."""
    ctx = {"markPx": "97015.0", "oraclePx": "97005.0", "funding": "0.0000125", "openInterest": "26142.5"}
    raw = json.dumps({"channel": "activeAssetCtx", "data": {"coin": coin, "ctx": ctx}})
    assert rules.symbol_problem(coin, "hyperliquid") is not None  # what the consumers say
    with pytest.raises(FrameRejected) as exc:
        hyperliquid.Parser().parse(raw, 1_790_000_000_000)
    assert exc.value.reason == "bad_symbol"
