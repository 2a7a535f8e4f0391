"""``perpstream snapshots`` and ``perpstream freshness`` as a user runs them:
child processes (a chdb directory of their own), env vars plus flags,
SIGTERM drains and exits 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, TopicPartition

from tests.integration.test_snapshots_kafka import produce
from tests.unit.snapshots.streams import T0, recorded_market

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]


def _committed(bootstrap: str, group: str, topic: str, parts: list[int]) -> dict[int, int]:
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        return {tp.partition: tp.offset for tp in c.committed([TopicPartition(topic, p) for p in parts],
                                                             timeout=20)}
    finally:
        c.close()


def test_snapshots_command_runs_drains_and_freshness_reports(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    arrival, _ = recorded_market(symbols=3, seconds=90, seed=4)
    topic, out_topic, dlq, group = topic_factory(2), topic_factory(2), topic_factory(1), group_factory()
    ends = produce(kafka_bootstrap, topic, arrival)
    dsn = f"chdb://{tmp_path / 'chdb'}"
    env = dict(os.environ, PYTHONPATH=str(ROOT), PERPSTREAM_METRICS_TOPIC=topic,
               PERPSTREAM_SNAPSHOTS_TOPIC=out_topic, PERPSTREAM_DLQ_TOPIC=dlq,
               PERPSTREAM_SESSION_TIMEOUT_MS="6000", PERPSTREAM_HEARTBEAT_INTERVAL_MS="500",
               PERPSTREAM_LOG_FORMAT="text")
    cmd = [sys.executable, "-m", "perpstream.cli"]
    member = subprocess.Popen(
        [*cmd, "snapshots", "--bootstrap-servers", kafka_bootstrap, "--clickhouse-dsn", dsn,
         "--database", "clidb", "--group-id", group, "--windows", "60,300"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            assert member.poll() is None, member.communicate()[1][-3000:]
            got = _committed(kafka_bootstrap, group, topic, list(ends))
            if all(got.get(p, -1) >= e for p, e in ends.items()):
                break
            assert time.monotonic() < deadline, f"not consumed: {got} < {ends}"
            time.sleep(1)
        member.send_signal(signal.SIGTERM)
        _, err = member.communicate(timeout=120)
    finally:
        if member.poll() is None:
            member.kill()
    assert member.returncode == 0, err[-3000:]

    fresh = subprocess.run(
        [*cmd, "freshness", "--clickhouse-dsn", dsn, "--database", "clidb", "--windows", "60,300",
         "--now-ms", str(T0 + 90_000), "--all", "--json"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    rows = {d["symbol"]: d for d in map(json.loads, fresh.stdout.splitlines())}
    assert set(rows) == {"SYM000USDT", "SYM001USDT", "SYM002USDT"}
    # SYM000's open interest stops half way (45 s): stale; the others are fresh
    assert rows["SYM000USDT"]["stale"] and not rows["SYM001USDT"]["stale"], rows
