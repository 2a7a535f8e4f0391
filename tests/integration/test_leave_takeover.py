"""Scenario B of benchmarks/restart_recovery.py at a tiny scale, on Apache Kafka: two
``perpstream sink`` processes share a group while events flow, one is stopped with SIGTERM,
and the other takes over every partition, each event committed and stored once.

Run as an operator runs them (subprocesses, each with its own embedded ClickHouse
directory). Static and dynamic members both leave at once on a SIGTERM (docs/sink.md,
"Restart recovery"); no time is asserted here, the benchmark measures it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.restart_recovery import run_leave

pytestmark = [pytest.mark.integration, pytest.mark.slow]

PARTITIONS = 4


@pytest.mark.parametrize("mode", ["static", "dynamic"])
def test_the_other_member_takes_over_after_a_sigterm(mode: str, apache_kafka: None, kafka_bootstrap: str,
                                                     tmp_path: Path) -> None:
    row = run_leave(kafka_bootstrap, mode, session_ms=45_000, partitions=PARTITIONS, rate=100,
                    strategy="cooperative-sticky", data_dir=str(tmp_path))
    assert row.stopped_partitions, "B owned no partition before it was stopped"
    assert row.took_over_s is not None, f"A never consumed B's partitions {row.stopped_partitions}"
    assert row.survivor_owns == list(range(PARTITIONS))
    # every event committed by the group, and stored once across the two members' stores
    assert row.committed == row.events
    assert row.rows == row.events, f"stores hold {row.rows_per_member} (A, B) of {row.events}"
    assert all(row.rows_per_member), f"a member stored nothing: {row.rows_per_member}"
