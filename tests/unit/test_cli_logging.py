"""Every long-running command takes --log-level and --log-format, and they win over the environment."""

from __future__ import annotations

import os
from typing import Any

import pytest

from perpstream.cli import build_parser
from perpstream.runtime.settings import SETTINGS_USES, SettingsUse, build_settings

LONG_RUNNING = {
    "produce": ["produce"],
    "sink": ["sink"],
    "snapshots": ["snapshots"],
    "run": ["run"],
}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("PERPSTREAM_") and not key.startswith("PERPSTREAM_TEST_"):
            monkeypatch.delenv(key)


def _logging_settings(argv: list[str]) -> list[Any]:
    """The logging settings each settings class the command declares ends up with."""
    args = build_parser().parse_args(argv)
    uses: tuple[SettingsUse, ...] = getattr(args, SETTINGS_USES)
    out = []
    for use in uses:
        if "log_format" in use.flags.values():
            s: Any = build_settings(use.cls, args, use.flags)
            out.append((s.log_level, s.log_format))
    assert out, f"{argv[0]} maps no --log-format to a setting"
    return out


@pytest.mark.parametrize("command", sorted(LONG_RUNNING))
def test_flags_win_over_the_environment(command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PERPSTREAM_LOG_FORMAT", "json")
    monkeypatch.setenv("PERPSTREAM_LOG_LEVEL", "WARNING")
    argv = [*LONG_RUNNING[command], "--log-format", "text", "--log-level", "DEBUG"]
    assert set(_logging_settings(argv)) == {("DEBUG", "text")}
    assert set(_logging_settings(LONG_RUNNING[command])) == {("WARNING", "json")}


def test_run_logs_text_unless_told_otherwise(monkeypatch: pytest.MonkeyPatch) -> None:
    from perpstream.pipeline import RUN_FLAGS, QueryServerSettings

    args = build_parser().parse_args(["run"])
    assert "log_format" not in build_settings(QueryServerSettings, args, RUN_FLAGS).model_fields_set
    monkeypatch.setenv("PERPSTREAM_LOG_FORMAT", "json")
    assert "log_format" in build_settings(QueryServerSettings, args, RUN_FLAGS).model_fields_set
