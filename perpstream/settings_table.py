"""README.md's table of every setting, generated from the settings classes and the CLI.

    python -m perpstream.settings_table           # print the table (markdown)
    python -m perpstream.settings_table --write   # rewrite it in README.md, between the markers

Rows: every field of every settings class deriving from
:class:`~service.settings.CommonSettings` (found by walking the subclasses
once the command line is built, so a new class is listed without being named
here). The flags and the commands come from what each command declares on its
parser (:func:`~service.settings.declare_settings`: the classes it builds and
the flag -> field map it passes to ``build_settings``); the description is the
field's ``Field(description=...)``. Secrets show no default.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import SecretStr
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from perpstream.cli import build_parser
from perpstream.runtime.settings import ENV_PREFIX, SETTINGS_USES, CommonSettings, SettingsUse

BEGIN = "<!-- settings:begin -->"
END = "<!-- settings:end -->"
README = Path(__file__).resolve().parent.parent / "README.md"
COMMAND = "python -m perpstream.settings_table --write"


@dataclass
class _Row:
    name: str
    info: FieldInfo
    #: flag -> commands that have it
    flags: dict[str, set[str]] = field(default_factory=dict)
    #: rendered default -> commands that get it
    defaults: dict[str, set[str]] = field(default_factory=dict)
    commands: set[str] = field(default_factory=set)


def _commands(parser: argparse.ArgumentParser, top: str = "") -> Iterator[
        tuple[str, argparse.ArgumentParser, tuple[SettingsUse, ...]]]:
    """(top-level command, its (sub)parser, what it declares) for every parser that declares settings."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                command = top or name
                uses = sub.get_default(SETTINGS_USES)
                if uses:
                    yield command, sub, uses
                yield from _commands(sub, command)


def settings_classes() -> list[type[BaseSettings]]:
    """CommonSettings and every class deriving from it, parents before children."""
    out: list[type[BaseSettings]] = []
    todo: list[type[BaseSettings]] = [CommonSettings]
    while todo:
        cls = todo.pop(0)
        if cls not in out:
            out.append(cls)
            todo.extend(sorted(cls.__subclasses__(), key=lambda c: (c.__module__, c.__qualname__)))
    return out


def _is_secret(info: FieldInfo) -> bool:
    return "SecretStr" in repr(info.annotation) or info.annotation is SecretStr


def _default(info: FieldInfo) -> str:
    if _is_secret(info):
        return ""
    if info.default_factory is not None:  # depends on the machine (a user directory): the description says
        return "computed at start-up"
    value: Any = info.get_default()
    if value is None:
        return "unset"
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, tuple | list | dict):
        text = json.dumps(value)
    else:
        text = str(value)
    return f"`{text}`" if text else '`""`'


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def rows(parser: argparse.ArgumentParser | None = None) -> list[_Row]:
    if parser is None:
        parser = build_parser()  # imports every command's module, and so every settings class
    table: dict[str, _Row] = {}
    for cls in settings_classes():
        for name, info in cls.model_fields.items():
            row = table.setdefault(name, _Row(name, info))
            if info.description and not row.info.description:
                row.info = info
    for command, sub, uses in _commands(parser):
        options = {a.dest: a.option_strings for a in sub._actions}
        for use in uses:
            for name, info in use.cls.model_fields.items():
                row = table[name]
                row.commands.add(command)
                row.defaults.setdefault(_default(info), set()).add(command)
                if info.description:
                    row.info = info
            for dest, name in use.flags.items():
                for option in options.get(dest, ()):
                    if option.startswith("--"):
                        table[name].flags.setdefault(option, set()).add(command)
    return list(table.values())


def render(parser: argparse.ArgumentParser | None = None) -> str:
    lines = ["| variable | flags | default | commands | description |", "|---|---|---|---|---|"]
    for row in rows(parser):
        if not row.defaults:  # no command builds a class with it: the field's own default
            row.defaults[_default(row.info)] = set()
        if len(row.defaults) == 1:
            default = next(iter(row.defaults))
        else:
            default = "; ".join(f"{d} ({', '.join(sorted(c))})" for d, c in sorted(row.defaults.items()))
        cells = [
            f"`{ENV_PREFIX}{row.name.upper()}`",
            ", ".join(f"`{f}`" + ("" if c == row.commands else f" ({', '.join(sorted(c))})")
                      for f, c in sorted(row.flags.items())),
            default,
            ", ".join(sorted(row.commands)),
            row.info.description or "",
        ]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return "\n".join(lines) + "\n"


def readme_table(text: str) -> str:
    """The part of ``text`` between the markers."""
    if BEGIN not in text or END not in text:
        raise ValueError(f"README.md has no {BEGIN} ... {END} block")
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def rewrite(text: str, table: str) -> str:
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{BEGIN}\n{table}{END}{tail}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perpstream.settings_table",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help=f"rewrite the table in {README.name}")
    args = ap.parse_args(argv)
    table = render()
    if not args.write:
        sys.stdout.write(table)
        return 0
    text = README.read_text(encoding="utf-8")
    README.write_text(rewrite(text, table), encoding="utf-8")
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
