"""Wiring of the sink process: members, shared client, migrations.

``perpstream sink`` and ``perpstream run`` both call :func:`run_sink`; tests
and the benchmark call :func:`sink_loop` to get one member.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from perpstream.consumers.clickhouse import ClickHouseBatchJournal
from perpstream.consumers.runtime.decoding import row_decoder
from perpstream.consumers.runtime.health import watch_members
from perpstream.consumers.runtime.loop import BatchHandler, ConsumeLoop
from perpstream.consumers.runtime.supervisor import run_workers
from perpstream.consumers.sink.handler import ClickHouseSink
from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.consumers.sink.settings import SinkSettings
from perpstream.runtime.health import Health
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.codec import metric_point_codec, registry_client


def sink_loop(
    settings: SinkSettings, client: Any, *, telemetry: Telemetry | None = None, member: int = 0,
    consumer_overrides: Mapping[str, Any] | None = None, handler: BatchHandler | None = None,
) -> ConsumeLoop:
    """One sink member (tables must exist: call :func:`migrate_sink` first)."""
    telemetry = telemetry or Telemetry()
    codec = metric_point_codec(registry_client(settings.schema_registry_config()))
    handler = handler or ClickHouseSink(client, settings.clickhouse_database, telemetry=telemetry,
                                        group_id=settings.group_id)
    return ConsumeLoop(
        settings.consumer_config(member, **dict(consumer_overrides or {})),
        [settings.metrics_topic],
        settings.group_id,
        handler,
        decoder=row_decoder(codec),
        dlq_topic=settings.dlq_topic,
        dlq_config=settings.dlq_config(),
        telemetry=telemetry,
        journal=ClickHouseBatchJournal(client, settings.clickhouse_database),
        **settings.loop_options(),
        name=f"sink-{member}",
    )


def run_sink(
    settings: SinkSettings, client: Any, stop: threading.Event, *, telemetry: Telemetry | None = None,
    consumer_overrides: Mapping[str, Any] | None = None, health: Health | None = None,
) -> int:
    """Migrate, then run ``settings.workers`` members until ``stop``; the worst exit code.

    With ``health``, the members' liveness and readiness are its component ``sink``."""
    telemetry = telemetry or Telemetry()
    settings.require_bootstrap()
    loops: list[ConsumeLoop] = []
    watch_members(health, "sink", loops)
    try:
        migrate_sink(client, settings.clickhouse_database)

        def member(i: int) -> ConsumeLoop:
            loops.append(sink_loop(settings, client, telemetry=telemetry, member=i,
                                   consumer_overrides=consumer_overrides))
            return loops[-1]

        return run_workers(member, settings.workers, stop, name="sink")
    finally:
        if health is not None:
            health.stopped("sink")
