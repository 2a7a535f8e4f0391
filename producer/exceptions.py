"""Errors the producer raises on purpose, all under :class:`PerpstreamError`."""

from __future__ import annotations

from perpstream.errors import PerpstreamError
from perpstream.producer.failures import RestFault


class ProducerError(PerpstreamError):
    """Root of the producer's own errors."""


class FrameRejected(ProducerError):
    """A frame (or one item of it) that cannot become MetricPoints.

    ``reason`` is a short stable label used as the ``reason`` label of the
    ``frames_rejected`` counter; the message says what exactly was wrong.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class RestError(ProducerError):
    """A REST call failed in a way the caller has to handle.

    ``status`` is the HTTP status (0: no answer at all), ``code`` the Binance
    error code of the body if it had one, ``fault`` what
    :func:`producer.failures.classify_rest` makes of them.
    """

    def __init__(self, status: int, message: str, retry_after: float | None = None, *,
                 code: int | None = None, fault: RestFault = RestFault.RETRY) -> None:
        super().__init__(f"HTTP {status}: {message}" if status else message)
        self.status = status
        self.retry_after = retry_after
        self.code = code
        self.fault = fault


class PermanentFailure(ProducerError):
    """A fault retrying cannot fix (see ``producer.failures``): the producer stops and
    exits non-zero. ``edge`` says where (``binance_rest``, ``binance_websocket``,
    ``kafka``), ``cause`` what happened, in words an operator can act on."""

    def __init__(self, edge: str, cause: str) -> None:
        super().__init__(f"{edge}: {cause}")
        self.edge = edge
        self.cause = cause
