"""Settings of ``perpstream assets`` (``PERPSTREAM_*`` env vars, CLI flags on top).

The engine's parameters are docs/assets.md's, "The engine"; the checkpoint
interval trades ClickHouse writes against records emitted again after a crash
(docs/snapshots.md, "Cross-venue asset snapshots").
"""

from __future__ import annotations

from pydantic import Field

from perpstream.consumers.assets.engine import AssetEngineConfig
from perpstream.consumers.settings import ConsumerSettings
from perpstream.schemas.topics import ASSETS_GROUP


class AssetSettings(ConsumerSettings):
    group_id: str = Field(default=ASSETS_GROUP, min_length=1)
    # As the snapshot group's: each batch costs an insert of its accepted rows, and the
    # records wait for the lateness (15 s) anyway.
    batch_max_ms: int = Field(default=1_000, ge=1, description="longest wait to fill a batch")
    asset_lateness_ms: int = Field(
        default=15_000, ge=0,
        description="asset snapshots for t are emitted once the asset's newest snapshot time is this far "
        "past t; a venue's row later than that is counted late",
    )
    asset_quotes: tuple[str, ...] = Field(
        default=("USDT", "USDC", "USD"), min_length=1,
        description="quote currencies whose markets an asset takes (USD = inverse contracts)",
    )
    asset_checkpoint_interval_ms: int = Field(
        default=30_000, ge=0,
        description="at most one write of the asset checkpoints per this many ms (0 = every batch); "
        "after a crash the asset snapshots of up to this long are emitted again, with identical values",
    )

    def engine_config(self) -> AssetEngineConfig:
        return AssetEngineConfig(lateness_ms=self.asset_lateness_ms, quotes=frozenset(self.asset_quotes))
