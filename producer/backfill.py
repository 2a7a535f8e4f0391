"""``perpstream backfill``: Binance USD-M history over REST, published as MetricPoints.

Per symbol, the range ``[since, until)`` is cut into chunks of
:data:`~producer.history.KLINE_LIMIT` minutes. For each chunk it fetches the
1 m mark and index klines (one page each), the open-interest history and the
settled funding, merges them into one list in event-time order, publishes it
through the producer's :class:`~producer.publisher.Publisher` (same topic,
same key = symbol, same encoder as live data), waits until Kafka has
acknowledged all of it, and only then records the chunk in the symbol's
checkpoint (``<data_dir>/backfill/<topic>/<symbol>.json``, written
atomically). So:

- **resume**: a run interrupted at any point (SIGINT, a crash, a fault) and
  started again with the same range starts each symbol after its last
  acknowledged chunk; whatever was published after it is published again, and
  the identity dedup downstream counts it once;
- **idempotent**: a second run of a range already delivered sends nothing;
  with ``--no-resume`` it sends everything again and ``FINAL`` still counts
  each point once (same identities, same values: only closed klines are used);
- **order**: within a symbol the points reach the topic in event-time order,
  before any live point the same process publishes afterwards
  (:func:`run_backfill` returns only when everything is acknowledged), which
  is what lets the snapshot consumer start warm (docs/snapshots.md).

Requests go through one :class:`~producer.rest.RestGate` (the open-interest
poller's: the weight budget per minute, 429/418/403 pauses honoured); the
funding and open-interest-history endpoints have their own request pools at
Binance (500 and 1,000 per 5 minutes) and are spaced to stay inside a share of
them too. Retryable failures are retried with backoff, at most
:data:`MAX_ATTEMPTS` times per request; a symbol Binance refuses (400) fails
that symbol and the others go on; anything permanent stops the run. The exit
status is 0 when every symbol was delivered, 1 with one line per failure
otherwise, 130 when interrupted (the checkpoint holds what was delivered).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import re
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiohttp

from perpstream.errors import ConfigError
from perpstream.producer import binance, history
from perpstream.producer.encoding import MetricPointEncoder
from perpstream.producer.exceptions import FrameRejected, PermanentFailure, RestError
from perpstream.producer.failures import RestFault
from perpstream.producer.history import Parsed
from perpstream.producer.publisher import Publisher, producer_config
from perpstream.producer.rest import BinanceRest, RestGate
from perpstream.producer.settings import ProducerSettings
from perpstream.producer.sources import now_ms
from perpstream.producer.timespec import parse_instant
from perpstream.runtime.backoff import factory
from perpstream.runtime.logs import RateLimitedLog
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.codec import metric_point_codec, registry_client, subject_for
from perpstream.schemas.models import Metric

log = logging.getLogger(__name__)

#: Attempts of one request that fails in a retryable way (5xx, timeout, a body that is not JSON).
MAX_ATTEMPTS = 8
CHUNK_MS = history.KLINE_LIMIT * history.MINUTE_MS
#: Binance's request pools of the two history endpoints: (requests, seconds).
FUNDING_POOL = (500, 300.0)
OI_HIST_POOL = (1000, 300.0)
EXIT_INTERRUPTED = 130
_DELIVERY = re.compile(r"_\d{6}$")
#: Metric order within one event time (the live stream's order).
_ORDER = {m: i for i, m in enumerate((
    Metric.MARK_PRICE, Metric.INDEX_PRICE, Metric.ESTIMATED_SETTLE_PRICE, Metric.FUNDING_RATE,
    Metric.NEXT_FUNDING_TIME, Metric.OPEN_INTEREST, Metric.FUNDING_RATE_SETTLED))}

#: ``progress(done_chunks, total_chunks, symbol)``
Progress = Callable[[int, int, str], None]


def pair_of(symbol: str) -> str:
    """The ``pair`` of indexPriceKlines: the symbol without a delivery date
    (``BTCUSDT_261225`` -> ``BTCUSDT``)."""
    return _DELIVERY.sub("", symbol)


class Checkpoint:
    """What was delivered for one symbol to one topic: one interval ``[start, end)`` of event times."""

    def __init__(self, root: Path, topic: str, symbol: str) -> None:
        self.path = root / quote(topic, safe="") / f"{quote(symbol, safe='')}.json"
        self.symbol = symbol
        self.start: int | None = None
        self.end: int | None = None
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            doc = json.loads(self.path.read_text("utf-8"))
            if doc.get("symbol") == symbol and type(doc["start"]) is int and type(doc["end"]) is int:
                self.start, self.end = doc["start"], doc["end"]

    def resume_from(self, since: int) -> int:
        """Where a run of ``[since, ...)`` starts: after the delivered interval when it covers ``since``."""
        if self.start is not None and self.end is not None and self.start <= since < self.end:
            return self.end
        return since

    def delivered(self, start: int, end: int) -> None:
        """``[start, end)`` is acknowledged; it extends the interval it touches, or replaces it."""
        if self.start is not None and self.end is not None and self.start <= start <= self.end:
            self.end = max(self.end, end)
        else:
            self.start, self.end = start, end
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"symbol": self.symbol, "start": self.start, "end": self.end}), "utf-8")
        os.replace(tmp, self.path)


class _Pool:
    """Spacing for an endpoint with its own request pool: ``requests`` per ``seconds`` times ``share``."""

    def __init__(self, requests: int, seconds: float, share: float) -> None:
        self.spacing = seconds / max(1, int(requests * share))
        self._next = 0.0

    async def acquire(self) -> None:
        now = time.monotonic()
        if self._next > now:
            await asyncio.sleep(self._next - now)
        self._next = max(now, self._next) + self.spacing


class Interrupted(Exception):
    """The stop event was set."""


@dataclass
class BackfillResult:
    symbols: int = 0
    chunks: int = 0
    chunks_skipped: int = 0
    points: int = 0
    requests: int = 0
    weight: int = 0
    rejected: int = 0
    seconds: float = 0.0
    interrupted: bool = False
    #: symbol (or "*") -> why it was not delivered
    failures: dict[str, str] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        return EXIT_INTERRUPTED if self.interrupted else 1 if self.failures else 0


@dataclass
class _Range:
    since: int
    until: int
    oi_since: int


def resolve_range(settings: ProducerSettings, now: int | None = None) -> _Range:
    """The range to fetch, from the settings; a range that is empty or absent is a ConfigError."""
    now = now_ms() if now is None else now
    if settings.backfill_since is None:
        raise ConfigError("backfill needs --since (PERPSTREAM_BACKFILL_SINCE): " + "ISO-8601, epoch ms or 6h")
    since = parse_instant(settings.backfill_since, now)
    until = min(now, parse_instant(settings.backfill_until, now)) if settings.backfill_until else now
    if since >= until:
        raise ConfigError(f"backfill_since (--since / PERPSTREAM_BACKFILL_SINCE) {settings.backfill_since!r} "
                          "is not before until (and until is at most now)")
    # an hour of margin: Binance's 30 days are rolling
    oldest = now - history.OI_HIST_RETENTION_MS + 3_600_000
    return _Range(since, until, max(since, oldest))


class Backfill:
    """One run: see the module doc. ``stop`` (asyncio) interrupts it between requests."""

    def __init__(self, settings: ProducerSettings, telemetry: Telemetry, publisher: Any,
                 encode: Callable[[dict[str, Any]], bytes], rest: BinanceRest, *,
                 progress: Progress | None = None, now: int | None = None) -> None:
        self.s = settings
        self.telemetry = telemetry
        self.publisher = publisher
        self.encode = encode
        self.rest = rest
        self.progress = progress
        self.range = resolve_range(settings, now)
        self.now = now_ms() if now is None else now
        self.result = BackfillResult()
        share = settings.rest_weight_share
        self._funding_pool = _Pool(*FUNDING_POOL, share)
        self._oi_pool = _Pool(*OI_HIST_POOL, share)
        self._backoff = factory(settings.backoff_initial, cap=settings.backoff_cap)
        self._rlog = RateLimitedLog(log)
        self._root = Path(settings.data_dir) / "backfill"
        self._stop: asyncio.Event = asyncio.Event()

    # -- requests -------------------------------------------------------------------------

    async def _get(self, path: str, params: dict[str, str], weight: int, endpoint: str,
                   parse: Callable[[Any], Parsed], pool: _Pool | None = None) -> Parsed:
        """One request, retried; raises RestError (refused / permanent) or Interrupted."""
        delays = self._backoff()
        url = self.rest.base_url.rstrip("/") + path
        attempt = 0
        while attempt < MAX_ATTEMPTS:
            attempt += 1
            if self._stop.is_set():
                raise Interrupted()
            if pool is not None:
                await pool.acquire()
            self.result.requests += 1
            self.result.weight += weight
            try:
                body = await self._interruptible(self.rest.get(url, params, weight=weight, endpoint=endpoint))
                parsed = parse(binance.load_json(body, self.s.max_frame_bytes))
            except RestError as exc:
                if exc.fault is RestFault.RETRY and attempt < MAX_ATTEMPTS:
                    self._rlog.warning("retry", "history request failed; retrying",
                                       {"endpoint": endpoint, "error": str(exc)[:200]})
                    await self._pause(next(delays))
                    continue
                if exc.fault in (RestFault.RATE_LIMITED, RestFault.BANNED, RestFault.BLOCKED):
                    attempt -= 1  # the gate holds every call until the pause ends; not an attempt
                    continue
                raise
            except FrameRejected as exc:
                self.telemetry.inc("rest_bad_bodies", 1, {"endpoint": endpoint})
                if attempt >= MAX_ATTEMPTS:
                    raise RestError(200, f"{endpoint} answered an unusable body {MAX_ATTEMPTS} times: "
                                    f"{exc.detail[:200]}", fault=RestFault.REFUSED) from None
                await self._pause(next(delays))
                continue
            for err in parsed.rejected:
                self.result.rejected += 1
                self.telemetry.inc("frames_rejected", 1, {"reason": err.reason})
                self._rlog.warning(f"reject:{endpoint}", "history item rejected",
                                   {"endpoint": endpoint, "reason": err.reason, "detail": err.detail[:200]})
            return parsed
        raise RestError(0, f"{endpoint}: no answer after {MAX_ATTEMPTS} attempts", fault=RestFault.REFUSED)

    async def _interruptible(self, coro: Any) -> Any:
        task = asyncio.ensure_future(coro)
        stopper = asyncio.ensure_future(self._stop.wait())
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
            raise Interrupted()
        return task.result()

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)
        if self._stop.is_set():
            raise Interrupted()

    async def _paged(self, path: str, base: dict[str, str], start: int, end: int, limit: int,
                     weight: int, endpoint: str, parse: Callable[[Any], Parsed], time_shift: int = 0,
                     pool: _Pool | None = None) -> list[dict[str, Any]]:
        """Every point with event_time in [start, end): pages of ``limit`` from ``startTime``;
        a full page continues after its last time. ``time_shift`` maps an event time to the
        request's time (klines: closeTime - 59,999 = openTime)."""
        out: list[dict[str, Any]] = []
        cursor = start
        while cursor < end:
            params = {**base, "startTime": str(cursor - time_shift), "endTime": str(end - 1 - time_shift),
                      "limit": str(limit)}
            page = await self._get(path, params, weight, endpoint, parse, pool)
            out.extend(p for p in page.points if start <= p["event_time"] < end)
            if page.items < limit or page.last_time is None or page.last_time + time_shift + 1 <= cursor:
                break
            cursor = page.last_time + time_shift + 1
        return out

    # -- one symbol -----------------------------------------------------------------------

    async def _chunk(self, symbol: str, a: int, b: int) -> list[dict[str, Any]]:
        ingest = now_ms()
        now = self.now
        limit = history.KLINE_LIMIT
        kw = history.kline_weight(limit)
        span = history.KLINE_SPAN_MS
        marks = await self._paged(
            "/fapi/v1/markPriceKlines", {"symbol": symbol, "interval": "1m"}, a, b, limit, kw,
            "markPriceKlines",
            lambda d: history.kline_close_points(d, symbol, Metric.MARK_PRICE, ingest, now),
            time_shift=span)
        index = await self._paged(
            "/fapi/v1/indexPriceKlines", {"pair": pair_of(symbol), "interval": "1m"}, a, b, limit, kw,
            "indexPriceKlines",
            lambda d: history.kline_close_points(d, symbol, Metric.INDEX_PRICE, ingest, now),
            time_shift=span)
        points = marks + index
        oi_a = max(a, self.range.oi_since)
        if oi_a < b:
            points += await self._paged(
                "/futures/data/openInterestHist", {"symbol": symbol, "period": self.s.backfill_oi_period},
                oi_a, b, history.OI_HIST_LIMIT, 1, "openInterestHist",
                lambda d: history.open_interest_hist_points(d, symbol, ingest), pool=self._oi_pool)
        points += await self._paged(
            "/fapi/v1/fundingRate", {"symbol": symbol}, a, b, history.FUNDING_LIMIT, 1, "fundingRate",
            lambda d: history.funding_rate_points(d, symbol, ingest), pool=self._funding_pool)
        points.sort(key=lambda p: (p["event_time"], _ORDER.get(p["metric"], 9)))
        return points

    async def _deliver(self, symbol: str, points: list[dict[str, Any]]) -> None:
        key = symbol.encode("utf-8")
        for p in points:
            self.publisher.publish(key, self.encode(p))
        left = await asyncio.to_thread(self.publisher.flush, self.s.flush_timeout)
        if left:
            raise PermanentFailure("kafka", f"{left:,} points not acknowledged by Kafka within "
                                   f"{self.s.flush_timeout:.0f} s (PERPSTREAM_FLUSH_TIMEOUT)")
        if self.publisher.failure is not None:
            raise self.publisher.failure
        self.result.points += len(points)
        self.telemetry.inc("points_published", len(points))

    def _chunks(self, start: int) -> list[tuple[int, int]]:
        until = self.range.until
        return [(a, min(a + CHUNK_MS, until)) for a in range(start, until, CHUNK_MS)]

    async def run(self, symbols: list[str], stop: asyncio.Event) -> BackfillResult:
        self._stop = stop
        started = time.monotonic()
        r = self.result
        r.symbols = len(symbols)
        plans = []
        for sym in symbols:
            cp = Checkpoint(self._root, self.s.metrics_topic, sym)
            start = cp.resume_from(self.range.since) if self.s.backfill_resume else self.range.since
            all_chunks = self._chunks(self.range.since)
            todo = self._chunks(start)
            r.chunks_skipped += len(all_chunks) - len(todo)
            plans.append((sym, cp, todo))
        total = sum(len(t) for _, _, t in plans)
        done = 0
        if self.range.since < self.range.oi_since:
            log.warning("open-interest history starts later than --since: Binance keeps only about the "
                        "last 30 days of it", extra={"oi_since_ms": self.range.oi_since})
        try:
            for sym, cp, todo in plans:
                for a, b in todo:
                    try:
                        points = await self._chunk(sym, a, b)
                        await self._deliver(sym, points)
                    except RestError as exc:
                        if exc.fault is RestFault.PERMANENT:
                            raise PermanentFailure(
                                "binance_rest", f"HTTP {exc.status} ({exc}); check --rest-url") from exc
                        r.failures[sym] = f"HTTP {exc.status}: {str(exc)[:200]}"
                        log.error("backfill of this symbol failed; the others go on",
                                  extra={"symbol": sym, "error": r.failures[sym]})
                        done += sum(1 for c in todo if c[0] >= a)
                        break
                    cp.delivered(a, b)
                    r.chunks += 1
                    done += 1
                    if self.progress is not None:
                        self.progress(done, total, sym)
        except Interrupted:
            r.interrupted = True
        except PermanentFailure as exc:
            r.failures["*"] = f"{exc.edge}: {exc.cause}"
        r.seconds = time.monotonic() - started
        return r


# -- running it ------------------------------------------------------------------------------


def _progress_reporter(stream: Any = None) -> tuple[Progress, Callable[[], None]]:
    """A rich progress bar on a terminal, a log line every 5 s otherwise; returns (report, close)."""
    out = stream if stream is not None else sys.stdout
    if out.isatty():
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        bar = Progress(TextColumn("backfill {task.fields[symbol]}"), BarColumn(), MofNCompleteColumn(),
                       TimeRemainingColumn())
        task = bar.add_task("backfill", total=None, symbol="")
        bar.start()

        def report(done: int, total: int, symbol: str) -> None:
            bar.update(task, completed=done, total=total, symbol=symbol)

        return report, bar.stop
    last = [0.0]

    def log_line(done: int, total: int, symbol: str) -> None:
        now = time.monotonic()
        if now - last[0] >= 5.0 or done == total:
            last[0] = now
            log.info("backfill progress", extra={"chunks_done": done, "chunks_total": total,
                                                 "symbol": symbol})

    return log_line, lambda: None


async def _symbols(settings: ProducerSettings, rest: BinanceRest) -> list[str]:
    if settings.symbol_list:
        return settings.symbol_list
    try:
        body = await rest.exchange_info()
        return sorted(binance.perpetual_listing(binance.load_json(body, settings.max_frame_bytes)).symbols)
    except RestError as exc:
        raise PermanentFailure("binance_rest", f"exchangeInfo answered HTTP {exc.status} ({exc})") from exc
    except FrameRejected as exc:
        raise PermanentFailure("binance_rest", f"exchangeInfo answer unusable: {exc.detail[:200]}") from exc


async def backfill(settings: ProducerSettings, telemetry: Telemetry, stop: threading.Event,
                   progress: Progress | None = None, *, kafka_extra: dict[str, Any] | None = None) -> \
        BackfillResult:
    s = settings
    bootstrap = s.require_kafka()
    s.require_live_symbols()
    resolve_range(s)  # a bad range fails before anything is opened
    codec = metric_point_codec(registry_client(s.schema_registry_config()), subject_for(s.metrics_topic),
                               auto_register=s.schema_registry_auto_register)
    encoder = MetricPointEncoder(codec)  # resolves the schema id: a registry refusing fails here
    publisher = Publisher(
        producer_config(bootstrap, compression=s.kafka_compression, linger_ms=s.kafka_linger_ms,
                        batch_size=s.kafka_batch_size, buffer_max_messages=s.buffer_max_messages,
                        delivery_timeout_ms=s.kafka_delivery_timeout_ms, extra=kafka_extra,
                        security=s.kafka_security()),
        s.metrics_topic, telemetry, overflow_max_points=max(s.overflow_max_points, 200_000),
        order_key=encoder.event_time)
    astop = asyncio.Event()
    loop = asyncio.get_running_loop()
    finished = threading.Event()

    def watch() -> None:  # the caller's stop, seen on this loop; the caller's event is never set here
        while not finished.is_set():
            if stop.wait(0.1):
                loop.call_soon_threadsafe(astop.set)
                return

    threading.Thread(target=watch, daemon=True, name="backfill-stop").start()
    try:
        async with aiohttp.ClientSession() as session:
            gate = RestGate(telemetry, s.rest_weight_limit, s.rest_weight_share)
            rest = BinanceRest(session, s.rest_url, gate, telemetry, s.rest_timeout)
            try:
                symbols = await _symbols(s, rest)
            except PermanentFailure as exc:
                return BackfillResult(failures={"*": f"{exc.edge}: {exc.cause}"})
            job = Backfill(s, telemetry, publisher, encoder.encode, rest, progress=progress)
            log.info("backfill starting", extra={"symbols": len(symbols), "since_ms": job.range.since,
                                                 "until_ms": job.range.until, "topic": s.metrics_topic})
            result = await job.run(symbols, astop)
    finally:
        left = await asyncio.to_thread(publisher.close, s.flush_timeout)
        finished.set()
    if left:
        result.failures.setdefault("*", f"kafka: {left:,} points not delivered")
    return result


def run_backfill(settings: ProducerSettings, telemetry: Telemetry, stop: threading.Event,
                 progress: Progress | None = None) -> int:
    """Run a backfill to the end (or until ``stop``); 0 = delivered, 1 = failures (logged), 130 = stopped.

    Blocking, with an event loop of its own: ``perpstream up --backfill`` calls it before
    starting the live source (docs/snapshots.md, "Warm at minute one"). ``stop`` is only read.
    """
    return _run(settings, telemetry, stop, progress).exit_code


def _run(settings: ProducerSettings, telemetry: Telemetry, stop: threading.Event,
         progress: Progress | None = None) -> BackfillResult:
    result = asyncio.run(backfill(settings, telemetry, stop, progress))
    summary = {k: v for k, v in result.__dict__.items() if k != "failures"}
    summary["seconds"] = round(result.seconds, 2)
    for sym, why in result.failures.items():
        log.error("backfill not delivered", extra={"symbol": sym, "error": why})
    log.info("backfill finished" if not result.interrupted else "backfill interrupted", extra=summary)
    return result


# -- the command -----------------------------------------------------------------------------

_FIELDS = {
    "symbols": "symbols", "all": "all_symbols", "since": "backfill_since", "until": "backfill_until",
    "rest_url": "binance_rest_url", "testnet": "testnet", "bootstrap_servers": "kafka_bootstrap_servers",
    "schema_registry_url": "schema_registry_url", "topic": "metrics_topic", "data_dir": "data_dir",
    "schema_registry_auto_register": "schema_registry_auto_register",
    "resume": "backfill_resume", "oi_period": "backfill_oi_period", "log_level": "log_level",
    "log_format": "log_format",
}


def register(sub: Any) -> None:
    from perpstream.producer.cli import add_registry_flags
    from perpstream.runtime.settings import SettingsUse, add_log_flags, declare_settings

    p = sub.add_parser("backfill", help="fetch Binance history over REST and publish it as MetricPoints")
    p.add_argument("--since", help="first event time: ISO-8601, epoch ms, or a duration ago (6h, 7d)")
    p.add_argument("--until", help="end of the range, exclusive (same forms; default now)")
    p.add_argument("--symbols", help="comma-separated symbols, e.g. BTCUSDT,ETHUSDT")
    p.add_argument("--all", action="store_true", default=None, help="every PERPETUAL/TRADING symbol")
    p.add_argument("--rest-url",
                   help="REST base (env PERPSTREAM_BINANCE_REST_URL), default https://fapi.binance.com")
    p.add_argument("--testnet", action="store_true", default=None, help="use Binance futures testnet URLs")
    p.add_argument("--bootstrap-servers",
                   help="Kafka host:port list (env PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS)")
    p.add_argument("--schema-registry-url",
                   help="Confluent Schema Registry (env PERPSTREAM_SCHEMA_REGISTRY_URL)")
    add_registry_flags(p)
    p.add_argument("--topic", help="metrics topic (default perpstream.metrics.v1)")
    p.add_argument("--data-dir", help="where the resume checkpoints live (env PERPSTREAM_DATA_DIR)")
    p.add_argument("--no-resume", dest="resume", action="store_false", default=None,
                   help="fetch and publish the whole range again, whatever the checkpoints say")
    p.add_argument("--oi-period", choices=list(history.OI_HIST_PERIODS),
                   help="period of the open-interest history (default 5m)")
    add_log_flags(p)
    p.set_defaults(func=backfill_main)
    declare_settings(p, SettingsUse(ProducerSettings, _FIELDS))


def backfill_main(args: argparse.Namespace) -> int:
    from perpstream.runtime.settings import build_settings
    from perpstream.runtime.signals import stop_on_signals
    from perpstream.runtime.telemetry import configure_logging

    settings = build_settings(ProducerSettings, args, _FIELDS)
    settings.require_kafka()
    settings.require_live_symbols()
    resolve_range(settings)
    configure_logging(settings.log_level, settings.log_format)
    report, close = _progress_reporter()
    try:
        with stop_on_signals() as stop:
            result = _run(settings, Telemetry(), stop, report)
    finally:
        close()
    rc = result.exit_code
    if rc == EXIT_INTERRUPTED:
        print("perpstream backfill: interrupted; run the same command again to resume", file=sys.stderr)
    elif rc:
        why = "; ".join(f"{k}: {v}" if k != "*" else v for k, v in sorted(result.failures.items()))
        print(f"perpstream backfill: error: not everything was delivered ({why[:500]}); "
              "run the same command again to resume", file=sys.stderr)
    else:
        print(f"perpstream backfill: {result.points:,} points for {result.symbols} symbols "
              f"({result.chunks} chunks, {result.chunks_skipped} already delivered, {result.requests} "
              f"requests, weight {result.weight}) in {result.seconds:.1f} s", file=sys.stderr)
    return rc
