"""README.md's settings table is the one generated from the settings classes and the CLI."""

from __future__ import annotations

from perpstream.cli import build_parser
from perpstream.settings_table import COMMAND, README, readme_table, render, rewrite, rows


def test_readme_table_is_the_generated_one() -> None:
    table = render()
    assert readme_table(README.read_text(encoding="utf-8")) == table, (
        f"README.md's settings table differs from the settings classes: regenerate it with "
        f"`.venv/bin/{COMMAND}`")


def test_every_setting_has_a_description() -> None:
    missing = sorted(r.name for r in rows() if not r.info.description)
    assert not missing, f"settings without Field(description=...): {missing}"


def test_rows_carry_flags_commands_and_defaults() -> None:
    by_name = {r.name: r for r in rows(build_parser())}
    batch = by_name["batch_max_records"]
    assert batch.flags == {"--batch-size": {"sink"}}
    assert {"sink", "run", "snapshots"} <= batch.commands
    assert set(by_name["group_id"].defaults) == {"`perpstream-sink`", "`perpstream-snapshots`",
                                                 "`perpstream-assets`"}
    assert by_name["http_password"].commands == {"run", "up"}
    assert set(by_name["http_password"].defaults) == {""}  # a secret shows no default
    assert "--log-format" in by_name["log_format"].flags


def test_rewrite_replaces_only_the_block() -> None:
    text = "intro\n<!-- settings:begin -->\nold\n<!-- settings:end -->\noutro\n"
    out = rewrite(text, "| new |\n")
    assert out == "intro\n<!-- settings:begin -->\n| new |\n<!-- settings:end -->\noutro\n"
    assert readme_table(out) == "| new |\n"
