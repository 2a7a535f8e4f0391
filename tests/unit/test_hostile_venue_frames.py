"""Hostile websocket frames of the venues read through the venue contract (Bybit, Hyperliquid).

Regressions: the parser bugs this suite found, each fixed and kept fixed here.
"""

from __future__ import annotations

import json

from perpstream.producer import bybit
from perpstream.producer.venue import Ack

# -- regressions: the bugs this suite found in the venues' parsers, fixed and kept fixed ----------


def test_a_bybit_unsubscribe_answer_is_an_answer() -> None:
    """Bybit answers an unsubscribe like a subscribe; read as data it was counted as
    ``unexpected_event`` and its request was never marked answered."""
    raw = json.dumps({"success": True, "ret_msg": "", "conn_id": "c1", "req_id": "12", "op": "unsubscribe"})
    assert bybit.control_answer(raw) == Ack(12)
    assert bybit.Parser().parse(raw, 1) == []
