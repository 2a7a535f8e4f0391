"""``perpstream`` console script: parses arguments and hands each subcommand to
the package that owns it. Settings are built here, at the edge, and passed down."""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence

from pydantic import ValidationError
from pydantic_settings import SettingsError

from perpstream.errors import ConfigError, PerpstreamError
from perpstream.runtime.secrets import redact
from perpstream.runtime.settings import describe
from perpstream.runtime.telemetry import TextFormatter


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="perpstream",
        description="Binance USD-M market context streamed to Kafka and ClickHouse.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    # Each package registers its own subcommands. Local: they cost ~0.7 s of imports (python -X
    # importtime), paid when a parser is built, not by whoever imports perpstream.cli.
    from perpstream import bench, pipeline, soak, sql, up
    from perpstream.consumers.assets import cli as assets_cli
    from perpstream.consumers.sink import cli as sink_cli
    from perpstream.consumers.snapshots import cli as snapshots_cli
    from perpstream.producer import backfill
    from perpstream.producer import cli as producer_cli

    for mod in (up, pipeline, producer_cli, backfill, sink_cli, snapshots_cli, assets_cli, sql, bench,
                soak):
        mod.register(sub)
    return parser


#: Exit codes: 2 = bad configuration or usage (argparse's own), 1 = a fault of the
#: world the command could not get past (named in one line), 130 = interrupted
#: before it could drain.
EXIT_CONFIG = 2
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand. What the user or the world did wrong is one line on
    stderr and an exit code; only bugs print a traceback."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Run parsed arguments (``args.func``), with :func:`main`'s error handling."""
    name = f"perpstream {args.command}"
    root = logging.getLogger()
    if not root.handlers:  # until a command configures logging: its lines are redacted too
        handler = logging.StreamHandler()
        handler.setFormatter(TextFormatter())
        root.addHandler(handler)
    try:
        rc = args.func(args)
    except ConfigError as exc:
        print(f"{name}: configuration error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_CONFIG
    except (ValidationError, SettingsError) as exc:
        print(f"{name}: configuration error: {describe(exc)}", file=sys.stderr)
        return EXIT_CONFIG
    except PerpstreamError as exc:
        logging.getLogger("perpstream").debug("command failed", exc_info=True)
        print(f"{name}: error: {redact(str(exc))}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception:  # a bug: its traceback, with secrets masked like every other line
        print(redact(traceback.format_exc()), file=sys.stderr, end="")
        return EXIT_FAILED
    return int(rc or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
