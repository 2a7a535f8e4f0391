"""Event models: the pydantic view of the Avro records.

Hot paths (normalise → encode → produce, poll → decode → insert) move plain
dicts with epoch-millisecond integers, exactly the shape fastavro reads and
writes without logical-type conversion; these models validate at the edges
(tests, CLI, replay files) and document the rules. ``as_record`` /
``from_record`` convert between the two without loss.
"""

from __future__ import annotations

from collections.abc import Callable
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from perpstream.schemas import rules
from perpstream.schemas.codec import load_schema


class Metric(StrEnum):
    """The ``metric`` enum of ``metric_point.avsc`` (a test holds the two equal)."""

    MARK_PRICE = "mark_price"
    INDEX_PRICE = "index_price"
    ESTIMATED_SETTLE_PRICE = "estimated_settle_price"
    FUNDING_RATE = "funding_rate"
    NEXT_FUNDING_TIME = "next_funding_time"
    OPEN_INTEREST = "open_interest"
    #: What a reader on this schema sees for a metric added by a newer writer.
    UNKNOWN = "unknown"
    #: v2: the funding rate settled at a funding time (``/fapi/v1/fundingRate``), not the
    #: predicted ``funding_rate`` of the markPrice stream. Appended after ``unknown`` so every
    #: v1 symbol keeps its Avro index.
    FUNDING_RATE_SETTLED = "funding_rate_settled"
    #: v3: the symbol's funding interval in hours (8, 4, 1...), in force from the point's event time
    #: on (docs/contract.md, "Versions"). Funding intervals differ by venue and by symbol, so an
    #: annualised rate needs it. Appended after ``funding_rate_settled``: every v2 index is kept.
    FUNDING_INTERVAL_HOURS = "funding_interval_hours"


def _metric_enum() -> dict[str, Any]:
    field = next(f for f in load_schema("metric_point").definition["fields"] if f["name"] == "metric")
    return dict(field["type"])


#: The ``metric`` enum of the shipped schema: symbols by Avro index, and its default.
METRIC_SYMBOLS: tuple[str, ...] = tuple(_metric_enum()["symbols"])
METRIC_DEFAULT: str = _metric_enum()["default"]
#: Metrics this reader stores; anything else (the default included) goes to the DLQ.
KNOWN_METRICS = frozenset(METRIC_SYMBOLS) - {METRIC_DEFAULT}


#: The rule of each MetricPoint field that has one of its own (the metric's is its enum; the
#: symbol's and the value's depend on another field: MetricPoint._rule).
_FIELD_RULES: dict[str, Callable[[Any], str | None]] = {
    "source": rules.source_problem, "event_time": rules.event_time_problem,
    "ingest_time": rules.ingest_time_problem,
}


class MetricPoint(BaseModel):
    """One observation. Identity = (source, symbol, metric, event_time).

    NaN/inf policy: values must be finite. Binance never sends them for these
    metrics, so a non-finite value is a parse bug or a corrupt frame; it is
    rejected at the producer and sent to the DLQ by consumers.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str
    symbol: str
    metric: Metric
    value: float
    event_time: int = Field(description="epoch ms")
    ingest_time: int = Field(description="epoch ms")

    # The rules live in schemas.rules; the model only applies them. A symbol's rule depends on
    # the source and a value's on the metric, both validated before them (fields go in order;
    # one that failed is absent, and the rule without it is the strict one).
    @field_validator("source", "symbol", "value", "event_time", "ingest_time")
    @classmethod
    def _rule(cls, v: Any, info: ValidationInfo) -> Any:
        if info.field_name == "symbol":
            problem = rules.symbol_problem(v, info.data.get("source"))
        elif info.field_name == "value":
            metric = info.data.get("metric")
            problem = rules.value_problem(v, None if metric is None else str(metric.value))
        else:
            problem = _FIELD_RULES[str(info.field_name)](v)
        if problem is not None:
            raise ValueError(problem)
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
    """Contract check of a decoded record on the consumer path (what the table can hold included).

    Raises :class:`~schemas.exceptions.InvalidRecordError` naming the broken
    rule; cheaper than building a :class:`MetricPoint`, same rules.
    """
    rules.check(rules.metric_point_problem(record, KNOWN_METRICS))


class MarketSnapshot(BaseModel):
    """Rolling context of one market (source, symbol), one window, one snapshot time (epoch ms)."""

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
    #: v2 (docs/snapshots.md, "Features"): the funding interval in force at snapshot_time, and
    #: funding_last annualised with it (never a fixed 3 x 365)
    funding_interval_h: float | None = None
    funding_annualized: float | None = None

    def as_record(self) -> dict[str, Any]:
        return self.model_dump()
