"""What people read: labelled columns, ISO-8601 UTC times, funding in percent, grouped numbers."""

from __future__ import annotations

import io
import json

from perpstream.runtime.output import print_rows

LATEST = [
    {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": "funding_rate", "value": 0.0001,
     "event_time_ms": 1_796_169_600_000},
    {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": "next_funding_time",
     "value": 1_796_169_600_000.0, "event_time_ms": 1_796_169_600_000},
    {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": "open_interest", "value": 81_234.5,
     "event_time_ms": 1_796_169_600_000},
]


def test_a_table_shows_times_as_iso_and_funding_in_percent() -> None:
    out = io.StringIO()
    print_rows(LATEST, "table", out)
    lines = out.getvalue().splitlines()
    assert lines[0].split() == ["source", "symbol", "metric", "value", "event_time"]
    assert "0.0100 %" in lines[2]
    assert "2026-12-02T00:00:00.000Z" in lines[3] and "e+12" not in out.getvalue()
    assert lines[-1] == "(3 rows)"


def test_json_keeps_raw_values_for_machines() -> None:
    out = io.StringIO()
    print_rows(LATEST, "json", out)
    rows = [json.loads(x) for x in out.getvalue().splitlines()]
    assert rows[1]["value"] == 1_796_169_600_000.0 and rows[0]["event_time_ms"] == 1_796_169_600_000


def test_large_integers_are_grouped() -> None:
    out = io.StringIO()
    print_rows([{"metric": "mark_price", "points": 1_234_567}], "table", out)
    assert "1,234,567" in out.getvalue()
