"""Every configuration problem, of every settings class, is one line naming the setting."""

from __future__ import annotations

import os

import pytest

from perpstream.cli import EXIT_CONFIG, main
from perpstream.runtime.settings import CommonSettings, known_settings

#: (command line, environment, the setting the line must name)
CASES = [
    (["produce", "--bootstrap-servers", "h:1", "--source", "sim", "--sim-symbols", "0"], {}, "sim_symbols"),
    (["produce", "--bootstrap-servers", "h:1", "--symbols", "BTC USDT"], {}, "symbols"),
    (["produce", "--source", "replay:/no/such/file", "--bootstrap-servers", "h:1"], {},
     "replay_file"),
    (["produce", "--source", "sim"], {"PERPSTREAM_KAFKA_LINGER_MS": "soon"}, "kafka_linger_ms"),
    (["record", "--out", "/dev/null", "--symbols", "BTCUSDT", "--oi-interval", "-1"], {}, "oi_interval"),
    (["sink", "--bootstrap-servers", "h:1", "--batch-size", "0"], {}, "batch_max_records"),
    (["sink", "--bootstrap-servers", "nohostport"], {}, "kafka_bootstrap_servers"),
    (["sink", "--bootstrap-servers", "h:1"], {"PERPSTREAM_WORKERS": "many"}, "workers"),
    (["sink", "--bootstrap-servers", "h:1", "--clickhouse-dsn", "chdb://relative"], {}, "clickhouse_dsn"),
    (["sink", "--bootstrap-servers", "h:1"], {"PERPSTREAM_CLICKHOUSE_DSN": "clickhouse://ch:9000/"},
     "PERPSTREAM_CLICKHOUSE_DSN"),
    (["snapshots", "--bootstrap-servers", "h:1", "--clickhouse-dsn", "http://ch:8123/?session_id=s1"], {},
     "--clickhouse-dsn"),
    (["snapshots", "--bootstrap-servers", "h:1"], {"PERPSTREAM_SNAPSHOT_WINDOWS_S": "sixty"},
     "snapshot_windows_s"),
    (["snapshots", "--bootstrap-servers", "h:1", "--interval-ms", "0"], {}, "snapshot_interval_ms"),
    (["freshness", "--database", "bad name"], {}, "clickhouse_database"),
    (["query", "counts", "--log-level", "INFO"], {"PERPSTREAM_LOG_FORMAT": "xml"}, "log_format"),
    (["sink", "--bootstrap-servers", "h:1"], {"PERPSTREAM_BATCH_MAX_RECORD": "5"},
     "PERPSTREAM_BATCH_MAX_RECORD"),
    (["run", "--source", "sim"], {"PERPSTREAM_GC_THRESHOLD": "-5"}, "gc_threshold"),
]


@pytest.mark.parametrize(("argv", "env", "setting"), CASES, ids=[f"{c[0][0]}-{c[2]}" for c in CASES])
def test_a_bad_setting_is_one_line_that_names_it(
    argv: list[str], env: dict[str, str], setting: str,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: object,
) -> None:
    for key in list(os.environ):
        if key.startswith("PERPSTREAM_") and not key.startswith("PERPSTREAM_TEST_"):
            monkeypatch.delenv(key)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.chdir(str(tmp_path))
    assert main(argv) == EXIT_CONFIG
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    assert "configuration error" in err and setting in err, err
    assert "Traceback" not in err


def test_every_setting_is_known_to_the_environment_check() -> None:
    # importing them registers the subclasses
    import perpstream.consumers.sink.settings
    import perpstream.consumers.snapshots.settings
    import perpstream.producer.settings  # noqa: F401

    names = known_settings()
    assert set(CommonSettings.model_fields) <= names
    assert {"batch_max_records", "snapshot_windows_s", "symbols", "sim_symbols"} <= names
