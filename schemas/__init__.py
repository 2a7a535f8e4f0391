"""The contract shared by the producer and the consumers.

Avro schemas (``*.avsc``), the event models, the codec for both wire framings
and the topic names. Nothing in this package opens a socket or talks to Kafka.
"""

from __future__ import annotations

# This folder is the package perpstream.schemas (perpstream/schemas links here, docs/layout.md).
# Imported under its folder name it would be a second copy of every module and class.
if __name__ != "perpstream.schemas":
    raise ImportError(f"import perpstream.schemas, not {__name__} (docs/layout.md)")

from perpstream.schemas.codec import AvroCodec, Framing, load_schema
from perpstream.schemas.exceptions import (
    BadMagicError,
    DecodeError,
    EncodeError,
    InvalidRecordError,
    TruncatedRecordError,
    UnknownSchemaError,
)
from perpstream.schemas.models import MarketSnapshot, Metric, MetricPoint, check_metric_point
from perpstream.schemas.topics import DLQ_TOPIC, METRICS_TOPIC, SNAPSHOTS_TOPIC

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
    "TruncatedRecordError",
    "UnknownSchemaError",
    "check_metric_point",
    "load_schema",
]
