"""Rebuilding an asset partition after a crash or a rebalance (docs/snapshots.md,
"Cross-venue asset snapshots", "Restarts and rebalances"): a member that stores
what its engine accepted and checkpoints what it emitted, crashes anywhere, and
is rebuilt by ``rebuild_engine`` emits exactly the records of an uninterrupted
run; a record emitted twice is the same record; none is built from part of its rows."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from perpstream.consumers.assets.app import rebuild_engine
from perpstream.consumers.assets.engine import ACCEPTED, AssetEngine, AssetEngineConfig
from perpstream.consumers.assets.store import AssetRecovery
from perpstream.consumers.assets.wire import ROW_FIELDS

T0 = 1_767_225_600_000
STEP = 5_000
L = 15_000
MARKETS = [("binance_usdm", "1000PEPEUSDT"), ("bybit_linear", "1000PEPEUSDT"),
           ("okx_swap", "PEPE-USDT-SWAP"), ("hyperliquid", "kPEPE"),
           ("binance_usdm", "BTCUSDT"), ("okx_swap", "BTC-USDT-SWAP"), ("binance_usdm", "BTCUSDT_261225")]


def stream(seed: int, times: int = 40) -> list[dict[str, Any]]:
    """Rows of every market and two windows, each venue a few seconds behind the others,
    some repeated (a snapshot member re-emitting) and some far behind (late)."""
    rnd = random.Random(seed)
    keyed = []
    for k in range(times):
        t = T0 + k * STEP
        for i, (source, symbol) in enumerate(MARKETS):
            if rnd.random() < 0.1:
                continue  # a venue without a row for this time
            for w in (300, 60):
                r = {f: None for f in ROW_FIELDS}
                r.update(source=source, symbol=symbol, window_s=w, snapshot_time=t,
                         mark_last=rnd.uniform(0.5, 2.0), oi_last=rnd.uniform(1e5, 1e6),
                         funding_annualized=rnd.gauss(0.1, 0.05), funding_interval_h=8.0,
                         stale=rnd.random() < 0.1)
                arrive = t + rnd.randint(0, 12_000) + (30_000 if rnd.random() < 0.03 else 0) + i
                keyed.append((arrive, len(keyed), r))
                if rnd.random() < 0.05:
                    keyed.append((arrive + rnd.randint(0, 20_000), len(keyed), dict(r)))
    return [r for _, _, r in sorted(keyed, key=lambda x: (x[0], x[1]))]


class Member:
    """What AssetHandler keeps durable, without I/O: the accepted rows per asset, the
    emitted records, and checkpoints written only every ``every`` batches."""

    def __init__(self, engine: AssetEngine, stored: dict[str, list[dict[str, Any]]],
                 checkpoints: dict[str, int]) -> None:
        self.engine = engine
        self.stored = stored
        self.checkpoints = checkpoints
        self.emitted: list[dict[str, Any]] = engine.take_output()

    def batch(self, rows: list[dict[str, Any]], *, checkpoint: bool) -> None:
        for r in rows:
            if self.engine.add(r) == ACCEPTED:
                key = self.engine.key(r["source"], r["symbol"])
                assert key is not None
                self.stored.setdefault(key.asset, []).append(r)
        out = self.engine.take_output()
        self.emitted.extend(out)
        if checkpoint:
            for rec in out:
                self.checkpoints[rec["asset"]] = max(self.checkpoints.get(rec["asset"], rec["snapshot_time"]),
                                                     rec["snapshot_time"])


def recoveries(stored: dict[str, list[dict[str, Any]]], checkpoints: dict[str, int]) -> list[AssetRecovery]:
    """What AssetStore.load_partition returns: per asset the checkpoint and the rows after it."""
    assets = set(stored) | set(checkpoints)
    return [AssetRecovery(a, checkpoints.get(a),
                          [r for r in stored.get(a, [])
                           if a not in checkpoints or r["snapshot_time"] > checkpoints[a]])
            for a in sorted(assets)]


def identity(rec: dict[str, Any]) -> tuple[str, int, int]:
    return (rec["asset"], rec["window_s"], rec["snapshot_time"])


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), batch=st.integers(1, 60),
       crashes=st.lists(st.integers(0, 2_000), max_size=3), every=st.integers(1, 4), lost=st.booleans())
def test_a_rebuilt_member_emits_the_records_of_an_uninterrupted_run(
    seed: int, batch: int, crashes: list[int], every: int, lost: bool,
) -> None:
    rows = stream(seed)
    config = AssetEngineConfig(lateness_ms=L)
    whole = Member(AssetEngine(config), {}, {})
    whole.batch(rows, checkpoint=False)
    expected = {identity(r): r for r in whole.emitted}
    assert len(expected) == len(whole.emitted)

    stored: dict[str, list[dict[str, Any]]] = {}
    checkpoints: dict[str, int] = {}
    member = Member(AssetEngine(config), stored, checkpoints)
    emitted: list[dict[str, Any]] = []
    committed = 0  # offset of the first row not committed
    pos = 0
    n = 0
    crash_at = sorted(c % (len(rows) + 1) for c in crashes)
    while pos < len(rows):
        end = min(pos + batch, len(rows))
        n += 1
        member.batch(rows[pos:end], checkpoint=n % every == 0)
        pos = end
        if crash_at and pos >= crash_at[0]:
            crash_at.pop(0)
            # a crash: the last batch's rows and records were stored but, with ``lost``, not
            # committed, so it is read again from the committed offset
            emitted.extend(member.emitted)
            pos = committed if lost else pos
            member = Member(rebuild_engine(config, recoveries(stored, checkpoints)), stored, checkpoints)
        committed = pos if not lost or not crash_at else committed
    emitted.extend(member.emitted)

    got: dict[tuple[str, int, int], dict[str, Any]] = {}
    for rec in emitted:
        prev = got.setdefault(identity(rec), rec)
        assert prev == rec, f"{identity(rec)} emitted twice with different values"
    assert got.keys() == expected.keys()
    assert got == expected


def test_rebuild_emits_again_what_the_checkpoint_does_not_cover_and_keeps_pending_rows() -> None:
    config = AssetEngineConfig(lateness_ms=L)
    rows = stream(3)
    m = Member(AssetEngine(config), {}, {})
    m.batch(rows[: len(rows) // 2], checkpoint=False)
    assert m.emitted and m.engine.pending_rows()
    rebuilt = rebuild_engine(config, recoveries(m.stored, {}))
    # no checkpoint: every record again, the same
    assert sorted(rebuilt.take_output(), key=identity) == sorted(m.emitted, key=identity)
    assert rebuilt.pending_rows() == m.engine.pending_rows()
    assert rebuilt.checkpoint() == m.engine.checkpoint()
    # with the checkpoints of everything emitted, nothing is emitted again
    ck = m.engine.checkpoint()
    again = rebuild_engine(config, recoveries(m.stored, ck))
    assert again.take_output() == []
    assert again.pending_rows() == m.engine.pending_rows()
