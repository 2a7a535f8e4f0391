"""Errors of the snapshot consumer, under the consumers' root error."""

from __future__ import annotations

from consumers.exceptions import ConsumerError


class SnapshotError(ConsumerError):
    """Root of the snapshot consumer's errors."""


class SnapshotConfigError(SnapshotError):
    """Engine parameters that cannot work (non-positive interval, no windows...)."""


class RecoveryError(SnapshotError):
    """A partition's state could not be rebuilt from the persisted points."""
