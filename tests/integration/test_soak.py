"""``perpstream soak`` at a small load with its faults: exit 0 and an account that
balances (docs/soak.md, "CI")."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [
    pytest.mark.integration, pytest.mark.slow,
    # Not in the default run yet: after the broker restart, one run in three still had snapshot
    # rows of one symbol that differ from the recomputation (docs/soak.md, "Open").
    pytest.mark.skipif(os.environ.get("PERPSTREAM_TEST_SOAK") != "1",
                       reason="set PERPSTREAM_TEST_SOAK=1 to run the soak (2-3 minutes)"),
]

ROOT = Path(__file__).resolve().parents[2]
WITHOUT_BROKER_RESTART = ("ws_drop", "ws_silence", "bad_frames", "rest_429", "rest_418", "clickhouse_down",
                          "sink_kill", "snapshots_kill")
DEFAULT_FAULTS = (*WITHOUT_BROKER_RESTART, "broker_restart")


@pytest.mark.parametrize("faults", [WITHOUT_BROKER_RESTART, DEFAULT_FAULTS],
                         ids=["without-broker-restart", "every-default-fault"])
def test_soak_balances(tmp_path: Path, broker_kind: str, faults: tuple[str, ...]) -> None:
    if broker_kind != "tansu":
        pytest.skip("the soak starts and restarts its own local broker")
    proc = subprocess.run(
        [sys.executable, "-m", "perpstream.cli", "soak", "--seconds", "45", "--symbols", "20",
         "--oi-interval", "2", "--faults", ",".join(faults), "--json",
         "--work-dir", str(tmp_path / "soak")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )
    assert proc.stdout.strip(), proc.stderr[-4000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    a = result["account"]
    assert a["sent_points"] == a["stored_points"] + a["dlq_records"] + a["rejected_points"]
    assert a["rejected_frames"] >= a["sent_bad_frames"] > 0
    assert a["missing"] == a["unexpected"] == a["value_mismatches"] == 0, a["examples"]
    assert a["duplicates_without_final"] == 0
    assert a["snapshot_mismatches"] == 0 and a["snapshots_compared"] > 0, a["examples"]
    kinds = {f["kind"] for f in result["faults"]}
    assert kinds == set(faults)
    assert all(f["recovery_s"] is not None for f in result["faults"]), result["faults"]
    assert result["balanced"] and proc.returncode == 0, proc.stderr[-4000:]
