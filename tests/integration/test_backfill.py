"""``perpstream backfill`` against the fake Binance: history lands in ClickHouse exactly.

Three symbols (a perpetual, a CJK-named perpetual, a dated delivery contract
without funding) over ten hours, so every symbol takes two chunks and one
settled funding time at least. The fake's history is a function of time, so
the test knows every (symbol, metric, event_time) -> value the store must
hold under FINAL, no more and no less:

- a run in-process (through a 429 with Retry-After, which must be honoured),
  then a second run that sends nothing (the checkpoints) and a third with
  ``--no-resume`` that sends everything again: FINAL is unchanged;
- ``perpstream backfill`` as a command, interrupted by SIGINT while a request
  is held by the fake, exits 130; run again it completes, exit 0, and the
  store is exact;
- the weight the fake saw in any minute stays inside the budget.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from perpstream.consumers.sink.migrations import migrate_sink
from perpstream.consumers.sink.service import run_sink
from perpstream.producer.backfill import EXIT_INTERRUPTED, pair_of, run
from perpstream.producer.settings import ProducerSettings
from perpstream.runtime.telemetry import Telemetry
from perpstream.schemas.models import Metric
from tests.conftest import TEST_CONSUMER_CONFIG
from tests.fakes.binance import FakeBinance, is_delivery
from tests.integration.test_sink_support import Runner, committed_total, settings_for
from tests.waiting import wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
SYMBOLS = ["BTCUSDT", "币安人生USDT", "BTCUSDT_261225"]
HOURS = 10


def _range() -> tuple[int, int]:
    now = int(time.time() * 1000)
    until = now - now % 60_000 - 10 * 60_000
    return until - HOURS * 3_600_000 + 12_345, until  # since off the minute on purpose


def expected(fake: FakeBinance, since: int, until: int) -> dict[tuple[str, str, int], float]:
    out: dict[tuple[str, str, int], float] = {}
    for sym in SYMBOLS:
        first = since - since % 60_000
        for m in range(first, until, 60_000):
            c = m + 59_999
            if since <= c < until:
                out[(sym, Metric.MARK_PRICE, c)] = float(f"{fake.mark_close(sym, c):.8f}")
                out[(sym, Metric.INDEX_PRICE, c)] = float(f"{fake.index_close(pair_of(sym), c):.8f}")
        for t in range(-(-since // 300_000) * 300_000, until, 300_000):
            out[(sym, Metric.OPEN_INTEREST, t)] = float(f"{fake.oi_hist(sym, t):.8f}")
        if not is_delivery(sym):
            p = fake.FUNDING_PERIOD_MS
            for t in range(-(-since // p) * p, until, p):
                out[(sym, Metric.FUNDING_RATE_SETTLED, t)] = float(f"{fake.settled_funding(sym, t):.8f}")
    return out


def stored(clickhouse: Any, db: str) -> dict[tuple[str, str, int], float]:
    rows = clickhouse.query(
        f"SELECT source, symbol, metric, toUnixTimestamp64Milli(event_time), value "
        f"FROM {db}.metric_points FINAL").result_rows
    assert {r[0] for r in rows} <= {"binance_usdm"}
    return {(sy, m, int(et)): v for _, sy, m, et, v in rows}


def sink_until(bootstrap: str, clickhouse: Any, db: str, topic: str, dlq: str, group: str,
               total: int, partitions: int = 3) -> None:
    migrate_sink(clickhouse, db)
    runner = Runner(lambda stop: run_sink(settings_for(bootstrap, db, topic, dlq, group), clickhouse, stop,
                                          consumer_overrides=TEST_CONSUMER_CONFIG))
    try:
        wait_for(lambda: sum(max(0, o) for o in committed_total(bootstrap, group, topic, partitions).values())
                 >= total, timeout=120, interval=0.5, what=f"{total} records stored")
    finally:
        assert runner.stop() == 0


def settings(fake: FakeBinance, bootstrap: str, topic: str, data_dir: Path, since: int, until: int,
             **kw: Any) -> ProducerSettings:
    return ProducerSettings(
        kafka_bootstrap_servers=bootstrap, metrics_topic=topic, binance_rest_url=fake.rest_url,
        symbols=",".join(SYMBOLS), backfill_since=str(since), backfill_until=str(until),
        data_dir=str(data_dir), backoff_initial=0.05, backoff_cap=0.5, **kw)


def test_backfill_is_exact_idempotent_and_inside_the_weight_budget(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, ch_database: str, tmp_path: Path,
) -> None:
    topic, dlq = topic_factory(3), topic_factory(1)
    since, until = _range()
    never = threading.Event()
    with FakeBinance(SYMBOLS) as fake:
        fake.fail_history(429, 1, retry_after=1)
        s = settings(fake, kafka_bootstrap, topic, tmp_path, since, until)
        first = run(s, Telemetry(), never)
        assert first.exit_code == 0, first.failures
        want = expected(fake, since, until)
        assert first.points == len(want)
        assert first.chunks == 2 * len(SYMBOLS)
        times = [t for _, _, t in fake.history_requests]
        assert times[1] - times[0] >= 1.0, "the 429's Retry-After was not honoured"

        again = run(s, Telemetry(), never)
        assert again.exit_code == 0 and again.points == 0 and again.requests == 0
        assert again.chunks_skipped == 2 * len(SYMBOLS)

        fresh = run(settings(fake, kafka_bootstrap, topic, tmp_path, since, until, backfill_resume=False),
                     Telemetry(), never)
        assert fresh.exit_code == 0 and fresh.points == len(want)
        budget = int(s.rest_weight_limit * s.rest_weight_share)
        assert max(fake.weight_by_minute.values()) <= budget
        kline_requests = sum(1 for e, _, _ in fake.history_requests if e.endswith("Klines"))
        assert kline_requests == 2 * 2 * 2 * len(SYMBOLS) + 1  # 2 runs x 2 chunks x mark + index, the 429

    sink_until(kafka_bootstrap, clickhouse, ch_database, topic, dlq, group_factory(), 2 * len(want))
    assert stored(clickhouse, ch_database) == want


def test_interrupted_backfill_resumes_and_loses_nothing(
    kafka_bootstrap: str, topic_factory: Callable[..., str], group_factory: Callable[..., str],
    clickhouse: Any, ch_database: str, tmp_path: Path,
) -> None:
    topic, dlq = topic_factory(3), topic_factory(1)
    since, until = _range()
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    env.update(PYTHONPATH=str(ROOT), PYTHONIOENCODING="utf-8", PERPSTREAM_LOG_FORMAT="json",
               PERPSTREAM_BACKOFF_INITIAL="0.05", PERPSTREAM_BACKOFF_CAP="0.5")
    with FakeBinance(SYMBOLS) as fake:
        cmd = [sys.executable, "-m", "perpstream.cli", "backfill", "--since", str(since),
               "--until", str(until),
               "--symbols", ",".join(SYMBOLS), "--rest-url", fake.rest_url,
               "--bootstrap-servers", kafka_bootstrap, "--topic", topic, "--data-dir", str(tmp_path)]
        fake.hold_rest(6)  # the first chunk (4 requests) and part of the second go through
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: len(fake.history_requests) > 6, timeout=60, what="a request held")
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
        assert proc.returncode == EXIT_INTERRUPTED, err[-2000:]
        assert "run the same command again to resume" in err
        fake.hold_rest(None)
        before = len(fake.history_requests)
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        # the chunk delivered before the interruption is not fetched again
        assert len(fake.history_requests) - before == 4 * (2 * len(SYMBOLS) - 1)
        want = expected(fake, since, until)

    sink_until(kafka_bootstrap, clickhouse, ch_database, topic, dlq, group_factory(), len(want))
    assert stored(clickhouse, ch_database) == want
