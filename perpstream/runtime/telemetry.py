"""Counters, gauges and structured log lines shared by every perpstream process.

Counter names and labels are part of what operators rely on, so they live with
the contract. :class:`Telemetry` is a thread-safe registry with a Prometheus
text rendering; :func:`serve_metrics` exposes it over HTTP (stdlib server on a
daemon thread: the one socket this package opens, and only when asked),
together with the liveness and readiness of a :class:`~service.health.Health`
registry.
:func:`configure_logging` makes every log line one JSON object (or plain text).
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

from perpstream.runtime.health import Health
from perpstream.runtime.secrets import redact, redact_value

LabelKey = tuple[tuple[str, str], ...]
_log = logging.getLogger(__name__)


def _labels(labels: Mapping[str, str] | None) -> LabelKey:
    return tuple(sorted((labels or {}).items()))


class Telemetry:
    """Counters (monotonic) and gauges (set, or computed at scrape time).

    ``inc`` is cheap enough for per-batch use; per-event hot paths should count
    locally and add in bulk.
    """

    def __init__(self, namespace: str = "perpstream") -> None:
        self.namespace = namespace
        self._lock = threading.Lock()
        self._counters: dict[str, dict[LabelKey, float]] = {}
        self._gauges: dict[str, dict[LabelKey, float]] = {}
        #: name -> part -> function; a gauge's series is the union of its parts' series
        self._gauge_fns: dict[str, dict[str, Callable[[], Mapping[LabelKey, float] | float]]] = {}
        self._help: dict[str, str] = {}

    def describe(self, name: str, help_text: str) -> None:
        self._help[name] = help_text

    def inc(self, name: str, amount: float = 1, labels: Mapping[str, str] | None = None) -> None:
        key = _labels(labels)
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0) + amount

    def set(self, name: str, value: float, labels: Mapping[str, str] | None = None) -> None:
        with self._lock:
            self._gauges.setdefault(name, {})[_labels(labels)] = value

    def gauge_fn(self, name: str, fn: Callable[[], Mapping[LabelKey, float] | float], *,
                 part: str = "") -> None:
        """A gauge computed when scraped (buffer fill, lag, event ages). Components that
        report the same gauge side by side (one per venue) each register their ``part``,
        with label sets of their own; registering a part again replaces it."""
        self._gauge_fns.setdefault(name, {})[part] = fn

    def _read_gauge(self, name: str) -> dict[LabelKey, float]:
        series: dict[LabelKey, float] = {}
        for fn in list(self._gauge_fns.get(name, {}).values()):
            val = fn()
            series.update({(): float(val)} if isinstance(val, int | float) else dict(val))
        return series

    def get(self, name: str, labels: Mapping[str, str] | None = None) -> float:
        key = _labels(labels)
        with self._lock:
            if name in self._counters:
                return self._counters[name].get(key, 0)
            return self._gauges.get(name, {}).get(key, 0)

    def total(self, name: str) -> float:
        """Sum of a counter over all label sets."""
        with self._lock:
            return sum(self._counters.get(name, {}).values())

    def detach_gauges(self) -> None:
        """Keep each computed gauge at its current reading and drop its function,
        releasing what it referenced (a stopped component and its Kafka client)."""
        for name in list(self._gauge_fns):
            series = self._read_gauge(name)
            with self._lock:
                self._gauges[name] = series
        self._gauge_fns = {}

    def snapshot(self) -> dict[str, dict[LabelKey, float]]:
        with self._lock:
            out = {k: dict(v) for k, v in self._counters.items()}
            out.update({k: dict(v) for k, v in self._gauges.items()})
        for name in list(self._gauge_fns):
            out[name] = self._read_gauge(name)
        return out

    def render_prometheus(self) -> str:
        lines: list[str] = []
        with self._lock:
            counters = {k: dict(v) for k, v in self._counters.items()}
        snap = self.snapshot()
        for name, series in sorted(snap.items()):
            full = f"{self.namespace}_{name}"
            if name in self._help:
                lines.append(f"# HELP {full} {self._help[name]}")
            lines.append(f"# TYPE {full} {'counter' if name in counters else 'gauge'}")
            for key, value in sorted(series.items()):
                lbl = ",".join(f'{k}="{_escape(redact(v))}"' for k, v in key)
                lines.append(f"{full}{{{lbl}}} {value:g}" if lbl else f"{full} {value:g}")
        return "\n".join(lines) + "\n"

    def summary(self) -> dict[str, float]:
        """Flat totals per name, for the periodic one-line log summary."""
        return {name: sum(series.values()) for name, series in self.snapshot().items()}


def _escape(v: str) -> str:
    return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def serve_metrics(
    telemetry: Telemetry, port: int, host: str = "0.0.0.0", *, health: Health | None = None,
) -> ThreadingHTTPServer:
    """Serve ``GET /metrics`` (Prometheus text format) until ``server.shutdown()``; with a
    ``health`` registry also ``GET /healthz`` (liveness) and ``GET /readyz`` (readiness):
    200 with ``ok``, or 503 with one failing check a line (JSON with ``?format=json`` or
    ``Accept: application/json``)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path, _, query = self.path.partition("?")
            if path in ("/metrics", "/"):
                self._send(200, telemetry.render_prometheus(), "text/plain; version=0.0.4")
            elif health is not None and path in ("/healthz", "/readyz"):
                report = health.liveness() if path == "/healthz" else health.readiness()
                status = 200 if report.ok else 503
                if "json" in parse_qs(query).get("format", []) or \
                        "application/json" in self.headers.get("Accept", ""):
                    self._send(status, report.json(), "application/json")
                else:
                    self._send(status, report.text(), "text/plain; charset=utf-8")
            else:
                self.send_error(404)

        def _send(self, status: int, text: str, content_type: str) -> None:
            body = text.encode()
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="metrics-http", daemon=True).start()
    return server


@contextlib.contextmanager
def operator_endpoints(
    telemetry: Telemetry, port: int | None, health: Health | None = None, host: str = "0.0.0.0",
) -> Iterator[ThreadingHTTPServer | None]:
    """:func:`serve_metrics` on ``port`` while the block runs (nothing when ``port`` is None)."""
    if port is None:
        yield None
        return
    server = serve_metrics(telemetry, port, host, health=health)
    _log.info("serving /metrics, /healthz and /readyz",
              extra={"host": host, "port": server.server_address[1]})
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, msg, plus any ``extra`` fields."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "logger": record.name,
            "msg": redact(record.getMessage()),
        }
        out.update(_extras(record))
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            out["exc"] = redact(record.exc_text)
        return json.dumps(out, default=str)


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields a log call attached to its record, secrets masked (service.secrets)."""
    return {k: redact_value(v) for k, v in record.__dict__.items()
            if k not in _RECORD_FIELDS and not k.startswith("_")}


_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class TextFormatter(logging.Formatter):
    """``<UTC time> LEVEL logger: message key=value ...``: the same fields as the JSON
    lines, for people reading a terminal (values with spaces are quoted)."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s.%(msecs)03dZ %(levelname)s %(name)s: %(message)s",
                         datefmt="%Y-%m-%dT%H:%M:%S")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return time.strftime(datefmt or "%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))

    def format(self, record: logging.LogRecord) -> str:
        text = redact(super().format(record))  # message, traceback and stack
        extras = _extras(record)
        if not extras:
            return text
        head, sep, tail = text.partition("\n")  # a traceback stays below the fields
        fields = " ".join(f"{k}={_text_value(v)}" for k, v in extras.items())
        return f"{head} {fields}{sep}{tail}"


def _text_value(v: Any) -> str:
    text = v if isinstance(v, str) else json.dumps(v, default=str, separators=(",", ":"))
    return json.dumps(text) if (not text or any(c.isspace() for c in text)) else text


def configure_logging(level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # librdkafka's clients log through this logger (see kafka_logging). Its
    # informational lines (a connection closed and re-opened, a coordinator moved)
    # are routine; failures also reach the clients' error callbacks. From WARNING
    # unless DEBUG.
    logging.getLogger(KAFKA_LOGGER).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    # The Schema Registry client's HTTP library logs each request at INFO; a refusal
    # reaches the caller as an error anyway. From WARNING unless DEBUG.
    for name in HTTP_CLIENT_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)


#: Loggers of the HTTP library the Schema Registry client uses (httpx2, or httpx before it).
HTTP_CLIENT_LOGGERS = ("httpx2", "httpx")
#: The Python logger every librdkafka client of the process logs through.
KAFKA_LOGGER = "librdkafka"


def kafka_logging() -> dict[str, Any]:
    """Config entries for a librdkafka client: log through :data:`KAFKA_LOGGER`,
    and have librdkafka produce only what that logger shows (``log_level`` is
    syslog-numbered), so nothing it would drop is queued, or printed raw to
    stderr when a client is destroyed with log events still queued."""
    logger = logging.getLogger(KAFKA_LOGGER)
    level = logger.getEffectiveLevel()
    if level <= logging.DEBUG:
        syslog = 7
    elif level <= logging.INFO:
        syslog = 6
    else:
        syslog = 4 if level <= logging.WARNING else 3
    return {"logger": logger, "log_level": syslog}
