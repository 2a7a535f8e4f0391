"""The DLQ writer: copies cut to fit, and a DLQ that is down never raises anything but DlqError.

The writer runs a real librdkafka producer pointed at a port nothing listens
on: that is a DLQ broker that is down. Oversized copies are the subject of
tests/integration/test_consumer_failures.py against a real broker.
"""

from __future__ import annotations

import time
from typing import Any

import pytest

from perpstream.consumers.exceptions import BackpressureError, DlqError
from perpstream.consumers.runtime.batch import Rejected
from perpstream.consumers.runtime.dlq import (
    DLQ_HEADER_DROPPED_HEADERS,
    DLQ_HEADER_ORIGINAL_KEY_SIZE,
    DLQ_HEADER_ORIGINAL_SIZE,
    DLQ_HEADER_TRUNCATED,
    DlqWriter,
    fit,
    wire_size,
)
from perpstream.schemas.topics import (
    DLQ_HEADER_ERROR,
    DLQ_HEADER_OFFSET,
    DLQ_HEADER_PARTITION,
    DLQ_HEADER_TOPIC,
)

DOWN = {"bootstrap.servers": "127.0.0.1:1", "message.timeout.ms": 60_000}


def rejected(value: bytes, *, key: bytes = b"k", headers: list[tuple[str, bytes]] | None = None,
             offset: int = 42) -> Rejected:
    return Rejected("metrics", 3, offset, key, value, headers, "bad magic byte 0x78", "bad_magic")


def test_a_copy_that_fits_is_sent_whole() -> None:
    rej = rejected(b"x" * 1_000, headers=[("origin", b"test")])
    key, value, headers, cut = fit(rej, "g", 100_000, "too large")
    assert not cut and value == rej.value and key == b"k"
    assert dict(headers)["origin"] == b"test" and DLQ_HEADER_ORIGINAL_SIZE not in dict(headers)


def test_a_large_value_is_cut_and_says_so() -> None:
    rej = rejected(bytes(range(256)) * 1_000, headers=[("origin", b"test")])  # 256,000 bytes
    key, value, headers, cut = fit(rej, "g", 50_000, "MSG_SIZE_TOO_LARGE: over 50000")
    h = dict(headers)
    assert cut and value is not None and rej.value is not None
    assert value == rej.value[:len(value)] and 45_000 < len(value) < 50_000
    assert wire_size(key, value, headers) <= 50_000
    assert h[DLQ_HEADER_ORIGINAL_SIZE] == b"256000"
    assert h[DLQ_HEADER_TRUNCATED].startswith(b"MSG_SIZE_TOO_LARGE: over 50000: value cut from 256000 to ")
    assert (h[DLQ_HEADER_TOPIC], h[DLQ_HEADER_PARTITION], h[DLQ_HEADER_OFFSET]) == (b"metrics", b"3", b"42")
    assert h[DLQ_HEADER_ERROR] == b"bad magic byte 0x78" and h["origin"] == b"test"


def test_huge_headers_and_key_are_left_out_before_giving_up() -> None:
    rej = rejected(b"v" * 10_000, key=b"K" * 5_000, headers=[("big", b"h" * 40_000), ("small", b"s")])
    key, value, headers, cut = fit(rej, "g", 20_000, "too large")
    h = dict(headers)
    assert cut and key == b"K" * 256 and "big" not in h and "small" not in h
    assert h[DLQ_HEADER_DROPPED_HEADERS] == b"2" and h[DLQ_HEADER_ORIGINAL_KEY_SIZE] == b"5000"
    assert value == b"v" * 10_000  # the value fits once the headers are gone
    assert wire_size(key, value, headers) <= 20_000
    # librdkafka's smallest message.max.bytes still yields a copy: a prefix of the value
    key, value, headers, cut = fit(rej, "g", 1_000, "too large")
    assert cut and value is not None and b"v" * 10_000 != value == b"v" * len(value)
    assert wire_size(key, value, headers) <= 1_000
    assert dict(headers)[DLQ_HEADER_ORIGINAL_SIZE] == b"10000"
    # and a long error text is shortened rather than leaving no room at all
    long = Rejected("metrics", 3, 42, b"k", b"v" * 100, None, "e" * 5_000, "truncated")
    key, value, headers, cut = fit(long, "g", 1_000, "too large")
    assert cut and wire_size(key, value, headers) <= 1_000 and len(dict(headers)[DLQ_HEADER_ERROR]) == 200


def test_a_dlq_that_is_down_is_backpressure_and_nothing_is_sent_twice() -> None:
    writer = DlqWriter(DOWN, "dlq", "g")
    produced: list[int] = []  # copies handed to librdkafka (its own len() counts requests too)
    inner = writer._produce_waiting

    def counting(rej: Any, *args: Any, **kwargs: Any) -> Any:
        produced.append(rej.offset)
        return inner(rej, *args, **kwargs)

    writer._produce_waiting = counting  # type: ignore[method-assign]
    recs = [rejected(b"a", offset=1), rejected(b"b" * 200_000, offset=2)]
    served: list[float] = []
    started = time.monotonic()
    with pytest.raises(DlqError) as caught:
        writer.send(recs, timeout=1.0, serve=served.append)
    assert isinstance(caught.value, BackpressureError)  # the loop pauses and retries; it never stops
    assert time.monotonic() - started < 10
    assert served, "the consumer was served while the DLQ was waited for"
    assert [r.dlq_state for r in recs] == ["in_flight", "in_flight"]
    assert produced == [1, 2]
    with pytest.raises(DlqError, match="0/2 acknowledged, 2 in flight"):
        writer.send(recs, timeout=0.5)
    assert produced == [1, 2]  # a retry waits for the copies in flight, it does not add more
    writer.close(0)


def test_a_full_producer_queue_has_a_deadline_and_keeps_serving() -> None:
    writer = DlqWriter({**DOWN, "queue.buffering.max.messages": 1}, "dlq", "g", buffer_wait=0.5)
    recs = [rejected(b"a", offset=1), rejected(b"b", offset=2)]
    served: list[float] = []
    started = time.monotonic()
    with pytest.raises(DlqError, match="queue still full"):
        writer.send(recs, timeout=30.0, serve=served.append)
    assert time.monotonic() - started < 5
    assert len(served) >= 3
    assert [r.dlq_state for r in recs] == ["in_flight", ""]
    writer.close(0)


def test_the_dlq_producer_limit_comes_from_its_config() -> None:
    assert DlqWriter(DOWN, "dlq", "g").max_message_bytes == 1_000_000
    writer = DlqWriter({**DOWN, "message.max.bytes": 65_536}, "dlq", "g")
    assert writer.max_message_bytes == 65_536
    rec = rejected(b"z" * 300_000)
    with pytest.raises(DlqError):
        writer.send([rec], timeout=0.2)
    assert rec.dlq_state == "in_flight"  # cut to fit and queued: librdkafka accepted it
    writer.close(0)
