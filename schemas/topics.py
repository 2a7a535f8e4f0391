"""Topic names of the contract. Versioned: a breaking change gets a new topic."""

from __future__ import annotations

METRICS_TOPIC = "perpstream.metrics.v1"
SNAPSHOTS_TOPIC = "perpstream.snapshots.v1"
DLQ_TOPIC = "perpstream.dlq.v1"

#: Consumer group ids of the two standard consumers.
SINK_GROUP = "perpstream-sink"
SNAPSHOTS_GROUP = "perpstream-snapshots"

#: Headers on a DLQ record (values are UTF-8 bytes).
DLQ_HEADER_ERROR = "perpstream.error"
DLQ_HEADER_REASON = "perpstream.reason"
DLQ_HEADER_GROUP = "perpstream.group"
DLQ_HEADER_TOPIC = "perpstream.topic"
DLQ_HEADER_PARTITION = "perpstream.partition"
DLQ_HEADER_OFFSET = "perpstream.offset"
