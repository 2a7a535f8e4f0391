"""Errors the producer raises on purpose, all under :class:`PerpstreamError`."""

from __future__ import annotations

from schemas.exceptions import PerpstreamError


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
    """A REST call failed in a way the caller has to handle (status, retry hint)."""

    def __init__(self, status: int, message: str, retry_after: float | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status = status
        self.retry_after = retry_after
