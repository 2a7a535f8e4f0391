"""Settings every perpstream process shares, read from ``PERPSTREAM_*`` env vars.

Each process has one Settings class deriving from :class:`CommonSettings`,
built at the edge (CLI) and passed down as explicit arguments. Unknown
``PERPSTREAM_*`` variables are an error, so a typo fails at start-up instead
of silently becoming a default.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.topics import DLQ_TOPIC, METRICS_TOPIC, SNAPSHOTS_TOPIC


class CommonSettings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="PERPSTREAM_", frozen=True, extra="ignore", validate_default=True
    )

    kafka_bootstrap_servers: str | None = Field(
        default=None,
        description="host:port list of a Kafka cluster; unset = start the embedded local broker",
    )
    schema_registry_url: str | None = Field(
        default=None,
        description="Confluent Schema Registry URL; unset = Avro single-object encoding",
    )
    clickhouse_dsn: str | None = Field(
        default=None,
        description="http(s)://user:pass@host:8123/ or chdb:///abs/dir; unset = embedded chdb in --data-dir",
    )
    clickhouse_database: str = Field(
        default="perpstream", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="database holding metric_points and market_snapshots",
    )
    data_dir: str = Field(default=".perpstream", description="where embedded state lives")
    metrics_topic: str = METRICS_TOPIC
    snapshots_topic: str = SNAPSHOTS_TOPIC
    dlq_topic: str = DLQ_TOPIC
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["json", "text"] = "json"
    metrics_port: int | None = Field(
        default=None, ge=0, le=65535, description="Prometheus text endpoint port; unset = off"
    )
    gc_threshold: int = Field(
        default=50_000, ge=0,
        description=(
            "allocations between collections of CPython's youngest GC generation (Python's default "
            "is 700, which costs the consumers 20-35% of their CPU); 0 = leave the interpreter's default"
        ),
    )

    def resolved_clickhouse_dsn(self) -> str:
        """The DSN to open: the configured one, or the embedded engine under ``data_dir``."""
        return self.clickhouse_dsn or embedded_clickhouse_dsn(self.data_dir)

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        for part in v.split(","):
            host, sep, port = part.strip().rpartition(":")
            if not sep or not host or not port.isdigit():
                raise ValueError(f"expected host:port[,host:port...], got {v!r}")
        return v

    @field_validator("clickhouse_dsn")
    @classmethod
    def _dsn(cls, v: str | None) -> str | None:
        if v is None or v == "":
            return None
        if not v.startswith(("http://", "https://", "chdb://", "clickhouse://")):
            raise ValueError(f"expected http(s)://... or chdb:///dir, got {v!r}")
        if v.startswith("chdb://") and not v[len("chdb://"):].startswith("/"):
            raise ValueError(f"a chdb DSN needs an absolute directory (chdb:///abs/dir), got {v!r}")
        return v


def embedded_clickhouse_dsn(data_dir: str) -> str:
    """Where the embedded ClickHouse of a data directory lives: ``chdb:///<data_dir>/clickhouse``."""
    return "chdb://" + str(Path(data_dir, "clickhouse").resolve())
