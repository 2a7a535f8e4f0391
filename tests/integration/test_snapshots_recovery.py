"""State recovery of the snapshot handler against the real ClickHouse engine,
driven batch by batch (no broker: offsets and assignment are simulated the way
the runtime does them). A crash between the writes of a batch, a restart from
the committed offset with different batch cuts, a partition moving to another
member, a store outage: market_snapshots stays identical row for row to an
uninterrupted run and to the pure engine. Every symbol is listed on two venues: two
markets in one partition, restored each on its own."""

from __future__ import annotations

from typing import Any

import pytest

from perpstream.consumers.exceptions import StoreUnavailableError
from perpstream.consumers.runtime.batch import Batch, PartitionBatch
from perpstream.consumers.snapshots.app import SnapshotHandler
from perpstream.consumers.snapshots.engine import EngineConfig
from perpstream.consumers.snapshots.store import SnapshotStore, migrate_snapshots
from tests.unit.snapshots.harness import engine_snapshots, raw_count, split, table_rows
from tests.unit.snapshots.streams import as_row, recorded_market

TOPIC = "metrics"
PARTS = 3
CFG = EngineConfig(windows_s=(60, 300, 3600))
#: Short windows: eviction, the carried "latest before the window" points and
#: the carried basis pair are all on the recovery path.
SHORT = EngineConfig(windows_s=(10, 30, 60))

pytestmark = pytest.mark.integration


class Crash(RuntimeError):
    pass


class FlakyStore(SnapshotStore):
    """Fails the chosen write once: ``crash`` = an abrupt stop, else backpressure."""

    def __init__(self, *args: Any, fail_on: str | None = None, crash: bool = False) -> None:
        super().__init__(*args)
        self.fail_on = fail_on
        self.crash = crash

    def _maybe_fail(self, what: str) -> None:
        if self.fail_on == what:
            self.fail_on = None
            if self.crash:
                raise Crash(what)
            raise StoreUnavailableError(f"injected {what} failure")

    def write_points(self, rows: Any) -> None:
        self._maybe_fail("points")
        super().write_points(rows)

    def write_snapshots(self, snaps: Any) -> None:
        self._maybe_fail("snapshots")
        super().write_snapshots(snaps)

    def write_checkpoints(self, last: Any) -> None:
        self._maybe_fail("checkpoints")
        super().write_checkpoints(last)


class Member:
    """One simulated group member: a handler plus its assigned partitions."""

    def __init__(self, client: Any, db: str, store: SnapshotStore | None = None,
                 cfg: EngineConfig = CFG, **handler_options: Any) -> None:
        self.store = store or SnapshotStore(client, db, "g")
        self.handler = SnapshotHandler(self.store, cfg, None, **handler_options)
        self.owned: set[int] = set()

    def assign(self, parts: set[int]) -> None:
        self.owned |= parts
        self.handler.on_assigned([(TOPIC, p) for p in sorted(parts)])

    def revoke(self, parts: set[int]) -> None:
        self.owned -= parts
        self.handler.on_revoked([(TOPIC, p) for p in sorted(parts)])


class Log:
    """The topic: per partition, records at offsets 0..n-1; committed offsets per group."""

    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.parts = split(records, PARTS)
        self.committed = {p: 0 for p in range(PARTS)}

    def batch(self, parts: set[int], size: int) -> Batch | None:
        pbs = {}
        for p in sorted(parts):
            start = self.committed[p]
            recs = self.parts[p][start:start + size]
            if recs:
                pbs[(TOPIC, p)] = PartitionBatch(TOPIC, p, start, start + len(recs) - 1,
                                                 [as_row(r) for r in recs],
                                                 list(range(start, start + len(recs))))
        return Batch(pbs, []) if pbs else None

    def commit(self, batch: Batch) -> None:
        for (_, p), pb in batch.partitions.items():
            self.committed[p] = pb.last_offset + 1

    def done(self) -> bool:
        return all(self.committed[p] >= len(self.parts[p]) for p in range(PARTS))


def deliver(member: Member, log: Log, batch: Batch) -> None:
    """The runtime's contract: retry the same batch on backpressure, commit after."""
    for _ in range(5):
        try:
            member.handler.handle(batch)
            break
        except StoreUnavailableError:
            continue
    log.commit(batch)


def run_to_end(member: Member, log: Log, size: int) -> None:
    while not log.done():
        b = log.batch(member.owned, size)
        if b is None:
            break
        deliver(member, log, b)


@pytest.fixture(scope="module")
def recorded() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return recorded_market(symbols=5, seconds=420, seed=5, sources=("binance_usdm", "bybit_linear"))


def fresh_db(clickhouse: Any, name: str) -> str:
    clickhouse.command(f"DROP DATABASE IF EXISTS {name}")
    migrate_snapshots(clickhouse, name)
    return name


@pytest.mark.parametrize("cfg", [CFG, SHORT], ids=["default-windows", "short-windows"])
def test_crash_restart_and_partition_moves_give_identical_tables(
    clickhouse: Any, ch_database: str, recorded: tuple[list[dict[str, Any]], list[dict[str, Any]]],
    cfg: EngineConfig,
) -> None:
    arrival, clean = recorded
    expected = engine_snapshots(arrival, cfg)
    assert expected == engine_snapshots(clean, cfg), "late and duplicate points must change nothing"
    dbs = [fresh_db(clickhouse, f"{ch_database}_{k}") for k in ("base", "crash", "move")]
    try:
        # 1. uninterrupted
        log = Log(arrival)
        m = Member(clickhouse, dbs[0], cfg=cfg)
        m.assign(set(range(PARTS)))
        run_to_end(m, log, 700)
        base = table_rows(clickhouse, dbs[0])
        assert base == expected

        # 2. crash after the points of a batch are stored, before its snapshots;
        #    then a restart from the committed offsets with other batch cuts.
        log = Log(arrival)
        store = FlakyStore(clickhouse, dbs[1], "g")
        m = Member(clickhouse, dbs[1], store, cfg=cfg)
        m.assign(set(range(PARTS)))
        for _ in range(6):
            b = log.batch(m.owned, 700)
            assert b is not None
            deliver(m, log, b)
        store.fail_on, store.crash = "snapshots", True
        b = log.batch(m.owned, 700)
        assert b is not None
        with pytest.raises(Crash):
            m.handler.handle(b)  # no commit
        # the same crash again later, between snapshots and checkpoints
        flaky = FlakyStore(clickhouse, dbs[1], "g", fail_on="checkpoints", crash=True)
        m2 = Member(clickhouse, dbs[1], flaky, cfg=cfg)
        m2.assign(set(range(PARTS)))
        for _ in range(3):
            b = log.batch(m2.owned, 333)
            assert b is not None
            try:
                m2.handler.handle(b)
            except Crash:
                break
            log.commit(b)
        # and once more before anything of a batch reached ClickHouse
        m3 = Member(clickhouse, dbs[1], FlakyStore(clickhouse, dbs[1], "g", fail_on="points", crash=True),
                    cfg=cfg)
        m3.assign(set(range(PARTS)))
        for _ in range(4):
            b = log.batch(m3.owned, 501)
            assert b is not None
            try:
                m3.handler.handle(b)
            except Crash:
                break
            log.commit(b)
        m3 = Member(clickhouse, dbs[1], cfg=cfg)
        m3.assign(set(range(PARTS)))
        run_to_end(m3, log, 911)
        assert table_rows(clickhouse, dbs[1]) == base

        # 3. a second member takes partition 1 mid-stream, later hands it back;
        #    one store outage (backpressure) on the way.
        log = Log(arrival)
        a = Member(clickhouse, dbs[2], FlakyStore(clickhouse, dbs[2], "g", fail_on="snapshots"), cfg=cfg)
        a.assign(set(range(PARTS)))
        for _ in range(5):
            b = log.batch(a.owned, 500)
            assert b is not None
            deliver(a, log, b)
        bm = Member(clickhouse, dbs[2], cfg=cfg)
        a.revoke({1})
        bm.assign({1})
        for _ in range(8):
            for mem in (a, bm):
                b = log.batch(mem.owned, 450)
                if b is not None:
                    deliver(mem, log, b)
        bm.revoke({1})
        a.assign({1})
        run_to_end(a, log, 1200)
        assert table_rows(clickhouse, dbs[2]) == base
        # re-emission happened (crash/moves) but never with different values
        assert raw_count(clickhouse, dbs[1]) >= len(base)
    finally:
        for db in dbs:
            clickhouse.command(f"DROP DATABASE IF EXISTS {db}")


def test_restore_without_checkpoint_and_idle_partition(clickhouse: Any, ch_database: str) -> None:
    """A partition whose symbols never emitted (or that has no data) restores cleanly."""
    db = fresh_db(clickhouse, ch_database)
    arrival, _ = recorded_market(symbols=3, seconds=4, seed=9, late_rate=0)
    log = Log(arrival)
    m = Member(clickhouse, db)
    m.assign(set(range(PARTS)))
    run_to_end(m, log, 5)
    m2 = Member(clickhouse, db)
    m2.assign(set(range(PARTS)))
    more, _ = recorded_market(symbols=3, seconds=40, seed=9, late_rate=0)
    log2 = Log(more)
    log2.committed = dict(log.committed)  # the stream goes on where it was
    log2.parts = {p: log.parts[p] + [r for r in log2.parts[p] if r["event_time"] > max(
        (x["event_time"] for x in log.parts[p]), default=0)] for p in range(PARTS)}
    run_to_end(m2, log2, 64)
    uninterrupted = engine_snapshots([r for p in range(PARTS) for r in log2.parts[p]], CFG)
    assert table_rows(clickhouse, db) == uninterrupted


class Clock:
    """A monotonic clock the test moves: one batch a second, as at live load."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class CountingStore(SnapshotStore):
    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.checkpoint_writes = 0

    def write_checkpoints(self, last: Any) -> None:
        super().write_checkpoints(last)
        self.checkpoint_writes += 1


def latest_per_market(client: Any, db: str, table: str, column: str) -> dict[tuple[str, str], int]:
    t = column if column != "snapshot_time" else "toUnixTimestamp64Milli(snapshot_time)"
    return {(str(src), str(s)): int(v) for src, s, v in client.query(
        f"SELECT source, symbol, max({t}) FROM {db}.{table} GROUP BY source, symbol").result_rows}


def test_coalesced_checkpoints_keep_snapshots_prompt_and_a_crash_between_them_exact(
    clickhouse: Any, ch_database: str, recorded: tuple[list[dict[str, Any]], list[dict[str, Any]]],
) -> None:
    """Checkpoints written once per 10 s instead of every batch: every snapshot is in
    market_snapshots when its batch returns, a crash that loses the held checkpoints
    re-emits identical rows only, and a revocation hands the next owner current ones."""
    arrival, _ = recorded
    db = fresh_db(clickhouse, ch_database)
    clock = Clock()
    store = CountingStore(clickhouse, db, "g")
    m = Member(clickhouse, db, store, checkpoint_interval=10.0, clock=clock)
    m.assign(set(range(PARTS)))
    log = Log(arrival)
    for _ in range(25):
        b = log.batch(m.owned, 150)
        assert b is not None
        deliver(m, log, b)
        clock.now += 1.0
        emitted = {market: t for market, (t, _) in m.handler.latest.items()}
        assert latest_per_market(clickhouse, db, "market_snapshots", "snapshot_time") == emitted
    assert emitted, "the batches must have emitted snapshots"
    assert store.checkpoint_writes == 3  # at 0, 10 and 20 s of 25 batches
    lagging = latest_per_market(clickhouse, db, "snapshot_checkpoints", "last_snapshot_ms")
    assert any(lagging[s] < t for s, t in emitted.items()), "the crash must lose held checkpoints"
    # crash: the member vanishes (no revocation, no close); a new one resumes from the commits
    m2 = Member(clickhouse, db, checkpoint_interval=10.0, clock=clock)
    m2.assign(set(range(PARTS)))
    for _ in range(5):
        b = log.batch(m2.owned, 150)
        assert b is not None
        deliver(m2, log, b)
        clock.now += 1.0
    # revocation writes what the member holds: the next owner restores from current checkpoints
    m2.revoke({0, 1, 2})
    done = latest_per_market(clickhouse, db, "snapshot_checkpoints", "last_snapshot_ms")
    assert done == latest_per_market(clickhouse, db, "market_snapshots", "snapshot_time")
    m3 = Member(clickhouse, db, checkpoint_interval=10.0, clock=clock)
    m3.assign(set(range(PARTS)))
    run_to_end(m3, log, 900)
    m3.handler.close()
    assert table_rows(clickhouse, db) == engine_snapshots(arrival, CFG)
    assert latest_per_market(clickhouse, db, "snapshot_checkpoints", "last_snapshot_ms") == \
        latest_per_market(clickhouse, db, "market_snapshots", "snapshot_time")
