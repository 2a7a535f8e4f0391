"""SIGKILL a sink process between insert and commit, restart it: no loss, no duplicate.

The embedded engine lets one process open a chdb directory, and this test
process already holds the session's, so each sink runs as a child process on
a directory of its own, one after the other; the test never opens it. The
first child blocks right after an insert returned (before the runtime
commits) and the test kills it with SIGKILL. Merges are stopped, so a
re-inserted batch would show as extra rows without FINAL.
"""

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

from tests.integration.test_sink_support import make_points, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

CHILD = r'''
import json, os, sys, threading, time
from confluent_kafka import Consumer, TopicPartition
from perpstream.consumers.clickhouse import open_client
from perpstream.consumers.sink.handler import ClickHouseSink
from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.consumers.sink.service import sink_loop
from perpstream.consumers.sink.settings import SinkSettings

bootstrap, dsn, db, topic, dlq, group, mode, marker, total = sys.argv[1:10]
total = int(total)
client = open_client(dsn)
settings = SinkSettings(kafka_bootstrap_servers=bootstrap, clickhouse_database=db, metrics_topic=topic,
                        dlq_topic=dlq, group_id=group, batch_max_records=2000, batch_max_ms=200)
migrate_sink(client, db)
client.command(f"SYSTEM STOP MERGES {db}.metric_points")

class BlockAfterInsert(ClickHouseSink):
    calls = 0
    def handle(self, batch):
        super().handle(batch)
        BlockAfterInsert.calls += 1
        if mode == "crash" and BlockAfterInsert.calls == 3:
            with open(marker + ".tmp", "w") as f:
                json.dump({k[1]: v for k, v in batch.ranges().items()}, f)
            os.rename(marker + ".tmp", marker)
            time.sleep(3600)  # the test SIGKILLs us here: stored, not committed

def committed():
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        return sum(max(tp.offset, 0) for tp in c.committed(tps, timeout=20))
    finally:
        c.close()

stop = threading.Event()
loop = sink_loop(settings, client, handler=BlockAfterInsert(client, db, group_id=group),
                 consumer_overrides={"session.timeout.ms": 6000, "heartbeat.interval.ms": 500})
t = threading.Thread(target=lambda: loop.run(stop), daemon=True)
t.start()
if mode == "finish":
    deadline = time.monotonic() + 240
    while committed() < total and time.monotonic() < deadline:
        time.sleep(1)
    stop.set()
    t.join(120)
    q = lambda sql: client.query(sql).result_rows[0][0]
    print(json.dumps({
        "committed": committed(),
        "rows": q(f"SELECT count() FROM {db}.metric_points"),
        "rows_final": q(f"SELECT count() FROM {db}.metric_points FINAL"),
        "parts": q(f"SELECT count() FROM system.parts WHERE database = '{db}' "
                   "AND table = 'metric_points' AND active"),
    }), flush=True)
else:
    t.join()
'''


def _child(args: list[str]) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_between_insert_and_commit(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    topic, dlq, group = topic_factory(3), topic_factory(1), group_factory()
    total = produce(kafka_bootstrap, topic, make_points(20_000))
    dsn = f"chdb://{tmp_path / 'chdb'}"
    marker = tmp_path / "inserted.json"
    args = [kafka_bootstrap, dsn, "crashdb", topic, dlq, group]

    first = _child([*args, "crash", str(marker), str(total)])
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert first.poll() is None, f"child exited early: {first.communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, "no insert within 180 s"
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL
    in_flight = json.loads(marker.read_text())
    assert in_flight, "the killed batch had partitions"

    second = _child([*args, "finish", str(marker), str(total)])
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["committed"] == total
    assert result["rows_final"] == total  # nothing lost
    # merges are stopped: a second copy of the killed batch would be visible here
    assert result["rows"] == total, result
