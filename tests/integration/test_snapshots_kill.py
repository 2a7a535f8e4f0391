"""SIGKILL a snapshot member in the middle of a batch, restart it: the table
equals what an uninterrupted run produces (the pure engine on the clean input).

The session's embedded ClickHouse belongs to this test process, so each
member runs as a child process on a chdb directory of its own, one after the
other. The first child blocks after the points of its third batch are stored
and before its snapshots are (nothing committed); the test kills it with
SIGKILL. The second child resumes from the committed offsets, runs to the
end and prints the table.
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

from tests.integration.test_snapshots_kafka import produce
from tests.unit.snapshots.harness import engine_snapshots
from tests.unit.snapshots.streams import recorded_market

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

CHILD = r'''
import json, logging, os, sys, threading, time
logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
from perpstream.consumers.clickhouse import open_client
from perpstream.consumers.snapshots.app import SnapshotService
from perpstream.consumers.snapshots.settings import SnapshotSettings
from perpstream.consumers.snapshots.store import SnapshotStore
from tests.unit.snapshots.harness import table_rows

bootstrap, dsn, db, topic, out_topic, dlq, group, mode, marker, ends = sys.argv[1:11]
ends = {int(k): v for k, v in json.loads(ends).items()}
client = open_client(dsn)
settings = SnapshotSettings(kafka_bootstrap_servers=bootstrap, clickhouse_database=db, metrics_topic=topic,
                            snapshots_topic=out_topic, dlq_topic=dlq, group_id=group,
                            batch_max_records=1500, batch_max_ms=200)

class BlockingStore(SnapshotStore):
    calls = 0
    def write_snapshots(self, snaps):
        BlockingStore.calls += 1
        if mode == "crash" and BlockingStore.calls == 3:
            open(marker, "w").close()
            time.sleep(3600)  # SIGKILLed here: points stored, snapshots not, nothing committed
        super().write_snapshots(snaps)

def factory(svc, member):
    h = svc.make_handler(member)
    h.store = BlockingStore(client, db, group)
    return h

svc = SnapshotService(settings, client, consumer_overrides={"session.timeout.ms": 6000,
                                                            "heartbeat.interval.ms": 500},
                      handler_factory=factory)
stop = threading.Event()
t = threading.Thread(target=lambda: svc.run(stop), daemon=True)
t.start()
if mode == "finish":
    from confluent_kafka import Consumer, TopicPartition

    def done():
        # the broker's committed offsets: partitions finished before the kill count too
        c = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
        try:
            got = c.committed([TopicPartition(topic, p) for p in ends], timeout=20)
        finally:
            c.close()
        return all(tp.offset >= ends[tp.partition] for tp in got)
    deadline = time.monotonic() + 240
    while not done() and time.monotonic() < deadline:
        time.sleep(1)
    stop.set()
    t.join(120)
    rows = [[v.hex() if isinstance(v, float) else v for v in r] for r in table_rows(client, db)]
    print(json.dumps({"done": done(), "rows": rows}), flush=True)
else:
    t.join()
'''


def _child(args: list[str]) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_sigkill_mid_batch_then_restart(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    tmp_path: Path,
) -> None:
    arrival, clean = recorded_market(symbols=6, seconds=240, seed=21)
    topic, out_topic, dlq, group = topic_factory(3), topic_factory(3), topic_factory(1), group_factory()
    ends = produce(kafka_bootstrap, topic, arrival)
    marker = tmp_path / "blocked"
    args = [kafka_bootstrap, f"chdb://{tmp_path / 'chdb'}", "killdb", topic, out_topic, dlq, group]

    first = _child([*args, "crash", str(marker), json.dumps(ends)])
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert first.poll() is None, f"child exited early: {first.communicate()[1][-3000:]}"
            assert time.monotonic() < deadline, "the member did not reach its third batch"
            time.sleep(0.2)
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == -signal.SIGKILL

    second = _child([*args, "finish", str(marker), json.dumps(ends)])
    out, err = second.communicate(timeout=300)
    assert second.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["done"], err[-6000:]
    expected = [[v.hex() if isinstance(v, float) else v for v in r] for r in engine_snapshots(clean)]
    assert result["rows"] == expected
