from __future__ import annotations

import json
import logging

import pytest

from perpstream.runtime.logs import RateLimitedLog
from perpstream.runtime.telemetry import JsonFormatter, TextFormatter


def test_a_persistent_fault_logs_once_per_interval_with_the_suppressed_count(
    caplog: pytest.LogCaptureFixture,
) -> None:
    now = [100.0]
    rl = RateLimitedLog(logging.getLogger("t"), interval=30.0, clock=lambda: now[0])
    with caplog.at_level(logging.WARNING, logger="t"):
        emitted = [rl.warning("store", "store down") for _ in range(1000)]
        now[0] += 30.0
        rl.warning("store", "store down")
        rl.warning("other", "other fault")
    assert emitted.count(True) == 1
    lines = [r for r in caplog.records if r.name == "t"]
    assert [r.getMessage() for r in lines] == ["store down", "store down", "other fault"]
    assert getattr(lines[1], "suppressed", None) == 999
    assert all(r.exc_info is None for r in lines)


def test_reset_logs_the_next_fault_at_once() -> None:
    now = [0.0]
    rl = RateLimitedLog(logging.getLogger("t"), interval=30.0, clock=lambda: now[0])
    assert rl.warning("k", "x")
    assert not rl.warning("k", "x")
    rl.reset("k")
    assert rl.warning("k", "x")


def test_text_log_lines_carry_the_fields_json_lines_carry() -> None:
    record = logging.makeLogRecord({"name": "perpstream.up", "levelname": "INFO", "levelno": 20,
                                    "msg": "status", "created": 1796170000.25, "msecs": 250.0,
                                    "stored": 1234, "sink_state": "restarting in 2.0 s",
                                    "lag_by_group": {"perpstream-sink": 3}})
    text = TextFormatter().format(record)
    assert text.startswith("2026-12-02T00:06:40.250Z INFO perpstream.up: status ")
    assert 'stored=1234 sink_state="restarting in 2.0 s" lag_by_group={"perpstream-sink":3}' in text
    as_json = json.loads(JsonFormatter().format(record))
    assert {k: as_json[k] for k in ("stored", "sink_state")} == {"stored": 1234,
                                                                 "sink_state": "restarting in 2.0 s"}
