"""The questions users ask of the stored data, as functions and as SQL.

The SQL here is the documented SQL (docs/sink.md repeats it). Reads that must
be exact use ``FINAL``: until ReplacingMergeTree has merged, a re-sent
identity can still be present twice on disk.

Consumer lag is computed from the group's committed offsets and the
partition high watermark that the fetcher caches from fetch responses
(``get_watermark_offsets(cached=True)``). That is right on Apache Kafka and
also on Tansu, whose ListOffsets answers (what the uncached call uses) are
not. The probe assigns partitions by hand, so it never joins or disturbs the
group, and it never commits.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, TopicPartition

from perpstream.consumers.assets.keys import asset_of
from perpstream.runtime.telemetry import kafka_logging
from perpstream.schemas.models import Metric

LATEST_SQL = """
SELECT source, symbol, metric,
       argMax(value, event_time) AS value,
       toUnixTimestamp64Milli(max(event_time)) AS event_time_ms
FROM {db}.metric_points FINAL
WHERE (empty(%(symbols)s) OR has(%(symbols)s, symbol))
  AND (empty(%(metrics)s) OR has(%(metrics)s, metric))
GROUP BY source, symbol, metric
ORDER BY source, symbol, metric
"""

SERIES_SQL = """
SELECT toUnixTimestamp64Milli(event_time) AS event_time_ms, value
FROM {db}.metric_points FINAL
WHERE symbol = %(symbol)s AND metric = %(metric)s
  AND event_time >= fromUnixTimestamp64Milli(toInt64(%(start_ms)s), 'UTC')
  AND event_time <  fromUnixTimestamp64Milli(toInt64(%(end_ms)s), 'UTC')
ORDER BY event_time
LIMIT %(limit)s
"""

COUNTS_SQL = """
SELECT metric, count() AS points, uniqExact(symbol) AS symbols,
       toUnixTimestamp64Milli(max(event_time)) AS freshest_event_time_ms
FROM {db}.metric_points FINAL
GROUP BY metric
ORDER BY metric
"""


def _rows(client: Any, sql: str, database: str, params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    res = client.query(sql.format(db=database), parameters=params or {})
    names = res.column_names
    return [dict(zip(names, row, strict=True)) for row in res.result_rows]


def latest(client: Any, database: str, *, symbols: list[str] | None = None,
           metrics: list[str] | None = None) -> list[dict[str, Any]]:
    """Latest value per (source, symbol, metric), by event time."""
    return _rows(client, LATEST_SQL, database, {"symbols": symbols or [], "metrics": metrics or []})


def series(client: Any, database: str, symbol: str, metric: str, start_ms: int, end_ms: int,
           *, limit: int = 100_000) -> list[dict[str, Any]]:
    """Points of one symbol and metric with event time in [start_ms, end_ms)."""
    return _rows(client, SERIES_SQL, database, {"symbol": symbol, "metric": metric,
                                                "start_ms": start_ms, "end_ms": end_ms, "limit": limit})


def counts(client: Any, database: str) -> list[dict[str, Any]]:
    """Exact count, symbol count and freshest event time per metric."""
    return _rows(client, COUNTS_SQL, database)


#: What ``perpstream query funding`` reads of each market.
FUNDING_METRICS = (Metric.FUNDING_RATE, Metric.NEXT_FUNDING_TIME, Metric.FUNDING_INTERVAL_HOURS,
                   Metric.OPEN_INTEREST, Metric.MARK_PRICE)


def funding(client: Any, database: str, asset: str, *, now_ms: int | None = None) -> list[dict[str, Any]]:
    """Every venue's market of ``asset`` side by side, from the latest stored points: the funding
    rate, its interval and the annualised rate (rate * 8760 / interval hours, never a fixed 3 * 365;
    null without a stored interval), the next settlement, notional open interest (oi * mark, the
    same whatever the contract's scale) and how old the rate is. Highest annualised first.
    The asset key folds scale prefixes as docs/assets.md says (``1000PEPEUSDT``, ``kPEPE`` → PEPE)."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    wanted = asset.strip().upper()
    markets: dict[tuple[str, str], dict[str, tuple[float, int]]] = {}
    for r in latest(client, database, metrics=list(FUNDING_METRICS)):
        key = asset_of(r["source"], r["symbol"])
        if key is not None and key.asset.upper() == wanted:
            markets.setdefault((r["source"], r["symbol"]), {})[r["metric"]] = (r["value"], r["event_time_ms"])
    rows = [_funding_row(source, symbol, m, now_ms) for (source, symbol), m in markets.items()]
    rows.sort(key=lambda r: (r["annualized_pct"] is None, -(r["annualized_pct"] or 0.0),
                             r["source"], r["symbol"]))
    return rows


def _funding_row(source: str, symbol: str, m: dict[str, tuple[float, int]], now_ms: int) -> dict[str, Any]:
    rate, rate_at = m.get(Metric.FUNDING_RATE, (None, None))
    hours = m.get(Metric.FUNDING_INTERVAL_HOURS, (None, 0))[0]
    oi, mark = m.get(Metric.OPEN_INTEREST, (None, 0))[0], m.get(Metric.MARK_PRICE, (None, 0))[0]
    next_at = m.get(Metric.NEXT_FUNDING_TIME, (None, 0))[0]
    return {
        "source": source, "symbol": symbol, "funding_rate": rate, "interval_h": hours,
        "annualized_pct": None if rate is None or not hours else rate * 8760 / hours * 100,
        "next_funding_time_ms": None if not next_at else int(next_at),
        "oi_notional": None if oi is None or mark is None else oi * mark,
        "funding_age_s": None if rate_at is None else round((now_ms - rate_at) / 1000, 1),
    }


@dataclass(frozen=True)
class PartitionLag:
    topic: str
    partition: int
    committed: int | None  # None: the group has no commit here (it would start at the earliest)
    low: int
    high: int
    lag: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def consumer_lag(bootstrap_servers: str, group_id: str, topic: str, *, timeout: float = 10.0,
                 extra_config: dict[str, Any] | None = None) -> list[PartitionLag]:
    """Lag per partition of ``group_id`` on ``topic``: high watermark minus committed offset."""

    cfg: dict[str, Any] = {
        "bootstrap.servers": bootstrap_servers, "group.id": group_id,
        "enable.auto.commit": False, "enable.auto.offset.store": False,
        "fetch.max.bytes": 1_048_576, "max.partition.fetch.bytes": 65_536,
    }
    cfg.update(extra_config or {})
    c = Consumer({**cfg, **kafka_logging()})
    try:
        md = c.list_topics(topic, timeout=timeout)
        tmd = md.topics.get(topic)
        if tmd is None or tmd.error is not None:
            raise KafkaException(tmd.error if tmd is not None else f"unknown topic {topic}")
        tps = [TopicPartition(topic, p) for p in sorted(tmd.partitions)]
        committed = {tp.partition: tp.offset for tp in c.committed(tps, timeout=timeout)}
        c.assign([TopicPartition(topic, p, o if o >= 0 else OFFSET_BEGINNING) for p, o in committed.items()])
        marks: dict[int, tuple[int, int]] = {}
        deadline = time.monotonic() + timeout
        while len(marks) < len(tps) and time.monotonic() < deadline:
            c.consume(num_messages=1000, timeout=0.2)  # fetch responses carry the watermarks
            for tp in tps:
                if tp.partition not in marks:
                    low, high = c.get_watermark_offsets(tp, cached=True)
                    if high is not None and high >= 0:
                        marks[tp.partition] = (max(low, 0), high)
        out = []
        for tp in tps:
            low, high = marks.get(tp.partition, (-1, -1))
            off = committed.get(tp.partition, -1)
            has_commit = off is not None and off >= 0
            base = off if has_commit else low
            lag = max(0, high - base) if high >= 0 and base >= 0 else -1
            out.append(PartitionLag(topic, tp.partition, off if has_commit else None, low, high, lag))
        return out
    finally:
        c.close()
