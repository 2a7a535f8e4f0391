"""Reports of either e2e layout as people read them: the single layout's as
:func:`perpstream.bench.render.render` prints them; the processes layout's with a
steps table of every process (CPU share and peak RSS of each, and the total)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from rich.console import Console
from rich.table import Table

from perpstream.bench import render as base


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
        t.add_row(f"{s['n']:g}", base._num(s["symbols"]), base._num(s["offered_per_s"]),
                  base._num(s["published_per_s"]), base._num(s["stored_per_s"]),
                  base._num(s["snapshot_records_per_s"]),
                  *(f"{p[n]['cpu_share']:.0%}" if n in p else "-" for n in names), f"{cpu:.0%}",
                  " / ".join(base._num(p[n]["peak_rss_mb"]) if n in p else "-" for n in names),
                  base._num(rss),
                  " / ".join(f"{p[n]['run_queue_wait_share']:.0%}" if "run_queue_wait_share" in p.get(n, {})
                             else "-" for n in names),
                  "yes" if s["held"] else "[bold red]no[/]")
    return t


def render(rep: Mapping[str, Any], console: Console | None = None) -> None:
    steps = rep.get("steps") or []
    if all("perpstream" in s["processes"] for s in steps):
        base.render(rep, console)
        return
    if console is None:
        console = Console()
        if not console.is_terminal:
            console = Console(width=220)  # a file or a pipe: no wrapping inside the tables
    console.print(base.rows_table(rep))
    console.print(steps_table(rep))
    if rep["targets"]:
        console.print(base.targets_table(rep))
    for note in rep["notes"]:
        console.print(f"[dim]- {note}[/]", markup=True, highlight=False)
    console.print()
