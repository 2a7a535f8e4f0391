"""A static member killed with SIGKILL between insert and commit, restarted with the same
member name: it takes its partitions back and commits what was left, with no row lost or
doubled.

With a 6 s session that is the quick check (about 20 s on Tansu). With a 60 s session the
restarted member must have committed everything well before the killed member's session
could have expired: it does not wait for it, as a dynamic member does (on Tansu a join
still waits half the session timeout, so that case takes about a minute). Like
test_sink_crash, each sink is a child process on a chdb directory of its own, one after
the other.
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

from tests.integration.test_sink_support import committed_total, make_points, produce
from tests.waiting import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]

CHILD = r'''
import json, os, sys, threading, time
from perpstream.consumers.clickhouse import open_client
from perpstream.consumers.sink.handler import ClickHouseSink
from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.consumers.sink.service import sink_loop
from perpstream.consumers.sink.settings import SinkSettings
from tests.integration.test_sink_support import committed_total
from tests.waiting import wait_for

bootstrap, dsn, db, topic, dlq, group, mode, marker, total, session = sys.argv[1:11]
client = open_client(dsn)
settings = SinkSettings(kafka_bootstrap_servers=bootstrap, clickhouse_database=db, metrics_topic=topic,
                        dlq_topic=dlq, group_id=group, batch_max_records=2000, batch_max_ms=200,
                        member_name="crash-test-sink", session_timeout_ms=int(session),
                        heartbeat_interval_ms=500)
migrate_sink(client, db)
client.command(f"SYSTEM STOP MERGES {db}.metric_points")

class BlockAfterInsert(ClickHouseSink):
    calls = 0
    def handle(self, batch):
        super().handle(batch)
        BlockAfterInsert.calls += 1
        if mode == "crash" and BlockAfterInsert.calls == 3:
            open(marker, "w").close()
            threading.Event().wait()  # SIGKILLed here: stored, not committed

stop = threading.Event()
loop = sink_loop(settings, client, handler=BlockAfterInsert(client, db, group_id=group))
t = threading.Thread(target=lambda: loop.run(stop), daemon=True)
t.start()
if mode == "finish":
    wait_for(lambda: sum(committed_total(bootstrap, group, topic, 3).values()) == int(total), 120,
             "every offset committed", interval=0.2)
    stop.set()
    t.join(120)
    q = lambda sql: client.query(sql).result_rows[0][0]
    print(json.dumps({"rows": q(f"SELECT count() FROM {db}.metric_points"),
                      "rows_final": q(f"SELECT count() FROM {db}.metric_points FINAL")}), flush=True)
else:
    t.join()
'''


def _child(args: list[str]) -> subprocess.Popen[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-c", CHILD, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("session_ms", [6_000, 60_000], ids=["session-6s", "session-60s"])
def test_a_restarted_static_member_commits_what_was_left(
    session_ms: int, kafka_bootstrap: str, topic_factory: Callable[..., str],
    group_factory: Callable[..., str], tmp_path: Path,
) -> None:
    topic, dlq, group = topic_factory(3), topic_factory(1), group_factory()
    total = produce(kafka_bootstrap, topic, make_points(20_000))
    marker = tmp_path / "inserted"
    args = [kafka_bootstrap, f"chdb://{tmp_path / 'chdb'}", "staticdb", topic, dlq, group]

    first = _child([*args, "crash", str(marker), str(total), str(session_ms)])
    try:
        wait_for(marker.exists, 120, "the first member's third insert", alive=(first,))
        first.send_signal(signal.SIGKILL)
        first.wait(30)
    finally:
        if first.poll() is None:
            first.kill()
    killed_at = time.monotonic()
    assert first.returncode == -signal.SIGKILL
    left = total - sum(max(o, 0) for o in committed_total(kafka_bootstrap, group, topic, 3).values())
    assert left > 0, "the killed member had committed everything"

    second = _child([*args, "finish", str(marker), str(total), str(session_ms)])
    try:
        # With the long session, what an operator notices: the restarted sink is done while the
        # old member's session (60 s after its last heartbeat) has not even expired; 10 s of
        # margin for a slow machine.
        limit = 60.0 if session_ms < 60_000 else session_ms / 1000 - 10 - (time.monotonic() - killed_at)
        wait_for(lambda: sum(committed_total(kafka_bootstrap, group, topic, 3).values()) == total, limit,
                 "the restarted member to commit what was left", interval=0.2, alive=(second,))
        out, err = second.communicate(timeout=120)
    finally:
        if second.poll() is None:
            second.kill()
    assert second.returncode == 0, err[-3000:]
    result = json.loads(out.strip().splitlines()[-1])
    assert result["rows_final"] == total  # nothing lost
    # merges are stopped: a second copy of the batch stored before the kill would be visible here
    assert result["rows"] == total, result
