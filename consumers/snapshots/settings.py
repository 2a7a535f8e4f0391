"""Settings of ``perpstream snapshots`` (``PERPSTREAM_*`` env vars, CLI flags on top)."""

from __future__ import annotations

from pydantic import Field

from perpstream.consumers.settings import ConsumerSettings
from perpstream.consumers.snapshots.engine import EngineConfig
from perpstream.schemas.topics import SNAPSHOTS_GROUP


class SnapshotSettings(ConsumerSettings):
    group_id: str = Field(default=SNAPSHOTS_GROUP, min_length=1)
    # Longer than the sink's: every batch costs an insert of its applied points (and the
    # snapshots wait for the watermark, allowed_lateness_ms, anyway); docs/snapshots.md, "Writes".
    batch_max_ms: int = Field(default=1_000, ge=1, description="longest wait to fill a batch")
    snapshot_checkpoint_interval_ms: int = Field(
        default=30_000, ge=0,
        description="at most one write of the snapshot checkpoints per this many ms (0 = every batch); "
        "after a crash the snapshots of up to this long are emitted again, with identical values",
    )
    snapshot_interval_ms: int = Field(default=5_000, gt=0, description="snapshot times are multiples of this")
    snapshot_windows_s: tuple[int, ...] = Field(
        default=(60, 300, 3600), min_length=1, description="window lengths W in seconds"
    )
    allowed_lateness_ms: int = Field(default=2_000, ge=0, description="watermark = max event time - this")
    mark_stale_ms: int = Field(default=5_000, gt=0, description="stale when mark_age_ms exceeds this")
    oi_poll_interval_ms: int = Field(default=10_000, gt=0, description="the producer's OI poll interval")
    oi_stale_factor: float = Field(
        default=3.0, gt=0, description="stale when oi_age_ms > factor x poll interval"
    )

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            interval_ms=self.snapshot_interval_ms,
            windows_s=tuple(self.snapshot_windows_s),
            allowed_lateness_ms=self.allowed_lateness_ms,
            mark_stale_ms=self.mark_stale_ms,
            oi_poll_interval_ms=self.oi_poll_interval_ms,
            oi_stale_factor=self.oi_stale_factor,
        )
