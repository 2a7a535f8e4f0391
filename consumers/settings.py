"""Settings every consumer-group member shares (sink, snapshots).

Each consumer process subclasses :class:`ConsumerSettings` and sets its own
``group_id`` default. Everything reads ``PERPSTREAM_*`` env vars (pydantic
settings) and is built once at the edge (the CLI); inner code receives the
plain librdkafka dict from :meth:`ConsumerSettings.consumer_config`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from schemas.exceptions import ConfigError
from service.settings import CommonSettings


class ConsumerSettings(CommonSettings):
    group_id: str = Field(default="perpstream-consumer", min_length=1,
                          description="Kafka consumer group of the members (each command has its own)")
    workers: int = Field(default=1, ge=1, le=64, description="group members as threads in this process")
    batch_max_records: int = Field(
        default=20_000, ge=1, description="records per batch; bounds memory per member"
    )
    batch_max_ms: int = Field(default=500, ge=1, description="longest wait to fill a batch")
    poll_timeout_ms: int = Field(default=500, ge=10, le=5_000, description="one consume() call at most")
    session_timeout_ms: int = Field(default=45_000, ge=1_000)
    heartbeat_interval_ms: int = Field(default=3_000, ge=100)
    max_poll_interval_ms: int = Field(
        default=300_000, ge=10_000,
        description="librdkafka max.poll.interval.ms: a member that does not poll this long leaves the group "
        "(and /healthz fails)",
    )
    retry_backoff_initial_ms: int = Field(
        default=200, ge=1, description="first wait before a batch that could not be stored is retried",
    )
    retry_backoff_max_ms: int = Field(
        default=30_000, ge=1, description="longest wait between retries of a batch (doubling up to it)",
    )
    drain_timeout_ms: int = Field(
        default=30_000, ge=0, description="on stop, how long to keep retrying an unstored batch"
    )
    fetch_queue_kbytes: int = Field(
        default=32_768, ge=1_024, description="librdkafka queued.max.messages.kbytes per member"
    )
    fetch_queue_backoff_ms: int = Field(
        default=10, ge=0, le=1_000,
        description=(
            "librdkafka fetch.queue.backoff.ms: how long a partition's fetching pauses once the fetch "
            "queue is full. librdkafka's default (1000) stalls a member that drains its queue in "
            "well under a second: measured 210k vs 790k records/s of raw consumption"
        ),
    )

    store_unclassified_attempts: int = Field(
        default=10, ge=1, le=1_000,
        description=(
            "attempts of one batch failing with a ClickHouse error the classification does not list "
            "before the member stops (known transient errors are retried until they clear)"
        ),
    )
    commit_timeout_ms: int = Field(
        default=600_000, ge=10_000,
        description="offset commits failing this long stop the member (it exits non-zero, to be restarted)",
    )
    dlq_message_max_bytes: int = Field(
        default=1_000_000, ge=16_384, le=1_000_000_000,
        description=(
            "librdkafka message.max.bytes of the DLQ producer: a rejected record larger than this goes to "
            "the DLQ truncated, with headers giving its original size. Keep it at or below the DLQ topic's "
            "max.message.bytes"
        ),
    )

    def require_bootstrap(self) -> str:
        if not self.kafka_bootstrap_servers:
            raise ConfigError(
                "kafka_bootstrap_servers is not set: pass --bootstrap-servers or set "
                "PERPSTREAM_KAFKA_BOOTSTRAP_SERVERS (the embedded broker is started by `perpstream run`)"
            )
        return self.kafka_bootstrap_servers

    def loop_options(self) -> dict[str, Any]:
        """The batching, retry, drain and failure-bound keyword arguments of ``ConsumeLoop``."""
        return {
            "max_records": self.batch_max_records,
            "max_wait": self.batch_max_ms / 1000,
            "poll_timeout": self.poll_timeout_ms / 1000,
            "backoff_initial": self.retry_backoff_initial_ms / 1000,
            "backoff_max": self.retry_backoff_max_ms / 1000,
            "drain_timeout": self.drain_timeout_ms / 1000,
            "unclassified_attempts": self.store_unclassified_attempts,
            "commit_timeout": self.commit_timeout_ms / 1000,
        }

    def dlq_config(self) -> dict[str, Any]:
        """librdkafka settings of the DLQ producer beyond the connection (``ConsumeLoop(dlq_config=...)``)."""
        return {"message.max.bytes": self.dlq_message_max_bytes}

    def consumer_config(self, **overrides: Any) -> dict[str, Any]:
        """The librdkafka consumer config of one member (offsets managed by the runtime)."""
        cfg: dict[str, Any] = {
            "bootstrap.servers": self.require_bootstrap(),
            "group.id": self.group_id,
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": self.heartbeat_interval_ms,
            "max.poll.interval.ms": self.max_poll_interval_ms,
            "queued.max.messages.kbytes": self.fetch_queue_kbytes,
            "fetch.queue.backoff.ms": self.fetch_queue_backoff_ms,
        }
        cfg.update(overrides)
        return cfg
