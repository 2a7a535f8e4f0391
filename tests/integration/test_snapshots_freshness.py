"""``perpstream freshness`` and the stale-symbols gauge: which markets' context
cannot be trusted now (stale latest snapshot, or feeds silent vs the clock), per
(source, symbol): one venue's silence does not make the symbol stale on another."""

from __future__ import annotations

import argparse
import json
from typing import Any

import pytest

from perpstream.consumers.runtime.batch import Batch, PartitionBatch
from perpstream.consumers.snapshots import cli
from perpstream.consumers.snapshots.app import SnapshotHandler
from perpstream.consumers.snapshots.engine import EngineConfig
from perpstream.consumers.snapshots.freshness import freshness
from perpstream.consumers.snapshots.store import SnapshotStore, migrate_snapshots
from tests.unit.snapshots.streams import T0, as_row, recorded_market

pytestmark = pytest.mark.integration


def _fill(clickhouse: Any, db: str) -> SnapshotHandler:
    """Two symbols on two venues for 120 s; SYM000's open interest stops at 60 s on Binance."""
    migrate_snapshots(clickhouse, db)
    arrival, _ = recorded_market(symbols=2, seconds=120, seed=3, dup_rate=0, late_rate=0,
                                 sources=("binance_usdm", "bybit_linear"))
    h = SnapshotHandler(SnapshotStore(clickhouse, db, "g"), EngineConfig(), None)
    h.on_assigned([("m", 0)])
    rows = [as_row(r) for r in arrival]
    h.handle(Batch({("m", 0): PartitionBatch("m", 0, 0, len(rows) - 1, rows, list(range(len(rows))))}, []))
    return h


def test_freshness_lists_the_symbol_whose_open_interest_stopped(clickhouse: Any, ch_database: str) -> None:
    h = _fill(clickhouse, ch_database)
    now = T0 + 120_000  # right at the end of the recording
    rows = {(r.source, r.symbol): r for r in freshness(clickhouse, ch_database, EngineConfig(), now_ms=now)}
    stale = ("binance_usdm", "SYM000USDT")
    assert set(rows) == {(src, sym) for src in ("binance_usdm", "bybit_linear")
                         for sym in ("SYM000USDT", "SYM001USDT")}
    assert rows[stale].stale
    assert any("open interest" in r or "snapshot" in r for r in rows[stale].reasons)
    assert [m for m, r in rows.items() if r.stale] == [stale]
    # the in-process gauge agrees
    assert h.stale_markets(now) == [stale]
    # an hour later every feed is silent: everything is stale
    later = freshness(clickhouse, ch_database, EngineConfig(), now_ms=now + 3_600_000)
    assert all(r.stale for r in later)


def test_freshness_command_output(clickhouse: Any, ch_database: str, monkeypatch: pytest.MonkeyPatch,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    _fill(clickhouse, ch_database)

    class Shared:
        """The session's client; the command must not close it."""

        def __getattr__(self, name: str) -> Any:
            return getattr(clickhouse, name)

        def close(self) -> None:
            pass

    from perpstream.consumers import reading

    monkeypatch.setattr(reading, "open_reader", lambda settings: reading.Reader(Shared(), "server", "test"))
    parser = argparse.ArgumentParser()
    cli.register(parser.add_subparsers())
    args = parser.parse_args(["freshness", "--database", ch_database, "--now-ms", str(T0 + 120_000),
                              "--json", "--fail-on-stale"])
    assert args.func(args) == 3
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [(d["source"], d["symbol"]) for d in lines] == [("binance_usdm", "SYM000USDT")]
    args = parser.parse_args(["freshness", "--database", ch_database, "--now-ms", str(T0 + 120_000),
                              "--all"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("1 of 4 markets stale") and "bybit_linear" in out and "SYM001USDT" in out
