"""ClickHouseSink: the :class:`BatchHandler` that stores MetricPoints.

One insert per partition per batch, columnar through Arrow (the fastest
exact path measured on the embedded engine), with
``insert_deduplication_token = topic:partition:first:last``. Together with
the runtime's batch journal this makes a crash between insert and commit
harmless: the re-delivered batch has the same boundaries and the same rows,
so ClickHouse drops the second insert even before any merge.
ReplacingMergeTree on the identity removes the remaining duplicates (producer
retries, reconnect overlaps, replays) at merge time; exact reads use FINAL.

Any ClickHouse failure becomes :class:`StoreUnavailableError` (backpressure):
the runtime pauses, backs off and retries the identical batch, and never
commits past what is stored. Rows ClickHouse could not hold are rejected
earlier by :func:`validate_row`, at decode time, so they reach the DLQ with
their original bytes.
"""

from __future__ import annotations

import logging
import struct
import time
from collections.abc import Callable
from typing import Any

import pyarrow as pa

from consumers.exceptions import StoreUnavailableError
from consumers.runtime.batch import Batch, TopicPartitionId
from consumers.runtime.decoding import METRIC_POINT_PCF, METRIC_SYMBOLS
from consumers.sink.migrations import TABLE
from schemas.codec import AvroCodec, Framing
from schemas.exceptions import InvalidRecordError
from schemas.models import KNOWN_METRICS, MAX_EVENT_TIME_MS, MIN_EVENT_TIME_MS, check_metric_point
from schemas.telemetry import Telemetry

log = logging.getLogger(__name__)

#: DateTime64(3) ends at 2299-12-31T23:59:59.999Z.
MAX_DATETIME64_MS = 10_413_791_999_999

_TS = pa.timestamp("ms", tz="UTC")
_SCHEMA = pa.schema([
    ("source", pa.string()),
    ("symbol", pa.string()),
    ("metric", pa.string()),
    ("event_time", _TS),
    ("value", pa.float64()),
    ("ingest_time", _TS),
])


def validate_row(record: dict[str, Any]) -> None:
    """The contract check plus what the table's column types can hold."""
    check_metric_point(record)
    it = record["ingest_time"]
    if not 0 <= it <= MAX_DATETIME64_MS:
        raise InvalidRecordError(f"ingest_time does not fit DateTime64(3): {it}")


def to_arrow(records: list[dict[str, Any]]) -> pa.Table:
    """Columns straight from the decoded dicts (no per-row objects in between)."""
    return pa.Table.from_arrays(
        [
            pa.array([r["source"] for r in records], pa.string()),
            pa.array([r["symbol"] for r in records], pa.string()),
            pa.array([r["metric"] for r in records], pa.string()),
            pa.array([r["event_time"] for r in records], _TS),
            pa.array([r["value"] for r in records], pa.float64()),
            pa.array([r["ingest_time"] for r in records], _TS),
        ],
        schema=_SCHEMA,
    )


#: Order of the tuples :func:`row_decoder` returns (the table's column order).
ROW_FIELDS = ("source", "symbol", "metric", "event_time", "value", "ingest_time")

#: Parsing Canonical Form of the MetricPoint schema the fast path below reads.
_HEADER_LEN = 10
_PREFIX_CACHE_MAX = 100_000
_TAIL_CACHE_MAX = 4_096


def _as_row(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record["source"], record["symbol"], record["metric"], record["event_time"],
            record["value"], record["ingest_time"])


def row_decoder(codec: AvroCodec) -> Callable[[bytes], tuple[Any, ...]]:
    """``bytes -> row`` (see :data:`ROW_FIELDS`): decode plus :func:`validate_row` in one call.

    For single-object records written with the reader's own schema, when that
    schema is exactly the MetricPoint this was written for (compared by
    Parsing Canonical Form), the Avro body is read by hand and checked against
    conservative versions of the contract's rules; the (source, symbol, metric)
    prefix and the (event_time, ingest_time) suffix are cached with their
    verdicts, since they repeat. Anything else — other
    framings or writer schemas, corrupt or truncated bytes, any record a check
    does not clearly pass — goes through ``codec.decode`` and ``validate_row``,
    so results and errors (types and reasons) are exactly theirs.
    """
    slow_decode = codec.decode

    def slow(data: bytes) -> tuple[Any, ...]:
        rec = slow_decode(data)
        validate_row(rec)
        return _as_row(rec)

    if codec.framing is not Framing.SINGLE_OBJECT or codec.reader.canonical != METRIC_POINT_PCF:
        return slow
    header = codec.header()
    unpack = struct.Struct("<d").unpack_from
    known = [m in KNOWN_METRICS for m in METRIC_SYMBOLS]
    # prefix bytes (source, symbol, metric) -> (source, symbol, metric), or None: use the slow path
    prefixes: dict[bytes, tuple[str, str, str] | None] = {}
    # last bytes (event_time, ingest_time) -> both, or None: the points of one
    # exchange frame share them, so a small cache cleared when full hits often
    tails: dict[bytes, tuple[int, int] | None] = {}
    min_et, max_et, max_it = MIN_EVENT_TIME_MS, MAX_EVENT_TIME_MS, MAX_DATETIME64_MS

    def prefix_of(raw: bytes) -> tuple[str, str, str] | None:
        # raw = source, symbol (one-byte lengths), metric index: validated here once
        try:
            n1 = raw[0] >> 1
            source = raw[1:1 + n1].decode()
            p = 1 + n1
            n2 = raw[p] >> 1
            symbol = raw[p + 1:p + 1 + n2].decode()
            idx = raw[p + 1 + n2] >> 1
        except (IndexError, UnicodeDecodeError):
            return None
        if (not known[idx] or not source or not symbol or len(symbol) > 64
                or symbol != symbol.upper()):
            return None
        return (source, symbol, METRIC_SYMBOLS[idx])

    def times_of(tail: bytes) -> tuple[int, int] | None:
        # tail = event_time, ingest_time: zigzag varints of at most 9 bytes, nothing after
        out = []
        p = 0
        try:
            for _ in range(2):
                b = tail[p]
                n = b & 0x7F
                shift = 7
                p += 1
                while b & 0x80:
                    b = tail[p]
                    n |= (b & 0x7F) << shift
                    shift += 7
                    p += 1
                if shift > 63:  # 10-byte varints: let fastavro decide how 64 bits wrap
                    return None
                out.append((n >> 1) ^ -(n & 1))
        except IndexError:
            return None
        et, it = out
        if p != len(tail) or not min_et <= et < max_et or not 0 <= it <= max_it:
            return None
        return (et, it)

    def decode(data: bytes) -> tuple[Any, ...]:
        if not data.startswith(header):
            return slow(data)
        try:
            b = data[10]
            if b & 0x81:  # source: length must be a one-byte, non-negative zigzag varint
                return slow(data)
            p = 11 + (b >> 1)
            b = data[p]
            if b & 0x81:  # symbol
                return slow(data)
            p += 1 + (b >> 1)
            b = data[p]
            if b & 0x81 or (b >> 1) > 6:  # metric: enum index 0..6
                return slow(data)
            p += 1
            key = data[_HEADER_LEN:p]
            try:
                prefix = prefixes[key]
            except KeyError:
                prefix = prefix_of(key)
                if len(prefixes) < _PREFIX_CACHE_MAX:
                    prefixes[key] = prefix
            if prefix is None:
                return slow(data)
            value = unpack(data, p)[0]
        except (IndexError, struct.error):
            return slow(data)
        if value - value != 0.0:  # NaN or infinite
            return slow(data)
        tail = data[p + 8:]
        try:
            times = tails[tail]
        except KeyError:
            times = times_of(tail)
            if len(tails) >= _TAIL_CACHE_MAX:
                tails.clear()
            tails[tail] = times
        if times is None:
            return slow(data)
        return (prefix[0], prefix[1], prefix[2], times[0], value, times[1])

    return decode


def rows_to_arrow(rows: list[tuple[Any, ...]]) -> pa.Table:
    """The table from :func:`row_decoder` tuples: one transpose, then one array per column."""
    # lists, not the tuples zip gives: pa.array converts a tuple ~15x slower
    source, symbol, metric, event_time, value, ingest_time = map(list, zip(*rows, strict=True))
    return pa.Table.from_arrays(
        [
            pa.array(source, pa.string()),
            pa.array(symbol, pa.string()),
            pa.array(metric, pa.string()),
            pa.array(event_time, _TS),
            pa.array(value, pa.float64()),
            pa.array(ingest_time, _TS),
        ],
        schema=_SCHEMA,
    )


class ClickHouseSink:
    """Stores batches in ``<database>.metric_points``. One instance per member;
    the ClickHouse client is shared by every member of the process."""

    def __init__(self, client: Any, database: str, *, telemetry: Telemetry | None = None,
                 group_id: str = "", table: str = TABLE) -> None:
        self._client = client
        self._db = database
        self._table = table
        self.telemetry = telemetry or Telemetry()
        self._labels = {"group": group_id, "table": table}

    def on_assigned(self, partitions: list[TopicPartitionId]) -> None:
        pass  # stateless per partition: nothing to load

    def on_revoked(self, partitions: list[TopicPartitionId]) -> None:
        pass  # every handled batch is already durable

    def handle(self, batch: Batch) -> None:
        stored = 0
        started = time.perf_counter()
        for pb in batch.partitions.values():
            if pb.rows:
                table = rows_to_arrow(pb.rows)
            elif pb.records:
                table = to_arrow(pb.records)
            else:
                continue
            try:
                self._client.insert_arrow(
                    self._table, table, database=self._db,
                    settings={"insert_deduplication_token": pb.dedup_token},
                )
            except Exception as exc:
                self.telemetry.inc("store_failures", 1, self._labels)
                raise StoreUnavailableError(
                    f"insert into {self._db}.{self._table} failed ({pb.dedup_token}): {exc}"
                ) from exc
            stored += table.num_rows
        self.telemetry.inc("records_stored", stored, self._labels)
        log.debug("batch stored", extra={"rows": stored, "seconds": round(time.perf_counter() - started, 4),
                                         "attempt": batch.attempts})

    def close(self) -> None:
        pass  # the client belongs to the process, not to a member
