"""The soak's report for people: the account's terms, how each is measured, and the faults
with their recovery times (docs/soak.md); ``--json`` prints the same as one object.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from rich.console import Console
from rich.table import Table

from perpstream.soak.account import Account
from perpstream.soak.faults import Fault


def as_json(a: Account, faults: list[Fault], info: dict[str, Any]) -> dict[str, Any]:
    """The result as ``--json`` prints it."""
    return {"balanced": a.balanced, "account": asdict(a),
            "faults": [{**asdict(f), "recovery_s": f.recovery_s} for f in faults], "run": info}


def print_report(a: Account, faults: list[Fault], info: dict[str, Any]) -> None:
    console = Console(width=110)
    broker = "Tansu" if info["broker"] == "tansu" else f"Apache Kafka, {info['nodes']} node(s)"
    t = Table(title=f"soak account: {info['symbols']} symbols, {info['run_s']} s, {broker}, "
              f"stores in {info['work_dir']}")
    t.add_column("term")
    t.add_column("how it is measured")
    t.add_column("value", justify="right")
    rows = [
        ("points the exchange sent", "distinct (symbol, metric, event_time) of ws frames + REST bodies",
         a.sent_points),
        ("bad frames the exchange sent", "malformed frames (send_garbage)", a.sent_bad_frames),
        ("points in ClickHouse", "metric_points FINAL, every sink store", a.stored_points),
        ("records in the DLQ", "DLQ topic records (on Tansu, read before each broker restart too)",
         a.dlq_records),
        ("rejections", "producer frames_rejected (its /metrics), by reason", a.rejected_frames),
        ("sent points rejected", "sent identities the producer rejected", a.rejected_points),
        ("points dropped", "producer points_dropped (buffers full while Kafka was away)", a.dropped_points),
        ("sent, not stored", "identity set difference", a.missing),
        ("stored, not sent", "identity set difference", a.unexpected),
        ("values differing", "stored value != sent value", a.value_mismatches),
        ("duplicates without FINAL", "count() - uniqExact(identity), merges stopped",
         a.duplicates_without_final),
        ("duplicates across stores", "identity in both sink stores", a.duplicates_across_stores),
        ("snapshots compared", "market_snapshots FINAL keys", a.snapshots_compared),
        ("snapshot mismatches", "vs the engine over metric_points, exact", a.snapshot_mismatches),
        ("snapshots not recomputed", "stored key the recomputation lacks", a.snapshots_not_recomputed),
        ("faults not recovered", "no data flowing again within the timeout", a.faults_not_recovered),
        ("funding intervals stored", "funding_interval_hours points (one per perpetual from fundingInfo)",
         a.intervals_stored),
        ("funding intervals wrong", "a perpetual without one, or another value than fundingInfo's",
         a.interval_mismatches),
    ]
    for term, how, value in rows:
        t.add_row(term, how, str(value))
    t.add_row("[bold]sent = stored + DLQ + rejected[/bold]", f"{a.sent_points} = {a.stored_points} + "
              f"{a.dlq_records} + {a.rejected_points}; bad frames {a.sent_bad_frames} <= rejections "
              f"{a.rejected_frames}", "[green]balanced[/green]" if a.balanced else "[red]NOT BALANCED[/red]")
    console.print(t)
    ft = Table(title="faults (times from the start of the run, s)")
    for c in ("fault", "injected", "lifted", "data flowing", "recovery s", "watches", "detail"):
        ft.add_column(c)
    for f in faults:
        ft.add_row(f.kind, f"{f.injected:.1f}", f"{f.lifted:.1f}",
                   "-" if f.recovered is None else f"{f.recovered:.1f}",
                   "[red]never[/red]" if f.recovery_s is None else f"{f.recovery_s:.2f}", f.watches, f.detail)
    console.print(ft)
    for e in a.examples:
        console.print(f"  {e}")
