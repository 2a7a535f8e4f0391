"""Errors of the snapshot consumer, under the consumers' root error."""

from __future__ import annotations

from perpstream.consumers.exceptions import ConsumerError
from perpstream.errors import ConfigError


class SnapshotError(ConsumerError):
    """Root of the snapshot consumer's errors."""


class SnapshotConfigError(SnapshotError, ConfigError):
    """Engine parameters that cannot work (non-positive interval, no windows...)."""
