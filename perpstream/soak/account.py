"""The soak's account: what the exchange sent against what the stores hold, and the
snapshots recomputed from the stored points (docs/soak.md, "The account").

Each chdb directory is read, once every member has stopped, by a short child
process of its own (:func:`read_store`), so no directory is opened by two processes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from perpstream.consumers.clickhouse import open_client
from perpstream.consumers.snapshots.engine import SnapshotEngine
from perpstream.consumers.snapshots.settings import SnapshotSettings
from perpstream.consumers.snapshots.store import SNAPSHOT_COLUMNS
from perpstream.schemas.models import Metric
from perpstream.soak.faults import Fault
from perpstream.soak.processes import SoakError, member_env

DATABASE = "perpstream"
#: An identity: (symbol, metric, event time in ms).
Identity = tuple[str, str, int]


@dataclass
class Account:
    sent_points: int = 0
    sent_bad_frames: int = 0
    stored_points: int = 0
    dlq_records: int = 0
    #: rejections the producer counted (one malformed frame may count under more than one reason)
    rejected_frames: int = 0
    #: sent identities the producer rejected: the malformed frames carry none, so 0 is expected
    rejected_points: int = 0
    #: points the producer let go (``points_dropped``: its buffers full while Kafka was away);
    #: counted and logged, and lost, so the account cannot balance with any
    dropped_points: int = 0
    missing: int = 0
    unexpected: int = 0
    value_mismatches: int = 0
    duplicates_without_final: int = 0
    duplicates_across_stores: int = 0
    snapshots_compared: int = 0
    snapshot_mismatches: int = 0
    snapshots_not_recomputed: int = 0
    faults_not_recovered: int = 0
    #: funding_interval_hours points stored: the producer publishes one per perpetual when first
    #: seen (and on a change) from fundingInfo, stamped with the time it read it, so they are
    #: checked by symbol and value, not by identity with what the exchange streamed
    intervals_stored: int = 0
    #: perpetuals without a stored interval, stored intervals of another value or symbol
    interval_mismatches: int = 0
    examples: list[str] = field(default_factory=list)

    @property
    def balanced(self) -> bool:
        return (
            self.sent_points == self.stored_points + self.dlq_records + self.rejected_points
            and self.rejected_frames >= self.sent_bad_frames and self.dropped_points == 0
            and self.missing == 0 and self.unexpected == 0 and self.value_mismatches == 0
            and self.duplicates_without_final == 0 and self.duplicates_across_stores == 0
            and self.snapshot_mismatches == 0 and self.snapshots_not_recomputed == 0
            and self.snapshots_compared > 0 and self.faults_not_recovered == 0
            and self.interval_mismatches == 0
        )


def make_account(work: Path, sent: dict[Identity, float], bad: int, dlq: int, rejected: int, dropped: int,
                 faults: list[Fault], intervals: Mapping[str, float] | None = None) -> Account:
    """The account of a run whose stores are in ``work`` (every member stopped); ``intervals``:
    the hours fundingInfo gives each perpetual."""
    a = Account(sent_points=len(sent), sent_bad_frames=bad, dlq_records=dlq, rejected_frames=rejected,
                dropped_points=dropped)
    stored, points = _stored(a, work)
    _intervals(a, stored, intervals or {})
    a.stored_points = len(stored)
    missing = sent.keys() - stored.keys()
    unexpected = stored.keys() - sent.keys()
    a.missing, a.unexpected = len(missing), len(unexpected)
    a.examples += [f"missing {k}" for k in sorted(missing)[:3]]
    a.examples += [f"unexpected {k}" for k in sorted(unexpected)[:3]]
    for k, v in sent.items():
        if k in stored and stored[k][1] != v:
            a.value_mismatches += 1
            if len(a.examples) < 12:
                a.examples.append(f"value {k}: sent {v!r}, stored {stored[k][1]!r}")
    _snapshots(a, work, points)
    a.faults_not_recovered = sum(1 for f in faults if f.recovered is None)
    return a


def _intervals(a: Account, stored: dict[Identity, tuple[str, float]], want: Mapping[str, float]) -> None:
    """Take the funding-interval points out of ``stored`` and check them by symbol and value."""
    got: dict[str, set[float]] = {}
    for key in [k for k in stored if k[1] == Metric.FUNDING_INTERVAL_HOURS]:
        got.setdefault(key[0], set()).add(stored.pop(key)[1])
        a.intervals_stored += 1
    for symbol in want.keys() | got.keys():
        if got.get(symbol) != ({want[symbol]} if symbol in want else None):
            a.interval_mismatches += 1
            if len(a.examples) < 12:
                a.examples.append(f"funding interval of {symbol}: stored {sorted(got.get(symbol, ()))}, "
                                  f"fundingInfo says {want.get(symbol)}")


def _stored(a: Account, work: Path) -> tuple[dict[Identity, tuple[str, float]],
                                             list[tuple[str, str, int, str, float]]]:
    """The points of every sink store, an identity once; duplicates are counted into ``a``."""
    stored: dict[Identity, tuple[str, float]] = {}
    points: list[tuple[str, str, int, str, float]] = []
    for d in (d for d in ("sink", "sink-extra") if (work / d).exists()):
        got = read_store(work / d, "points")
        a.duplicates_without_final += int(got["duplicates"])
        for symbol, metric, et, source, value in got["points"]:
            key = (symbol, metric, int(et))
            if key in stored:
                a.duplicates_across_stores += 1
                continue
            stored[key] = (source, float(value))
            points.append((symbol, metric, int(et), source, float(value)))
    return stored, points


def _snapshots(a: Account, work: Path, points: list[tuple[str, str, int, str, float]]) -> None:
    """The stored snapshots against the engine run over the stored points, exactly."""
    got = read_store(work / "snapshots", "snapshots")
    idx = [SNAPSHOT_COLUMNS.index(c) for c in ("symbol", "window_s", "snapshot_time")]
    table = {tuple(r[i] for i in idx): r for r in (tuple(x) for x in got["snapshots"])}
    engine = SnapshotEngine(SnapshotSettings().engine_config())
    for symbol, metric, et, source, value in sorted(points, key=lambda p: (p[2], p[0], p[1])):
        engine.add(source, symbol, metric, value, et)
    recomputed: dict[tuple[Any, ...], tuple[Any, ...]] = {}
    for s in engine.take_output():
        row = tuple(s[c] for c in SNAPSHOT_COLUMNS)
        recomputed[tuple(row[i] for i in idx)] = row
    for key, row in table.items():
        want = recomputed.get(key)
        if want is None:
            a.snapshots_not_recomputed += 1
            if len(a.examples) < 12:
                a.examples.append(f"snapshot {key} stored but not recomputed")
            continue
        a.snapshots_compared += 1
        if _norm(want) != _norm(row):
            a.snapshot_mismatches += 1
            if len(a.examples) < 12:
                a.examples.append(f"snapshot {key}: stored {row}, recomputed {want}")


def _norm(row: tuple[Any, ...]) -> tuple[Any, ...]:
    """NaN equals NaN; booleans as booleans (the table gives 0/1)."""
    out: list[Any] = []
    for v in row:
        if isinstance(v, float) and v != v:
            out.append("nan")
        elif isinstance(v, bool):
            out.append(int(v))
        else:
            out.append(v)
    return tuple(out)


# -- reading a stopped member's store (a child process per chdb directory) -------------------------

_READ_POINTS = (
    "SELECT symbol, metric, toUnixTimestamp64Milli(event_time), source, value FROM {db}.metric_points FINAL"
)


def read_store(directory: Path, what: str) -> dict[str, Any]:
    out = directory.parent / f"{directory.name}.{what}.json"
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from perpstream.soak.account import read_store_main; "
         "read_store_main(sys.argv[1:])", str(directory), what, str(out)],
        env=member_env(""), capture_output=True, text=True, timeout=600, check=False,
    )
    if proc.returncode != 0:
        raise SoakError(f"reading {directory} failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    return result


def read_store_main(argv: list[str]) -> None:
    """Child: read a chdb directory no other process holds; write JSON to ``argv[2]``."""
    directory, what, out = argv
    client = open_client(f"chdb://{directory}")
    result: dict[str, Any] = {}
    if what == "points":
        # merges could hide a duplicate: stopped before the first count (and in the sink, always)
        client.command(f"SYSTEM STOP MERGES {DATABASE}.metric_points")
        rows = client.query(
            f"SELECT count() - uniqExact(symbol, metric, event_time, source) FROM {DATABASE}.metric_points"
        ).result_rows
        result["duplicates"] = int(rows[0][0])
        result["points"] = [list(r) for r in client.query(_READ_POINTS.format(db=DATABASE)).result_rows]
    else:
        cols = ", ".join("toUnixTimestamp64Milli(snapshot_time)" if c == "snapshot_time" else c
                         for c in SNAPSHOT_COLUMNS)
        rows = client.query(f"SELECT {cols} FROM {DATABASE}.market_snapshots FINAL").result_rows
        result["snapshots"] = [
            [bool(v) if c == "stale" else v for c, v in zip(SNAPSHOT_COLUMNS, r, strict=True)] for r in rows
        ]
    Path(out).write_text(json.dumps(result, allow_nan=True))
