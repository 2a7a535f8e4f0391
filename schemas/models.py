"""Event models: the pydantic view of the Avro records.

Hot paths (normalise → encode → produce, poll → decode → insert) move plain
dicts with epoch-millisecond integers, exactly the shape fastavro reads and
writes without logical-type conversion; these models validate at the edges
(tests, CLI, replay files) and document the rules. ``as_record`` /
``from_record`` convert between the two without loss.
"""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from schemas.exceptions import InvalidRecordError

#: Event times outside [2017-01-01, 2100-01-01) are not market data.
MIN_EVENT_TIME_MS = 1_483_228_800_000
MAX_EVENT_TIME_MS = 4_102_444_800_000


class Metric(StrEnum):
    MARK_PRICE = "mark_price"
    INDEX_PRICE = "index_price"
    ESTIMATED_SETTLE_PRICE = "estimated_settle_price"
    FUNDING_RATE = "funding_rate"
    NEXT_FUNDING_TIME = "next_funding_time"
    OPEN_INTEREST = "open_interest"
    #: What a reader on this schema sees for a metric added by a newer writer.
    UNKNOWN = "unknown"


KNOWN_METRICS = frozenset(m.value for m in Metric if m is not Metric.UNKNOWN)


class MetricPoint(BaseModel):
    """One observation. Identity = (source, symbol, metric, event_time).

    NaN/inf policy: values must be finite. Binance never sends them for these
    metrics, so a non-finite value is a parse bug or a corrupt frame; it is
    rejected at the producer and sent to the DLQ by consumers.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(min_length=1)
    symbol: str = Field(min_length=1, max_length=64)
    metric: Metric
    value: float
    event_time: int = Field(ge=MIN_EVENT_TIME_MS, lt=MAX_EVENT_TIME_MS, description="epoch ms")
    ingest_time: int = Field(ge=0, description="epoch ms")

    @field_validator("symbol")
    @classmethod
    def _upper(cls, v: str) -> str:
        if v != v.upper():
            raise ValueError("symbol must be upper case")
        return v

    @field_validator("value")
    @classmethod
    def _finite(cls, v: float) -> float:
        if not math.isfinite(v):
            raise ValueError("value must be finite")
        return v

    @property
    def identity(self) -> tuple[str, str, str, int]:
        return (self.source, self.symbol, self.metric.value, self.event_time)

    def as_record(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "symbol": self.symbol,
            "metric": self.metric.value,
            "value": self.value,
            "event_time": self.event_time,
            "ingest_time": self.ingest_time,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> MetricPoint:
        return cls.model_validate(record)


def check_metric_point(record: dict[str, Any]) -> None:
    """Fast contract check for a decoded record on the consumer hot path.

    Raises :class:`InvalidRecordError` naming the broken rule. Cheaper than
    building a :class:`MetricPoint` and checks the same rules.
    """
    value = record["value"]
    if not math.isfinite(value):
        raise InvalidRecordError(f"value is not finite: {value!r}")
    symbol = record["symbol"]
    if not symbol or len(symbol) > 64 or symbol != symbol.upper():
        raise InvalidRecordError(f"bad symbol: {symbol!r}")
    if not record["source"]:
        raise InvalidRecordError("empty source")
    if record["metric"] not in KNOWN_METRICS:
        raise InvalidRecordError(
            f"metric {record['metric']!r} is unknown to this reader (newer writer schema?)"
        )
    et = record["event_time"]
    if not MIN_EVENT_TIME_MS <= et < MAX_EVENT_TIME_MS:
        raise InvalidRecordError(f"event_time out of range: {et}")


class MarketSnapshot(BaseModel):
    """Rolling context of one symbol, one window, one snapshot time (epoch ms)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    symbol: str
    window_s: int = Field(gt=0)
    snapshot_time: int
    mark_last: float | None = None
    index_last: float | None = None
    funding_last: float | None = None
    oi_last: float | None = None
    mark_return: float | None = None
    mark_volatility: float | None = None
    basis_last: float | None = None
    basis_mean: float | None = None
    funding_mean: float | None = None
    oi_change_pct: float | None = None
    n_mark: int = 0
    n_oi: int = 0
    mark_age_ms: int | None = None
    oi_age_ms: int | None = None
    stale: bool = True

    def as_record(self) -> dict[str, Any]:
        return self.model_dump()
