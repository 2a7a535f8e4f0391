"""``perpstream run``, the README's demo command: the whole pipeline in one
process on the embedded broker and embedded ClickHouse."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PERPSTREAM_")}
    env["PERPSTREAM_DATA_DIR"] = str(tmp_path / "state")
    return env


def _cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "perpstream.cli", "run", "--source", "sim", "--sim-symbols", "4", *args]


def _counts(out: str) -> tuple[int, int, int]:
    delivered = int(re.findall(r"delivered=(\d+)", out)[-1])
    m = re.search(r"metric_points: (\d+) rows, market_snapshots: (\d+) rows", out)
    assert m, out[-2000:]
    return delivered, int(m.group(1)), int(m.group(2))


def test_run_stores_every_delivered_point_and_snapshots(tmp_path: Path) -> None:
    proc = subprocess.run(
        _cmd("--duration", "12", "--summary-interval", "3"), env=_env(tmp_path),
        capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    delivered, points, snapshots = _counts(proc.stdout)
    assert delivered > 0
    assert points == delivered  # the simulated market sends every identity once
    assert snapshots > 0

    # A second run on the same data directory (new in-memory broker, offsets from 0)
    # adds its points instead of losing them to the first run's dedup tokens.
    again = subprocess.run(
        _cmd("--duration", "8", "--summary-interval", "3"), env=_env(tmp_path),
        capture_output=True, text=True, timeout=240,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    delivered2, points2, _ = _counts(again.stdout)
    assert points2 == points + delivered2


def test_run_drains_on_sigint(tmp_path: Path) -> None:
    errlog = (tmp_path / "stderr.log").open("w")  # never a full pipe while we read stdout
    proc = subprocess.Popen(
        _cmd("--summary-interval", "2"), env=_env(tmp_path),
        stdout=subprocess.PIPE, stderr=errlog, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        assert proc.stdout is not None
        for line in proc.stdout:  # wait until data flows
            if re.search(r"stored=[1-9]", line) or time.monotonic() > deadline:
                break
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=120)
    finally:
        proc.kill()
        errlog.close()
    assert proc.returncode == 0, (tmp_path / "stderr.log").read_text()[-3000:]
    delivered, points, _ = _counts(out)
    assert points == delivered
