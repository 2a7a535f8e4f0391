"""``perpstream`` console script: parses arguments and hands each subcommand to
the package that owns it. Settings are built here, at the edge, and passed down."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from schemas.exceptions import ConfigError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perpstream",
        description="Binance USD-M market context streamed to Kafka and ClickHouse.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each package registers its own subcommands.
    from consumers.sink import cli as sink_cli
    from consumers.snapshots import cli as snapshots_cli
    from perpstream import pipeline
    from producer import cli as producer_cli

    for mod in (pipeline, producer_cli, sink_cli, snapshots_cli):
        mod.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rc = args.func(args)
    except (ConfigError, ValidationError) as exc:
        print(f"perpstream {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
