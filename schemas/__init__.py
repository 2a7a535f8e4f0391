"""The contract shared by the producer and the consumers.

Avro schemas (``*.avsc``), the event models, the codec for both wire framings
and the topic names. Nothing in this package opens a socket or talks to Kafka.
"""

from __future__ import annotations

from schemas.codec import AvroCodec, Framing, load_schema
from schemas.exceptions import (
    BadMagicError,
    DecodeError,
    EncodeError,
    InvalidRecordError,
    PerpstreamError,
    TruncatedRecordError,
    UnknownSchemaError,
)
from schemas.models import MarketSnapshot, Metric, MetricPoint, check_metric_point
from schemas.topics import DLQ_TOPIC, METRICS_TOPIC, SNAPSHOTS_TOPIC

__all__ = [
    "DLQ_TOPIC",
    "METRICS_TOPIC",
    "SNAPSHOTS_TOPIC",
    "AvroCodec",
    "BadMagicError",
    "DecodeError",
    "EncodeError",
    "Framing",
    "InvalidRecordError",
    "MarketSnapshot",
    "Metric",
    "MetricPoint",
    "PerpstreamError",
    "TruncatedRecordError",
    "UnknownSchemaError",
    "check_metric_point",
    "load_schema",
]
