"""Shared settings fail loudly and by name; telemetry renders what operators scrape."""

from __future__ import annotations

import json
import logging
import urllib.request

import pytest
from pydantic import ValidationError

from perpstream.cli import main
from perpstream.local import free_port
from perpstream.runtime.settings import CommonSettings
from perpstream.runtime.telemetry import JsonFormatter, Telemetry, serve_metrics


@pytest.mark.parametrize(
    ("env", "value", "setting"),
    [
        ("PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS", "localhost", "kafka_bootstrap_servers"),
        ("PERPSTREAM_CLICKHOUSE_DSN", "ftp://x", "clickhouse_dsn"),
        ("PERPSTREAM_CLICKHOUSE_DATABASE", "bad-name;drop", "clickhouse_database"),
        ("PERPSTREAM_METRICS_PORT", "70000", "metrics_port"),
        ("PERPSTREAM_LOG_LEVEL", "LOUD", "log_level"),
    ],
)
def test_bad_environment_fails_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, env: str, value: str, setting: str
) -> None:
    monkeypatch.setenv(env, value)
    with pytest.raises(ValidationError, match=setting):
        CommonSettings()


def test_good_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS", "k1:9092,k2:9092")
    monkeypatch.setenv("PERPSTREAM_CLICKHOUSE_DSN", "http://u:p@ch:8123/")
    s = CommonSettings()
    assert s.kafka_bootstrap_servers == "k1:9092,k2:9092"
    assert s.clickhouse_dsn == "http://u:p@ch:8123/"


def test_cli_reports_bad_configuration_with_exit_code_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    assert main(["topics"]) == 2
    assert "PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS" in capsys.readouterr().err


def test_prometheus_text_over_http() -> None:
    t = Telemetry()
    t.describe("frames_received_total", "websocket frames received")
    t.inc("frames_received_total", 41)
    t.inc("frames_received_total")
    t.inc("rejected_total", 2, {"reason": "bad_json"})
    t.gauge_fn("buffer_fill_ratio", lambda: 0.25)
    port = free_port()
    server = serve_metrics(t, port, host="127.0.0.1")
    try:
        body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        server.shutdown()
    assert "# HELP perpstream_frames_received_total websocket frames received" in body
    assert "perpstream_frames_received_total 42" in body
    assert 'perpstream_rejected_total{reason="bad_json"} 2' in body
    assert "# TYPE perpstream_buffer_fill_ratio gauge" in body
    assert "perpstream_buffer_fill_ratio 0.25" in body


def test_log_lines_are_one_json_object_with_extra_fields() -> None:
    rec = logging.LogRecord("perpstream.x", logging.WARNING, __file__, 1, "frame rejected", None, None)
    rec.reason = "bad_json"
    line = JsonFormatter().format(rec)
    out = json.loads(line)
    assert out["msg"] == "frame rejected" and out["level"] == "WARNING"
    assert out["reason"] == "bad_json"
    assert "\n" not in line


def test_kafka_clients_log_only_what_the_librdkafka_logger_shows() -> None:
    import logging

    from perpstream.runtime.telemetry import KAFKA_LOGGER, configure_logging, kafka_logging

    root = logging.getLogger()
    saved = (root.handlers[:], root.level, logging.getLogger(KAFKA_LOGGER).level)
    try:
        configure_logging("INFO", "json")
        cfg = kafka_logging()
        assert cfg["logger"].name == KAFKA_LOGGER and cfg["log_level"] == 4  # warnings and worse only
        configure_logging("DEBUG", "text")
        assert kafka_logging()["log_level"] == 7
        from confluent_kafka import Producer

        Producer({"bootstrap.servers": "127.0.0.1:1", **kafka_logging()}).flush(0)  # librdkafka accepts both
    finally:
        root.handlers[:], lvl, klvl = saved
        root.setLevel(lvl)
        logging.getLogger(KAFKA_LOGGER).setLevel(klvl)


def test_detached_gauges_keep_their_reading_and_release_their_owner() -> None:
    import gc
    import weakref

    from perpstream.runtime.telemetry import Telemetry

    class Component:
        def fill(self) -> float:
            return 0.25

    t = Telemetry()
    c = Component()
    ref = weakref.ref(c)
    t.gauge_fn("buffer_fill", c.fill)
    t.detach_gauges()
    del c
    gc.collect()
    assert ref() is None  # nothing keeps the stopped component (and its Kafka client) alive
    assert "perpstream_buffer_fill 0.25" in t.render_prometheus()
