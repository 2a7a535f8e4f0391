"""The consumer groups: the ClickHouse sink and the snapshot engine, on one consume runtime
(docs/sink.md, docs/snapshots.md)."""

from __future__ import annotations

# This folder is the package perpstream.consumers (perpstream/consumers links here, docs/layout.md).
# Imported under its folder name it would be a second copy of every module and class.
if __name__ != "perpstream.consumers":
    raise ImportError(f"import perpstream.consumers, not {__name__} (docs/layout.md)")
