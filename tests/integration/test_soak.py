"""``perpstream soak`` with its default faults: exit 0 and an account that balances
(docs/soak.md, "CI"), on the local Tansu broker and, where Java runs, on a three-node
Apache Kafka cluster with its own broker faults. A larger run (live load, every fault kind
Tansu takes) is opt-in: ``PERPSTREAM_TEST_SOAK=1``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from perpstream.soak import DEFAULT_FAULTS, FAULT_KINDS

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


Run = subprocess.CompletedProcess[str]


def soak(work: Path, *args: str, timeout: float = 900) -> tuple[Run, dict[str, Any]]:
    proc = subprocess.run(
        [sys.executable, "-m", "perpstream.cli", "soak", "--json", "--work-dir", str(work), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=timeout, check=False,
    )
    assert proc.stdout.strip(), proc.stderr[-4000:]
    return proc, json.loads(proc.stdout.strip().splitlines()[-1])


def assert_balanced(proc: Run, result: dict[str, Any], faults: tuple[str, ...]) -> None:
    a = result["account"]
    assert a["sent_points"] == a["stored_points"] + a["dlq_records"] + a["rejected_points"]
    assert a["rejected_frames"] >= a["sent_bad_frames"]
    assert (a["sent_bad_frames"] > 0) == ("bad_frames" in faults)
    assert a["missing"] == a["unexpected"] == a["value_mismatches"] == 0, a["examples"]
    assert a["duplicates_without_final"] == a["duplicates_across_stores"] == 0
    assert a["snapshot_mismatches"] == 0 and a["snapshots_compared"] > 0, a["examples"]
    assert [f["kind"] for f in result["faults"]] == [k for k in FAULT_KINDS if k in faults]
    assert all(f["recovery_s"] is not None for f in result["faults"]), result["faults"]
    assert result["balanced"] and proc.returncode == 0, proc.stderr[-4000:]


def test_soak_with_the_default_faults_balances(tmp_path: Path) -> None:
    proc, result = soak(tmp_path / "soak", "--seconds", "45", "--symbols", "20", "--oi-interval", "2")
    assert_balanced(proc, result, DEFAULT_FAULTS)


#: A short form of the Apache Kafka soak: the broker's own faults and a sink SIGKILL.
KAFKA_CI_FAULTS = ("sink_kill", "broker_kill", "broker_pause", "rolling_restart", "broker_restart")


def test_soak_on_a_three_node_kafka_cluster_balances(tmp_path: Path, apache_kafka: None) -> None:
    proc, result = soak(tmp_path / "soak", "--broker", "kafka", "--nodes", "3", "--seconds", "60",
                        "--symbols", "10", "--oi-interval", "2", "--broker-pause", "12",
                        "--faults", ",".join(KAFKA_CI_FAULTS))
    assert result["run"]["broker"] == "kafka" and result["run"]["nodes"] == 3
    assert result["run"]["replication"] == {"replication_factor": 3, "min_insync_replicas": 2}
    assert_balanced(proc, result, KAFKA_CI_FAULTS)


@pytest.mark.skipif(os.environ.get("PERPSTREAM_TEST_SOAK") != "1",
                    reason="set PERPSTREAM_TEST_SOAK=1 for the soak at live load (about 5 minutes)")
def test_soak_at_live_load_with_every_fault_balances(tmp_path: Path) -> None:
    proc, result = soak(tmp_path / "soak", "--seconds", "150", "--symbols", "700",
                        "--faults", ",".join(DEFAULT_FAULTS), timeout=1800)
    assert_balanced(proc, result, DEFAULT_FAULTS)
