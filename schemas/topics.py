"""Topic names of the contract. Versioned: a breaking change gets a new topic."""

from __future__ import annotations

METRICS_TOPIC = "perpstream.metrics.v1"
SNAPSHOTS_TOPIC = "perpstream.snapshots.v1"
#: AssetSnapshot records, key = the asset (docs/snapshots.md, "Cross-venue asset snapshots").
ASSETS_TOPIC = "perpstream.assets.v1"
DLQ_TOPIC = "perpstream.dlq.v1"

#: Consumer group ids of the standard consumers.
SINK_GROUP = "perpstream-sink"
SNAPSHOTS_GROUP = "perpstream-snapshots"
ASSETS_GROUP = "perpstream-assets"

#: Headers on a DLQ record (values are UTF-8 bytes).
DLQ_HEADER_ERROR = "perpstream.error"
DLQ_HEADER_REASON = "perpstream.reason"
DLQ_HEADER_GROUP = "perpstream.group"
DLQ_HEADER_TOPIC = "perpstream.topic"
DLQ_HEADER_PARTITION = "perpstream.partition"
DLQ_HEADER_OFFSET = "perpstream.offset"
#: A DLQ copy cut to fit the DLQ topic: the original value's size in bytes (decimal)...
DLQ_HEADER_ORIGINAL_SIZE = "perpstream.original_size"
#: ...why and how it was cut (``MSG_SIZE_TOO_LARGE: value cut from 300000 to 99500 bytes``)...
DLQ_HEADER_TRUNCATED = "perpstream.truncated"
#: ...the original key's size, when the key had to be cut too...
DLQ_HEADER_ORIGINAL_KEY_SIZE = "perpstream.original_key_size"
#: ...and how many of the original record's headers were left out (only when they alone did not fit).
DLQ_HEADER_DROPPED_HEADERS = "perpstream.dropped_headers"
