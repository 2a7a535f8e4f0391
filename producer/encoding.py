"""MetricPoint Avro bodies written without a general-purpose serializer.

The producer's hot path is normalise -> encode -> produce, and Python time per
event is the limit (docs/contract.md, "Fast paths"). A MetricPoint body is
``string source, string symbol, enum metric, double value, long event_time,
long ingest_time``: the first two fields repeat for every point of a symbol,
the metric is one byte, and the two longs are shared by all points of a frame.
:class:`MetricPointEncoder` caches those pieces and writes the rest with one
``struct.pack``, several times cheaper than ``fastavro.schemaless_writer``.

The frame path goes one step further (:meth:`MetricPointEncoder.heads`,
:meth:`MetricPointEncoder.bodies`): the bytes up to the value are cached per
symbol and metric, so a point costs one pack and two concatenations, and no
record dict is built (docs/producer.md, "Frame path cost").

It is only used when the codec's schema has exactly that layout, and it checks
itself against fastavro on sample records when built; on any mismatch it falls
back to :meth:`AvroCodec.encode`, so a schema change can never make it write
wrong bytes silently.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from typing import Any

from perpstream.schemas.avro_binary import (
    METRIC_POINT_LAYOUT,
    avro_string,
    enum_symbols,
    field_layout,
    read_long,
    zigzag_varint,
)
from perpstream.schemas.codec import AvroCodec
from perpstream.schemas.models import Metric

_DOUBLE = struct.Struct("<d")

_SAMPLES: list[dict[str, Any]] = [
    {"source": "binance_usdm", "symbol": "BTCUSDT", "metric": Metric.MARK_PRICE,
     "value": 64240.38272864, "event_time": 1781419401002, "ingest_time": 1781419401017},
    {"source": "s", "symbol": "X" * 70, "metric": Metric.OPEN_INTEREST,
     "value": -0.0, "event_time": 0, "ingest_time": 2**62},
    {"source": "binance_usdm", "symbol": "1000PEPEUSDT", "metric": Metric.FUNDING_RATE,
     "value": -6.042e-05, "event_time": 63, "ingest_time": 64},
]


class MetricPointEncoder:
    """``encode(record) -> bytes`` for MetricPoint records, header included."""

    def __init__(self, codec: AvroCodec) -> None:
        self._header = codec.header()
        self._prefix: dict[tuple[str, str], bytes] = {}
        self._last_times: tuple[int, int] = (-1, -1)
        self._last_times_bytes = b""
        definition = codec.reader.definition
        self.fast = field_layout(definition) == METRIC_POINT_LAYOUT
        if self.fast:
            symbols = enum_symbols(definition, "metric")
            self._metric = {name: zigzag_varint(i) for i, name in enumerate(symbols)}
            self.fast = all(self._fast(r) == codec.encode(r) for r in _SAMPLES)
        self.encode: Callable[[dict[str, Any]], bytes] = self._fast if self.fast else codec.encode
        self._decode = codec.decode

    def event_time(self, value: bytes) -> int:
        """The event time of a value this encoder wrote: the order in which the publisher
        re-sends what a failed Kafka client gave back (producer.publisher). Reads only the
        fields before it (about 2 µs; a whole decode takes 17)."""
        if self.fast:
            try:
                pos = len(self._header)
                n, pos = read_long(value, pos)  # source
                n, pos = read_long(value, pos + n)  # symbol
                _, pos = read_long(value, pos + n)  # metric
                return read_long(value, pos + 8)[0]  # after the double value
            except (IndexError, ValueError):
                pass
        return int(self._decode(value)["event_time"])

    def heads(self, source: str, symbol: str, metrics: Sequence[str]) -> tuple[bytes, ...] | None:
        """What comes before the value in the body of each of ``metrics`` for ``symbol``
        (header, source, symbol, metric), for :meth:`bodies`; None when the fast path is
        off (the schema is not the layout it was written for): use :attr:`encode` then."""
        if not self.fast:
            return None
        prefix = self._header + avro_string(source) + avro_string(symbol)
        return tuple(prefix + self._metric[m] for m in metrics)

    def bodies(self, heads: tuple[bytes, ...], event_time: int, ingest_time: int,
               values: Sequence[float | None]) -> list[bytes]:
        """The bodies of the points of one observation: ``values[i]`` is the value of the
        metric ``heads[i]`` was made for, None for a metric it does not have; the same
        bytes :attr:`encode` writes for each point's record."""
        if event_time != self._last_times[0] or ingest_time != self._last_times[1]:
            self._last_times = (event_time, ingest_time)
            self._last_times_bytes = zigzag_varint(event_time) + zigzag_varint(ingest_time)
        times = self._last_times_bytes
        pack = _DOUBLE.pack
        return [h + pack(v) + times for h, v in zip(heads, values, strict=True) if v is not None]

    def _fast(self, r: dict[str, Any]) -> bytes:
        key = (r["source"], r["symbol"])
        prefix = self._prefix.get(key)
        if prefix is None:
            if len(self._prefix) > 100_000:  # symbols come and go over weeks
                self._prefix.clear()
            prefix = self._prefix[key] = self._header + avro_string(key[0]) + avro_string(key[1])
        times = (r["event_time"], r["ingest_time"])
        if times != self._last_times:
            self._last_times = times
            self._last_times_bytes = zigzag_varint(times[0]) + zigzag_varint(times[1])
        return prefix + self._metric[r["metric"]] + _DOUBLE.pack(r["value"]) + self._last_times_bytes
