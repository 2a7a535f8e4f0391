"""Settings every consumer-group member shares (sink, snapshots).

Each consumer process subclasses :class:`ConsumerSettings` and sets its own
``group_id`` default. Everything reads ``PERPSTREAM_*`` env vars (pydantic
settings) and is built once at the edge (the CLI); inner code receives the
plain librdkafka dict from :meth:`ConsumerSettings.consumer_config`.

Group membership is static by default (KIP-345): every member sends a
``group.instance.id`` made of the process's member name and its worker index,
so a process restarted with the same name takes its partitions back instead
of waiting for the broker to expire the old member (docs/sink.md, "Restart
recovery").
"""

from __future__ import annotations

import fcntl
import os
import re
import socket
import tempfile
import threading
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from perpstream.errors import ConfigError
from perpstream.runtime.settings import CommonSettings


class ConsumerSettings(CommonSettings):
    group_id: str = Field(default="perpstream-consumer", min_length=1,
                          description="Kafka consumer group of the members (each command has its own)")
    workers: int = Field(default=1, ge=1, le=64, description="group members as threads in this process")
    batch_max_records: int = Field(
        default=20_000, ge=1, description="records per batch; bounds memory per member"
    )
    batch_max_ms: int = Field(default=500, ge=1, description="longest wait to fill a batch")
    poll_timeout_ms: int = Field(default=500, ge=10, le=5_000, description="one consume() call at most")
    session_timeout_ms: int = Field(
        default=45_000, ge=1_000,
        description=(
            "librdkafka session.timeout.ms: how long the broker keeps a member (and, with static "
            "membership, its partitions) after its last heartbeat"
        ),
    )
    heartbeat_interval_ms: int = Field(
        default=3_000, ge=100,
        description="librdkafka heartbeat.interval.ms; below session_timeout_ms (Kafka advises a third)",
    )
    member_name: str | None = Field(
        default=None, max_length=200, pattern=r"^[A-Za-z0-9._-]*$",
        description=(
            "static group membership: members send group.instance.id <member_name>-<worker index>, so a "
            "restarted process with the same name gets its partitions back without a rebalance. Unset: "
            "<host>-<group_id> (-p<N> for the N-th process of the group on one host); empty: dynamic "
            "membership. Two live processes must never share a name"
        ),
    )
    partition_assignment_strategy: Literal["cooperative-sticky", "range", "roundrobin"] = Field(
        default="cooperative-sticky",
        description=(
            "librdkafka partition.assignment.strategy. cooperative-sticky: a rebalance moves only the "
            "partitions that change owner, in two rounds; range / roundrobin (eager): every member gives "
            "up all its partitions, then gets its new share in one round. Use an eager one on the local "
            "Tansu broker when members come and go beside a static member (Tansu starts no second round "
            "then: docs/sink.md, \"Rebalancing\"). Stop every member of a group before changing it"
        ),
    )
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

    @model_validator(mode="after")
    def _heartbeat_below_session(self) -> ConsumerSettings:
        if self.heartbeat_interval_ms >= self.session_timeout_ms:
            raise ValueError(
                f"heartbeat_interval_ms (PERPSTREAM_HEARTBEAT_INTERVAL_MS) must be below session_timeout_ms "
                f"(PERPSTREAM_SESSION_TIMEOUT_MS), got {self.heartbeat_interval_ms} >= "
                f"{self.session_timeout_ms} (Kafka advises at most a third of the session timeout)"
            )
        return self

    @cached_property
    def resolved_member_name(self) -> str:
        """The member name in use: the configured one, or one derived from the host and the group
        (stable across restarts on one host); ``""`` = dynamic membership."""
        if self.member_name is not None:
            return self.member_name
        return default_member_name(self.group_id)

    def group_instance_id(self, worker: int = 0) -> str | None:
        """``group.instance.id`` of worker ``worker`` of this process; None with dynamic membership."""
        name = self.resolved_member_name
        return f"{name}-{worker}" if name else None

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

    def consumer_config(self, worker: int = 0, **overrides: Any) -> dict[str, Any]:
        """The librdkafka consumer config of member ``worker`` of this process (offsets managed by the
        runtime); with static membership it carries that member's ``group.instance.id``."""
        cfg: dict[str, Any] = {
            "bootstrap.servers": self.require_bootstrap(),
            **self.kafka_security(),
            "group.id": self.group_id,
            "session.timeout.ms": self.session_timeout_ms,
            "heartbeat.interval.ms": self.heartbeat_interval_ms,
            "max.poll.interval.ms": self.max_poll_interval_ms,
            "queued.max.messages.kbytes": self.fetch_queue_kbytes,
            "fetch.queue.backoff.ms": self.fetch_queue_backoff_ms,
            "partition.assignment.strategy": self.partition_assignment_strategy,
        }
        instance_id = self.group_instance_id(worker)
        if instance_id is not None:
            cfg["group.instance.id"] = instance_id
        cfg.update(overrides)
        return cfg


#: group.instance.id may hold these characters only (Kafka checks it like a topic name)
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_slots: dict[str, str] = {}
_slots_lock = threading.Lock()
#: lock files held for the life of the process (closing one would free its slot)
_held: list[Any] = []


def default_member_name(group_id: str, *, host: str | None = None, lock_dir: Path | None = None) -> str:
    """``<host>-<group>`` for the first process of ``group_id`` on this host, ``<host>-<group>-p<N>``
    for the N-th one running beside it.

    The slot is a lock file (``flock``) held until the process exits, however it exits: a process
    restarted after a crash finds its slot free again and reclaims the same name, and two processes
    of one group on one host never share one. Within a process the name is the same for every call.
    """
    with _slots_lock:
        if group_id in _slots and host is None and lock_dir is None:
            return _slots[group_id]
        base = _UNSAFE.sub("_", f"{(host or socket.gethostname())[:100]}-{group_id[:90]}")
        slot = _claim_slot(base, lock_dir or Path(tempfile.gettempdir(), f"perpstream-{os.getuid()}"))
        name = base if slot == 0 else f"{base}-p{slot}"
        if host is None and lock_dir is None:
            _slots[group_id] = name
        return name


def _claim_slot(base: str, lock_dir: Path) -> int:
    try:
        lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    except OSError:
        return 0  # nowhere to coordinate: one process per host and group, or set member_name
    for slot in range(1000):
        try:
            f = open(lock_dir / f"{base}.{slot}.lock", "a")  # noqa: SIM115 - held until exit
        except OSError:
            return 0
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _held.append(f)
        return slot
    return 0
