"""The failure tables of the producer's edges (docs/producer.md, "Failures by edge"),
and what the REST poller and the Kafka publisher do with each class."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from confluent_kafka import KafkaError

from perpstream.producer.exceptions import FrameRejected, PermanentFailure, RestError
from perpstream.producer.failures import (
    HANDSHAKE_DISPOSITION,
    KAFKA_DISPOSITION,
    KAFKA_MAX_RECREATES,
    REST_DISPOSITION,
    Disposition,
    HandshakeFault,
    KafkaFault,
    RestFault,
    binance_error_code,
    classify_handshake,
    classify_kafka,
    classify_rest,
    close_is_suspicious,
)
from perpstream.producer.live import LiveSource
from perpstream.producer.publisher import Publisher, producer_config
from perpstream.producer.rest import OpenInterestPoller
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime.backoff import factory
from perpstream.runtime.telemetry import Telemetry

# -- Binance REST ---------------------------------------------------------------------------------


@pytest.mark.parametrize("status,code,fault", [
    (200, None, None),
    (0, None, RestFault.RETRY),  # timeout / connection error
    (500, -1000, RestFault.RETRY),
    (502, None, RestFault.RETRY),
    (503, None, RestFault.RETRY),
    (504, None, RestFault.RETRY),
    (599, None, RestFault.RETRY),
    (408, None, RestFault.RETRY),
    (429, -1003, RestFault.RATE_LIMITED),
    (418, -1003, RestFault.BANNED),
    (403, None, RestFault.BLOCKED),
    (400, -1121, RestFault.REFUSED),  # Invalid symbol
    (400, -1100, RestFault.REFUSED),  # illegal characters in a parameter
    (400, None, RestFault.REFUSED),
    (400, -1001, RestFault.RETRY),  # DISCONNECTED: internal error, try again
    (400, -1008, RestFault.RETRY),  # SERVER_BUSY
    (404, None, RestFault.PERMANENT),
    (401, None, RestFault.PERMANENT),
    (405, None, RestFault.PERMANENT),
    (410, None, RestFault.PERMANENT),
    (451, None, RestFault.PERMANENT),  # restricted region
    (301, None, RestFault.PERMANENT),
])
def test_rest_table(status: int, code: int | None, fault: RestFault | None) -> None:
    assert classify_rest(status, code) == fault


def test_every_rest_fault_has_a_disposition() -> None:
    assert set(REST_DISPOSITION) == set(RestFault)
    assert REST_DISPOSITION[RestFault.PERMANENT] is Disposition.PERMANENT
    assert REST_DISPOSITION[RestFault.REFUSED] is Disposition.DATA


@pytest.mark.parametrize("body,code", [
    ('{"code":-1121,"msg":"Invalid symbol."}', -1121),
    (b'{"code":-1003,"msg":"Too many requests"}', -1003),
    ("<html>502 Bad Gateway</html>", None),
    ('{"code":"x"}', None),
    ("[1]", None),
    (b"\xff\xfe", None),
])
def test_binance_error_code_from_any_body(body: str | bytes, code: int | None) -> None:
    assert binance_error_code(body) == code


# -- Binance websocket ----------------------------------------------------------------------------


@pytest.mark.parametrize("status,kind,fault", [
    (None, "ConnectionRefusedError", HandshakeFault.RETRY),
    (None, "TimeoutError", HandshakeFault.RETRY),
    (None, "InvalidMessage", HandshakeFault.RETRY),  # the server hung up mid-handshake
    (500, "InvalidStatus", HandshakeFault.RETRY),
    (503, "InvalidStatus", HandshakeFault.RETRY),
    (408, "InvalidStatus", HandshakeFault.RETRY),
    (429, "InvalidStatus", HandshakeFault.RATE_LIMITED),
    (418, "InvalidStatus", HandshakeFault.RATE_LIMITED),
    (403, "InvalidStatus", HandshakeFault.RATE_LIMITED),
    (400, "InvalidStatus", HandshakeFault.PERMANENT),
    (404, "InvalidStatus", HandshakeFault.PERMANENT),
    (451, "InvalidStatus", HandshakeFault.PERMANENT),
    (None, "InvalidURI", HandshakeFault.PERMANENT),
    (200, "InvalidStatus", HandshakeFault.RETRY),
])
def test_handshake_table(status: int | None, kind: str, fault: HandshakeFault) -> None:
    assert classify_handshake(status, kind) is fault
    assert HANDSHAKE_DISPOSITION[fault] in (Disposition.TRANSIENT, Disposition.PERMANENT)


def test_close_codes_that_deserve_an_error_line() -> None:
    assert [c for c in (None, 1000, 1001, 1006, 1008, 1009, 1011, 1012, 1013) if close_is_suspicious(c)] \
        == [1008, 1009]


# -- Kafka ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("code,fatal,fault", [
    (KafkaError._MSG_TIMED_OUT, False, KafkaFault.RETRY),
    (KafkaError._TRANSPORT, False, KafkaFault.RETRY),
    (KafkaError._ALL_BROKERS_DOWN, False, KafkaFault.RETRY),
    (KafkaError.NOT_ENOUGH_REPLICAS, False, KafkaFault.RETRY),
    (KafkaError.LEADER_NOT_AVAILABLE, False, KafkaFault.RETRY),
    (KafkaError._UNKNOWN_PARTITION, False, KafkaFault.RETRY),
    (KafkaError._PURGE_QUEUE, False, KafkaFault.RETRY),
    (KafkaError._QUEUE_FULL, False, KafkaFault.RETRY),
    (KafkaError.MSG_SIZE_TOO_LARGE, False, KafkaFault.REJECTED),
    (KafkaError.INVALID_RECORD, False, KafkaFault.REJECTED),
    (KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, True, KafkaFault.RECREATE),
    (KafkaError.UNKNOWN_PRODUCER_ID, True, KafkaFault.RECREATE),
    (KafkaError.TOPIC_AUTHORIZATION_FAILED, False, KafkaFault.FATAL),
    (KafkaError.CLUSTER_AUTHORIZATION_FAILED, False, KafkaFault.FATAL),
    (KafkaError.SASL_AUTHENTICATION_FAILED, False, KafkaFault.FATAL),
    (KafkaError._AUTHENTICATION, False, KafkaFault.FATAL),
    (KafkaError.TOPIC_EXCEPTION, False, KafkaFault.FATAL),  # invalid topic name
])
def test_kafka_table(code: int, fatal: bool, fault: KafkaFault) -> None:
    assert classify_kafka(KafkaError(code, "x", fatal=fatal)) is fault
    assert set(KAFKA_DISPOSITION) == set(KafkaFault)


class _Msg:
    def __init__(self, key: bytes, value: bytes) -> None:
        self._k, self._v = key, value

    def key(self) -> bytes:
        return self._k

    def value(self) -> bytes:
        return self._v


def publisher(clock: Any = None, order_key: Any = None) -> tuple[Publisher, Telemetry]:
    telemetry = Telemetry()
    cfg = producer_config("127.0.0.1:1", extra={"log_level": 0})
    kw: dict[str, Any] = {"clock": clock} if clock is not None else {}
    if order_key is not None:
        kw["order_key"] = order_key
    return Publisher(cfg, "t", telemetry, **kw), telemetry


def test_delivery_outcomes_retry_drop_or_stop() -> None:
    pub, telemetry = publisher()
    try:
        pub._on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), _Msg(b"BTCUSDT", b"v1"))
        assert pub._returned == [(b"BTCUSDT", b"v1")] and telemetry.total("delivery_retries") == 1
        pub._on_delivery(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), _Msg("币安人生USDT".encode(), b"v2"))
        assert telemetry.get("points_dropped", {"reason": "msg_size_too_large"}) == 1
        assert pub.failure is None
        pub._on_delivery(KafkaError(KafkaError.TOPIC_AUTHORIZATION_FAILED, "denied"), _Msg(b"K", b"v3"))
        assert isinstance(pub.failure, PermanentFailure) and pub.failure.edge == "kafka"
        assert "topic_authorization_failed" in pub.failure.cause
        assert (b"K", b"v3") in pub._returned  # kept: counted at stop if never delivered
    finally:
        pub.close(0.1)


def test_what_a_client_gives_back_is_resent_first_in_event_time_order() -> None:
    """Given-back messages are older than any point waiting in the overflow: they go in
    front of it, sorted by the order key (librdkafka hands in-flight ones back last)."""
    pub, _ = publisher(order_key=lambda v: int(v))
    try:
        pub._overflow.extend([(b"A", b"50"), (b"A", b"60")])  # arrived while the queue was full
        for v in (b"30", b"40", b"10", b"20"):  # queued ones first, then the in-flight ones
            pub._on_delivery(KafkaError(KafkaError._PURGE_QUEUE), _Msg(b"A", v))
        pub._requeue_returned()
        assert [int(v) for _, v in pub._overflow] == [10, 20, 30, 40, 50, 60]
        assert pub.pending == 6 + len(pub._producer)
    finally:
        pub.close(0.1)


def test_a_timeout_retires_the_client_only_while_it_holds_newer_points() -> None:
    pub, telemetry = publisher(order_key=lambda v: int(v))
    try:
        pub.publish(b"A", b"1")
        pub._on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), _Msg(b"A", b"1"))
        # nothing newer in the client: no replacement, the point is re-sent (whatever events of
        # its own the client holds: its connection errors to the closed port are not points)
        pub.poll(0)
        assert telemetry.total("producer_recreated") == 0
        pub.publish(b"A", b"3")
        pub._on_delivery(KafkaError(KafkaError._MSG_TIMED_OUT), _Msg(b"A", b"1"))  # again, behind 3
        pub.poll(0)
        assert telemetry.get("producer_recreated", {"reason": "timeout"}) == 1
        assert not (pub._timed_out or pub._stalled) and pub._fatal is None
        assert not pub._returned and not pub._overflow  # 0, 1, 3 re-sent through the new client
        assert telemetry.total("points_dropped") == 0
    finally:
        pub.close(0.1)


def test_a_full_queue_after_a_timeout_holds_the_point_behind_what_timed_out() -> None:
    pub, _ = publisher()
    try:
        pub._timed_out = True  # reported by the poll inside publish(): the client is about to go
        pub._producer = _FullProducer(pub._producer)
        pub.publish(b"A", b"new")
        assert list(pub._overflow) == [(b"A", b"new")]
    finally:
        pub._producer = pub._producer.inner
        pub.close(0.1)


class _FullProducer:
    """A client whose queue is full: produce() raises BufferError."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def produce(self, *a: Any, **kw: Any) -> None:
        raise BufferError("Local: Queue full")

    def poll(self, timeout: float = 0) -> int:
        return 0

    def __len__(self) -> int:
        return len(self.inner)


def test_client_errors_transient_or_fatal() -> None:
    pub, telemetry = publisher()
    try:
        pub._on_error(KafkaError(KafkaError._ALL_BROKERS_DOWN, "down"))
        pub._on_error(KafkaError(KafkaError._TRANSPORT, "reset"))
        assert telemetry.total("kafka_errors") == 2 and pub.failure is None
        pub._on_error(KafkaError(KafkaError._AUTHENTICATION, "SASL authentication failed"))
        assert pub.failure is not None and "SASL" in pub.failure.cause
    finally:
        pub.close(0.1)


def test_a_producer_that_keeps_failing_fatally_is_not_recreated_forever() -> None:
    now = [0.0]
    pub, telemetry = publisher(clock=lambda: now[0])
    try:
        for i in range(KAFKA_MAX_RECREATES):
            now[0] = float(i)
            pub._fatal = KafkaError(KafkaError.UNKNOWN_PRODUCER_ID, "lost pid", fatal=True)
            pub._recreate()
            assert pub.failure is None
        assert telemetry.get("producer_recreated", {"reason": "fatal"}) == KAFKA_MAX_RECREATES
        pub._fatal = KafkaError(KafkaError.UNKNOWN_PRODUCER_ID, "lost pid", fatal=True)
        pub._recreate()
        assert pub.failure is not None and "fatally" in pub.failure.cause
        # once the window has passed, an occasional recreation is fine again
        pub2, _ = publisher(clock=lambda: now[0])
        for i in range(KAFKA_MAX_RECREATES + 2):
            now[0] = 1000.0 + i * 100.0
            pub2._fatal = KafkaError(KafkaError.UNKNOWN_PRODUCER_ID, "lost pid", fatal=True)
            pub2._recreate()
        assert pub2.failure is None
        pub2.close(0.1)
    finally:
        pub.close(0.1)


# -- the poller's use of the REST table -------------------------------------------------------------


class _Gate:
    min_spacing = 0.0


class _Rest:
    """Answers per symbol: a RestError to raise, or a body."""

    def __init__(self, answers: dict[str, RestError | str]) -> None:
        self.answers = answers
        self.gate = _Gate()
        self.calls: list[str] = []

    async def open_interest(self, symbol: str) -> str:
        self.calls.append(symbol)
        answer = self.answers[symbol]
        if isinstance(answer, RestError):
            raise answer
        return answer


class _Sink:
    congested = False

    def __init__(self) -> None:
        self.bodies: list[str] = []

    def on_ws_frame(self, raw: str | bytes, ingest_ms: int) -> None:
        raise AssertionError("no websocket here")

    def on_open_interest(self, raw: str | bytes, ingest_ms: int) -> None:
        self.bodies.append(str(raw))


async def _until(cond: Any, what: str, limit: float = 10.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not cond():
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.005)


def test_refused_symbol_is_dropped_and_the_others_keep_being_polled() -> None:
    body = '{"symbol":"BTCUSDT","openInterest":"1","time":1790000000000}'
    rest = _Rest({"BTCUSDT": body, "NOPEUSDT": RestError(400, "Invalid symbol.", code=-1121,
                                                          fault=RestFault.REFUSED)})
    sink, telemetry = _Sink(), Telemetry()
    poller = OpenInterestPoller(rest, sink, telemetry, factory(0.01, cap=0.05),  # type: ignore[arg-type]
                                interval=0.02)
    poller.set_symbols({"BTCUSDT", "NOPEUSDT"})

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(poller.run(stop))
        await _until(lambda: "NOPEUSDT" in poller.refused, "symbol dropped")
        n = len(sink.bodies)
        await _until(lambda: len(sink.bodies) >= n + 5, "polling goes on")
        stop.set()
        await task

    asyncio.run(main())
    assert rest.calls.count("NOPEUSDT") == 1 and poller.symbols == ["BTCUSDT"]
    assert telemetry.get("oi_symbols_dropped") == 1
    poller.set_symbols({"BTCUSDT", "NOPEUSDT"})  # still listed: stays dropped
    assert poller.symbols == ["BTCUSDT"]
    poller.set_symbols({"BTCUSDT"})
    poller.set_symbols({"BTCUSDT", "NOPEUSDT"})  # delisted and listed again: another chance
    assert poller.symbols == ["BTCUSDT", "NOPEUSDT"]


def test_endpoint_that_refuses_everything_stops_the_poller() -> None:
    rest = _Rest({"BTCUSDT": RestError(404, "Not Found", fault=RestFault.PERMANENT)})
    poller = OpenInterestPoller(rest, _Sink(), Telemetry(), factory(0.01, cap=0.05),  # type: ignore[arg-type]
                                interval=0.02)
    poller.set_symbols({"BTCUSDT"})

    async def main() -> None:
        async with asyncio.timeout(10):
            await poller.run(asyncio.Event())

    with pytest.raises(PermanentFailure, match="HTTP 404"):
        asyncio.run(main())


@pytest.mark.parametrize("body", ["[]", "null", '"x"', "5", "[" * 100_000, "{not json"])
def test_unusable_exchange_info_bodies_are_rejected_for_a_retry(body: str) -> None:
    """The listing task retries FrameRejected; nothing else may escape it."""
    class _Info:
        async def exchange_info(self) -> str:
            return body

    source = LiveSource(ProducerSettings(all_symbols=True), Telemetry())
    with pytest.raises(FrameRejected):
        asyncio.run(source._listing(_Info()))  # type: ignore[arg-type]
