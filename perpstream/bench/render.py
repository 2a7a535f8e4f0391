"""Reports as people read them: one table of rows, one of targets, the notes (rich)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table


def _num(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int | float):
        return f"{v:,.{digits}f}"
    return str(v)


def _lat(d: Mapping[str, Any] | None) -> str:
    if not d:
        return "-"
    return f"{d['p50']:,.0f} / {d['p99']:,.0f} / {d['max']:,.0f}"


_LATENCY_LABELS = {"event_to_clickhouse": "event→CH", "ingest_to_clickhouse": "ingest→CH",
                   "snapshot_time_to_emitted": "snapshot"}


def rows_table(rep: Mapping[str, Any]) -> Table:
    rows = rep["rows"]
    kinds = [k for k in _LATENCY_LABELS if any((r.get("latency_ms") or {}).get(k) for r in rows)]
    t = Table(title=f"perpstream bench {rep['scenario']}", title_justify="left")
    t.add_column("path")
    for col in ("events", "events/s", "CPU-s / M events", "peak RSS MB"):
        t.add_column(col, justify="right")
    for k in kinds:
        t.add_column(f"{_LATENCY_LABELS[k]} ms p50 / p99 / max", justify="right")
    t.add_column("ratio to baseline (same run)")
    for r in rows:
        ratios = "; ".join(f"{v:.2f}x {k}" for k, v in r["ratios"].items()) or (
            "baseline" if r.get("role") == "baseline" else "-")
        lat = r.get("latency_ms") or {}
        t.add_row(r["name"], _num(r["events"]), _num(r["events_per_s"]), _num(r["cpu_s_per_million"], 2),
                  _num(r["peak_rss_mb"]), *[_lat(lat.get(k)) for k in kinds], ratios)
    return t


def targets_table(rep: Mapping[str, Any]) -> Table:
    t = Table(title="targets", title_justify="left")
    t.add_column("target")
    t.add_column("measured", justify="right")
    t.add_column("wanted", justify="right")
    t.add_column("met")
    for g in rep["targets"]:
        v = g["value"]
        t.add_row(g["name"], _num(v, 2 if isinstance(v, float) and abs(v) < 10 else 0), g["target"],
                  "-" if g["met"] is None else ("yes" if g["met"] else "[bold red]no[/]"))
    return t


def _names(steps: list[Mapping[str, Any]]) -> list[str]:
    names: list[str] = []
    for s in steps:
        names += [n for n in s["processes"] if n not in names]
    return names


def steps_table(rep: Mapping[str, Any]) -> Table:
    """One row per step: the rates, then CPU share and peak RSS of every process and their sums."""
    steps = rep["steps"]
    names = _names(steps)
    t = Table(title=f"e2e steps ({steps[0].get('layout', 'single')} layout)", title_justify="left")
    for col in ("N", "symbols", "offered/s", "published/s", "stored/s", "snapshot member/s",
                *(f"CPU {n}" for n in names), "CPU total", f"peak RSS MB {' / '.join(names)}",
                "peak RSS MB total", f"waiting for a CPU {' / '.join(names)}", "held"):
        t.add_column(col, justify="right")
    for s in steps:
        p = s["processes"]
        cpu = sum(x["cpu_share"] for x in p.values())
        rss = sum(x["peak_rss_mb"] or 0.0 for x in p.values())
        t.add_row(f"{s['n']:g}", _num(s["symbols"]), _num(s["offered_per_s"]),
                  _num(s["published_per_s"]), _num(s["stored_per_s"]),
                  _num(s["snapshot_records_per_s"]),
                  *(f"{p[n]['cpu_share']:.0%}" if n in p else "-" for n in names), f"{cpu:.0%}",
                  " / ".join(_num(p[n]["peak_rss_mb"]) if n in p else "-" for n in names),
                  _num(rss),
                  " / ".join(f"{p[n]['run_queue_wait_share']:.0%}" if "run_queue_wait_share" in p.get(n, {})
                             else "-" for n in names),
                  "yes" if s["held"] else "[bold red]no[/]")
    return t


def frames_table(rep: Mapping[str, Any]) -> Table:
    """``frames``: CPU per frame, per markPrice update and per point, next to the floor and the peer."""
    t = Table(title="CPU per frame (perpstream bench frames)", title_justify="left")
    t.add_column("client")
    for col in ("frames", "updates", "points", "CPU-s", "share of a core", "CPU µs / frame",
                "CPU µs / update", "CPU µs / point", "% of a core / 1,000 symbols", "x floor", "x peer"):
        t.add_column(col, justify="right")
    for r in rep["rows"]:
        t.add_row(r["name"], _num(r["frames"]), _num(r["events"]), _num(r.get("points")), _num(r["cpu_s"], 2),
                  f"{r['cpu_share']:.1%}", _num(r["cpu_us_per_frame"], 1), _num(r["cpu_us_per_update"], 1),
                  _num(r["cpu_us_per_point"], 2), _pct(r.get("cpu_share_per_1000")),
                  _num(r.get("cpu_vs_floor"), 2), _num(r.get("cpu_vs_peer"), 2))
    return t


def _pct(v: float | None) -> str:
    return "-" if v is None else f"{v:.2%}"


def venues_table(rep: Mapping[str, Any]) -> Table:
    """``frames``: each venue's producer at its live rate, per 1,000 symbols and at its listed
    symbol count, and the line that sums them against the target."""
    t = Table(title="every venue at its live rate (perpstream produce, one venue a process)",
              title_justify="left")
    t.add_column("venue")
    for col in ("symbols run", "updates/s per symbol", "CPU µs / frame", "CPU µs / point", "share of a core",
                "% of a core / 1,000 symbols", "listed symbols", "% of a core, listed"):
        t.add_column(col, justify="right")
    for v in rep["venues"]:
        t.add_row(v["venue"], _num(v["symbols"]), _num(v["live_rate"], 1), _num(v["cpu_us_per_frame"], 1),
                  _num(v["cpu_us_per_point"], 2), f"{v['cpu_share']:.1%}", _pct(v["cpu_share_per_1000"]),
                  _num(v["listed_symbols"]), _pct(v["cpu_share_listed"]))
    tot = rep.get("venues_total")
    if tot:
        verdict = "-" if tot["met"] is None else ("under" if tot["met"] else "[bold red]over[/]")
        missing = f", not measured: {', '.join(tot['missing'])}" if tot["missing"] else ""
        listed = sum(v["listed_symbols"] for v in rep["venues"])
        said = (f"{verdict} the target {tot['target']:.1%}" if tot.get("judged", True) else
                f"not judged against the target {tot['target']:.1%}: the one-process case is")
        t.add_row(f"[bold]all venues, the sum of separate processes[/] ({said}{missing})", "", "", "", "", "",
                  "", _num(listed), f"[bold]{_pct(tot['cpu_share'])}[/]")
    return t


def together_table(rep: Mapping[str, Any]) -> Table:
    """``frames``: the four venues in one producer process, what each fake delivered against its
    live rate, and the process's share of a core measured and at the live rate."""
    tog = rep["venues_together"]
    t = Table(title="all four venues in one producer process (perpstream produce --venues "
              f"{','.join(tog['symbols'])})", title_justify="left")
    t.add_column("venue")
    for col in ("symbols", "live updates/s", "delivered updates/s", "delivered / live"):
        t.add_column(col, justify="right")
    for v in tog["venues"]:
        share = v["delivered_share"]
        ratio = "-" if share is None else f"{share:.1%}"
        t.add_row(v["venue"], _num(v["symbols"]), _num(v["live_per_s"], 1), _num(v["delivered_per_s"], 1),
                  ratio if v["venue"] not in tog["behind"] else f"[bold red]{ratio} (behind)[/]")
    t.add_row("[bold]one producer process[/]: share of a core, measured", "", "", "",
              f"{tog['cpu_share']:.1%}")
    verdict = ("not judged: not the listed counts" if not tog["listed"] else
               "-" if tog["met"] is None else "under" if tog["met"] else "[bold red]over[/]")
    scaled = "-" if tog["cpu_share_live"] is None else f"[bold]{tog['cpu_share_live']:.1%}[/]"
    t.add_row(f"[bold]at the live rate[/] (x {_num(tog['scale'], 3)}; {verdict} the target "
              f"{tog['target']:.1%})", "", "", "", scaled)
    return t


def render(rep: Mapping[str, Any], console: Console | None = None) -> None:
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=220)  # a file or a pipe: no wrapping inside the tables
    console.print(rows_table(rep))
    if rep["rows"] and "cpu_us_per_frame" in rep["rows"][0]:
        console.print(frames_table(rep))
    if rep.get("venues"):
        console.print(venues_table(rep))
    if rep.get("venues_together"):
        console.print(together_table(rep))
    if rep.get("steps"):
        console.print(steps_table(rep))
    if rep["targets"]:
        console.print(targets_table(rep))
    for note in rep["notes"]:
        console.print(f"[dim]- {note}[/]", markup=True, highlight=False)
    console.print()
