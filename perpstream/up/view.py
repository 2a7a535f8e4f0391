"""What ``perpstream up`` shows while it runs: the live view's wiring, the status lines
without it, the notes on components that are not simply running, and the final report.

The view itself is :mod:`perpstream.dashboard`; this module feeds it the
supervisor's component states (an enum, :class:`~perpstream.runtime.supervisor.State`)
and says the rest in plain lines (docs/dashboard.md).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.logging import RichHandler

if TYPE_CHECKING:  # the client module costs ~0.17 s of `perpstream --help` (-X importtime)
    from clickhouse_connect.driver.client import Client

from perpstream.pipeline import Pipeline
from perpstream.pipeline.broker import LocalBroker
from perpstream.pipeline.root import Progress
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime.output import cell
from perpstream.runtime.secrets import redact_dsn
from perpstream.runtime.supervisor import Component, State
from perpstream.runtime.telemetry import Telemetry

log = logging.getLogger("perpstream.up")


def describe_source(s: ProducerSettings) -> str:
    if s.source == "sim":
        return f"simulated market, {s.sim_symbols} symbols (seed {s.seed})"
    if s.source == "replay":
        return f"replay of {s.replay_file}"
    who = "every PERPETUAL/TRADING symbol" if s.all_symbols else s.symbols
    return f"Binance USD-M futures{' testnet' if s.testnet else ''}, {who}"


def ready_line(pipeline: Pipeline) -> str:
    spec = pipeline.spec
    note = pipeline.broker.note if pipeline.broker is not None else ""
    lines = ["running (Ctrl+C stops):",
             f"  broker   {pipeline.bootstrap}{note}",
             f"  store    {redact_dsn(spec.dsn)}, database {spec.database}"]
    if pipeline.endpoint_url:
        lines.append(f"  queries  {pipeline.endpoint_url} (read-only ClickHouse HTTP interface)")
    if spec.root.metrics_port is not None:
        lines.append(f"  metrics  http://127.0.0.1:{spec.root.metrics_port}/metrics, /healthz, /readyz")
    return "\n".join(lines)


def component_notes(components: Mapping[str, Component], broker: LocalBroker | None) -> list[str]:
    """One line per component that is not simply running, for the live view."""
    notes = []
    if broker is not None and broker.readiness() is not None:
        notes.append(f"broker: {broker.readiness()}")
    for name, c in components.items():
        if c.state is State.RESTARTING:
            notes.append(f"{name}: failed ({c.last_failure}); restarting (restarts: {c.restarts})")
        elif c.state is State.FAILED:
            notes.append(f"{name}: stopped: {c.fatal or c.last_failure}")
        elif c.restarts:
            notes.append(f"{name}: running again after {c.restarts} restart(s); last: {c.last_failure}")
    return notes


def component_states(components: Mapping[str, Component]) -> dict[str, Any]:
    """Restart counts and states of the components that are not simply running (log fields)."""
    fields: dict[str, Any] = {}
    for name, c in components.items():
        if c.restarts:
            fields[f"{name}_restarts"] = c.restarts
        if c.state is not State.RUNNING:
            fields[f"{name}_state"] = c.state.value
    return fields


def final_report(client: Client | None, database: str, data_dir: Path, telemetry: Telemetry,
                 seconds: float) -> str:
    t = telemetry.total
    lines = [f"stopped after {_duration(seconds)}: {cell(int(t('points_published')))} points published, "
             f"{cell(int(t('records_stored')))} stored, {cell(int(t('records_dlq')))} to the DLQ, "
             f"{cell(int(t('snapshots_emitted')))} snapshots, "
             f"{cell(int(t('asset_snapshots_emitted')))} asset snapshots"]
    with contextlib.suppress(Exception):
        assert client is not None
        points = int(str(client.command(f"SELECT count() FROM {database}.metric_points")))
        snaps = int(str(client.command(f"SELECT count() FROM {database}.market_snapshots")))
        assets = int(str(client.command(f"SELECT count() FROM {database}.asset_snapshots")))
        lines.append(f"ClickHouse {database}: metric_points {cell(points)} rows, "
                     f"market_snapshots {cell(snaps)} rows, asset_snapshots {cell(assets)} rows")
    lines.append(f"data: {data_dir}")
    lines.append(f"  continue: perpstream up --data-dir {data_dir} ...")
    lines.append(f"  query:    perpstream sql --data-dir {data_dir} "
                 f"\"SELECT symbol, count() FROM {database}.metric_points GROUP BY symbol\"")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    s = int(seconds)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}h{m:02d}m{sec:02d}s" if h else (f"{m}m{sec:02d}s" if m else f"{sec}s")


def progress(ui: bool) -> Progress:
    """The pipeline's progress reporter: a spinner on a terminal, else log lines."""
    def report(what: str) -> contextlib.AbstractContextManager[None]:
        return _spinner(what) if ui else _logged(what)
    return report


@contextlib.contextmanager
def _spinner(what: str) -> Iterator[None]:
    with Console().status(what + " ..."):
        yield


@contextlib.contextmanager
def _logged(what: str) -> Iterator[None]:
    """A log line, and another when it took a while."""
    t0 = time.monotonic()
    log.info("%s ...", what)
    yield
    if time.monotonic() - t0 > 2:
        log.info("%s: done in %.1f s", what, time.monotonic() - t0)


def log_beside_the_view(path: Path, console: Console) -> None:
    """With the live view, every log line goes to ``path``; warnings and errors are also
    printed above the view, through its console (a plain stream would tear the view)."""
    root = logging.getLogger()
    to_file = logging.FileHandler(path, encoding="utf-8")
    to_file.setFormatter(root.handlers[0].formatter if root.handlers else logging.Formatter())
    on_screen = RichHandler(console=console, level=logging.WARNING, show_path=False, markup=False,
                            rich_tracebacks=False, log_time_format="%H:%M:%S")
    root.handlers[:] = [to_file, on_screen]
