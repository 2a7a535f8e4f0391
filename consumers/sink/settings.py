"""Settings of ``perpstream sink``."""

from __future__ import annotations

from pydantic import Field

from perpstream.consumers.settings import ConsumerSettings
from perpstream.schemas.topics import SINK_GROUP


class SinkSettings(ConsumerSettings):
    group_id: str = Field(default=SINK_GROUP, min_length=1)
