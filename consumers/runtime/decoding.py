"""Decoding on the consumer hot path, shared by every consumer group.

:func:`row_decoder` returns a ``bytes -> tuple`` that decodes *and* checks a
MetricPoint (:func:`~schemas.models.check_metric_point`) in one call, reading the Avro body by hand
for the current schema. The sink and the snapshot consumer both use it, so
both groups accept and reject exactly the same records.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from perpstream.schemas import rules
from perpstream.schemas.avro_binary import METRIC_POINT_LAYOUT, enum_symbols, field_layout, read_long
from perpstream.schemas.codec import AvroCodec, Framing
from perpstream.schemas.columns import METRIC_POINT_COLUMNS
from perpstream.schemas.models import KNOWN_METRICS, check_metric_point

_HEADER_LEN = 10

#: Order of the tuples :func:`row_decoder` returns (the column order of ``metric_points``).
ROW_FIELDS = tuple(c.name for c in METRIC_POINT_COLUMNS)

_PREFIX_CACHE_MAX = 100_000
_TAIL_CACHE_MAX = 4_096
#: Longest (event_time, ingest_time) suffix the fast path reads: two varints of up to 9 bytes.
#: Anything longer goes to the slow path uncached, so hostile tails cannot fill the cache.
_TAIL_MAX = 18


def _as_row(record: dict[str, Any]) -> tuple[Any, ...]:
    return (record["source"], record["symbol"], record["metric"], record["event_time"],
            record["value"], record["ingest_time"])


def row_decoder(codec: AvroCodec) -> Callable[[bytes], tuple[Any, ...]]:
    """``bytes -> row`` (see :data:`ROW_FIELDS`): decode plus the contract check in one call.

    For single-object records written with the reader's own schema, when that
    schema has the MetricPoint field layout this was written for
    (:data:`~schemas.avro_binary.METRIC_POINT_LAYOUT`; the metric enum's
    symbols are read from the schema itself), the Avro body is read by hand and checked against
    conservative versions of the contract's rules; the (source, symbol, metric)
    prefix and the (event_time, ingest_time) suffix are cached with their
    verdicts, since they repeat. Anything else — other
    framings or writer schemas, corrupt or truncated bytes, any record a check
    does not clearly pass — goes through ``codec.decode`` and ``check_metric_point``,
    so results and errors (types and reasons) are exactly theirs.
    """
    slow_decode = codec.decode

    def slow(data: bytes) -> tuple[Any, ...]:
        rec = slow_decode(data)
        check_metric_point(rec)
        return _as_row(rec)

    # Long: the fast path is one closure over locals (layouts, caches, unpackers): it runs once per
    # record of every consumer, and `perpstream bench sink` measures it (docs/sink.md, "Benchmark").
    definition = codec.reader.definition
    if codec.framing is not Framing.SINGLE_OBJECT or field_layout(definition) != METRIC_POINT_LAYOUT:
        return slow
    header = codec.header()
    unpack = struct.Struct("<d").unpack_from
    metric_symbols = enum_symbols(definition, "metric")
    known = [m in KNOWN_METRICS for m in metric_symbols]
    # metrics whose value must be > 0 as well as finite (rules.value_problem)
    positive = [m in rules.POSITIVE_METRICS for m in metric_symbols]
    n_metrics = len(metric_symbols)
    # prefix bytes (source, symbol, metric) -> (source, symbol, metric, value must be > 0),
    # or None: use the slow path
    prefixes: dict[bytes, tuple[str, str, str, bool] | None] = {}
    # last bytes (event_time, ingest_time) -> both, or None: the points of one
    # exchange frame share them, so a small cache cleared when full hits often
    tails: dict[bytes, tuple[int, int] | None] = {}
    symbol_problem, source_problem = rules.symbol_problem, rules.source_problem
    min_et, max_et = rules.MIN_EVENT_TIME_MS, rules.MAX_EVENT_TIME_MS
    min_it, max_it = rules.MIN_INGEST_TIME_MS, rules.MAX_INGEST_TIME_MS

    def prefix_of(raw: bytes) -> tuple[str, str, str, bool] | None:
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
        # the symbol rule is per source (docs/contract.md, "Symbols"); the bytes keyed here hold both
        if idx >= n_metrics or not known[idx] or symbol_problem(symbol, source) or source_problem(source):
            return None
        return (source, symbol, metric_symbols[idx], positive[idx])

    def times_of(tail: bytes) -> tuple[int, int] | None:
        # tail = event_time, ingest_time: zigzag varints of at most 9 bytes, nothing after
        try:
            et, p = read_long(tail, 0)
            it, end = read_long(tail, p)
        except (IndexError, ValueError):
            return None
        if p > 9 or end - p > 9:  # 10-byte varints: let fastavro decide how 64 bits wrap
            return None
        if end != len(tail) or not min_et <= et < max_et or not min_it <= it <= max_it:
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
            if b & 0x81 or (b >> 1) >= n_metrics:  # metric: a one-byte enum index
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
        # NaN or infinite, or not > 0 for a metric whose rule wants that (rules.value_problem)
        if value - value != 0.0 or (prefix[3] and not value > 0.0):
            return slow(data)
        tail = data[p + 8:]
        if len(tail) > _TAIL_MAX:  # two longs are at most 2 x 9 bytes here: the slow path decides
            return slow(data)
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
