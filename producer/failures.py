"""What goes wrong at each of the producer's edges, sorted once per edge.

The producer talks to three things it does not control: Binance REST, the
Binance websocket, and Kafka. Each edge has one ``classify_*`` function here,
and the code at the edge (``producer.rest``, ``producer.ws_protocol``,
``producer.publisher``) acts on its answer and nothing else, so the table in
docs/producer.md ("Failures by edge") and the behaviour cannot drift apart.

Every answer maps to one of three dispositions (:data:`DISPOSITION`):

- **transient**: the world will fix it (a server restarts, a limit resets).
  Retry with backoff or pause, count every occurrence, log at most once per
  interval (``service.logs.RateLimitedLog``).
- **permanent**: retrying cannot help (a wrong URL, a region block, missing
  authorisation). Stop with a :class:`~producer.exceptions.PermanentFailure`
  that names the cause; the process exits non-zero, so a supervisor restart
  loop makes it visible instead of a silent retry loop that runs for weeks.
- **data**: one item is bad (a symbol Binance does not know, a message Kafka
  will never take). Drop that item, count it with its reason, log a sample,
  and keep going with everything else.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Final

from confluent_kafka import KafkaError


class Disposition(StrEnum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"
    DATA = "data"


# -- Binance REST ---------------------------------------------------------------------------


class RestFault(StrEnum):
    """What a non-2xx REST answer (or no answer) means for the caller."""

    #: 5xx, 408, timeout, connection error, or a "try later" Binance code: back off, retry.
    RETRY = "retry"
    #: 429: every REST call pauses for Retry-After; the request is retried after it.
    RATE_LIMITED = "rate_limited"
    #: 418: the IP is banned; no REST call at all until Retry-After has passed.
    BANNED = "banned"
    #: 403: Binance's web application firewall blocks us (a rate or security rule);
    #: pause like a ban, then try again.
    BLOCKED = "blocked"
    #: Another 4xx: this request is wrong (an unknown symbol, a bad parameter). For a
    #: per-symbol request the symbol is dropped; for a listing request it is permanent.
    REFUSED = "refused"
    #: 401/404/405/410/451: the endpoint itself refuses us (wrong base URL, region
    #: restriction). No request to it can succeed: stop.
    PERMANENT = "permanent"


#: HTTP statuses that mean "Binance or a gateway has trouble": retried with backoff.
RETRYABLE_HTTP_STATUSES: Final = frozenset({408, 500, 502, 503, 504})
#: 4xx statuses about the endpoint rather than the request.
ENDPOINT_HTTP_STATUSES: Final = frozenset({401, 404, 405, 410, 451})
#: Binance error codes that mean "try again later" rather than "your request is
#: wrong": UNKNOWN (-1000), DISCONNECTED (-1001), TOO_MANY_REQUESTS (-1003),
#: TIMEOUT (-1007), SERVER_BUSY (-1008).
RETRYABLE_ERROR_CODES: Final = frozenset({-1000, -1001, -1003, -1007, -1008})

REST_DISPOSITION: Final[dict[RestFault, Disposition]] = {
    RestFault.RETRY: Disposition.TRANSIENT,
    RestFault.RATE_LIMITED: Disposition.TRANSIENT,
    RestFault.BANNED: Disposition.TRANSIENT,
    RestFault.BLOCKED: Disposition.TRANSIENT,
    RestFault.REFUSED: Disposition.DATA,
    RestFault.PERMANENT: Disposition.PERMANENT,
}


def binance_error_code(body: str | bytes) -> int | None:
    """The ``code`` of a Binance error body (``{"code": -1121, "msg": ...}``), if it has one."""
    try:
        doc: Any = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    code = doc.get("code") if isinstance(doc, dict) else None
    return code if type(code) is int else None


def classify_rest(status: int, code: int | None = None) -> RestFault | None:
    """``None`` for a 2xx answer, otherwise what the answer means.

    ``status`` 0 stands for "no HTTP answer" (timeout, refused or reset
    connection, DNS failure); ``code`` is the Binance error code of the body.
    """
    if 200 <= status < 300:
        return None
    if status == 0 or status in RETRYABLE_HTTP_STATUSES or status >= 500:
        return RestFault.RETRY
    if status == 429:
        return RestFault.RATE_LIMITED
    if status == 418:
        return RestFault.BANNED
    if status == 403:
        return RestFault.BLOCKED
    if status in ENDPOINT_HTTP_STATUSES:
        return RestFault.PERMANENT
    if code in RETRYABLE_ERROR_CODES:
        return RestFault.RETRY
    if 400 <= status < 500:
        return RestFault.REFUSED
    # 1xx/3xx: aiohttp follows redirects, so one left over is a misconfigured base URL.
    return RestFault.PERMANENT


# -- Binance websocket ------------------------------------------------------------------------


class HandshakeFault(StrEnum):
    """What a failed websocket opening handshake means."""

    #: No HTTP answer (refused, reset, timeout, DNS), 408, 5xx: reconnect with backoff.
    RETRY = "retry"
    #: 429/418/403: too many connection attempts or a firewall rule; wait at least
    #: Retry-After (or :data:`RATE_LIMITED_HANDSHAKE_WAIT`), then reconnect.
    RATE_LIMITED = "rate_limited"
    #: Any other 4xx (404 wrong path, 451 region block, ...) or an invalid URL: stop.
    PERMANENT = "permanent"


#: Shortest wait after a 429/418/403 handshake answer without Retry-After.
RATE_LIMITED_HANDSHAKE_WAIT: Final = 60.0

HANDSHAKE_DISPOSITION: Final[dict[HandshakeFault, Disposition]] = {
    HandshakeFault.RETRY: Disposition.TRANSIENT,
    HandshakeFault.RATE_LIMITED: Disposition.TRANSIENT,
    HandshakeFault.PERMANENT: Disposition.PERMANENT,
}


def classify_handshake(status: int | None, kind: str = "") -> HandshakeFault:
    """``status`` is the HTTP status the server answered instead of 101 (None: no
    answer); ``kind`` the exception's class name (``InvalidURI`` is a config error)."""
    if kind == "InvalidURI":
        return HandshakeFault.PERMANENT
    if status is None or status == 408 or status >= 500:
        return HandshakeFault.RETRY
    if status in (403, 418, 429):
        return HandshakeFault.RATE_LIMITED
    if 400 <= status < 500:
        return HandshakeFault.PERMANENT
    return HandshakeFault.RETRY  # a 1xx/2xx/3xx instead of 101: a confused proxy, try again


#: Close codes that say the client did something wrong (rate limits broken, a frame
#: too big for ``max_size``, a protocol error): still reconnected, but logged at ERROR
#: because they will recur until somebody looks.
SUSPICIOUS_CLOSE_CODES: Final = frozenset({1002, 1003, 1007, 1008, 1009})


def close_is_suspicious(code: int | None) -> bool:
    """Every close is transient (reconnect, re-subscribe); some deserve an ERROR line."""
    return code in SUSPICIOUS_CLOSE_CODES


# -- Kafka produce ----------------------------------------------------------------------------


class KafkaFault(StrEnum):
    """What a librdkafka error (delivery report, error callback, produce()) means."""

    #: The broker is away, a leader moves, a delivery timed out, a purge: keep the
    #: message and enqueue it again.
    RETRY = "retry"
    #: This message can never be stored (too large, invalid): drop it, count it with
    #: its reason, log the key.
    REJECTED = "rejected"
    #: The idempotent producer's state is broken (e.g. the broker lost our producer
    #: id): a new client takes over everything the old one held. Bounded: too many
    #: in a row is :attr:`FATAL`.
    RECREATE = "recreate"
    #: Authentication, authorisation, an invalid topic: nothing will ever be
    #: delivered. Stop with the error; exit non-zero.
    FATAL = "fatal"


KAFKA_REJECTED_CODES: Final = frozenset({
    KafkaError.MSG_SIZE_TOO_LARGE,
    KafkaError.INVALID_MSG,
    KafkaError.INVALID_MSG_SIZE,
    KafkaError.RECORD_LIST_TOO_LARGE,
    KafkaError.INVALID_RECORD,
    KafkaError._INVALID_ARG,
})
KAFKA_FATAL_CODES: Final = frozenset({
    KafkaError.TOPIC_AUTHORIZATION_FAILED,
    KafkaError.CLUSTER_AUTHORIZATION_FAILED,
    KafkaError.TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
    KafkaError.SASL_AUTHENTICATION_FAILED,
    KafkaError.UNSUPPORTED_SASL_MECHANISM,
    KafkaError.ILLEGAL_SASL_STATE,
    KafkaError._AUTHENTICATION,
    KafkaError.TOPIC_EXCEPTION,
    KafkaError.INVALID_REQUIRED_ACKS,
    KafkaError.INVALID_CONFIG,
    KafkaError.POLICY_VIOLATION,
})
#: At most this many client recreations within :data:`KAFKA_RECREATE_WINDOW` seconds;
#: one more is fatal (a broker that keeps breaking idempotence is a broken cluster).
KAFKA_MAX_RECREATES: Final = 5
KAFKA_RECREATE_WINDOW: Final = 300.0

KAFKA_DISPOSITION: Final[dict[KafkaFault, Disposition]] = {
    KafkaFault.RETRY: Disposition.TRANSIENT,
    KafkaFault.REJECTED: Disposition.DATA,
    KafkaFault.RECREATE: Disposition.TRANSIENT,
    KafkaFault.FATAL: Disposition.PERMANENT,
}


def classify_kafka(err: KafkaError) -> KafkaFault:
    code = err.code()
    if code in KAFKA_FATAL_CODES:
        return KafkaFault.FATAL
    if err.fatal() or code == KafkaError._FATAL:
        return KafkaFault.RECREATE
    if code in KAFKA_REJECTED_CODES:
        return KafkaFault.REJECTED
    return KafkaFault.RETRY


def kafka_reason(err: KafkaError) -> str:
    """A counter label for a librdkafka error: ``msg_timed_out``, ``topic_authorization_failed``."""
    return str(err.name()).lower().lstrip("_")
