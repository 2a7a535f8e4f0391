"""The local infrastructure the CLI, tests and benchmarks share."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka.admin import AdminClient

from perpstream.errors import ConfigError
from perpstream.local import InfraError, TansuBroker, ensure_topics, open_clickhouse

pytestmark = pytest.mark.integration


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def _wait_dead(pid: int, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(pid):
            return True
        time.sleep(0.1)
    return False


def test_broker_starts_serves_metadata_and_stops_without_orphans() -> None:
    broker = TansuBroker().start()
    pid = broker._proc.pid  # type: ignore[union-attr]
    try:
        md = AdminClient({"bootstrap.servers": broker.bootstrap_servers}).list_topics(timeout=10)
        assert md.brokers
    finally:
        broker.stop()
    assert not broker.running
    assert _wait_dead(pid)


def test_broker_dies_with_a_killed_parent() -> None:
    """A test run killed hard must not leave a broker behind."""
    script = textwrap.dedent(
        """
        import sys, time
        from perpstream.local import TansuBroker
        b = TansuBroker().start()
        print(b._proc.pid, flush=True)
        time.sleep(600)
        """
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        assert _alive(child_pid)
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        assert _wait_dead(child_pid), "broker outlived its parent"
    finally:
        parent.kill()


def test_two_brokers_on_a_taken_port_fail_clearly() -> None:
    with TansuBroker() as first:
        with pytest.raises(InfraError):
            TansuBroker(port=first.port).start(timeout=5)
        assert first.running


def test_ensure_topics_creates_partitions_and_is_idempotent(
    kafka_bootstrap: str, topic_factory: Callable[..., str]
) -> None:
    name = topic_factory(partitions=6)
    ensure_topics(kafka_bootstrap, {name: 6})  # again: no error
    md = AdminClient({"bootstrap.servers": kafka_bootstrap}).list_topics(timeout=10)
    assert len(md.topics[name].partitions) == 6


def test_embedded_clickhouse_answers_queries(clickhouse: Any, ch_database: str) -> None:
    clickhouse.command(f"CREATE DATABASE {ch_database}")
    clickhouse.command(
        f"CREATE TABLE {ch_database}.t (a UInt32) ENGINE = MergeTree ORDER BY a"
    )
    clickhouse.insert(f"{ch_database}.t", [[1], [2], [3]], column_names=["a"])
    assert clickhouse.command(f"SELECT sum(a) FROM {ch_database}.t") == 6


def test_relative_chdb_dsn_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"clickhouse_dsn.*absolute"):
        open_clickhouse("chdb://relative/dir")
