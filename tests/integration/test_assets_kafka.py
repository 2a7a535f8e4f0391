"""The asset group end to end: MetricPoints of four venues through the snapshot group and the
asset group, on a real broker and the real ClickHouse engine.

BTC and PEPE on binance_usdm, bybit_linear, okx_swap and hyperliquid (PEPE as
``1000PEPEUSDT``, ``1000PEPEUSDT``, ``PEPE-USDT-SWAP`` and ``kPEPE``) are
published as MetricPoints; the snapshot group turns them into MarketSnapshots
(its topic has several partitions: the key puts an asset's markets on one), the
asset group into AssetSnapshots. ``asset_snapshots`` must equal a recomputation
from the published points that shares no code with the engines: per-symbol
snapshots from the snapshot tests' reference, aggregated per docs/snapshots.md
("Cross-venue asset snapshots") with exact fractions. A second asset group that
crashes mid-stream (records of a batch not stored, nothing committed) and is
restarted writes the same table row for row, and the topic carries the same records.
"""

from __future__ import annotations

import math
import random
import threading
from collections.abc import Callable
from fractions import Fraction
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from perpstream.consumers.assets.app import AssetHandler, AssetService
from perpstream.consumers.assets.settings import AssetSettings
from perpstream.consumers.assets.store import SNAPSHOT_COLUMNS, AssetStore, migrate_assets
from perpstream.consumers.snapshots.app import SnapshotService
from perpstream.consumers.snapshots.settings import SnapshotSettings
from perpstream.consumers.snapshots.store import migrate_snapshots
from perpstream.schemas.codec import AvroCodec, load_schema, metric_point_codec
from perpstream.schemas.topics import DLQ_HEADER_GROUP, DLQ_HEADER_REASON
from tests.conftest import TEST_CONSUMER_CONFIG
from tests.unit.snapshots.reference import reference_snapshots
from tests.waiting import wait_for

pytestmark = pytest.mark.integration

T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
SECONDS = 240
INTERVAL_MS = 5_000
WINDOWS = (60, 300)
SNAPSHOT_LATENESS_MS = 2_000
ASSET_LATENESS_MS = 30_000
MARK_STALE_MS = 5_000
OI_STALE_MS = 30_000

#: (source, symbol) -> (asset, scale, quote, mark of one contract unit, open interest in
#: contract units, funding interval h); written out here rather than read from the asset keys,
#: so the expectation shares no code with them. 1,000,000 lots of 1000PEPE at 0.01 and
#: 1,000,000,000 PEPE at 0.00001 are the same 10,000 USDT of notional.
MARKETS: dict[tuple[str, str], tuple[str, int, str, float, float, float]] = {
    ("binance_usdm", "1000PEPEUSDT"): ("PEPE", 1000, "USDT", 0.0100, 1e6, 8.0),
    ("bybit_linear", "1000PEPEUSDT"): ("PEPE", 1000, "USDT", 0.0101, 2e6, 8.0),
    ("okx_swap", "PEPE-USDT-SWAP"): ("PEPE", 1, "USDT", 0.0000100, 1e9, 8.0),
    ("hyperliquid", "kPEPE"): ("PEPE", 1000, "USDC", 0.0099, 5e5, 1.0),
    ("binance_usdm", "BTCUSDT"): ("BTC", 1, "USDT", 90_000.0, 8e4, 8.0),
    ("bybit_linear", "BTCUSDT"): ("BTC", 1, "USDT", 90_010.0, 5e4, 8.0),
    ("okx_swap", "BTC-USDT-SWAP"): ("BTC", 1, "USDT", 89_990.0, 2e4, 8.0),
    ("hyperliquid", "BTC"): ("BTC", 1, "USDC", 90_005.0, 3e4, 1.0),
}
#: OKX's PEPE open interest stops half-way: that market goes stale, its venue with it
OI_STOPS = {("okx_swap", "PEPE-USDT-SWAP"): SECONDS // 2}


class Crash(RuntimeError):
    """An abrupt stop: not backpressure, so the loop ends without committing the batch."""


class CrashingStore(AssetStore):
    """Stores a batch's accepted rows, then dies before its records on the n-th batch."""

    def __init__(self, *args: Any, crash_at: int) -> None:
        super().__init__(*args)
        self.calls = 0
        self.crash_at = crash_at

    def write_snapshots(self, records: Any) -> None:
        self.calls += 1
        if self.calls == self.crash_at:
            raise Crash("injected crash after the inputs of a batch were stored")
        super().write_snapshots(records)


# -- the input ------------------------------------------------------------------------------

def market_points(seed: int = 5) -> list[dict[str, Any]]:
    """MetricPoints of every market, a second apart, in event-time order: mark and index
    prices, funding, the funding interval once, open interest every 10 s."""
    rnd = random.Random(seed)
    out: list[tuple[int, int, dict[str, Any]]] = []
    for i, ((source, symbol), (_asset, _scale, _quote, price, oi, interval_h)) in enumerate(MARKETS.items()):
        mark = price
        offset = 17 * i
        for s in range(SECONDS):
            et = T0 + s * 1000 + offset
            mark *= math.exp(rnd.gauss(0, 5e-4))
            values = [("mark_price", mark), ("index_price", mark * (1 + rnd.gauss(0, 2e-4))),
                      ("funding_rate", rnd.gauss(1e-4, 5e-5))]
            if s == 0:
                values.append(("funding_interval_hours", interval_h))
            if s % 10 == 0 and s < OI_STOPS.get((source, symbol), SECONDS):
                oi *= 1 + rnd.gauss(0, 1e-3)
                values.append(("open_interest", oi))
            for metric, value in values:
                out.append((et, len(out), {"source": source, "symbol": symbol, "metric": metric,
                                           "value": value, "event_time": et, "ingest_time": et + 80}))
    return [p for _, _, p in sorted(out, key=lambda x: (x[0], x[1]))]


def produce(bootstrap: str, topic: str, points: list[dict[str, Any]]) -> None:
    codec = metric_point_codec()
    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "enable.idempotence": True})
    failed: list[Any] = []
    for r in points:
        p.produce(topic, codec.encode(r), r["symbol"].encode(),
                  on_delivery=lambda err, _m: failed.append(err) if err is not None else None)
        p.poll(0)
    assert p.flush(60) == 0 and not failed


# -- the independent expectation -----------------------------------------------------------

def per_symbol(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The reference's per-symbol snapshots, one market at a time (it keys by symbol, and two
    venues share ``1000PEPEUSDT``)."""
    out: list[dict[str, Any]] = []
    for source, symbol in MARKETS:
        pts = [(p["source"], p["symbol"], p["metric"], p["value"], p["event_time"]) for p in points
               if (p["source"], p["symbol"]) == (source, symbol)]
        out += reference_snapshots(pts, interval_ms=INTERVAL_MS, windows_s=WINDOWS,
                                   lateness_ms=SNAPSHOT_LATENESS_MS, mark_stale_ms=MARK_STALE_MS,
                                   oi_stale_ms=OI_STALE_MS)
    return out


def _notional(row: dict[str, Any]) -> float | None:
    oi, mark = row.get("oi_last"), row.get("mark_last")
    if oi is None or mark is None:
        return None
    n = oi * mark + 0.0
    return n if math.isfinite(n) and n >= 0 else None


def aggregate(asset: str, window_s: int, t: int, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """One AssetSnapshot from its rows, per the field table of docs/snapshots.md."""
    rows = sorted(rows, key=lambda r: (r["source"], r["symbol"]))
    fresh = [r for r in rows if not r["stale"]]
    with_f = [r for r in fresh if r.get("funding_annualized") is not None]
    lo = min(with_f, key=lambda r: (r["funding_annualized"], r["source"], r["symbol"]), default=None)
    hi = min(with_f, key=lambda r: (-r["funding_annualized"], r["source"], r["symbol"]), default=None)
    notionals = [(r, _notional(r)) for r in fresh]
    total = [Fraction(n) for _, n in notionals if n is not None]
    weighted = [(Fraction(r["funding_annualized"]), Fraction(n)) for r, n in notionals
                if n is not None and r.get("funding_annualized") is not None]
    weight = sum((w for _, w in weighted), Fraction(0))
    present = sorted({r["source"] for r in rows})
    return {
        "asset": asset, "window_s": window_s, "snapshot_time": t,
        "markets": [(r["source"], r["symbol"], MARKETS[(r["source"], r["symbol"])][2],
                     MARKETS[(r["source"], r["symbol"])][1],
                     r.get("funding_annualized"), r.get("funding_interval_h"), r["funding_last"],
                     r["basis_last"], r["mark_last"], r["oi_last"], _notional(r), r["stale"])
                    for r in rows],
        "venues_present": present,
        "venues_stale": [s for s in present if s not in {r["source"] for r in fresh}],
        "n_markets": len(rows), "n_fresh": len(fresh),
        "funding_ann_min": None if lo is None else lo["funding_annualized"],
        "funding_ann_min_market": None if lo is None else f"{lo['source']}:{lo['symbol']}",
        "funding_ann_max": None if hi is None else hi["funding_annualized"],
        "funding_ann_max_market": None if hi is None else f"{hi['source']}:{hi['symbol']}",
        "funding_ann_spread": (hi["funding_annualized"] - lo["funding_annualized"]
                               if lo is not None and hi is not None and len(with_f) >= 2 else None),
        "funding_ann_oi_weighted": float(sum((f * w for f, w in weighted), Fraction(0)) / weight)
        if weight else None,
        "oi_notional_total": float(sum(total, Fraction(0))) if total else None,
    }


def expected_records(points: list[dict[str, Any]]) -> dict[tuple[str, int, int], dict[str, Any]]:
    """Every (asset, window, t) whose time is more than the lateness before the asset's newest."""
    groups: dict[tuple[str, int, int], list[dict[str, Any]]] = {}
    newest: dict[str, int] = {}
    for r in per_symbol(points):
        asset = MARKETS[(r["source"], r["symbol"])][0]
        groups.setdefault((asset, r["window_s"], r["snapshot_time"]), []).append(r)
        newest[asset] = max(newest.get(asset, r["snapshot_time"]), r["snapshot_time"])
    return {k: aggregate(*k, rows) for k, rows in groups.items() if k[2] < newest[k[0]] - ASSET_LATENESS_MS}


# -- reading what the groups wrote ------------------------------------------------------------

def table(client: Any, database: str) -> dict[tuple[str, int, int], dict[str, Any]]:
    cols = ", ".join("toUnixTimestamp64Milli(snapshot_time)" if c == "snapshot_time" else c
                     for c in SNAPSHOT_COLUMNS)
    out = {}
    for values in client.query(f"SELECT {cols} FROM {database}.asset_snapshots FINAL").result_rows:
        rec = dict(zip(SNAPSHOT_COLUMNS, values, strict=True))
        rec["markets"] = [tuple(bool(v) if k == "stale" else v for k, v in m.items()) for m in rec["markets"]]
        rec["venues_present"], rec["venues_stale"] = list(rec["venues_present"]), list(rec["venues_stale"])
        out[(rec["asset"], rec["window_s"], rec["snapshot_time"])] = rec
    return out


def read_topic(bootstrap: str, topic: str, group: str, expected: int) -> list[Any]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, **TEST_CONSUMER_CONFIG})
    c.subscribe([topic])
    out: list[Any] = []
    try:
        def enough() -> bool:
            out.extend(m for m in c.consume(1000, timeout=0.5) if m.error() is None)
            return len(out) >= expected
        wait_for(enough, 90, f"{expected} records on {topic}")
    finally:
        c.close()
    return out


class Running:
    """One service of a group in a thread."""

    def __init__(self, service: Any) -> None:
        self.service = service
        self.stop = threading.Event()
        self.rc: list[int] = []
        self.thread = threading.Thread(target=lambda: self.rc.append(service.run(self.stop)), daemon=True)
        self.thread.start()

    def committed(self) -> dict[int, int]:
        out: dict[int, int] = {}
        for loop in list(self.service.loops):
            for (_, p), off in loop.committed.items():
                out[p] = max(out.get(p, 0), off)
        return out

    def end(self) -> None:
        self.stop.set()
        self.thread.join(90)
        assert not self.thread.is_alive(), "member did not drain"


def end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "offsets", **TEST_CONSUMER_CONFIG})
    try:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        from confluent_kafka import TopicPartition

        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in meta.partitions}
    finally:
        c.close()


def test_four_venues_through_snapshots_and_assets_match_a_recomputation_and_survive_a_crash(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, ch_database: str,
) -> None:
    # Long: one input through three groups in turn; split, each part would run the snapshot group again.
    points = market_points()
    expected = expected_records(points)
    assert {k[0] for k in expected} == {"BTC", "PEPE"}
    metrics, snaps, dlq = topic_factory(1), topic_factory(3), topic_factory(1)
    produce(kafka_bootstrap, metrics, points)
    dbs = [f"{ch_database}_snap", f"{ch_database}_assets", f"{ch_database}_crash"]
    try:
        # 1. the snapshot group, over the whole input
        snap_settings = SnapshotSettings(
            kafka_bootstrap_servers=kafka_bootstrap, clickhouse_database=dbs[0], metrics_topic=metrics,
            snapshots_topic=snaps, dlq_topic=dlq, group_id=group_factory("snap"), batch_max_records=400,
            batch_max_ms=200, snapshot_interval_ms=INTERVAL_MS, snapshot_windows_s=WINDOWS,
            allowed_lateness_ms=SNAPSHOT_LATENESS_MS, mark_stale_ms=MARK_STALE_MS)
        migrate_snapshots(clickhouse, dbs[0])
        snap = Running(SnapshotService(snap_settings, clickhouse, consumer_overrides=TEST_CONSUMER_CONFIG))
        wait_for(lambda: snap.committed().get(0, 0) >= len(points), 150, "the snapshot group to catch up")
        snap.end()
        # a record no MarketSnapshot reader can decode, among PEPE's: to the DLQ, nothing else changes
        garbage = Producer({"bootstrap.servers": kafka_bootstrap})
        garbage.produce(snaps, b"not avro", b"PEPE")
        assert garbage.flush(30) == 0
        snap_ends = end_offsets(kafka_bootstrap, snaps)
        assert sum(1 for v in snap_ends.values() if v) >= 2, "MarketSnapshots on several partitions"

        def asset_settings(db: str, out: str, **kw: Any) -> AssetSettings:
            return AssetSettings(
                kafka_bootstrap_servers=kafka_bootstrap, clickhouse_database=db, snapshots_topic=snaps,
                assets_topic=out, dlq_topic=dlq, group_id=group_factory("assets"), batch_max_ms=200,
                asset_lateness_ms=ASSET_LATENESS_MS, retry_backoff_initial_ms=100,
                retry_backoff_max_ms=1000, **kw)

        def caught_up(run: Running) -> bool:
            got = run.committed()
            return all(got.get(p, 0) >= end for p, end in snap_ends.items() if end)

        # 2. the asset group, uninterrupted: the table is the recomputation
        out_topic = topic_factory(3)
        base = Running(AssetService(asset_settings(dbs[1], out_topic), clickhouse,
                                    consumer_overrides=TEST_CONSUMER_CONFIG))
        wait_for(lambda: caught_up(base), 120, "the asset group to catch up")
        base.end()
        assert base.service.telemetry.get("asset_rows", {"group": base.service.settings.group_id,
                                                         "outcome": "late"}) == 0
        rows = table(clickhouse, dbs[1])
        assert rows.keys() == expected.keys()
        for k, want in expected.items():
            assert rows[k] == want, k
        pepe = rows[("PEPE", 60, T0 + 60_000)]
        assert pepe["n_markets"] == 4 and pepe["venues_present"] == [
            "binance_usdm", "bybit_linear", "hyperliquid", "okx_swap"]
        assert any(r["venues_stale"] == ["okx_swap"] for r in rows.values() if r["asset"] == "PEPE")
        # lots folded: 1,000,000 1000PEPE at 0.01 and 1,000,000,000 PEPE at 0.00001 weigh alike
        notionals = {m[0]: m[10] for m in pepe["markets"]}
        assert 0.9 < notionals["okx_swap"] / notionals["binance_usdm"] < 1.1
        assert pepe["funding_ann_oi_weighted"] is not None and pepe["funding_ann_spread"] is not None

        # every record is on the topic too, keyed by its asset, the same values
        codec = AvroCodec(load_schema("asset_snapshot"))
        on_topic = {}
        for m in read_topic(kafka_bootstrap, out_topic, group_factory("reader"), len(rows)):
            rec = codec.decode(m.value())
            assert m.key() == rec["asset"].encode()
            on_topic[(rec["asset"], rec["window_s"], rec["snapshot_time"])] = rec
        assert on_topic.keys() == rows.keys()
        [dead] = read_topic(kafka_bootstrap, dlq, group_factory("dlq-reader"), 1)
        headers = dict(dead.headers() or [])
        assert dead.value() == b"not avro" and dead.key() == b"PEPE"
        assert headers[DLQ_HEADER_GROUP] == base.service.settings.group_id.encode()
        assert headers[DLQ_HEADER_REASON] == b"bad_magic"
        assert all(on_topic[k]["oi_notional_total"] == rows[k]["oi_notional_total"] for k in rows)

        # 3. a crash mid-stream (a batch's inputs stored, its records not, nothing committed),
        #    then a restart of the same group: the same table, row for row
        crash_settings = asset_settings(dbs[2], topic_factory(3), batch_max_records=60)
        migrate_assets(clickhouse, dbs[2])

        def crashing(svc: AssetService, member: int) -> AssetHandler:
            h = svc.make_handler(member)
            h.store = CrashingStore(clickhouse, dbs[2], crash_settings.group_id, crash_at=6)
            return h

        first = Running(AssetService(crash_settings, clickhouse, consumer_overrides=TEST_CONSUMER_CONFIG,
                                     handler_factory=crashing))
        first.thread.join(120)
        assert first.rc == [1], "the injected crash ends the member"
        assert first.committed() and not caught_up(first), "the crash came mid-stream"
        again = Running(AssetService(crash_settings, clickhouse, consumer_overrides=TEST_CONSUMER_CONFIG))
        wait_for(lambda: caught_up(again), 120, "the restarted asset group to catch up")
        again.end()
        assert table(clickhouse, dbs[2]) == rows
    finally:
        for db in dbs:
            clickhouse.command(f"DROP DATABASE IF EXISTS {db}")
