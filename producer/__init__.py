"""The producer: venue websocket and REST sources turned into MetricPoint events on Kafka
(docs/producer.md)."""

from __future__ import annotations

# This folder is the package perpstream.producer (perpstream/producer links here, docs/layout.md).
# Imported under its folder name it would be a second copy of every module and class.
if __name__ != "perpstream.producer":
    raise ImportError(f"import perpstream.producer, not {__name__} (docs/layout.md)")
